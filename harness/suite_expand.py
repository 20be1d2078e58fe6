"""From a suite's checked axes to its runs: defaults, include sets, the cartesian product,
exclude matching and :class:`~rnnbench.records.RunSpec` building.

An axis's values are as written, else (in an ``include`` entry) the base suite's, else the
default. The runs are the product of every axis, base runs first, then each include set's;
a run that an ``exclude`` entry matches is dropped, and a run id given twice is kept once.

Run ids must not depend on how a suite is spelt, so every default is filled in before a RunSpec
is built and numbers are converted to their field's type (``lr: 1`` is ``1.0``).

Nothing here reports problems: :mod:`rnnbench.suite` checks the values first (against the schema
and the registry) and then expands them. Each value keeps where it was written
(:class:`AxisValue`), so a check on an expanded run can still point at the line to fix.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rnnbench.plugin_manager import TaskEntry
from rnnbench.records import (
    CONFIG_AXES,
    LABEL_SETTINGS,
    TRAINING_AXES,
    RunSpec,
    TrainingConfig,
    same_value,  # re-exported: suite checks and claims compare values as expansion does
)
from rnnbench.suite_yaml import KeyPath, SuiteDocument

__all__ = [
    "AXIS_DEFAULTS",
    "MISSING",
    "TRAINING_DEFAULTS",
    "AxisValue",
    "CellChoice",
    "ExpandedRun",
    "RunSet",
    "TaskChoice",
    "as_field_type",
    "axis_values",
    "count_runs",
    "expand_runs",
    "matches",
    "same_value",
    "union_args",
    "varying_settings",
]

#: The value of each run axis a suite may leave out (cell, task and hidden_size are required).
AXIS_DEFAULTS = {"backend": "numpy", "num_layers": 1, "bias": True, "dtype": "float32", "seed": 0}
#: The value of each training setting a suite may leave out: the TrainingConfig defaults.
TRAINING_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainingConfig)}
#: A key the document does not have (``None`` is a value: YAML's ``null``).
MISSING = object()

_TRAINING_HINTS = typing.get_type_hints(TrainingConfig)


@dataclass(frozen=True)
class AxisValue:
    """One value of an axis, with where it was written (or, for a default, where it would go)."""

    value: Any
    path: KeyPath
    line: int | None
    explicit: bool


@dataclass
class TaskChoice:
    """One task entry: the registered task and every combination of its parameters."""

    entry: TaskEntry
    combos: list[tuple[tuple[str, Any], ...]]
    defaults: dict[str, Any] = field(default_factory=dict)
    #: (parameter, resolved path) -> content digest of each data file the parameters name.
    digests: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class CellChoice:
    """One cell entry: the cell, where it was written, and the options it sets (each a list of
    values: a list in the suite expands, as task parameters do)."""

    value: AxisValue
    name: str
    #: option -> the values the suite gives it (converted to the option's type).
    given: dict[str, list[Any]] = field(default_factory=dict)
    #: option -> where the suite set it.
    paths: dict[str, KeyPath] = field(default_factory=dict)
    #: backend -> the options that backend declares, with their defaults.
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def combos(self) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination of the options set, as sorted ``(option, value)`` pairs."""
        keys = list(self.given)
        return [
            tuple(sorted(zip(keys, combo, strict=True)))
            for combo in itertools.product(*(self.given[key] for key in keys))
        ]


@dataclass
class RunSet:
    """The base axes of a suite, or one include set (the base with some axes replaced)."""

    origin: KeyPath
    axes: dict[str, list[AxisValue]]
    tasks: list[TaskChoice]
    training: dict[str, list[AxisValue]]
    #: The cell entries with their options; empty: the ``cell`` axis's names, no options set.
    cells: list[CellChoice] = field(default_factory=list)


