"""Suite files: parsing with lines, validation messages, expansion, include/exclude and ids."""

from __future__ import annotations

import hashlib
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from rnnbench import CellConfig, CellSupport
from rnnbench.cell import DTYPES
from rnnbench.errors import SuiteError, SuiteProblem
from rnnbench.plugin_manager import CellEntry, MetricEntry, Registry, TaskEntry, build_host
from rnnbench.runner import execute_run
from rnnbench.suite import (
    SUITE_SCHEMA,
    Suite,
    field_name,
    load_suite,
    read_suite,
    validate_suite,
)
from rnnbench.suite_schema import SchemaValidator
from rnnbench.task import Task, Topology, param


@dataclass
class EchoTask(Task):
    name = "echo"
    topology = Topology.MANY_TO_ONE
    description = "a test task"

    length: int = param(10, "sequence length")
    noise: float = param(0.0, "noise level")
    mode: str = param("a", "a mode")

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be at least 1, got {self.length}")


@dataclass
class CopyTask(Task):
    name = "copy"
    topology = Topology.MANY_TO_MANY
    readout = "all"

    delay: int | None = param(None, "delay, or none")
    flag: bool = param(False, "a flag")


def _factory(config: object) -> object:
    return object()


def make_registry(broken: dict[str, str] | None = None) -> Registry:
    registry = Registry()
    for cell in ("rnn", "lstm", "gru"):
        # The fake lstm has a forget gate, as the real one does, so forget_bias validates.
        supports = CellSupport(forget_gate=1 if cell == "lstm" else None)
        registry.cells[(cell, "numpy")] = CellEntry(cell, "numpy", _factory, "test",
                                                    supports=supports)
    registry.cells[("lstm", "fake-gpu")] = CellEntry(
        "lstm", "fake-gpu", _factory, "test", available=lambda: "no CUDA device"
    )
    registry.tasks["echo"] = TaskEntry("echo", EchoTask, "test")
    registry.tasks["copy"] = TaskEntry("copy", CopyTask, "test")
    for metric in ("test_loss", "final_loss"):
        registry.metrics[metric] = MetricEntry(metric, lambda outcome: 0.0, "test")
    registry.broken.update(broken or {})
    return registry


@pytest.fixture
def registry() -> Registry:
    return make_registry()


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


def problems_of(path: Path, registry: Registry) -> list[SuiteProblem]:
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry)
    return info.value.problems


def only_problem(path: Path, registry: Registry) -> SuiteProblem:
    problems = problems_of(path, registry)
    assert len(problems) == 1, problems
    return problems[0]


BASIC = """
name: basic
cell: [rnn, lstm]
task: echo
hidden_size: [8, 16]
seed: [0, 1]
training:
  steps: 10
"""


# --- parsing ------------------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12() -> None:
    SchemaValidator.check_schema(SUITE_SCHEMA)


def test_line_of_keys_and_items(write) -> None:
    path = write("""
    name: lines
    plugins:
      - my_cells.py
      - pkg.mod
    cell: rnn
    task:
      - echo
      - name: echo
        params:
          length: [5, 7]
    hidden_size: 8
    training: {lr: 0.1, steps: 10}
    """)
    doc = read_suite(path)
    assert doc.plugins == [("my_cells.py", 3), ("pkg.mod", 4)]
    assert doc.line_of("name") == 1
    assert doc.line_of("task", 1) == 8
    assert doc.line_of("task", 1, "params", "length") == 10
    assert doc.line_of("task", 1, "params", "length", 1) == 10
    assert doc.line_of("training", "lr") == 12
    assert doc.line_of("training", "clip") is None
    assert doc.nearest_line("training", "clip") == 12
    # the public data is plain YAML data
    assert type(doc.data) is dict and type(doc.data["task"]) is list
    assert doc.data["task"][1] == {"name": "echo", "params": {"length": [5, 7]}}


def test_plugins_only_strings_are_collected(write) -> None:
    doc = read_suite(write("name: x\nplugins: [a.py, 3]\n"))
    assert doc.plugins == [("a.py", 2)]


def test_exponent_without_dot_is_a_float(write) -> None:
    doc = read_suite(write("training: {lr: 1e-3, clip: 5E2}\n"))
    assert doc.data["training"] == {"lr": 0.001, "clip": 500.0}


def test_yes_as_a_key_stays_text(write) -> None:
    doc = read_suite(write("on: 1\n"))
    assert doc.data == {"on": 1}


def test_yaml_syntax_error_has_its_line(write, registry) -> None:
    path = write("""
    name: broken
    cell: [rnn, lstm
    task: echo
    """)
    with pytest.raises(SuiteError) as info:
        read_suite(path)
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert problem.line == 3
    assert problem.message.startswith("invalid YAML")


