"""Executes RunSpecs: one run from data to metrics, and a suite of them behind an executor.

Failures are isolated: an exception inside one run becomes a ``failed`` record with its error,
and the suite goes on. Every finished record is appended to the store before the next run
starts, so an interrupted suite loses nothing it finished.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rnnbench.boundary import CellOrigin
from rnnbench.cell import parameter_count
from rnnbench.data_files import check_unchanged
from rnnbench.errors import PluginError, RnnbenchError
from rnnbench.events import EventHooks, default_report
from rnnbench.hookspecs import EvaluationLogs
from rnnbench.initialisation import initialise
from rnnbench.model import Evaluation, Model, build_model
from rnnbench.plugin_manager import PluginHost, Registry
from rnnbench.records import RunRecord, RunSpec
from rnnbench.results import ResultStore
from rnnbench.task import Split, Task, TaskData
from rnnbench.threads import default_threads, execution_info, thread_budget
from rnnbench.training import TrainingResult, train

if TYPE_CHECKING:
    from rnnbench.suite import Suite


@dataclass
class RunOutcome:
    """Everything a metric may look at after a run: the spec, the task and its data, the trained
    model and parameters, the training history and the final evaluation on the test split."""

    spec: RunSpec
    task: Task
    data: TaskData
    model: Model
    initial_params: dict[str, np.ndarray]
    training: TrainingResult
    test: Evaluation
    baseline_loss: float
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.training.params

    @property
    def parameter_count(self) -> int:
        return parameter_count(self.training.params)


class RunObserver(Protocol):
    """Progress display (the CLI's); every method is optional to act on."""

    def suite_started(
        self, suite: Suite, runs: Sequence[RunSpec], already_done: Sequence[RunSpec],
        output_dir: Path,
    ) -> None: ...
    def run_started(self, spec: RunSpec, index: int, total: int) -> None: ...
    def training_step(self, step: int, total: int) -> None: ...
    def run_finished(self, record: RunRecord, index: int, total: int) -> None: ...
    def warning(self, message: str) -> None: ...


class SilentObserver:
    """Observes nothing; the base of the CLI's displays, which override what they show. A
    context manager, so displays that hold a terminal can start and stop around a suite."""

    def __enter__(self) -> SilentObserver:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def suite_started(
        self, suite: Suite, runs: Sequence[RunSpec], already_done: Sequence[RunSpec],
        output_dir: Path,
    ) -> None:
        """Before the first run: ``runs`` will run; ``already_done`` were finished earlier in
        ``output_dir`` and are skipped (``resume``); ``suite.skipped`` are unavailable here."""

    def run_started(self, spec: RunSpec, index: int, total: int) -> None:
        pass

    def training_step(self, step: int, total: int) -> None:
        pass

    def run_finished(self, record: RunRecord, index: int, total: int) -> None:
        """``index``: how many runs of ``total`` have finished, this one included."""

    def run_step(self, spec: RunSpec, step: int, total: int) -> None:
        """Training progress of ``spec`` running in a worker process (``-j N``)."""

    def warning(self, message: str) -> None:
        """Something the user must hear of that does not stop the suite (a plugin's event
        hook raised): a Python warning here, a printed line in the CLI's displays."""
        default_report(message)


class Executor(Protocol):
    """Runs a function over run specs and yields records as they finish (any order)."""

    def map(
        self, function: Callable[[RunSpec], RunRecord], runs: Sequence[RunSpec]
    ) -> Iterator[RunRecord]: ...


class SerialExecutor:
    """One run after the other, in this process. Executors that run specs in other processes
    (``-j N``, Dask) implement :class:`rnnbench.execution.SpecExecutor` instead."""

    def map(
        self, function: Callable[[RunSpec], RunRecord], runs: Sequence[RunSpec]
    ) -> Iterator[RunRecord]:
        for spec in runs:
            yield function(spec)


def seeds_for(seed: int) -> tuple[int, int]:
    """Independent streams from one run seed: (data, model init + batch order).

    Data depends on the seed alone, so every cell of a suite sees the same data for a seed.
    """
    data_seq, model_seq = np.random.SeedSequence(seed).spawn(2)
    return int(data_seq.generate_state(1)[0]), int(model_seq.generate_state(1)[0])


def online_seed_for(seed: int) -> int:
    """The stream of ``data: online`` training batches: a third child of the run seed, beside
    (and independent of) the two of :func:`seeds_for`, which it leaves unchanged. It depends on
    the seed alone, so every cell of a suite trains on the same fresh batches for a seed."""
    return int(np.random.SeedSequence(seed).spawn(3)[2].generate_state(1)[0])


def execute_run(
    spec: RunSpec,
    host: PluginHost,
    observer: RunObserver | None = None,
    events: EventHooks | None = None,
) -> tuple[RunRecord, RunOutcome | None]:
    """Run one spec to completion and compute its metrics. Never raises for a run's own error
    (nor a ``sys.exit()`` in a plugin's cell, task or metric): it is returned as a ``failed``
    record. KeyboardInterrupt propagates."""
    registry = host.registry
    events = events or EventHooks(host, warning_reporter(observer))
    threads = spec.threads if spec.threads is not None else default_threads(spec.workers)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    clock = time.perf_counter()
    record = RunRecord(
        run_id=spec.run_id,
        label=spec.label,
        suite=spec.suite,
        config=spec.config(),
        status="ok",
        started=started_at,
        task_label=spec.task_label,
        provenance=registry.run_provenance(spec),
        execution=execution_info(threads, spec.workers),
    )
    outcome = None
    try:
        with thread_budget(threads) as blas_threads:  # BLAS, OpenMP, Numba; restored after
            record.execution["blas_threads"] = blas_threads
            outcome = _train_and_evaluate(spec, registry, events, observer)
            record.curve = outcome.training.curve
            if outcome.training.placement != "host":  # device-resident, or a fallback
                record.execution["training"] = outcome.training.placement
            if outcome.training.diverged:
                record.status = "diverged"
                record.error = outcome.training.divergence
            record.metrics = compute_metrics(outcome, spec.metrics, registry)
    except (Exception, SystemExit) as exc:  # one run's failure must not stop the suite
        record.status = "failed"
        record.error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, RnnbenchError):
            # Ours (a plugin's or cell's contract, a data file) say what went wrong and whose it
            # is; a traceback of rnnbench's frames would point away from it. Others may be bugs.
            record.error += "\n" + "".join(traceback.format_exception(exc)[-6:])
    record.seconds = round(time.perf_counter() - clock, 4)
    return record, outcome


