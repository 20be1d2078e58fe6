"""Running a suite's runs on a Dask cluster: ``rnnbench run SUITE --dask ADDRESS``.

``ADDRESS`` is a running scheduler (``tcp://host:8786``) or ``local:N``, a
``distributed.LocalCluster`` of N worker processes with one thread each, started for the suite
and closed after it. Each run is one task, :func:`rnnbench.execution.run_spec` ``(spec,
recipe)``: the worker rebuilds the client's plugin host from the recipe and executes the run
there. The client (this process) owns the results folder: it appends each record as its
future completes, so a client that dies loses no finished run and ``--resume`` submits only the
missing ones.

Up front every worker is asked (``client.run``) for its rnnbench version, the distributions of
the suite's entry-point plugins and the contents of its local plugin files; a worker that lacks
one, or holds another version, stops the suite before anything runs, named with what it lacks.

A worker lost mid-run (killed, out of memory) has its run retried once on another worker
(``local:N`` sets :data:`SCHEDULER_CONFIG`; give a scheduler of your own the same settings);
after that, or for any other error of the task, the run is recorded as ``failed`` with the
reason and the suite goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rnnbench.errors import RnnbenchError
from rnnbench.execution import HostRecipe, lost_run_record, run_spec
from rnnbench.plugin_manager import PluginHost
from rnnbench.records import RunRecord, RunSpec

__all__ = ["DASK_MISSING", "DaskExecutor", "check_workers", "connect"]

#: What to do when ``distributed`` is not installed.
DASK_MISSING = 'the Dask executor needs dask.distributed: pip install "rnnbench[dask]"'

#: The scheduler settings of ``local:N`` (give a scheduler of your own the same): a task whose
#: worker dies twice fails (KilledWorker: retried once), and a worker holds only the task it
#: runs (saturation 1.0: no queued innocent task is counted against a dying worker).
SCHEDULER_CONFIG = {"distributed.scheduler.allowed-failures": 1,
                    "distributed.scheduler.worker-saturation": 1.0}

#: How often (seconds) the progress display is updated while no run finishes.
POLL_SECONDS = 0.5


# --- Connecting and checking the workers --------------------------------------------------


def local_workers(address: str) -> int:
    """N of ``local:N`` (the runs sharing this machine); 1 for a scheduler's address (how many
    share a remote worker's machine is the cluster's business). Raises :class:`RnnbenchError`
    for a ``local:`` without a positive count, before anything is started or written."""
    if not address.startswith("local:"):
        return 1
    count = address.removeprefix("local:")
    if not count.isdigit() or int(count) < 1:
        raise RnnbenchError(f"--dask {address}: local:N takes a number of workers, 1 or more")
    return int(count)


@contextlib.contextmanager
def connect(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``address``: ``local:N`` starts (and at the end closes) a
    ``LocalCluster`` of N single-threaded worker processes; anything else is a scheduler's
    address. Raises :class:`RnnbenchError` for a bad address or an unreachable scheduler."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise RnnbenchError(DASK_MISSING) from exc
    if address.startswith("local:"):
        workers = local_workers(address)
        # The scheduler runs in this process, with these settings.
        with dask.config.set(SCHEDULER_CONFIG), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             dashboard_address=":0") as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise RnnbenchError(f"--dask {address}: cannot reach a Dask scheduler there ({exc}); "
                            "start one with `dask scheduler`, or use --dask local:N") from exc
    with client:
        if not client.scheduler_info().get("workers"):
            client.wait_for_workers(1, timeout=60)
        yield client


def requirements(host: PluginHost) -> dict[str, Any]:
    """What every worker must hold, as the client has it: rnnbench's version, each loaded
    entry-point plugin's distribution and version, and each local plugin file's SHA-256 (or a
    local module's name)."""
    import rnnbench

    distributions: dict[str, str | None] = {}
    files: dict[str, str] = {}
    modules: list[str] = []
    for info in host.registry.plugins.values():
        if info.status in ("disabled", "broken"):
            continue
        if info.origin == "entry point" and info.distribution:
            distributions[info.distribution] = info.version
        elif info.origin == "local" and info.module is None and info.file:
            files[info.file] = _digest(info.file)
        elif info.origin == "local" and info.module:
            modules.append(info.module)
    return {"rnnbench": rnnbench.__version__, "distributions": distributions,
            "files": files, "modules": modules}


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def worker_problems(needed: dict[str, Any]) -> list[str]:
    """Run on each worker (``client.run``): what it lacks of ``needed``, in words."""
    problems = []
    try:
        import rnnbench
        version = rnnbench.__version__
    except ImportError:
        return ["rnnbench is not installed"]
    if version != needed["rnnbench"]:
        problems.append(f"rnnbench {version} (the client has {needed['rnnbench']})")
    for name, wanted in needed["distributions"].items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"plugin distribution {name} is not installed (the client has "
                            f"{wanted})")
            continue
        if have != wanted:
            problems.append(f"plugin distribution {name} {have} (the client has {wanted})")
    for path, digest in needed["files"].items():
        if not Path(path).is_file():
            problems.append(f"local plugin file {path} is missing")
        elif _digest(path) != digest:
            problems.append(f"local plugin file {path} differs from the client's")
    for module in needed["modules"]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            problems.append(f"local plugin module {module} cannot be imported")
    return problems


