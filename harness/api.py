"""Running a suite from Python: what ``rnnbench run`` does, as one function a notebook can call.

:func:`run_suite` loads the plugins, reads and validates the suite, selects runs, runs them and
writes the results folder; it prints nothing and raises the usual errors
(:class:`~rnnbench.errors.SuiteError` with every problem, :class:`~rnnbench.errors.PluginError`,
:class:`~rnnbench.errors.RnnbenchError`). The command line is this function plus printing::

    import rnnbench
    run = rnnbench.run_suite("benchmarks/quickstart.yaml", output_dir="results/mine")
    print(run.finished, run.failed, run.diverged)
    run.table.summary()  # mean and std over seeds, one row per configuration
    run.table.claims     # the suite's claims evaluated on the records (rnnbench.ClaimResult)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rnnbench.claims import Claim, evaluate_claims, load_claims_quietly
from rnnbench.errors import PluginError, RnnbenchError, SuiteError, SuiteProblem
from rnnbench.events import PluginHookWarning, failure_text
from rnnbench.execution import ProcessExecutor
from rnnbench.output_dir import (
    RUN_FILES,
    KeptFileWarning,
    check_output_dir,
    naming_os_errors,
    staged_reporter_output,
)
from rnnbench.plugin_manager import PluginHost, build_host
from rnnbench.record_file import StoreWarning
from rnnbench.records import RunRecord, RunSpec
from rnnbench.results import (
    ENVIRONMENT_FILE,
    SUITE_COPY,
    ResultStore,
    ResultTable,
    atomic_write_text,
    capture_environment,
    load_table,
    write_json,
)
from rnnbench.resume_check import resumed_environment_file, suite_differences
from rnnbench.runner import Executor, RunObserver, SilentObserver, execute_runs
from rnnbench.selection import select
from rnnbench.store_lock import results_folder_lock
from rnnbench.suite import Suite, read_suite, validate_suite
from rnnbench.suite_variants import apply_variant, recorded_variant, variant_names
from rnnbench.threads import budget_summary, resolve_threads, with_budget

__all__ = ["SuiteRun", "load_validated_suite", "results_table", "run_suite", "write_tables"]


@dataclass
class SuiteRun:
    """What one :func:`run_suite` call did: the suite, where its results are, and its records."""

    suite: Suite
    #: The results folder: ``results.jsonl``, ``environment.json``, ``suite.yaml`` and the
    #: reporters' tables.
    output_dir: Path
    #: The runs this call ran, in suite order: those ``keyword`` selected, less (with
    #: ``resume``) those already done.
    runs: list[RunSpec]
    #: Selected runs not run again because the folder already held them finished (``resume``).
    already_done: list[RunSpec]
    #: This call's records, in the order the runs finished.
    records: list[RunRecord]
    #: Every record in the folder (including earlier ones a ``keyword`` or ``resume`` call
    #: kept), as the reporters wrote it.
    table: ResultTable

    @property
    def finished(self) -> int:
        """Runs of this call that trained to the end (status ``ok``)."""
        return sum(record.status == "ok" for record in self.records)

    @property
    def diverged(self) -> int:
        """Runs of this call whose loss went NaN or infinite (a result, not a failure)."""
        return sum(record.status == "diverged" for record in self.records)

    @property
    def failed(self) -> int:
        """Runs of this call that raised; their errors are in :attr:`failures`."""
        return len(self.failures)

    @property
    def failures(self) -> list[RunRecord]:
        """The failed records of this call, each with its ``error``."""
        return [record for record in self.records if record.status == "failed"]


def run_suite(
    suite_path: str | Path,
    *,
    output_dir: str | Path | None = None,
    plugins: Iterable[str] = (),
    blocked: Iterable[str] = (),
    resume: bool = False,
    keyword: str | None = None,
    observer: RunObserver | None = None,
    host: PluginHost | None = None,
    on_validated: Callable[[], None] | None = None,
    force: bool = False,
    max_runs: int | None = None,
    variant: str | None = None,
    threads: int | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
    dask: str | None = None,
) -> SuiteRun:
    """Run a suite file and write its results folder, as ``rnnbench run`` does.

    ``output_dir`` defaults to the suite's ``output:``, else ``results/<name>`` (relative to the
    working directory). ``plugins`` and ``blocked`` are ``-p MODULE_OR_FILE`` and ``-p no:NAME``;
    or pass a ``host`` that already holds the plugins (then give neither). ``keyword`` is
    ``-k``: only the runs it selects run, and their records replace earlier ones while the
    others are kept; without it (and without ``resume``) the folder starts a fresh
    ``results.jsonl``. ``resume`` keeps the folder's records and skips runs already finished.
    ``observer`` is told of progress (subclass :class:`rnnbench.runner.SilentObserver`); it is
    entered as a context manager around the runs. ``on_validated`` is called once the suite
    (and the plugins it names) passed validation, before anything runs: the CLI prints its
    warnings there. ``force`` (``--force``) writes into an existing folder that is not an
    rnnbench results folder; even then no file rnnbench did not write is replaced
    (:mod:`rnnbench.output_dir`).
    ``max_runs`` (``--max-runs``) overrides the suite's ``max_runs:`` limit. ``variant``
    (``--variant``) runs one of the suite's ``variants:``; its results go to the variant's
    ``output:``, else the suite's folder with ``-<variant>`` appended, and the folder's
    ``environment.json`` records it (``"variant"``); ``resume`` into a given ``output_dir``
    without ``variant`` continues the variant the folder records (when the suite declares it).
    ``threads`` (``--threads``) overrides the suite's ``threads:``: each run's BLAS, OpenMP and
    Numba thread budget; by default the cores free of other work divided among the runs
    executing at once (at least 1). Every record and ``environment.json`` say the budget
    (:mod:`rnnbench.threads`).
    ``jobs`` (``-j N``) runs N runs at a time in worker processes
    (:class:`rnnbench.execution.ProcessExecutor`); 1 runs them one after the other here.
    ``executor`` runs them some other way (e.g. a Dask cluster; not with ``jobs``).
    ``dask`` (``--dask``) runs them on a Dask cluster: a scheduler's address, or ``local:N``
    for a local cluster of N worker processes (:mod:`rnnbench.dask_executor`); this process
    still writes the results folder, each record as its run completes.

    A run that fails is recorded with its error and the others go on; look at
    :attr:`SuiteRun.failures`. Bad input raises before anything runs:
    :class:`~rnnbench.errors.SuiteError` (every problem, each with file, line and field),
    :class:`~rnnbench.errors.PluginError`, or :class:`~rnnbench.errors.RnnbenchError` (a
    ``keyword`` that selects nothing, an output folder it may not write),
    :class:`~rnnbench.store_lock.FolderLocked` (another run is writing ``output_dir``), or an
    ``OSError`` naming the file for a write the system refuses (full disk, ...). What the user
    should know about the folder (unreadable records skipped, a torn last line moved aside, a
    resume against a different suite or environment) is issued as a
    :class:`~rnnbench.record_file.StoreWarning`.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise RnnbenchError(f"-j takes a positive number of runs at a time, not {jobs!r}")
    if executor is not None and jobs != 1:
        raise ValueError("run_suite: give jobs or an executor, not both")
    if dask is not None:
        if jobs != 1 or executor is not None:
            raise RnnbenchError("-j and --dask are mutually exclusive: -j runs worker "
                                "processes on this machine, --dask on a Dask cluster")
        from rnnbench.dask_executor import DaskExecutor, local_workers

        local_workers(dask)  # a malformed local:N is refused before any folder is made
        executor = DaskExecutor(dask, progress=getattr(observer, "cluster_progress", None))
    if jobs > 1:
        executor = ProcessExecutor(jobs)
    if host is None:
        host = build_host(plugins=list(plugins), blocked=list(blocked))
    elif list(plugins) or list(blocked):
        raise ValueError("run_suite: give plugins/blocked or a host that holds them, not both")
    observer = observer if observer is not None else SilentObserver()
    if resume and variant is None and output_dir is not None:
        variant = _resumed_variant(Path(suite_path), Path(output_dir))
    suite = load_validated_suite(Path(suite_path), host, max_runs=max_runs, variant=variant)
    if on_validated is not None:
        on_validated()
    host.registry.reporters_in_use()  # every reporter writes this folder: a conflict fails now
    out_dir = Path(output_dir) if output_dir is not None else (
        suite.output or Path("results") / suite.name
    )
    output = check_output_dir(out_dir, suite.path, force=force)
    store = ResultStore(out_dir)
    # Before the results folder is touched, so "git dirty" speaks of the code, not the results.
    environment = capture_environment(plugins=host.environment_plugins())
    runs = select(suite.runs, keyword)
    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise RnnbenchError(f"threads must be a positive integer, not {threads!r}")
    # Runs executing at once: never more than there are runs (-j 8 on 4 runs starts 4 workers).
    workers = min(jobs if dask is None else local_workers(dask), max(1, len(runs)))
    asked = threads if threads is not None else suite.threads
    # Dask workers are single-threaded processes on machines the client cannot see: 1 thread
    budget = resolve_threads(asked if asked is not None or dask is None else 1, workers)
    runs = with_budget(runs, budget, workers)
    if keyword and not runs:
        raise RnnbenchError(f"-k {keyword!r} selects none of the suite's {len(suite.runs)} runs")
    output.claim(*RUN_FILES)  # the manifest first: a folder with it is a results folder
    with results_folder_lock(out_dir):  # one writer per folder; a second run exits 2
        store.repair()  # a torn last line (crash, full disk) is moved aside, never appended to
        already_done: list[RunSpec] = []
        environment_path, suite_copy = out_dir / ENVIRONMENT_FILE, out_dir / SUITE_COPY
        fresh = False
        if resume:
            environment_path, suite_copy = check_resume(out_dir, suite, store, environment)
            done = store.finished_ids()
            already_done = [run for run in runs if run.run_id in done]
            runs = [run for run in runs if run.run_id not in done]
        elif not keyword:
            # A full run starts a fresh results file (the old one is kept); a -k run updates
            # the selected runs' records and keeps the others, so the tables show the suite.
            store.start_fresh()
            fresh = True
        observer.suite_started(suite, runs, already_done, out_dir)
        environment["resumed"] = bool(resume)
        environment["variant"] = suite.variant
        environment["execution"] = budget_summary(budget, workers)
        write_json(environment_path, environment)
        atomic_write_text(suite_copy, suite.path.read_text(encoding="utf-8"))
        if fresh:  # until the first run ends, the tables must not show the previous file's runs
            with warnings.catch_warnings():  # a kept user file is said once, at the end
                warnings.simplefilter("ignore", KeptFileWarning)
                write_tables(out_dir, host, metrics=list(suite.metrics), claims=suite.claims)

        entered = observer if hasattr(observer, "__enter__") else contextlib.nullcontext()
        try:
            with entered, naming_os_errors(store.path):
                records = execute_runs(suite, runs, host, store, executor, observer=observer)
        except KeyboardInterrupt:
            # The tables must show the records now in results.jsonl, not the previous suite's.
            with contextlib.suppress(Exception):
                write_tables(out_dir, host, metrics=list(suite.metrics), claims=suite.claims)
            raise
        table = write_tables(out_dir, host, metrics=list(suite.metrics), claims=suite.claims)
    return SuiteRun(suite, out_dir, runs, already_done, records, table)


