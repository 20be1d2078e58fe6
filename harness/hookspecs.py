"""The plugin contract: every hook rnnbench calls, and what it expects of an implementation.

This is the one file a plugin author needs to read. Implement a hook by writing a function of
the same name decorated with ``rnnbench.hookimpl`` in a module, and make the module known to
rnnbench in one of three ways:

- an entry point in the ``rnnbench`` group of your package (how the built-ins are loaded too)::

      [project.entry-points.rnnbench]
      my_cells = "my_package.cells"

- ``-p my_package.cells`` or ``-p path/to/my_cells.py`` on the command line;
- ``plugins: [path/to/my_cells.py]`` in a suite file (paths relative to the suite file).

An implementation may accept any subset of a hook's arguments, by name.

Two kinds of hooks:

*Registration hooks* (``rnnbench_register_*``) are called once, when the plugin manager is
built, with a ``register`` callable. Call it once per thing the plugin contributes. Names are
global: two plugins registering the same name (the same cell on the same backend) is an error
naming both. A ``register`` call with arguments of the wrong kind is an error naming the plugin.

*Event hooks* are called while a suite runs, on every plugin that implements them, so plugins
can log, export or stop training early. They must not modify their arguments.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("rnnbench")


# --- Registration ------------------------------------------------------------------------------


@hookspec
def rnnbench_register_cells(register: Any) -> None:
    """Contribute cell implementations.

    Call ``register(name, backend, factory, description="", available=None)`` once per
    (cell, backend) pair:

    - ``name``: the cell's name in suites, e.g. ``"lstm"``; implementations of the same
      equations on different backends share a name, so a suite switches backend with one word;
    - ``backend``: e.g. ``"numpy"``, ``"numba-cpu"``, ``"numba-cuda"``;
    - ``factory``: a callable ``factory(config: rnnbench.CellConfig) -> rnnbench.Cell``;
    - ``description``: one line for ``rnnbench list``;
    - ``available``: optional callable returning ``None`` when the backend can run here, or a
      string saying why not (e.g. "no CUDA device"); a suite asking for an unavailable backend
      fails validation with that reason.
    """


@hookspec
def rnnbench_register_tasks(register: Any) -> None:
    """Contribute tasks.

    Call ``register(task_class)`` once per task, where ``task_class`` is a dataclass subclass of
    ``rnnbench.Task`` that sets the class attributes ``name``, ``topology`` (a
    ``rnnbench.Topology``), ``readout`` (``"last"`` or ``"all"``) and ``description``, and where
    it needs them ``model`` (``"encoder-decoder"``) and ``free_running`` (with a ``feedback``
    method). Its fields are its parameters, each with a default (use
    ``rnnbench.param(default, help)``); it implements ``make_data(seed)``, ``loss`` and
    ``baseline_loss`` (computed from the data), and ``accuracy`` where it applies.
    """


@hookspec
def rnnbench_register_metrics(register: Any) -> None:
    """Contribute metrics computed from a finished run.

    Call ``register(name, function, description="", better="lower", timing=False)`` once per
    metric, where ``function(run: rnnbench.RunOutcome) -> float | int | bool | None`` computes the
    value (``None`` when the metric does not apply to that run, e.g. accuracy on a regression
    task), ``better`` is ``"lower"``, ``"higher"`` or ``None`` (for reporters that highlight),
    and ``timing=True`` marks a wall-clock measurement, which varies between identical runs and
    so is left out of determinism and reproducibility checks. A metric that raises is recorded
    as an error string for that run; the run's other metrics are kept.
    """


@hookspec
def rnnbench_register_reporters(register: Any) -> None:
    """Contribute output formats for result tables.

    Call ``register(name, function, description="")`` once per format, where
    ``function(table: rnnbench.ResultTable, out_dir: pathlib.Path) -> list[pathlib.Path]`` writes
    its files under ``out_dir`` (use ``rnnbench.atomic_write_text``) and returns their paths.
    Reporters read records only: they never rerun or retrain anything.
    """


# --- Run events --------------------------------------------------------------------------------


@hookspec
def rnnbench_suite_start(suite: Any, runs: list[Any]) -> None:
    """Called once before the first run of a suite, with the ``rnnbench.Suite`` and the list of
    ``rnnbench.RunSpec`` about to run (after ``-k`` filtering and ``--resume`` skipping)."""


@hookspec
def rnnbench_suite_end(suite: Any, records: list[Any]) -> None:
    """Called once after the last run of a suite, with the ``rnnbench.RunRecord`` of every run
    executed in this invocation (not those skipped by ``--resume``)."""


@hookspec
def rnnbench_run_start(run: Any) -> None:
    """Called before each run starts (before its data is generated), with its
    ``rnnbench.RunSpec``; ``run.run_id`` and ``run.label`` identify it in logs. The return value
    is ignored."""


@hookspec
def rnnbench_run_end(run: Any, record: Any) -> None:
    """Called after each run, with its ``rnnbench.RunSpec`` and the ``rnnbench.RunRecord`` just
    appended to the results file (including failed and diverged runs)."""


@hookspec
def rnnbench_epoch_end(run: Any, step: int, logs: dict[str, float]) -> bool | None:
    """Called after every evaluation during training (every ``eval_every`` optimizer steps,
    once per epoch by default), with the ``rnnbench.RunSpec``, the number of optimizer steps done
    and ``logs`` (``train_loss``, ``val_loss``, and ``val_accuracy`` where it applies).

    Return ``True`` to stop training this run early (it is then evaluated and recorded as
    usual, with ``stopped_early`` set). Any one plugin returning ``True`` stops the run.
    """