def _train_and_evaluate(
    spec: RunSpec, registry: Registry, events: EventHooks, observer: RunObserver | None
) -> RunOutcome:
    check_unchanged(spec.data_files, dict(spec.task_params))
    task = registry.task(spec.task).task_class(**dict(spec.task_params))
    data_seed, model_seed = seeds_for(spec.seed)
    data = task.make_data(data_seed)
    cell_entry = registry.cell(spec.cell, spec.backend)

    origin = CellOrigin(spec.cell, spec.backend, cell_entry.plugin)
    model = build_model(task, data, cell_entry.build, spec.hidden_size, spec.num_layers,
                        spec.bias, spec.dtype, origin, spec.cell_params)
    rng = np.random.default_rng(model_seed)
    params = model.init_params(rng)
    initialise(params, spec.training.init, spec.training.spectral_radius, rng,
               spec.training.forget_bias, cell_entry.supports.forget_gate)
    initial = {name: value.copy() for name, value in params.items()}

    def on_evaluation(step: int, logs: EvaluationLogs) -> bool:
        answers = events.call("rnnbench_evaluation", run=spec, step=step, logs=logs.copy())
        # True, or numpy's True (a comparison of numpy values), stops; None and False do not.
        return any(isinstance(answer, (bool, np.bool_)) and bool(answer) for answer in answers)

    batches = None
    if spec.training.data == "online":
        batches = online_batches(task, data, data_seed, online_seed_for(spec.seed))
    training = train(
        model,
        data,
        params,
        spec.training,
        rng,
        on_evaluation=on_evaluation,
        on_step=observer.training_step if observer is not None else None,
        batches=batches,
    )
    if training.diverged:
        test = Evaluation(loss=math.nan, accuracy=None)
    else:
        test = model.evaluate(training.params, data.test)
    return RunOutcome(
        spec=spec,
        task=task,
        data=data,
        model=model,
        initial_params=initial,
        training=training,
        test=test,
        baseline_loss=float(task.baseline_loss(data)),
    )