def check_workers(client: Any, host: PluginHost) -> int:
    """Refuse (:class:`RnnbenchError`) when a worker lacks rnnbench or a plugin of ``host`` at
    the client's version, naming each worker and what it lacks; returns the number of
    workers."""
    answers = client.run(worker_problems, requirements(host))
    if not answers:
        raise RnnbenchError("the Dask cluster has no workers")
    lacking = {worker: problems for worker, problems in sorted(answers.items()) if problems}
    if lacking:
        lines = "; ".join(f"{worker}: {', '.join(problems)}"
                          for worker, problems in lacking.items())
        raise RnnbenchError(
            f"{len(lacking)} of {len(answers)} Dask workers cannot run this suite as the client "
            f"would: {lines}. Install rnnbench and the suite's plugins at the same versions on "
            "every worker (local plugin files at the same paths)")
    return len(answers)


# --- Running the suite --------------------------------------------------------------------


class DaskExecutor:
    """Runs specs as Dask tasks (:class:`rnnbench.execution.SpecExecutor`): connects to
    ``address`` (``local:N`` or a scheduler's), checks the workers, submits every run as
    ``run_spec(spec, recipe)`` with ``retries=1`` and yields each record as its future
    completes; a run whose task failed (its worker lost twice, ...) is a ``failed`` record.
    ``progress(busy, total, finished)`` is called while waiting: ``busy`` maps each worker's
    address to the label of its current run. Closing the iterator cancels what is left and
    closes the client (and the local cluster)."""

    def __init__(self, address: str,
                 progress: Callable[[dict[str, str], int, int], None] | None = None) -> None:
        self.address = address
        self.progress = progress if callable(progress) else None

    def map_specs(
        self,
        runs: Sequence[RunSpec],
        recipe: HostRecipe,
        *,
        started: Callable[[RunSpec], None] | None = None,
        step: Callable[[RunSpec, int, int], None] | None = None,
        warning: Callable[[str], None] | None = None,
    ) -> Iterator[RunRecord]:
        with connect(self.address) as client:
            check_workers(client, recipe.build())
            from distributed import as_completed

            token = uuid.uuid4().hex[:8]
            futures = {}
            for spec in runs:
                key = f"rnnbench-{spec.run_id}-{token}"
                future = client.submit(run_spec, spec, recipe, pure=False, retries=1, key=key)
                futures[future] = spec
                if started is not None:
                    started(spec)
            by_key = {future.key: spec for future, spec in futures.items()}
            pending, finished = as_completed(futures), 0
            try:
                while not pending.is_empty():
                    if not pending.has_ready():
                        if self.progress is not None:
                            self.progress(_busy(client, by_key), len(runs), finished)
                        time.sleep(POLL_SECONDS)
                        continue
                    for future in pending.next_batch(block=False):
                        record = _record_of(future, futures[future])
                        future.release()
                        finished += 1
                        yield record
            finally:
                client.cancel(list(futures))


def _record_of(future: Any, spec: RunSpec) -> RunRecord:
    clock = time.perf_counter()
    try:
        record = future.result()
    except Exception as exc:  # the task itself failed: a worker lost twice, a pickling error
        reason = f"{type(exc).__name__}: {exc}"
        if type(exc).__name__ == "KilledWorker":
            reason = (f"KilledWorker: the Dask worker running it died twice (retried once): "
                      f"{exc}")
        started = datetime.now(UTC).isoformat(timespec="seconds")
        return lost_run_record(spec, reason, started, time.perf_counter() - clock)
    if not isinstance(record, RunRecord):
        raise RnnbenchError(f"a Dask worker returned {type(record).__name__} for {spec.label}")
    return record


def _busy(client: Any, by_key: dict[str, RunSpec]) -> dict[str, str]:
    """Each worker's current run (label), from the scheduler's ``processing`` table."""
    try:
        processing = client.processing()
    except Exception:  # the display must never stop the suite
        return {}
    return {worker: ", ".join(by_key[key].label for key in keys if key in by_key)
            for worker, keys in processing.items() if keys}
