"""What a suite file may contain: the JSON Schema of its structure, and the check that turns
schema errors into problems a user can act on (file, line, field, what was expected, a fix).

The schema checks structure and value types only. Names (cells, backends, tasks, metrics) and
task parameters are checked against the plugin registry in :mod:`rnnbench.suite`, since
plugins can add them.
"""

from __future__ import annotations

import math
import re
from typing import Any

import jsonschema

from rnnbench.cell import DTYPES
from rnnbench.errors import did_you_mean
from rnnbench.records import CONFIG_AXES, DATA_MODES, INITS, OPTIMIZERS, SCHEDULES, TRAINING_AXES
from rnnbench.suite_expand import AXIS_DEFAULTS
from rnnbench.suite_yaml import KeyPath, SuiteDocument, SuiteProblems, yaml_text

__all__ = ["SUITE_SCHEMA", "SchemaValidator", "check_structure"]

# Each schema that can fail carries an "expected" annotation (ignored by jsonschema) so an error
# reads "expected a positive integer, got 0" rather than a dump of the schema.

_NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"
_POSITIVE_INT = {"type": "integer", "minimum": 1}


def _int_up_to(maximum: int, minimum: int = 1) -> dict[str, Any]:
    """An integer in [minimum, maximum]: a typo such as ``hidden_size: 1e23`` written as an
    integer would otherwise pass and fail (or exhaust the machine) only when the run starts."""
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


#: The largest values of the integer axes; far above any run rnnbench is meant for.
MAX_HIDDEN_SIZE, MAX_LAYERS, MAX_SEED = 65_536, 64, 2**32 - 1
MAX_BATCH_SIZE, MAX_STEPS, MAX_EPOCHS = 1_048_576, 1_000_000_000, 1_000_000
_NAME = {"type": "string", "minLength": 1}


def _axis(item: dict[str, Any], expected: str) -> dict[str, Any]:
    """One value or a non-empty list of values, each matching ``item``."""
    return {
        "if": {"type": "array"},
        "then": {"type": "array", "minItems": 1, "items": {**item, "expected": expected}},
        "else": {**item, "expected": f"{expected}, or a list of them"},
    }