@dataclass(frozen=True)
class ExpandedRun:
    """One run of the product, before the registry checks: its spec, and where each of its
    run-axis values (cell, backend, hidden_size, num_layers, bias, dtype, seed) and training
    settings (by their names) came from."""

    spec: RunSpec
    values: dict[str, AxisValue]
    #: The cell entry the run comes from (its options and where they were set).
    cell_choice: CellChoice | None = None


def axis_values(
    doc: SuiteDocument,
    container: KeyPath,
    mapping: dict[str, Any],
    key: str,
    fallback: list[AxisValue] | None,
    default: Any,
) -> list[AxisValue]:
    """The values of one axis of ``mapping`` (at ``container`` in ``doc``): as written, else
    ``fallback`` (an include's base values), else ``default``."""
    raw = mapping.get(key, MISSING)
    path = (*container, key)
    if raw is MISSING:
        if fallback is not None:
            return fallback
        return [AxisValue(default, path, doc.nearest_line(*path), explicit=False)]
    if isinstance(raw, list):
        return [
            AxisValue(item, (*path, index), doc.line_of(*path, index), explicit=True)
            for index, item in enumerate(raw)
        ]
    return [AxisValue(raw, path, doc.line_of(*path), explicit=True)]


def count_runs(data: dict[str, Any]) -> int:
    """How many runs the axes of a suite document multiply to, by arithmetic alone: nothing is
    materialised, so an absurd suite is refused in microseconds. An upper bound: excludes and
    runs repeated by an include can only make the expanded list shorter.

    Reads the document as written (a value that is not a list counts once), so it can run
    before any other check.
    """

    def count(value: Any) -> int:
        return len(value) if isinstance(value, list) and value else 1

    def tasks(value: Any) -> int:  # task and cell entries: a name or {name, params}
        total = 0
        for entry in value if isinstance(value, list) and value else [value]:
            params = entry.get("params") if isinstance(entry, dict) else None
            total += math.prod(map(count, params.values())) if isinstance(params, dict) else 1
        return total

    def cell_options(entry: dict[str, Any]) -> int:  # an include's flat cell.<option> keys
        return math.prod(count(value) for key, value in entry.items() if key.startswith("cell."))

    training = data.get("training")
    training = training if isinstance(training, dict) else {}
    base = {axis: count(data.get(axis)) for axis in CONFIG_AXES if axis not in ("task", "cell")}
    base["task"] = tasks(data.get("task"))
    base["cell"] = tasks(data.get("cell"))
    base.update({key: count(training.get(key)) for key in TRAINING_AXES})
    total = math.prod(base.values())
    includes = data.get("include")
    for entry in includes if isinstance(includes, list) else []:
        if not isinstance(entry, dict):
            continue
        lengths = {key: count(entry[key]) if key in entry else n for key, n in base.items()}
        if "task" in entry:
            lengths["task"] = tasks(entry["task"])
        if "cell" in entry:
            lengths["cell"] = tasks(entry["cell"])
        total += math.prod(lengths.values()) * cell_options(entry)
    return total


def expand_runs(
    run_sets: Iterable[RunSet], excludes: list[dict[str, list[Any]]]
) -> list[ExpandedRun]:
    """Every run of ``run_sets`` in suite order, minus those matching all the keys of any
    exclude entry (``{flat key: accepted values}``), each run id once (its first occurrence)."""
    seen: set[str] = set()
    runs = []
    for run_set in run_sets:
        for run in _product(run_set):
            if any(matches(run.spec, criteria) for criteria in excludes):
                continue
            if run.spec.run_id in seen:
                continue
            seen.add(run.spec.run_id)
            runs.append(run)
    varying = varying_settings([run.spec for run in runs])
    return [
        dataclasses.replace(run, spec=dataclasses.replace(run.spec, label_settings=varying))
        for run in runs
    ] if varying else runs