def test_tab_indentation_gets_a_hint(write) -> None:
    path = write("name: x\ntraining:\n\tsteps: 5\n")
    with pytest.raises(SuiteError) as info:
        read_suite(path)
    (problem,) = info.value.problems
    assert problem.line == 3
    assert "tabs" in (problem.hint or "")


def test_duplicate_keys_are_errors_with_lines(write) -> None:
    path = write("""
    name: dup
    cell: rnn
    training:
      steps: 10
      steps: 20
    cell: lstm
    """)
    with pytest.raises(SuiteError) as info:
        read_suite(path)
    problems = info.value.problems
    assert [(p.line, p.field) for p in problems] == [(5, "training.steps"), (6, "cell")]
    assert "first given on line 4" in problems[0].message
    assert "first given on line 2" in problems[1].message


def test_merge_keys_are_not_duplicates(write) -> None:
    doc = read_suite(
        write("""
    base: &base {steps: 10, lr: 0.1}
    training:
      <<: *base
      lr: 0.5
    """)
    )
    assert doc.data["training"] == {"steps": 10, "lr": 0.5}


def test_missing_file_and_non_mapping(write, tmp_path) -> None:
    with pytest.raises(SuiteError, match="no such file"):
        read_suite(tmp_path / "nope.yaml")
    with pytest.raises(SuiteError) as info:
        read_suite(write("- a\n- b\n"))
    assert "expected a mapping" in info.value.problems[0].message
    with pytest.raises(SuiteError, match="empty"):
        read_suite(write(""))


def test_field_name() -> None:
    assert field_name(("task", 1, "params", "length")) == "task[1].params.length"
    assert field_name(("include", 0, "cell")) == "include[0].cell"
    assert field_name(()) == "(top level)"


# --- expansion ----------------------------------------------------------------------------------


def test_valid_suite_expands_in_order(write, registry) -> None:
    suite = load_suite(write(BASIC), registry)
    assert isinstance(suite, Suite)
    assert suite.name == "basic" and suite.output is None and suite.skipped == []
    assert suite.metrics == ("final_loss", "test_loss")  # all registered, sorted
    assert len(suite.runs) == 2 * 2 * 2
    assert [(r.cell, r.hidden_size, r.seed) for r in suite.runs] == [
        ("rnn", 8, 0),
        ("rnn", 8, 1),
        ("rnn", 16, 0),
        ("rnn", 16, 1),
        ("lstm", 8, 0),
        ("lstm", 8, 1),
        ("lstm", 16, 0),
        ("lstm", 16, 1),
    ]
    run = suite.runs[0]
    assert run.backend == "numpy" and run.num_layers == 1 and run.bias is True
    assert run.dtype == "float32" and run.suite == "basic"
    assert run.metrics == ("final_loss", "test_loss")
    assert run.task_params == (("length", 10), ("mode", "a"), ("noise", 0.0))
    assert run.training.steps == 10 and run.training.epochs is None
    assert run.training.lr == 1e-3 and run.training.optimizer == "adam"


def test_full_suite_with_task_params_training_lists_and_metadata(write, registry) -> None:
    path = write("""
    name: full.suite-1
    description: everything
    output: out/dir
    plugins: [extra.py]
    cell: gru
    task:
      - copy
      - name: echo
        params: {length: [3, 4], noise: 1}
    hidden_size: 4
    dtype: [float32, float64]
    training:
      optimizer: [sgd, adam]
      lr: 1
      epochs: 2
      clip: null
    metrics: [test_loss]
    """)
    suite = load_suite(path, registry)
    assert suite.description == "everything"
    assert suite.output == Path("out/dir")
    assert suite.plugins == ["extra.py"]
    assert suite.metrics == ("test_loss",)
    # copy (1) + echo (2 lengths), each x 2 dtypes x 2 optimizers
    assert len(suite.runs) == 3 * 2 * 2
    assert [r.task for r in suite.runs[:4]] == ["copy"] * 4
    echo = suite.runs[4]
    assert echo.task_params == (("length", 3), ("mode", "a"), ("noise", 1.0))
    assert isinstance(dict(echo.task_params)["noise"], float)
    assert isinstance(echo.training.lr, float) and echo.training.lr == 1.0
    assert [(r.dtype, r.training.optimizer) for r in suite.runs[:4]] == [
        ("float32", "sgd"),
        ("float32", "adam"),
        ("float64", "sgd"),
        ("float64", "adam"),
    ]
    assert suite.runs[0].task_params == (("delay", None), ("flag", False))