def _task_entry(expected: str, kind: str = "task") -> dict[str, Any]:
    return {
        "if": {"type": "object"},
        "then": {
            "type": "object",
            "properties": {
                "name": {**_NAME, "expected": f"a {kind} name"},
                "params": {
                    "type": "object",
                    "expected": "a mapping of " + (
                        "parameter values" if kind == "task" else "option values"),
                    # A list-valued parameter is expanded, so an empty list would give no runs.
                    "additionalProperties": {"if": {"type": "array"}, "then": {"minItems": 1}},
                },
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        "else": {**_NAME, "expected": expected},
    }


_TASK_AXIS = {
    "if": {"type": "array"},
    "then": {
        "type": "array",
        "minItems": 1,
        "items": _task_entry("a task name or a mapping {name: ..., params: {...}}"),
    },
    "else": _task_entry("a task name, a mapping {name: ..., params: {...}}, or a list of them"),
}

#: A cell: a name, or ``{name: rnn, params: {nonlinearity: relu}}`` (its options; a list value
#: expands, as task parameters do).
_CELL_AXIS = {
    "if": {"type": "array"},
    "then": {
        "type": "array",
        "minItems": 1,
        "items": _task_entry("a cell name or a mapping {name: ..., params: {...}}", "cell"),
    },
    "else": _task_entry(
        "a cell name, a mapping {name: ..., params: {...}}, or a list of them", "cell"
    ),
}

_AXES: dict[str, dict[str, Any]] = {
    "cell": _CELL_AXIS,
    "backend": _axis(_NAME, "a backend name"),
    "task": _TASK_AXIS,
    "hidden_size": _axis(
        _int_up_to(MAX_HIDDEN_SIZE), f"a positive integer up to {MAX_HIDDEN_SIZE}"
    ),
    "num_layers": _axis(_int_up_to(MAX_LAYERS), f"a positive integer up to {MAX_LAYERS}"),
    "bias": _axis({"type": "boolean"}, "true or false"),
    "dtype": _axis({"enum": list(DTYPES)}, "one of " + ", ".join(DTYPES)),
    "seed": _axis(_int_up_to(MAX_SEED, minimum=0), f"an integer from 0 to {MAX_SEED} (2**32 - 1)"),
}

_TRAINING: dict[str, dict[str, Any]] = {
    "optimizer": _axis({"enum": list(OPTIMIZERS)}, "one of " + ", ".join(OPTIMIZERS)),
    "lr": _axis({"type": "number", "exclusiveMinimum": 0}, "a number > 0"),
    "momentum": _axis(
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1}, "a number in [0, 1)"
    ),
    "batch_size": _axis(_int_up_to(MAX_BATCH_SIZE), f"a positive integer up to {MAX_BATCH_SIZE}"),
    # null is allowed so an include can switch between the two: {epochs: 5, steps: null}
    "steps": _axis(
        {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_STEPS},
        f"a positive integer up to {MAX_STEPS} or null",
    ),
    "epochs": _axis(
        {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_EPOCHS},
        f"a positive integer up to {MAX_EPOCHS} or null",
    ),
    "clip": _axis(
        {"type": ["number", "null"], "exclusiveMinimum": 0}, "a number > 0 or null (no clipping)"
    ),
    "eval_every": _axis(
        {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_STEPS},
        f"a positive integer up to {MAX_STEPS} or null",
    ),
    "target_loss": _axis(
        {"type": ["number", "null"], "exclusiveMinimum": 0}, "a number > 0 or null (no target)"
    ),
    "init": _axis({"enum": list(INITS)}, "one of " + ", ".join(INITS)),
    "spectral_radius": _axis(
        {"type": ["number", "null"], "exclusiveMinimum": 0}, "a number > 0 or null"
    ),
    "forget_bias": _axis({"type": "number"}, "a number (added to the forget-gate biases)"),
    "schedule": _axis({"enum": list(SCHEDULES)}, "one of " + ", ".join(SCHEDULES)),
    "warmup_steps": _axis(
        _int_up_to(MAX_STEPS, minimum=0), f"an integer from 0 to {MAX_STEPS}"
    ),
    "decay_every": _axis(
        {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_STEPS},
        f"a positive integer up to {MAX_STEPS} or null",
    ),
    "decay_rate": _axis({"type": "number", "exclusiveMinimum": 0}, "a number > 0"),
    "data": _axis({"enum": list(DATA_MODES)}, "one of " + ", ".join(DATA_MODES)),
}
assert tuple(_TRAINING) == TRAINING_AXES and tuple(_AXES) == CONFIG_AXES, "schema out of date"

_EXCLUDE_AXES = {
    **_AXES, "task": _axis(_NAME, "a task name"), "cell": _axis(_NAME, "a cell name"),
}

# Claims (see rnnbench.claims): selector keys are flat run keys (cell, task.length, lr,
# cell.nonlinearity, ...), checked against the runs in rnnbench.claims, so any name is allowed.
_SELECTOR_VALUE = {"type": ["string", "number", "boolean", "null"]}
_SELECTOR = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": {
        "if": {"type": "array"},
        "then": {"type": "array", "minItems": 1,
                 "items": {**_SELECTOR_VALUE, "expected": "a value"}},
        "else": {**_SELECTOR_VALUE, "expected": "a value, or a list of values (any matches)"},
    },
    "expected": "a selector mapping, e.g. {cell: lstm, task.length: 100}",
    "empty": "an empty selector would select every run; name the runs it selects",
}
_CLAIM = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": _NAME_PATTERN,
               "expected": "an id of letters, digits, '-', '_' and '.'"},
        "claim": {**_NAME, "expected": "the claim as a sentence"},
        "source": {**_NAME, "expected": "a citation, e.g. 'Hochreiter & Schmidhuber 1997'"},
        "where": _SELECTOR,
        "compare_to": _SELECTOR,
        "metric": {**_NAME, "expected": "a metric name"},
        "expect": {**_NAME, "expected": 'a comparison in quotes, e.g. "< 0.01", ">= 0.9" or '
                   '"between 0.6 0.9"'},
        "aggregate": {"enum": ["solved_fraction"], "expected": "solved_fraction"},
        "at_least": {"type": "number", "minimum": 0, "maximum": 1,
                     "expected": "a fraction from 0 to 1"},
        "min_runs": {**_int_up_to(MAX_SEED), "expected": "a positive integer"},
        "known_failure": {**_NAME, "expected": "the reason, as a sentence"},
    },
    "required": ["id", "claim", "source", "where", "metric", "expect"],
    "additionalProperties": False,
    "expected": "a mapping with id, claim, source, where, metric and expect",
}
_TASK_PARAM_KEY = r"^task\.[A-Za-z_][A-Za-z0-9_]*$"
#: A cell option as a flat key (``cell.nonlinearity``), in include and exclude entries.
CELL_OPTION_KEY = r"^cell\.[A-Za-z_][A-Za-z0-9_]*$"
_NON_EMPTY = {"if": {"type": "array"}, "then": {"minItems": 1}}