def check_resume(
    out_dir: Path, suite: Suite, store: ResultStore, environment: dict
) -> tuple[Path, Path]:
    """One :class:`StoreWarning` each when ``--resume`` continues a folder run with a different
    suite or in a different environment; returns where to write this invocation's environment
    and suite copy: beside the earlier ``environment.json`` / ``suite.yaml`` when they differ
    (the earlier ones are kept: they describe the folder's earlier runs)."""
    suite_path = out_dir / SUITE_COPY
    differs = suite_differences(
        out_dir, suite.path.read_text(encoding="utf-8"),
        [run.run_id for run in suite.runs] + [run.run_id for run, _ in suite.skipped],
        (record.run_id for record in store.records()),
    )
    earlier_variant = recorded_variant(out_dir)
    other_variant = (earlier_variant != suite.variant
                     and (out_dir / ENVIRONMENT_FILE).is_file())
    if other_variant:
        differs = "; ".join(filter(None, [
            f"the folder holds {_variant_name(earlier_variant)}, this is "
            f"{_variant_name(suite.variant)}", differs]))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if differs:
        suite_path = out_dir / f"suite.resumed-{stamp}.yaml"
        warnings.warn(f"{out_dir}: --resume with a different suite: {differs}; the earlier "
                      f"{SUITE_COPY} is kept, this one is {suite_path.name}", StoreWarning,
                      stacklevel=3)
    path, message = resumed_environment_file(out_dir, environment)
    if message:
        warnings.warn(message, StoreWarning, stacklevel=3)
    elif other_variant:  # environment.json keeps saying which variant the folder's runs are of
        path = out_dir / f"environment.resumed-{stamp}.json"
    return path, suite_path