def test_include_overrides_axes_and_dedupes(write, registry) -> None:
    path = write(
        BASIC
        + """
    include:
      - {cell: gru, hidden_size: [32, 8], lr: 0.5}
      - {cell: rnn}                  # all duplicates of base runs
    """.replace("\n    ", "\n")
    )
    suite = load_suite(path, registry)
    base = 8
    extra = [r for r in suite.runs[base:]]
    assert [(r.cell, r.hidden_size, r.seed) for r in extra] == [
        ("gru", 32, 0),
        ("gru", 32, 1),
        ("gru", 8, 0),
        ("gru", 8, 1),
    ]
    assert all(r.training.lr == 0.5 and r.training.steps == 10 for r in extra)
    assert len({r.run_id for r in suite.runs}) == len(suite.runs) == 12


def test_include_can_switch_steps_to_epochs_and_change_task(write, registry) -> None:
    path = write(
        BASIC
        + """
    include:
      - {cell: gru, task: {name: echo, params: {mode: b}}, epochs: 3, steps: null}
    """.replace("\n    ", "\n")
    )
    suite = load_suite(path, registry)
    extra = suite.runs[8:]
    assert len(extra) == 4
    assert all(r.training.epochs == 3 and r.training.steps is None for r in extra)
    assert all(dict(r.task_params)["mode"] == "b" for r in extra)


def test_exclude_matches_all_keys_with_lists_and_task_params(write, registry) -> None:
    path = write("""
    name: ex
    cell: [rnn, lstm, gru]
    task:
      name: echo
      params: {length: [10, 50]}
    hidden_size: [8, 32]
    training: {steps: 5}
    exclude:
      - {cell: rnn, hidden_size: 32}
      - {task.length: 50, cell: [rnn, gru]}
      - {cell: lstm, lr: 0.5}        # lr is 0.001 everywhere: matches nothing
    """)
    suite = load_suite(path, registry)
    got = [(r.cell, dict(r.task_params)["length"], r.hidden_size) for r in suite.runs]
    assert got == [
        ("rnn", 10, 8),
        ("lstm", 10, 8),
        ("lstm", 10, 32),
        ("lstm", 50, 8),
        ("lstm", 50, 32),
        ("gru", 10, 8),
        ("gru", 10, 32),
    ]


def test_exclude_applies_to_include_runs(write, registry) -> None:
    path = write(
        BASIC
        + """
    include: [{cell: gru}]
    exclude: [{cell: gru, seed: 1}]
    """.replace("\n    ", "\n")
    )
    suite = load_suite(path, registry)
    assert [(r.cell, r.seed) for r in suite.runs[8:]] == [("gru", 0), ("gru", 0)]


def test_exclude_bool_does_not_match_int(write, registry) -> None:
    path = write(BASIC + "bias: [true, false]\nexclude: [{bias: true}]\n")
    suite = load_suite(path, registry)
    assert {r.bias for r in suite.runs} == {False}


# --- run ids ------------------------------------------------------------------------------------


def ids(suite: Suite) -> list[str]:
    return [r.run_id for r in suite.runs]


def test_ids_are_stable_when_defaults_are_spelt_out(write, registry) -> None:
    implicit = load_suite(write(BASIC, "a.yaml"), registry)
    explicit = load_suite(
        write(
            """
    name: other-name             # the suite name is not part of the id
    cell: [rnn, lstm]
    backend: numpy
    task: {name: echo, params: {length: 10, noise: 0, mode: a}}
    hidden_size: [8, 16]
    num_layers: 1
    bias: true
    dtype: float32
    seed: [0, 1]
    training: {steps: 10, lr: 0.001, optimizer: adam, momentum: 0, batch_size: 32, clip: null}
    metrics: [test_loss]
    """,
            "b.yaml",
        ),
        registry,
    )
    assert ids(implicit) == ids(explicit)
    again = load_suite(write(BASIC, "a.yaml"), registry)
    assert ids(implicit) == ids(again)
    assert len(set(ids(implicit))) == len(implicit.runs)


def test_ids_change_when_a_value_changes(write, registry) -> None:
    before = load_suite(write(BASIC, "a.yaml"), registry)
    changed = load_suite(write(BASIC.replace("steps: 10", "steps: 11"), "b.yaml"), registry)
    param = load_suite(
        write(BASIC.replace("task: echo", "task: {name: echo, params: {length: 11}}"), "c.yaml"),
        registry,
    )
    assert not set(ids(before)) & set(ids(changed))
    assert not set(ids(before)) & set(ids(param))


# --- validation errors -------------------------------------------------------------------------