#: The JSON Schema (Draft 2020-12) of a suite file's structure. Names (cells, tasks, metrics)
#: are checked against the plugin registry separately, since plugins can add them.
SUITE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "expected": "a mapping of suite keys",
    "properties": {
        "name": {
            "type": "string",
            "pattern": _NAME_PATTERN,
            "expected": "a name of letters, digits, '-', '_' and '.' (not starting with '.')",
        },
        # ``kind: kernels`` suites are read by rnnbench.kernel_suite; training is the default.
        "kind": {"const": "training", "expected": "training (or kernels, a kernels suite)"},
        "description": {"type": "string", "expected": "a string"},
        "output": {"type": "string", "minLength": 1, "expected": "a path"},
        "plugins": {
            "type": "array",
            "items": {**_NAME, "expected": "a module name or a .py file path"},
            "expected": "a list of plugins (module names or .py file paths)",
        },
        **_AXES,
        "training": {
            "type": "object",
            "properties": _TRAINING,
            "additionalProperties": False,
            "expected": "a mapping of training settings",
        },
        "metrics": {
            "type": "array",
            "items": {**_NAME, "expected": "a metric name"},
            "expected": "a list of metric names",
        },
        "include": {
            "type": "array",
            "expected": "a list of mappings",
            "items": {
                "type": "object",
                "minProperties": 1,
                "properties": {**_AXES, **_TRAINING},
                "patternProperties": {CELL_OPTION_KEY: _NON_EMPTY},
                "additionalProperties": False,
                "expected": "a mapping of axis values, e.g. {cell: lstm, hidden_size: 128}",
                "empty": "an empty include entry adds nothing",
            },
        },
        "exclude": {
            "type": "array",
            "expected": "a list of mappings",
            "items": {
                "type": "object",
                "minProperties": 1,
                "properties": {**_EXCLUDE_AXES, **_TRAINING},
                "patternProperties": {_TASK_PARAM_KEY: _NON_EMPTY, CELL_OPTION_KEY: _NON_EMPTY},
                "additionalProperties": False,
                "expected": "a mapping of values to match, e.g. {cell: rnn, hidden_size: 32}",
                "empty": "an empty exclude entry would remove every run",
            },
        },
        "claims": {"type": "array", "items": _CLAIM, "expected": "a list of claims"},
        "skip_unavailable": {"type": "boolean", "expected": "true or false"},
        "max_runs": {
            "type": "integer",
            "minimum": 1,
            "expected": "a positive integer (the most runs this suite may expand to)",
        },
        "threads": {
            "type": "integer",
            "minimum": 1,
            "expected": "a positive integer (BLAS/OpenMP/Numba threads per run)",
        },
        # Each variant's keys are checked when it is chosen (rnnbench.suite_variants), as the
        # suite's own.
        "variants": {
            "type": "object",
            "expected": "a mapping of variant names to the suite keys they change, e.g. "
            "{full: {training: {steps: 20000}}}",
            "propertyNames": {"pattern": _NAME_PATTERN, "expected": "a variant name of "
                              "letters, digits, '-', '_' and '.' (not starting with '.')"},
            "additionalProperties": {
                "type": "object",
                "minProperties": 1,
                "expected": "a mapping of the suite keys this variant changes",
                "empty": "an empty variant changes nothing",
            },
        },
    },
    "required": ["name", "cell", "task", "hidden_size"],
    "additionalProperties": False,
}


def _strict_integer(checker: Any, instance: Any) -> bool:
    # jsonschema counts 16.0 as an integer; a suite should say 16, so ids and types are exact.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _finite_number(checker: Any, instance: Any) -> bool:
    # .nan passes every bound (each comparison is false) and .inf is no learning rate.
    if isinstance(instance, bool):
        return False
    return isinstance(instance, int) or (isinstance(instance, float) and math.isfinite(instance))


#: A Draft 2020-12 validator class whose integers are exact (``16.0`` is not an integer) and
#: whose numbers are finite (``.nan`` and ``.inf`` are not numbers a suite can mean).
SchemaValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _strict_integer, "number": _finite_number}
    ),
)
_VALIDATOR = SchemaValidator(SUITE_SCHEMA)

