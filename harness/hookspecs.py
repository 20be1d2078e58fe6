"""The plugin contract: every hook rnnbench calls, and what it expects of an implementation.

This is the one file a plugin author needs to read. Implement a hook by writing a function of
the same name decorated with ``rnnbench.hookimpl`` in a module, and make the module known to
rnnbench in one of three ways:

- an entry point in the ``rnnbench`` group of your package (how the built-ins are loaded too)::

      [project.entry-points.rnnbench]
      my_cells = "my_package.cells"

- ``-p my_package.cells`` or ``-p path/to/my_cells.py`` on the command line;
- ``plugins: [path/to/my_cells.py]`` in a suite file (paths relative to the suite file).

An implementation may accept any subset of a hook's arguments, by name. A module-level
``RNNBENCH_CONTRACT = 1`` declares the contract version the plugin was written for; a plugin
needing a newer contract than this rnnbench provides (``rnnbench.CONTRACT_VERSION``) is reported
as broken, with the fix, instead of failing half-way through a run. A function whose name starts
with ``rnnbench_`` but is not a hook below (a typo, or a hook renamed since the plugin was
written, such as ``rnnbench_epoch_end``, now :func:`rnnbench_evaluation`) makes the plugin broken
too, with the right name: it would otherwise never be called.

Two kinds of hooks:

*Registration hooks* (``rnnbench_register_*``) are called once per plugin, when the plugin
manager loads it, with a ``register`` callable (typed below: :class:`CellRegistrar`,
:class:`TaskRegistrar`, :class:`MetricRegistrar`, :class:`ReporterRegistrar`). Call it once per
thing the plugin contributes. Names are global. When two plugins register the same name (the same
cell on the same backend, the same task, metric or reporter), rnnbench does not pick one: both
plugins stay loaded with all their other contributions, and *using* that name (a suite naming it,
building that cell) is an error naming both plugins, their distributions and versions, and the
fix (``-p no:PLUGIN`` disables one). A ``register`` call with arguments of the wrong kind, or an
exception in a registration hook, makes the plugin broken; the message names the plugin's file
and line (``--traceback`` on any command, or ``RNNBENCH_TRACEBACK=1``, prints the whole
traceback).

*Event hooks* are called while a suite runs, on every plugin that implements them, so plugins
can log, export or stop training early. They must not modify their arguments. One that raises
(``sys.exit()`` included) cannot take the suite down: it is reported once per plugin and hook as
a warning with its file and line, and treated as having returned ``None`` (an
:func:`rnnbench_evaluation` that raises does not stop the run); the run's record is unaffected.
A ``sys.exit()`` at import or in a registration hook makes the plugin broken, like an exception.

No hook is "first result wins": every implementation is called, and only
:func:`rnnbench_evaluation` looks at what they return.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, TypedDict

import pluggy

if TYPE_CHECKING:  # for annotations only: these modules import this one
    from rnnbench.cell import Cell, CellConfig, CellSupport
    from rnnbench.records import RunRecord, RunSpec
    from rnnbench.results import ResultTable
    from rnnbench.runner import RunOutcome
    from rnnbench.suite import Suite
    from rnnbench.task import Task

hookspec = pluggy.HookspecMarker("rnnbench")


# --- What hooks exchange -----------------------------------------------------------------------

#: What a metric function returns. A number or a bool goes into every table (``True`` counts as
#: 1 in means); ``None`` means "does not apply to this run" (a blank cell, left out of means).
#: A list of numbers (``None`` for a missing element) is a *profile*, such as the gradient norm
#: by time lag: it is stored in ``results.jsonl`` and the ``results.json`` report (under
#: ``profiles``), plotted by the ``plots`` reporter, and left out of the Markdown/CSV tables and
#: the terminal summary (a metric is a profile when any run recorded a list for it).
#: How the runner stores what a metric returns: numpy scalars and arrays become Python numbers
#: and lists (``.tolist()``), tuples become lists, NaN becomes ``None``, +-inf is kept; a list of
#: lists of numbers (e.g. ``[lag, value]`` pairs) is accepted and stored like a profile. Anything
#: else (a dict, an object), or an exception in the metric, is recorded as an error string
#: (``"error: ..."``) for that metric alone: the run's other metrics are kept.
MetricValue: TypeAlias = float | int | bool | list[float | None] | None


class _EvaluationLogsAlways(TypedDict):
    """The keys of :class:`EvaluationLogs` present at every evaluation."""

    #: Optimizer steps done so far (a whole number, stored as a float like every curve value);
    #: 0 at the first evaluation, before any update.
    step: float
    #: Seconds spent in optimizer steps so far (not in evaluation): a timing value.
    seconds: float
    #: Mean training loss over the steps since the previous evaluation; at step 0, the initial
    #: model's loss on the first training batch (the batch step 1 then trains on).
    train_loss: float
    #: Mean global L2 norm of the gradients (before clipping) over those steps; at step 0, the
    #: norm on that first batch.
    grad_norm: float
    #: Loss on the validation split.
    val_loss: float
    #: The learning rate of the latest optimizer step (warm-up and schedule applied); at step
    #: 0, the rate step 1 will use. (Records written before it existed lack it.)
    lr: float


class EvaluationLogs(_EvaluationLogsAlways, total=False):
    """What the training loop measured at one evaluation: the ``logs`` of
    :func:`rnnbench_evaluation`, and one point of the learning curve
    (``rnnbench.TrainingResult.curve``, a run record's ``curve``).

    Always ``step`` (optimizer steps done, a whole number stored as a float like every curve
    value), ``seconds`` (time spent in optimizer steps so far, not in evaluation: a timing
    value), ``train_loss`` and ``grad_norm`` (means over the optimizer steps since the previous
    evaluation; the gradient norm is the global L2 norm before clipping), ``val_loss`` (on
    the whole validation split) and ``lr`` (the learning rate of the latest step);
    ``val_accuracy`` only for tasks that have an accuracy.

    The first point is at ``step`` 0, before any update, so a curve starts at the initial loss:
    there ``seconds`` is 0, and ``train_loss`` and ``grad_norm`` are measured on the first
    training batch (the one step 1 trains on).
    """

    #: Accuracy on the validation split; absent for tasks without an accuracy (regression).
    val_accuracy: float


class CellRegistrar(Protocol):
    """The ``register`` callable :func:`rnnbench_register_cells` receives."""

    def __call__(
        self,
        name: str,
        backend: str,
        factory: Callable[[CellConfig], Cell],
        description: str = "",
        available: Callable[[], str | None] | None = None,
        supports: CellSupport | None = None,
        options: type | None = None,
    ) -> None:
        """Register one cell implementation (a cell ``name`` on one ``backend``).

        - ``name``: the cell's name in suites, e.g. ``"lstm"``; implementations of the same
          equations on different backends share a name, so a suite switches backend with one
          word;
        - ``backend``: e.g. ``"numpy"``, ``"numba-cpu"``, ``"numba-cuda"``;
        - ``factory``: ``factory(config: rnnbench.CellConfig) -> rnnbench.Cell``; called once
          per run (and by ``rnnbench check cell``);
        - ``description``: one line for ``rnnbench list``;
        - ``available``: returns ``None`` when the backend can run here, or a string saying why
          not (e.g. "no CUDA device"); a suite asking for an unavailable backend fails
          validation with that reason (or skips those runs, with ``skip_unavailable``);
        - ``supports``: a ``rnnbench.CellSupport`` saying which dtypes, how many layers and
          whether bias-free configurations the implementation handles, and which gate block is
          the forget gate (``forget_gate=1`` for PyTorch's LSTM layout; where
          ``training.forget_bias`` goes); ``validate`` rejects a suite asking for more.
          ``None``: everything, and no forget gate;
        - ``options``: the cell's options, a dataclass whose fields are declared with
          ``rnnbench.param(default, help)`` (as task parameters are), e.g.
          ``nonlinearity: Literal["tanh", "relu"] = rnnbench.param("tanh", "...")``. Suites set
          them as ``cell: {name: rnn, params: {nonlinearity: relu}}`` (a list expands) and
          select them as ``cell.nonlinearity``; the factory receives every option, defaults
          filled in, on ``config.options`` (``config.option("nonlinearity")``). Every backend
          of a cell should declare the same options; a suite setting an option a backend does
          not declare fails validation. A run's id includes the options away from their
          defaults only, so adding an option keeps existing runs' ids. ``None``: no options.
        """


class TaskRegistrar(Protocol):
    """The ``register`` callable :func:`rnnbench_register_tasks` receives."""

    def __call__(self, task_class: type[Task]) -> None:
        """Register one task class (a dataclass subclass of ``rnnbench.Task``); its ``name``
        class attribute is its name in suites."""


class MetricRegistrar(Protocol):
    """The ``register`` callable :func:`rnnbench_register_metrics` receives."""

    def __call__(
        self,
        name: str,
        function: Callable[[RunOutcome], MetricValue],
        description: str = "",
        better: Literal["lower", "higher"] | None = "lower",
        timing: bool = False,
    ) -> None:
        """Register one metric.

        - ``function(run: rnnbench.RunOutcome) -> MetricValue``: computed once per finished run
          (also for a diverged one);
        - ``better``: ``"lower"``, ``"higher"``, or ``None`` when neither (reporters that
          highlight the best value use it);
        - ``timing=True``: a wall-clock measurement, which varies between identical runs and so
          is left out of determinism checks and of ``rnnbench compare``.
        """


class ReporterRegistrar(Protocol):
    """The ``register`` callable :func:`rnnbench_register_reporters` receives."""

    def __call__(
        self,
        name: str,
        function: Callable[[ResultTable, Path], list[Path]],
        description: str = "",
    ) -> None:
        """Register one output format: ``function(table, out_dir)`` writes its files under
        ``out_dir`` and returns their paths."""


# --- Registration ------------------------------------------------------------------------------


@hookspec
def rnnbench_register_cells(register: CellRegistrar) -> None:
    """Contribute cell implementations.

    When: once, as the plugin is loaded (before any suite is read). Receives ``register``, a
    :class:`CellRegistrar`: call ``register(name, backend, factory, description="",
    available=None, supports=None, options=None)`` once per (cell, backend) pair. Returns
    nothing (a return value is ignored). Every plugin's implementation is called; none wins over
    another.
    """


@hookspec
def rnnbench_register_tasks(register: TaskRegistrar) -> None:
    """Contribute tasks.

    When: once, as the plugin is loaded. Receives ``register``, a :class:`TaskRegistrar`: call
    ``register(task_class)`` once per task, where ``task_class`` is a dataclass subclass of
    ``rnnbench.Task`` that sets the class attributes ``name``, ``topology`` (a
    ``rnnbench.Topology``), ``readout`` (``"last"`` or ``"all"``) and ``description``, and where
    it needs them ``model`` (``"encoder-decoder"``) and ``free_running`` (with a ``feedback``
    method). Its fields are its parameters, each with a default (use
    ``rnnbench.param(default, help)``; ``path=True`` for one that may name a data file, resolved
    against the suite's folder and identified by content in the run id); it implements
    ``make_data(seed)``, ``loss`` and ``baseline_loss`` (computed from the data), and
    ``accuracy`` where it applies. Returns nothing; every plugin's implementation is called.
    """


@hookspec
def rnnbench_register_metrics(register: MetricRegistrar) -> None:
    """Contribute metrics computed from a finished run.

    When: once, as the plugin is loaded. Receives ``register``, a :class:`MetricRegistrar`: call
    ``register(name, function, description="", better="lower", timing=False)`` once per metric,
    where ``function(run: rnnbench.RunOutcome) -> MetricValue`` computes the value from the
    run's spec, task, data, trained model, parameters, training history and test evaluation.
    It returns a number or bool, ``None`` when the metric does not apply to that run (e.g.
    accuracy on a regression task), or a list of numbers for a profile (see
    :data:`MetricValue`: profiles go to ``results.jsonl``, ``results.json`` and plots, not to
    tables). A metric that raises is recorded as an error string for that run; the run's other
    metrics are kept. Returns nothing; every plugin's implementation is called.
    """


@hookspec
def rnnbench_register_reporters(register: ReporterRegistrar) -> None:
    """Contribute output formats for result tables.

    When: once, as the plugin is loaded. Receives ``register``, a :class:`ReporterRegistrar`:
    call ``register(name, function, description="")`` once per format, where
    ``function(table: rnnbench.ResultTable, out_dir: pathlib.Path) -> list[pathlib.Path]``
    writes its files under ``out_dir`` (use ``rnnbench.atomic_write_text``) and returns their
    paths. ``out_dir`` is an empty staging folder inside the results folder: rnnbench moves the
    files into place, except over a file it did not write. Every registered reporter runs
    after each ``rnnbench run`` and ``rnnbench show``; reporters read records only: they never
    rerun or retrain anything. ``table.claims`` holds the suite's claims evaluated on the
    records (:class:`rnnbench.ClaimResult`; empty when it states none). Returns nothing; every
    plugin's implementation is called.
    """


# --- Run events --------------------------------------------------------------------------------


@hookspec
def rnnbench_suite_start(suite: Suite, runs: list[RunSpec]) -> None:
    """Called once before the first run of a suite, with the validated ``rnnbench.Suite`` and
    the list of ``rnnbench.RunSpec`` about to run (after ``-k`` filtering and ``--resume``
    skipping). Returns nothing (ignored); every implementation is called. Runs in the process
    that writes the results (with ``-j N``: the parent, not a worker)."""


@hookspec
def rnnbench_suite_end(suite: Suite, records: list[RunRecord]) -> None:
    """Called once after the last run of a suite, with the ``rnnbench.Suite`` and the
    ``rnnbench.RunRecord`` of every run executed in this invocation (not those skipped by
    ``--resume``). Returns nothing (ignored); every implementation is called. Runs in the process
    that writes the results (with ``-j N``: the parent)."""


@hookspec
def rnnbench_run_start(run: RunSpec) -> None:
    """Called before each run starts (before its data is generated), with its
    ``rnnbench.RunSpec``; ``run.run_id`` and ``run.label`` identify it in logs. Returns nothing
    (ignored); every implementation is called. Runs in the process that trains the run: with
    ``-j N`` (or Dask) a worker process, whose module state the parent does not see."""


@hookspec
def rnnbench_run_end(run: RunSpec, record: RunRecord) -> None:
    """Called after each run, with its ``rnnbench.RunSpec`` and the ``rnnbench.RunRecord`` just
    appended to the results file (including failed and diverged runs). Returns nothing
    (ignored); every implementation is called. Runs in the process that writes the results
    (with ``-j N``: the parent, in the order runs finish)."""


@hookspec
def rnnbench_evaluation(run: RunSpec, step: int, logs: EvaluationLogs) -> bool | None:
    """Called after every evaluation on the validation split during training: once before any
    update (``step`` 0: the initial model), every ``eval_every`` optimizer steps (once per epoch
    by default) and after the last step, with the ``rnnbench.RunSpec``, the number of optimizer
    steps done and ``logs``, an :class:`EvaluationLogs` (``step``, ``seconds``, ``train_loss``,
    ``grad_norm``, ``val_loss``, ``lr``, and ``val_accuracy`` where the task has an accuracy).
    ``logs`` is a copy: changing it changes nothing. Not called after an evaluation whose
    validation loss is not finite (the run has diverged). (Before contract 1 this hook was
    ``rnnbench_epoch_end``.) Runs in the process that trains the run (with ``-j N``: a worker).

    Return ``True`` (or a numpy ``True``) to stop training this run early: it is then evaluated
    and recorded as usual, ``TrainingResult.stopped_early`` is set and the ``stopped_early``
    metric reads true. ``None``/``False`` (or anything else) goes on. Every implementation is
    called (no first-result-wins): any one plugin returning ``True`` stops the run. At step 0
    the answer is ignored: a run takes at least one optimizer step.
    """
