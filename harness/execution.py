"""Running specs in other processes: ``rnnbench run SUITE -j N`` (and the Dask executor).

A worker process cannot share the parent's :class:`~rnnbench.plugin_manager.PluginHost` (it holds
imported modules and a pluggy manager); it rebuilds one from a :class:`HostRecipe`, the
picklable description of how the parent's was built: the ``-p`` plugins and the suite's local
plugins (files as absolute paths), the ``-p no:NAME`` blocks, and whether installed plugins were
loaded. :func:`run_spec` is what a worker calls for one run: it builds (once per process) the
host from the recipe, calls the ``rnnbench_run_start`` hooks and
:func:`rnnbench.runner.execute_run`, and returns the record.

:class:`ProcessExecutor` runs N specs at a time in N long-lived worker processes started with
the ``spawn`` method (a fresh interpreter: see the class). The parent alone writes the results
folder: each record is appended as it arrives, so a crash or ``kill -9`` of the parent loses no
finished run. A worker that dies mid-run (killed, a segfault, ``os._exit``) costs only its own
run, recorded as ``failed`` with the exit code or signal; it is replaced, and the other workers
go on.

Where hooks run with ``-j N``: ``rnnbench_run_start`` and ``rnnbench_evaluation`` in the worker
process that trains the run; ``rnnbench_suite_start``, ``rnnbench_run_end`` and
``rnnbench_suite_end`` in the parent (the process that writes the results).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Protocol

from rnnbench.errors import RnnbenchError
from rnnbench.records import RunRecord, RunSpec

if TYPE_CHECKING:
    from rnnbench.plugin_manager import PluginHost

__all__ = [
    "HostRecipe",
    "ProcessExecutor",
    "SpecExecutor",
    "lost_run_record",
    "run_spec",
]

#: The start method of the worker processes (see :class:`ProcessExecutor`).
START_METHOD = "spawn"
#: Seconds between two training-step progress messages of one worker.
STEP_INTERVAL = 0.25


@dataclass(frozen=True)
class HostRecipe:
    """How to build a :class:`~rnnbench.plugin_manager.PluginHost` like the parent's in another
    process (picklable, hashable). ``plugins``: module names and plugin files (absolute paths),
    in the order the parent loaded them (``-p`` first, then the suite's ``plugins:``);
    ``blocked``: the ``-p no:NAME`` names; ``entry_points``: whether installed plugins load."""

    plugins: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    entry_points: bool = True

    @classmethod
    def of(cls, host: PluginHost) -> HostRecipe:
        """The recipe of ``host``. A plugin module handed to ``host.add_module`` directly
        (not by name or file) can be carried only when it is importable by its module name;
        otherwise :class:`~rnnbench.errors.RnnbenchError` says so."""
        plugins = list(dict.fromkeys(host.local_references))
        for info in host.registry.plugins.values():
            if info.origin != "local" or info.reference is not None or info.status != "loaded":
                continue
            module = info.module
            if not module or module.startswith("__"):
                raise RnnbenchError(
                    f"plugin {info.name!r} was added as a module object that a worker process "
                    "cannot import; give it as -p MODULE_OR_FILE, or run without -j")
            plugins.append(module)
        return cls(tuple(plugins), tuple(dict.fromkeys(host.blocked)), host.entry_points)

    def build(self) -> PluginHost:
        """The host, built once per process and recipe (later calls return the same one)."""
        host = _HOSTS.get(self)
        if host is None:
            from rnnbench.plugin_manager import build_host

            host = build_host(plugins=self.plugins, blocked=self.blocked,
                              entry_points=self.entry_points)
            _HOSTS[self] = host
        return host


_HOSTS: dict[HostRecipe, PluginHost] = {}


def run_spec(
    spec: RunSpec,
    recipe: HostRecipe,
    *,
    on_step: Callable[[int, int], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> RunRecord:
    """Run one spec in this process with a host built from ``recipe`` (cached per process):
    the ``rnnbench_run_start`` hooks, then :func:`rnnbench.runner.execute_run`; returns the
    record. Top-level and picklable, for worker processes (``-j N``, Dask). Never raises for the
    run's own errors (a ``failed`` record), nor when the plugins cannot be built here (a
    ``failed`` record saying so). ``on_step(step, total)`` is told of training progress,
    ``on_warning(message)`` of a plugin event hook that raised (default: a Python warning)."""
    from rnnbench.events import EventHooks, default_report
    from rnnbench.runner import execute_run

    clock = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        host = recipe.build()
    except Exception as exc:
        return lost_run_record(
            spec, f"the worker could not load the plugins: {type(exc).__name__}: {exc}",
            started, time.perf_counter() - clock)
    observer = _WorkerObserver(on_step, on_warning or default_report)
    events = EventHooks(host, observer.warning)
    events.call("rnnbench_run_start", run=spec)
    record, _ = execute_run(spec, host, observer, events)
    return record


class _WorkerObserver:
    """What :func:`execute_run` tells an observer, passed on to callbacks (no display here)."""

    def __init__(self, on_step: Callable[[int, int], None] | None,
                 on_warning: Callable[[str], None]) -> None:
        self.on_step = on_step
        self.warning = on_warning

    def training_step(self, step: int, total: int) -> None:
        if self.on_step is not None:
            self.on_step(step, total)


def lost_run_record(spec: RunSpec, reason: str, started: str, seconds: float) -> RunRecord:
    """The ``failed`` record of a run whose process (or machine) was lost: ``reason`` is its
    error. Its ``provenance`` is left ``None``; :func:`rnnbench.runner.execute_runs` fills it
    from the parent's registry."""
    return RunRecord(
        run_id=spec.run_id, label=spec.label, suite=spec.suite, config=spec.config(),
        status="failed", error=reason, started=started, seconds=round(seconds, 4),
        task_label=spec.task_label,
    )