def test_misspelt_cell(write, registry) -> None:
    path = write(BASIC.replace("[rnn, lstm]", "[rnn, lstn]"))
    problem = only_problem(path, registry)
    assert (problem.file, problem.line, problem.field) == (str(path), 2, "cell[1]")
    assert problem.message == "unknown cell 'lstn'"
    assert problem.hint == "did you mean 'lstm'?"


def test_unknown_name_mentions_broken_plugins(write) -> None:
    registry = make_registry(broken={"gpu_cells": "failed to import 'x': ImportError: numba"})
    problem = only_problem(write(BASIC.replace("[rnn, lstm]", "[rnn, lstn]")), registry)
    assert problem.hint == (
        "did you mean 'lstm'?; plugin 'gpu_cells' failed to load: "
        "failed to import 'x': ImportError: numba"
    )


def test_misspelt_top_level_key(write, registry) -> None:
    path = write(BASIC + "hiden_size: 4\n")
    problem = only_problem(path, registry)
    assert (problem.line, problem.field) == (8, "hiden_size")
    assert problem.message == "unknown key 'hiden_size'"
    assert problem.hint == "did you mean 'hidden_size'?"


def test_training_key_at_top_level_is_pointed_to_training(write, registry) -> None:
    problem = only_problem(write(BASIC + "lr: 0.1\n"), registry)
    assert problem.message == "unknown key 'lr'" and "under 'training:'" in problem.hint


def test_misspelt_training_key(write, registry) -> None:
    problem = only_problem(write(BASIC + "  btach_size: 4\n"), registry)
    assert (problem.line, problem.field) == (8, "training.btach_size")
    assert problem.hint == "did you mean 'batch_size'?"


def test_missing_required_key_uses_parent_line(write, registry) -> None:
    path = write("""
    name: x
    cell: rnn
    task: echo
    training: {steps: 1}
    """)
    problem = only_problem(path, registry)
    assert (problem.line, problem.field) == (1, "hidden_size")
    assert problem.message == "missing required key 'hidden_size'"


def test_misspelt_task_and_task_param(write, registry) -> None:
    path = write("""
    name: x
    cell: rnn
    task:
      - ecko
      - name: echo
        params:
          lenght: 5
    hidden_size: 4
    training: {steps: 1}
    """)
    first, second = problems_of(path, registry)
    assert (first.line, first.field, first.message) == (4, "task[0]", "unknown task 'ecko'")
    assert first.hint == "did you mean 'echo'?"
    assert (second.line, second.field) == (7, "task[1].params.lenght")
    assert second.message == "task 'echo' has no parameter 'lenght'"
    assert second.hint == "did you mean 'length'?"


def test_wrong_types(write, registry) -> None:
    path = write("""
    name: x
    cell: rnn
    task: {name: echo, params: {length: [5, "6"], noise: true}}
    hidden_size: [8, "16"]
    seed: 1.5
    bias: 1
    training: {steps: 1}
    """)
    got = {(p.line, p.field): (p.message, p.hint) for p in problems_of(path, registry)}
    assert got == {
        (3, "task.params.length[1]"): (
            "expected an integer, got '6' (a string)",
            "parameter 'length' of task 'echo'",
        ),
        (3, "task.params.noise"): (
            "expected a number, got true",
            "parameter 'noise' of task 'echo'",
        ),
        (4, "hidden_size[1]"): (
            "expected a positive integer up to 65536, got '16' (a string)",
            "remove the quotes to give a number",
        ),
        (5, "seed"): (
            "expected an integer from 0 to 4294967295 (2**32 - 1), or a list of them, got 1.5",
            None,
        ),
        (6, "bias"): ("expected true or false, or a list of them, got 1", None),
    }


def test_optional_and_bool_task_params(write, registry) -> None:
    ok = load_suite(
        write(
            BASIC.replace(
                "task: echo", "task: {name: copy, params: {delay: [null, 3], flag: true}}"
            )
        ),
        registry,
    )
    assert [dict(r.task_params)["delay"] for r in ok.runs[:4:2]] == [None, None]
    assert {dict(r.task_params)["delay"] for r in ok.runs} == {None, 3}
    bad = write(
        BASIC.replace("task: echo", "task: {name: copy, params: {delay: x, flag: 1}}"), "bad.yaml"
    )
    messages = sorted(p.message for p in problems_of(bad, registry))
    assert messages == [
        "expected an integer or null, got 'x' (a string)",
        "expected true or false, got 1",
    ]