def _resumed_variant(suite_path: Path, out_dir: Path) -> str | None:
    """The variant a folder being resumed holds, when the suite still declares it: resuming a
    folder continues its runs, not the suite's default budget."""
    variant = recorded_variant(out_dir)
    if variant is None:
        return None
    try:
        return variant if variant in variant_names(read_suite(suite_path)) else None
    except SuiteError:
        return None  # validation says what is wrong with the file


def _variant_name(variant: str | None) -> str:
    return f"variant {variant!r}" if variant is not None else "the suite as written (no variant)"


def load_validated_suite(
    path: Path, host: PluginHost, max_runs: int | None = None, variant: str | None = None
) -> Suite:
    """Read the suite, load the plugins it names, validate it against what is registered;
    ``max_runs`` (``--max-runs``) overrides the suite's limit on its number of runs; ``variant``
    (``--variant``) chooses one of its ``variants:``."""
    document = read_suite(path)
    from rnnbench.kernel_suite import is_kernel_suite

    if is_kernel_suite(document):
        raise RnnbenchError(f"{path} is a kernels suite (kind: kernels): run it with "
                            "`rnnbench run`, or rnnbench.kernel_suite.run_kernel_suite()")
    for reference, line in apply_variant(document, variant).plugins:
        try:
            host.load_local(reference, base_dir=document.path.parent)
        except PluginError as exc:
            raise SuiteError(
                [SuiteProblem(str(document.path), line, "plugins", str(exc))]
            ) from exc
    return validate_suite(document, host.registry, max_runs=max_runs, variant=variant)