def exit_reason(exitcode: int | None) -> str:
    """Why a worker process ended, in words: the signal that killed it, or its exit code."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name} (exit code {exitcode})"
    return f"exited with code {exitcode}"


class SpecExecutor(Protocol):
    """An executor that runs specs in other processes or machines, each through
    :func:`run_spec` with the parent's :class:`HostRecipe`. :func:`rnnbench.runner.execute_runs`
    uses ``map_specs`` in preference to ``map`` when an executor has it.

    ``map_specs`` yields every run's record as it finishes (any order), exactly one per spec; a
    run whose worker was lost is a ``failed`` record (:func:`lost_run_record`), never an
    exception. ``started(spec)`` is called (in the calling process) when a run begins (or is
    submitted); ``step(spec, step, total)`` with training progress where the executor can tell;
    ``warning(message)`` with a plugin event hook's failure in a worker. Closing the iterator
    (an interrupted parent) stops the workers."""

    def map_specs(
        self,
        runs: Sequence[RunSpec],
        recipe: HostRecipe,
        *,
        started: Callable[[RunSpec], None] | None = None,
        step: Callable[[RunSpec, int, int], None] | None = None,
        warning: Callable[[str], None] | None = None,
    ) -> Iterator[RunRecord]: ...


def _worker_main(conn: Connection, recipe: HostRecipe, parent: int) -> None:
    """A worker process: run each spec the parent sends until it sends ``None`` or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent decides
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with lock:
            conn.send(message)

    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            return
        on_step = _throttled_steps(send)

        record = run_spec(spec, recipe, on_step=on_step,
                          on_warning=lambda message: send(("warning", message)))
        send(("record", record))


def _throttled_steps(send: Callable[[tuple[Any, ...]], None]) -> Callable[[int, int], None]:
    """``on_step`` for one run: a progress message at most every :data:`STEP_INTERVAL`."""
    last = [0.0]

    def on_step(step: int, total: int) -> None:
        now = time.monotonic()
        if step == total or now - last[0] >= STEP_INTERVAL:
            last[0] = now
            send(("step", step, total))

    return on_step