def test_task_rejecting_its_params(write, registry) -> None:
    path = write("""
    name: x
    cell: rnn
    task:
      - echo
      - name: echo
        params: {length: [3, 0]}
    hidden_size: 4
    training: {steps: 1}
    """)
    problem = only_problem(path, registry)
    assert (problem.line, problem.field) == (5, "task[1]")
    assert problem.message == "task 'echo' rejects length=0: length must be at least 1, got 0"


def test_training_rules(write, registry) -> None:
    both = write(BASIC.replace("steps: 10", "steps: 10\n  epochs: 2"), "both.yaml")
    problem = only_problem(both, registry)
    assert (problem.line, problem.field) == (6, "training")
    assert problem.message == "both steps and epochs are set; give exactly one"

    neither = write(BASIC.replace("training:\n  steps: 10\n", ""), "neither.yaml")
    problem = only_problem(neither, registry)
    assert (problem.line, problem.field) == (1, "training")
    assert problem.message == "one of steps or epochs is required"

    values = write(
        BASIC + "  lr: [0.1, 0]\n  momentum: 1\n  optimizer: adamw\n  clip: -1\n", "values.yaml"
    )
    got = {(p.line, p.field): (p.message, p.hint) for p in problems_of(values, registry)}
    assert got == {
        (8, "training.lr[1]"): ("expected a number > 0, got 0", None),
        (9, "training.momentum"): ("expected a number in [0, 1), or a list of them, got 1", None),
        (10, "training.optimizer"): (
            "expected one of sgd, adam, rmsprop, or a list of them, got 'adamw'",
            "did you mean 'adam'?",
        ),
        (11, "training.clip"): (
            "expected a number > 0 or null (no clipping), or a list of them, got -1",
            None,
        ),
    }


def test_include_rule_is_reported_at_the_include(write, registry) -> None:
    path = write(BASIC + "include:\n  - {cell: gru, epochs: 3}\n")
    problem = only_problem(path, registry)
    assert (problem.line, problem.field) == (9, "include[0]")
    assert problem.message == "both steps and epochs are set; give exactly one"


def test_include_and_exclude_keys_are_checked(write, registry) -> None:
    path = write(
        BASIC
        + """
    include:
      - {cel: gru}
      - {cell: grux, training: {lr: 1}}
    exclude:
      - {cell: lstn}
      - {task.lenght: 5}
      - {}
    """.replace("\n    ", "\n")
    )
    got = {(p.line, p.field): (p.message, p.hint) for p in problems_of(path, registry)}
    assert got[(10, "include[0].cel")] == ("unknown key 'cel'", "did you mean 'cell'?")
    assert got[(11, "include[1].cell")] == ("unknown cell 'grux'", "did you mean 'gru'?")
    assert got[(11, "include[1].training")][0] == "unknown key 'training'"
    assert "flat" in got[(11, "include[1].training")][1]
    assert got[(13, "exclude[0].cell")] == ("unknown cell 'lstn'", "did you mean 'lstm'?")
    assert got[(14, "exclude[1].task.lenght")] == (
        "no task of this suite has a parameter 'lenght'",
        "did you mean 'task.length'?",
    )
    assert got[(15, "exclude[2]")][0] == "an empty exclude entry would remove every run"
    assert len(got) == 6


def test_unknown_metric_and_backend(write, registry) -> None:
    path = write(BASIC + "metrics: [test_los]\nbackend: numpi\n")
    first, second = problems_of(path, registry)
    assert (first.line, first.field) == (8, "metrics[0]")
    assert first.message == "unknown metric 'test_los'"
    assert first.hint == "did you mean 'test_loss'?"
    assert (second.line, second.field) == (9, "backend")
    assert second.message == "unknown backend 'numpi'"


def test_cell_without_that_backend(write, registry) -> None:
    path = write(BASIC.replace("[rnn, lstm]", "[lstm, gru]") + "backend: [numpy, fake-gpu]\n")
    problems = problems_of(path, registry)
    pair = [p for p in problems if "has no backend" in p.message]
    assert len(pair) == 1
    assert (pair[0].line, pair[0].field) == (8, "backend[1]")
    assert pair[0].message == "cell 'gru' has no backend 'fake-gpu'; available: numpy"


def test_unavailable_backend_is_an_error_unless_skipped(write, registry) -> None:
    text = BASIC.replace("[rnn, lstm]", "lstm") + "backend: [numpy, fake-gpu]\n"
    problem = only_problem(write(text, "a.yaml"), registry)
    assert (problem.line, problem.field) == (8, "backend[1]")
    assert problem.message == (
        "backend 'fake-gpu' of cell 'lstm' is unavailable here: no CUDA device"
    )
    assert "skip_unavailable" in problem.hint

    suite = load_suite(write(text + "skip_unavailable: true\n", "b.yaml"), registry)
    assert [r.backend for r in suite.runs] == ["numpy"] * 4
    assert [(r.backend, reason) for r, reason in suite.skipped] == [
        ("fake-gpu", "no CUDA device")
    ] * 4