_REQUIRED_HINTS = {
    "name": "e.g. name: my-suite",
    "cell": "e.g. cell: [rnn, lstm]",
    "task": "e.g. task: adding",
    "hidden_size": "e.g. hidden_size: 32",
    "name@task": "e.g. {name: adding, params: {length: 50}}",
    "id@claims": "e.g. id: lstm-solves-adding",
    "claim@claims": "the claim as a sentence",
    "source@claims": "the citation it comes from",
    "where@claims": "the runs it is about, e.g. where: {cell: lstm}",
    "metric@claims": "e.g. metric: test_loss",
    "expect@claims": 'e.g. expect: "< 0.01"',
    "cells": "e.g. cells: [rnn, lstm, gru]",
    "backends": "e.g. backends: [numpy, numba-cpu, torch]",
    "points": "e.g. points: [[100, 64, 32, 128]]  # T, B, I, H",
    "id@targets": "e.g. id: numba-lstm-train-vs-torch",
    "backend@targets": "the backend the target is about, e.g. backend: numba-cpu",
    "metric@targets": "ratio (vs the baseline), pct_peak, gflops, median_s or first_call_s",
    "expect@targets": 'e.g. expect: ">= 1.0"',
}


def check_structure(doc: SuiteDocument, problems: SuiteProblems, only: str | None = None,
                    schema: dict[str, Any] | None = None) -> None:
    """Add a problem to ``problems`` for every way ``doc`` breaks :data:`SUITE_SCHEMA` (or
    ``schema``: another suite kind's, e.g. :data:`rnnbench.kernel_suite.KERNEL_SCHEMA`);
    ``only`` checks that one top-level key alone (``verify`` reads a results folder's
    ``claims:``, whatever the rest of its suite copy holds)."""
    data, validator = doc.data, _VALIDATOR if schema is None else SchemaValidator(schema)
    if only is not None:
        data = {only: doc.data[only]} if only in doc.data else {}
        validator = SchemaValidator(
            {"type": "object", "properties": {only: SUITE_SCHEMA["properties"][only]}})
    for error in validator.iter_errors(data):
        path: KeyPath = tuple(error.absolute_path)
        kind = error.validator
        schema = error.schema if isinstance(error.schema, dict) else {}
        if kind == "additionalProperties":
            allowed = list(schema.get("properties", {}))
            patterns = list(schema.get("patternProperties", {}))
            for key in error.instance:
                if key in allowed or any(re.search(p, key) for p in patterns):
                    continue
                problems.add(
                    (*path, key),
                    f"unknown key {key!r}",
                    _key_hint(path, key, allowed),
                    line=doc.line_of(*path, key),
                )
        elif kind == "required":
            for key in error.validator_value:
                if key not in error.instance:
                    hint = _REQUIRED_HINTS.get(key) if not path else _REQUIRED_HINTS.get(
                        f"{key}@{path[0]}", _REQUIRED_HINTS.get(f"{key}@task"))
                    problems.add(
                        (*path, key),
                        f"missing required key {key!r}",
                        hint,
                        line=doc.nearest_line(*path),
                    )
        elif kind == "minItems" and not error.instance:  # too short but not empty: expected
            problems.add(
                path,
                "must not be an empty list",
                "remove the key to use its default" if path and path[-1] in AXIS_DEFAULTS else None,
            )
        elif kind == "minProperties":
            problems.add(path, schema.get("empty", "must not be empty"))
        else:
            expected = schema.get("expected")
            if expected is None:
                problems.add(path, error.message)
                continue
            hint = None
            if kind == "enum" and isinstance(error.instance, str):
                hint = did_you_mean(error.instance, [str(v) for v in schema["enum"]])
            got = yaml_text(error.instance)
            if kind == "type" and isinstance(error.instance, str):
                got += " (a string)"
                if _looks_numeric(error.instance):
                    hint = "remove the quotes to give a number"
            problems.add(path, f"expected {expected}, got {got}", hint)


def _key_hint(path: KeyPath, key: str, allowed: list[str]) -> str:
    """Where an unknown key belongs, when that is known; else the closest allowed keys."""
    if path == () and key in TRAINING_AXES:
        return f"{key!r} is a training setting: put it under 'training:'"
    if len(path) == 2 and path[0] == "include" and key == "training":
        return "give training settings flat in an include entry, e.g. {lr: 0.1}"
    if len(path) == 2 and path[0] == "exclude":
        allowed = [*allowed, "task.<parameter>", "cell.<option>"]
    if len(path) == 2 and path[0] == "include":
        allowed = [*allowed, "cell.<option>"]
    return did_you_mean(key, allowed)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