def online_batches(
    task: Task, data: TaskData, data_seed: int, online_seed: int
) -> Callable[[int], Split]:
    """``batch(n)``: ``n`` fresh training sequences from ``task.sample`` at each call, drawn
    from one generator seeded with ``online_seed``; each batch is checked against the fixed
    training split's layout, so a task's faulty ``sample`` fails the run with a clear message
    rather than deep in a cell."""
    if not getattr(task, "online", False):
        raise RnnbenchError(
            f"task {task.name!r} cannot sample fresh sequences (online = False): use "
            "training data: fixed")
    rng = np.random.default_rng(online_seed)

    def batch(n: int) -> Split:
        split = task.sample(n, rng, data_seed)
        reference = data.train
        if not isinstance(split, Split) or len(split) != n or \
                split.inputs.shape[::2] != reference.inputs.shape[::2] or \
                split.targets_axis != reference.targets_axis:
            raise RnnbenchError(
                f"task {task.name!r}: sample({n}, rng, seed) must return a Split of {n} "
                f"sequences laid out as the training split (inputs {reference.inputs.shape[0]} "
                f"x N x {reference.inputs.shape[2]}); got "
                f"{type(split).__name__} {getattr(getattr(split, 'inputs', None), 'shape', '')}")
        return split

    return batch


def compute_metrics(
    outcome: RunOutcome, names: Iterable[str], registry: Registry
) -> dict[str, Any]:
    """Each named metric's value; a metric that raises, or whose name two plugins register, is
    recorded as an error string, so one broken metric plugin does not lose the run."""
    values: dict[str, Any] = {}
    for name in names:
        try:
            entry = registry.metric(name)
        except (PluginError, LookupError) as exc:
            values[name] = f"error: {exc}"
            continue
        try:
            value = entry.function(outcome)
        except (Exception, SystemExit) as exc:
            values[name] = f"error: {type(exc).__name__}: {exc}"
            continue
        if isinstance(value, (np.generic, np.ndarray)):
            value = value.tolist()
        if isinstance(value, tuple):
            value = list(value)
        # A string is never a value: records keep strings for errors only.
        if not (value is None or isinstance(value, (bool, int, float)) or is_profile(value)):
            value = (
                f"error: plugin {entry.plugin!r} metric {name!r} returned "
                f"{type(value).__name__}, not a number, bool, None or a list of numbers"
            )
        if isinstance(value, float) and not math.isfinite(value):
            value = None if math.isnan(value) else value
        values[name] = value
    return values


def is_profile(value: Any) -> bool:
    """A list of numbers (or of lists of numbers, or None): a metric that is a curve, such as
    gradient norm by time lag. Kept in the records and JSON, left out of the tables."""
    if not isinstance(value, list):
        return False
    return all(
        item is None or (isinstance(item, (int, float)) and not isinstance(item, bool))
        or (isinstance(item, list) and all(isinstance(x, (int, float)) for x in item))
        for item in value
    )


def execute_runs(
    suite: Any,
    runs: Sequence[RunSpec],
    host: PluginHost,
    store: ResultStore,
    executor: Executor | None = None,
    observer: RunObserver | None = None,
) -> list[RunRecord]:
    """Run ``runs`` (already filtered and resume-skipped) and append each record to ``store``
    as soon as it finishes. Returns the records of this invocation.

    The engine under :func:`rnnbench.run_suite` (in :mod:`rnnbench.api`), which reads and
    selects the suite and writes the results folder around it."""
    executor = executor or SerialExecutor()
    observer = observer or SilentObserver()
    events = EventHooks(host, warning_reporter(observer))
    events.call("rnnbench_suite_start", suite=suite, runs=list(runs))
    records: list[RunRecord] = []
    position = {spec.run_id: index for index, spec in enumerate(runs, start=1)}

    def one(spec: RunSpec) -> RunRecord:
        observer.run_started(spec, position[spec.run_id], len(runs))
        events.call("rnnbench_run_start", run=spec)
        record, _ = execute_run(spec, host, observer, events)
        return record

    by_id = {spec.run_id: spec for spec in runs}
    if hasattr(executor, "map_specs"):  # other processes: hooks of a run start there
        stream = executor.map_specs(
            runs, host.recipe(),
            started=lambda spec: observer.run_started(spec, position[spec.run_id], len(runs)),
            step=getattr(observer, "run_step", None), warning=warning_reporter(observer))
    else:
        stream = executor.map(one, runs)
    with contextlib.closing(stream):  # an interrupted suite stops the executor's workers
        for record in stream:
            if record.provenance is None:  # a run whose worker was lost
                record.provenance = host.registry.run_provenance(by_id[record.run_id])
            store.append(record)
            records.append(record)
            events.call("rnnbench_run_end", run=by_id[record.run_id], record=record)
            observer.run_finished(record, len(records), len(runs))
    events.call("rnnbench_suite_end", suite=suite, records=records)
    return records


def warning_reporter(observer: RunObserver | None) -> Callable[[str], None]:
    """The observer's ``warning`` method, or a Python warning for an observer without one."""
    report = getattr(observer, "warning", None)
    return report if callable(report) else default_report