def test_exclude_removing_every_run(write, registry) -> None:
    path = write(BASIC + "exclude:\n  - {task: echo}\n")
    problem = only_problem(path, registry)
    assert (problem.line, problem.field) == (8, "exclude")
    assert problem.message == "exclude removes every run"


def test_bad_name_and_misc_types(write, registry) -> None:
    path = write(
        BASIC.replace("name: basic", "name: ../up") + "skip_unavailable: yes please\n"
        "plugins: mod.py\n"
    )
    got = {p.field: p for p in problems_of(path, registry)}
    assert got["name"].line == 1 and "letters, digits" in got["name"].message
    assert got["skip_unavailable"].message == "expected true or false, got 'yes please' (a string)"
    assert got["plugins"].line == 9 and "a list of plugins" in got["plugins"].message


def test_many_problems_are_reported_together_in_file_order(write, registry) -> None:
    path = write("""
    name: many
    cell: [rnn, lsmt]
    task: {name: echo, params: {lenght: 3}}
    hidden_size: 0
    colour: blue
    training: {lr: -1, steps: 5}
    metrics: [nope]
    """)
    with pytest.raises(SuiteError) as info:
        load_suite(path, registry)
    problems = info.value.problems
    assert [(p.line, p.field) for p in problems] == [
        (2, "cell[1]"),
        (3, "task.params.lenght"),
        (4, "hidden_size"),
        (5, "colour"),
        (6, "training.lr"),
        (7, "metrics[0]"),
    ]
    assert all(p.file == str(path) for p in problems)
    text = str(info.value)
    assert "6 problems" in text and f"{path}:2: cell[1]: unknown cell 'lsmt'" in text


def test_read_then_validate_separately(write, registry) -> None:
    doc = read_suite(write(BASIC))
    assert validate_suite(doc, registry).runs == load_suite(doc.path, registry).runs


# --- what a cell supports ------------------------------------------------------------------------

NARROW = """
name: narrow
cell: [lstm, narrow_lstm]
task: {name: adding, params: {length: 3, train_size: 20, validation_size: 10, test_size: 10}}
hidden_size: 4
num_layers: [1, 2]
bias: [true, false]
training: {steps: 2, batch_size: 10}
"""


@pytest.fixture
def narrow_registry(data_dir) -> Registry:
    """The built-ins plus tests/data/narrow_plugin.py: narrow_lstm supports float64, one layer,
    with biases only."""
    return build_host(plugins=[str(data_dir / "narrow_plugin.py")]).registry


def test_unsupported_values_name_cell_backend_asked_supported_and_fix(write, narrow_registry):
    problems = problems_of(write(NARROW), narrow_registry)
    assert [(p.line, p.field, p.message) for p in problems] == [
        # The default dtype was not written: reported at the cell that cannot run it.
        (2, "cell[1]", "cell 'narrow_lstm' on backend 'numpy' does not support dtype float32 "
         "(the suite's default; supported: float64)"),
        # Only the list values the cell cannot run are blamed: num_layers 2, bias false.
        (5, "num_layers[1]", "cell 'narrow_lstm' on backend 'numpy' does not support num_layers "
         "2 (at most 1)"),
        (6, "bias[1]", "cell 'narrow_lstm' on backend 'numpy' does not support bias false "
         "(supported: true)"),
    ]
    assert [p.hint for p in problems] == [
        "use dtype float64 for it, or exclude the combination: "
        "exclude: [{cell: narrow_lstm, backend: numpy, dtype: float32}]",
        "use num_layers up to 1 for it, or exclude the combination: "
        "exclude: [{cell: narrow_lstm, backend: numpy, num_layers: 2}]",
        "use bias true for it, or exclude the combination: "
        "exclude: [{cell: narrow_lstm, backend: numpy, bias: false}]",
    ]


def test_the_suggested_excludes_fix_the_suite(write, narrow_registry):
    problems = problems_of(write(NARROW.replace("hidden_size", "dtype: float64\nhidden_size")),
                           narrow_registry)
    assert [p.field for p in problems] == ["num_layers[1]", "bias[1]"]
    excludes = [p.hint.split("exclude: [", 1)[1].rstrip("]") for p in problems]
    fixed = write(NARROW.replace("hidden_size", "dtype: float64\nhidden_size")
                  + f"exclude: [{', '.join(excludes)}]\n", "fixed.yaml")
    suite = load_suite(fixed, narrow_registry)
    assert [(r.cell, r.num_layers, r.bias) for r in suite.runs] == [
        ("lstm", 1, True), ("lstm", 1, False), ("lstm", 2, True), ("lstm", 2, False),
        ("narrow_lstm", 1, True),
    ]