def _exit_with_parent(parent: int) -> None:
    """End this worker when its parent is gone (``kill -9``): an orphan would train on."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    spec: RunSpec | None = None
    started: str = ""
    clock: float = 0.0


class ProcessExecutor:
    """``-j N``: N runs at a time, each in one of N long-lived worker processes.

    Workers are started with ``spawn``, a fresh interpreter that imports rnnbench and builds
    its plugin host once (:meth:`HostRecipe.build`), then trains run after run. Not ``fork``:
    the parent may already hold Numba's and the BLAS library's thread pools and locks, which a
    forked child inherits in an undefined state (Numba documents fork as unsafe once its
    threading layer started), and the child would inherit the open results file too. Not
    ``forkserver``: Unix only, and with workers that live for the whole suite its lower start
    cost buys nothing; ``spawn`` behaves the same on Linux, macOS and Windows.

    Each worker has its own pipe, so the parent always knows which run a worker holds: a
    worker that dies mid-run costs that run alone (a ``failed`` record naming the signal or exit
    code) and is replaced; the other workers' runs go on. Closing the iterator (Ctrl-C, SIGTERM
    in the parent) terminates the workers."""

    def __init__(self, workers: int) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise RnnbenchError(f"-j takes a positive number of workers, not {workers!r}")
        self.workers = workers
        self.context = multiprocessing.get_context(START_METHOD)

    def map(
        self, function: Callable[[RunSpec], RunRecord], runs: Sequence[RunSpec]
    ) -> Iterator[RunRecord]:
        raise RnnbenchError("ProcessExecutor runs specs by recipe: use map_specs")

    def map_specs(
        self,
        runs: Sequence[RunSpec],
        recipe: HostRecipe,
        *,
        started: Callable[[RunSpec], None] | None = None,
        step: Callable[[RunSpec, int, int], None] | None = None,
        warning: Callable[[str], None] | None = None,
    ) -> Iterator[RunRecord]:
        """Run ``runs`` on the workers; yield each record as it arrives (see
        :class:`SpecExecutor`)."""
        pending = list(reversed(runs))
        workers: list[_Worker] = []
        try:
            for _ in range(min(self.workers, len(runs))):
                workers.append(self._start(recipe))
            while pending or any(worker.spec is not None for worker in workers):
                for worker in workers:
                    if worker.spec is None and pending:
                        worker.spec = pending.pop()
                        worker.started = datetime.now(UTC).isoformat(timespec="seconds")
                        worker.clock = time.perf_counter()
                        worker.conn.send(worker.spec)
                        if started is not None:
                            started(worker.spec)
                busy = [worker for worker in workers if worker.spec is not None]
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in busy:
                    record = self._receive(worker, ready, step, warning)
                    if record is None and worker.process.sentinel in ready \
                            and not worker.conn.poll():
                        record = self._lost(worker)
                        workers[workers.index(worker)] = self._replacement(
                            worker, recipe, bool(pending))
                    if record is not None:
                        worker.spec = None
                        yield record
                workers = [w for w in workers if w is not None]
        finally:
            _stop(workers)

    def _start(self, recipe: HostRecipe) -> _Worker:
        parent_end, child_end = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main, args=(child_end, recipe, os.getpid()),
            name="rnnbench-worker", daemon=True)
        process.start()
        child_end.close()
        return _Worker(process, parent_end)

    def _replacement(self, worker: _Worker, recipe: HostRecipe, needed: bool) -> Any:
        worker.conn.close()
        worker.process.join(timeout=5)
        return self._start(recipe) if needed else None

    @staticmethod
    def _receive(
        worker: _Worker, ready: list[Any],
        step: Callable[[RunSpec, int, int], None] | None,
        warning: Callable[[str], None] | None,
    ) -> RunRecord | None:
        """The worker's record if it sent it; progress and warnings are passed on."""
        spec = worker.spec
        assert spec is not None
        while worker.conn in ready or worker.process.sentinel in ready:
            try:
                if not worker.conn.poll():
                    return None
                message = worker.conn.recv()
            except (EOFError, OSError):
                return None
            kind = message[0]
            if kind == "record":
                return message[1]
            if kind == "step" and step is not None:
                step(spec, message[1], message[2])
            elif kind == "warning":
                if warning is not None:
                    warning(message[1])
        return None

    @staticmethod
    def _lost(worker: _Worker) -> RunRecord:
        worker.process.join(timeout=5)
        spec = worker.spec
        assert spec is not None
        return lost_run_record(
            spec, f"WorkerLost: the worker process running it died: "
            f"{exit_reason(worker.process.exitcode)}",
            worker.started, time.perf_counter() - worker.clock)


def _stop(workers: Sequence[_Worker | None]) -> None:
    """Tell idle workers to leave, terminate busy ones (an interrupted suite), and reap all."""
    alive = [worker for worker in workers if worker is not None]
    for worker in alive:
        try:
            if worker.spec is None:
                worker.conn.send(None)
            else:
                worker.process.terminate()
        except (OSError, ValueError):
            worker.process.terminate()
    deadline = time.monotonic() + 5
    for worker in alive:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
        worker.conn.close()