def results_table(out_dir: Path, host: PluginHost, metrics: list[str] | None = None,
                  claims: list[Claim] | None = None) -> ResultTable:
    """The table of a results folder's records, with each metric's better direction and the
    claims evaluated on them: ``claims`` (a validated suite's), else those of the folder's suite
    copy (unreadable ones are a :class:`StoreWarning`, not an error: the tables still come)."""
    better = {name: entry.better for name, entry in host.registry.metrics.resolved().items()}
    table = load_table(out_dir, metrics=metrics, better=better)
    if claims is None:
        claims, problem = load_claims_quietly(Path(out_dir))
        if problem:
            warnings.warn(f"claims not evaluated: {problem}", StoreWarning, stacklevel=2)
    table.claims = evaluate_claims(claims, table.records)
    return table


def write_tables(out_dir: Path, host: PluginHost, metrics: list[str] | None = None,
                 claims: list[Claim] | None = None) -> ResultTable:
    """Build the table from the folder's records and have every reporter write it; ``claims``
    as :func:`results_table` takes them."""
    table = results_table(out_dir, host, metrics, claims)
    for entry in host.registry.reporters_in_use():
        try:
            # Into a staging folder, moved into place from there: never over a user's file,
            # and nothing of a reporter that fails half-way.
            with staged_reporter_output(Path(out_dir)) as staging:
                entry.function(table, staging)
        except OSError:
            raise  # the system refused a write (full disk, ...): one line, exit 2
        except (Exception, SystemExit) as exc:  # a plugin's bug must not lose the other tables
            warnings.warn(
                f"reporter {entry.name!r} of plugin {entry.plugin!r} raised"
                f"{failure_text(host, entry.plugin, exc)}; its files were not written, the "
                "other reporters' were",
                PluginHookWarning, stacklevel=2,
            )
    return table