def test_unsupported_value_in_an_include_is_reported_there(write, narrow_registry):
    path = write(NARROW.replace("cell: [lstm, narrow_lstm]", "cell: lstm")
                 + "include:\n  - {cell: narrow_lstm, dtype: float64, num_layers: 3}\n")
    problems = problems_of(path, narrow_registry)
    # The include sets num_layers itself and takes bias [true, false] from the suite's axes.
    assert [(p.line, p.field) for p in problems] == [(6, "bias[1]"), (9, "include[0].num_layers")]
    assert "'narrow_lstm'" in problems[0].message and "bias false" in problems[0].message
    assert "num_layers 3 (at most 1)" in problems[1].message


@pytest.mark.parametrize(
    "supports",
    [CellSupport(), CellSupport(dtypes=("float64",)), CellSupport(dtypes=("float32",)),
     CellSupport(max_layers=2), CellSupport(bias=(False,)),
     CellSupport(dtypes=("float64",), max_layers=1, bias=(True,))],
)
def test_validate_rejects_exactly_what_cell_support_rejects(write, supports):
    """CellSupport.problems, the declaration's own check, is the oracle for every combination."""
    registry = make_registry()
    registry.cells[("declared", "numpy")] = CellEntry("declared", "numpy", _factory, "test",
                                                      supports=supports)
    for dtype in DTYPES:
        for layers in (1, 2, 3):
            for bias in (True, False):
                path = write(BASIC.replace("[rnn, lstm]", "declared")
                             + f"dtype: {dtype}\nnum_layers: {layers}\nbias: {str(bias).lower()}\n")
                config = CellConfig(1, 8, num_layers=layers, bias=bias, dtype=dtype)
                expected = supports.problems(config)
                if expected:
                    assert len(problems_of(path, registry)) == len(expected), config
                else:
                    assert len(load_suite(path, registry).runs) == 4, config


def test_a_name_two_plugins_claim_is_an_error_at_its_line_and_other_suites_still_validate(
    tmp_path,
):
    data = Path(__file__).parent / "data"
    host = build_host(plugins=[str(data / "clashing_plugin.py")])
    suite = tmp_path / "clash.yaml"
    suite.write_text(
        "name: clash\ncell: [rnn, lstm]\nbackend: numpy\n"
        "task: {name: adding, params: {length: 5}}\nhidden_size: 4\n"
        "training: {steps: 2}\nmetrics: [test_loss]\n"
    )
    with pytest.raises(SuiteError) as caught:
        validate_suite(read_suite(suite), host.registry)
    (problem,) = caught.value.problems
    assert (problem.line, problem.field) == (2, "cell[1]")
    assert "'reference_cells'" in problem.message and "'clashing_plugin'" in problem.message
    assert "-p no:" in problem.message

    suite.write_text(suite.read_text().replace("[rnn, lstm]", "rnn"))
    assert len(validate_suite(read_suite(suite), host.registry).runs) == 1

    # No metrics key means every metric; one two plugins claim is then in use.
    host.load_local(str(data / "clashing_metric_plugin.py"))
    suite.write_text(suite.read_text().replace("metrics: [test_loss]\n", ""))
    with pytest.raises(SuiteError) as caught:
        validate_suite(read_suite(suite), host.registry)
    assert "every registered metric" in caught.value.problems[0].message


# --- data files in task parameters (issue 9, case 11) ----------------------------------------

PRICES = Path(__file__).parent / "data" / "prices.csv"
REPO = Path(__file__).parent.parent

FORECAST = """
name: data
cell: lstm
task: {{name: forecast, params: {{source: {source}, window: 5}}}}
hidden_size: 4
training: {{steps: 2}}
"""


def forecast_suite(folder: Path, source: str, csv: bytes | None = None) -> Path:
    """A one-run forecast suite in ``folder`` reading ``source``; ``csv`` is written to
    ``folder/data/prices.csv`` first."""
    (folder / "data").mkdir(parents=True)
    if csv is not None:
        (folder / "data" / "prices.csv").write_bytes(csv)
    suite = folder / "suite.yaml"
    suite.write_text(textwrap.dedent(FORECAST.format(source=source)).lstrip("\n"))
    return suite