def varying_settings(specs: Iterable[RunSpec]) -> tuple[str, ...]:
    """The settings of :data:`~rnnbench.records.LABEL_SETTINGS`, and the cell options
    (``cell.<option>``, among the cells that have them), whose value differs between ``specs``:
    what their labels must show to tell them apart (and ``-k`` to select either value)."""
    values: dict[str, set[str]] = {key: set() for key in LABEL_SETTINGS}
    options: dict[str, set[str]] = {}  # cell.<option> -> values, over the cells that have it
    for spec in specs:
        flat = spec.flat()
        for key in LABEL_SETTINGS:
            values[key].add(json.dumps(flat.get(key), default=str))
        for key, value in flat.items():
            if key.startswith("cell."):
                options.setdefault(key, set()).add(json.dumps(value, default=str))
    varying = [key for key in LABEL_SETTINGS if len(values[key]) > 1]
    return tuple(varying + sorted(key for key, seen in options.items() if len(seen) > 1))


def _product(run_set: RunSet) -> Iterator[ExpandedRun]:
    """Every run of one set, in the order its values are listed: cell, backend, task
    (entry, then parameter combination), the other axes, then the training settings."""
    axes = run_set.axes
    tasks = [(choice, combo) for choice in run_set.tasks for combo in choice.combos]
    cell_choices = run_set.cells or [CellChoice(value, value.value) for value in axes["cell"]]
    cells = [(choice, combo) for choice in cell_choices for combo in choice.combos]
    training_lists = [run_set.training[key] for key in TRAINING_AXES]
    product = itertools.product(
        cells, axes["backend"], tasks, axes["hidden_size"], axes["num_layers"],
        axes["bias"], axes["dtype"], axes["seed"], *training_lists,
    )  # fmt: skip
    for (cell_choice, cell_combo), backend, (choice, combo), hidden, layers, bias, dtype, seed, \
            *train in product:
        cell = cell_choice.value
        cell_defaults = cell_choice.defaults.get(backend.value, {})
        training = TrainingConfig(
            **{
                key: as_field_type(value.value, _TRAINING_HINTS.get(key))
                for key, value in zip(TRAINING_AXES, train, strict=True)
            }
        )
        spec = RunSpec(
            cell=cell_choice.name,
            backend=backend.value,
            task=choice.entry.name,
            task_params=combo,
            hidden_size=hidden.value,
            num_layers=layers.value,
            bias=bias.value,
            dtype=dtype.value,
            seed=seed.value,
            training=training,
            label_params=tuple(
                key for key, value in combo if not same_value(value, choice.defaults.get(key))
            ),
            data_files=tuple(
                (key, choice.digests[(key, value)]) for key, value in combo
                if isinstance(value, str) and (key, value) in choice.digests
            ),
            cell_params=tuple(sorted({**cell_defaults, **dict(cell_combo)}.items())),
            cell_defaults=tuple(sorted(cell_defaults.items())),
        )
        values = {"cell": cell, "backend": backend, "hidden_size": hidden, "num_layers": layers,
                  "bias": bias, "dtype": dtype, "seed": seed,
                  **dict(zip(TRAINING_AXES, train, strict=True))}
        yield ExpandedRun(spec, values, cell_choice)


def matches(spec: RunSpec, criteria: dict[str, list[Any]]) -> bool:
    """Whether ``spec`` has, for every key of an exclude entry, one of the key's values."""
    flat = spec.flat()
    return all(
        key in flat and any(same_value(flat[key], value) for value in values)
        for key, values in criteria.items()
    )


def union_args(annotation: Any) -> tuple[Any, ...] | None:
    """The members of a union annotation (``int | None``), or ``None`` for any other."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return None


def as_field_type(value: Any, annotation: Any) -> Any:
    """An int where the field wants a float becomes a float, so ``lr: 1`` and ``lr: 1.0`` (and
    a task default written ``0``) give the same run id."""
    if not isinstance(value, int) or isinstance(value, bool):
        return value
    allowed = union_args(annotation) or (annotation,)
    if float in allowed and int not in allowed:
        return float(value)
    return value