def test_case_11_a_relative_data_path_is_taken_from_the_suite_folder(tmp_path, monkeypatch):
    """Issue 9, case 11: ``source: data/prices.csv`` used to be read from the working directory;
    it is now the file beside the suite, whatever the working directory, and a missing one is
    a file:line error at validation."""
    registry = build_host().registry
    suite = forecast_suite(tmp_path / "bench", "data/prices.csv", PRICES.read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (run,) = load_suite(suite, registry).runs
    source = dict(run.task_params)["source"]
    assert source == str((tmp_path / "bench" / "data" / "prices.csv").resolve())
    task = registry.task("forecast").task_class(**dict(run.task_params))
    assert task.series(0)[0] == 100.0  # the runner reads the file beside the suite
    assert run.label.startswith("lstm/numpy/forecast[source=prices.csv,window=5]/")

    missing = forecast_suite(tmp_path / "other", "data/missing.csv")
    problem = only_problem(missing, registry)
    assert (problem.line, problem.field) == (3, "task.params.source")
    assert "data file 'data/missing.csv' does not exist" in problem.message
    assert str(tmp_path / "other" / "data" / "missing.csv") in problem.message
    assert "taken from the suite file's folder" in str(problem)


def test_case_11_the_run_id_covers_the_data_content_not_its_path(tmp_path):
    """Issue 9, case 11: the id used to hash the CSV's path, so one id could cover two data
    sets. Now the same bytes in another folder keep the id, a changed byte changes it, and the
    record keeps the path and the digest."""
    registry = build_host().registry
    data = PRICES.read_bytes()
    (here,) = load_suite(forecast_suite(tmp_path / "a", "data/prices.csv", data), registry).runs
    (moved,) = load_suite(forecast_suite(tmp_path / "b", "data/prices.csv", data), registry).runs
    edited_bytes = data.replace(b"100.000", b"100.001", 1)
    (edited,) = load_suite(
        forecast_suite(tmp_path / "c", "data/prices.csv", edited_bytes), registry
    ).runs
    assert here.run_id == moved.run_id != edited.run_id
    config = here.config()
    assert config["task_params"]["source"].endswith(str(Path("a", "data", "prices.csv")))
    assert config["data_sha256"] == {"source": hashlib.sha256(data).hexdigest()[:16]}
    assert here.flat()["task.source.sha256"] == config["data_sha256"]["source"]
    (shipped,) = load_suite(forecast_suite(tmp_path / "d", "sunspots"), registry).runs
    assert shipped.data_files == () and "data_sha256" not in shipped.config()  # a name


@pytest.mark.parametrize("name", ["quickstart", "topologies"])
def test_case_11_ids_of_suites_without_data_files_are_unchanged(name):
    """The committed results (no data-file parameter; topologies reads ``source: sunspots``
    by name) keep their run ids."""
    suite = load_suite(REPO / "benchmarks" / f"{name}.yaml", build_host().registry)
    lines = (REPO / "results" / name / "results.jsonl").read_text().splitlines()
    committed = {json.loads(line)["run_id"] for line in lines if line.strip()}
    assert {run.run_id for run in suite.runs} == committed


def test_case_11_an_exclude_names_a_data_file_as_the_task_params_do(tmp_path):
    """A relative data path in ``exclude`` is resolved like the one in ``params``, so it
    matches."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_bytes(PRICES.read_bytes())
    (data / "b.csv").write_bytes(PRICES.read_bytes().replace(b"100.000", b"100.001", 1))
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\ncell: [lstm, gru]\nhidden_size: 4\ntraining: {steps: 2}\n"
        "task: {name: forecast, params: {source: [data/a.csv, data/b.csv], window: 5}}\n"
        "exclude:\n  - {cell: gru, task.source: data/b.csv}\n"
    )
    runs = load_suite(suite, build_host().registry).runs
    assert sorted((run.cell, Path(dict(run.task_params)["source"]).name) for run in runs) == [
        ("gru", "a.csv"), ("lstm", "a.csv"), ("lstm", "b.csv")
    ]


def test_case_11_a_data_file_edited_after_validation_fails_its_run(tmp_path):
    """The id promises the data it was made from: a file edited between validation and the
    run fails that run (with both digests) instead of recording other data under the id."""
    host = build_host()
    suite = forecast_suite(tmp_path, "data/prices.csv", PRICES.read_bytes())
    (run,) = load_suite(suite, host.registry).runs
    (tmp_path / "data" / "prices.csv").write_bytes(b"day,close\n" + b"1,2\n" * 200)
    record, _ = execute_run(run, host)
    assert record.status == "failed"
    assert "changed since the suite was validated" in record.error
    assert "Traceback" not in record.error  # one line that says what to do
