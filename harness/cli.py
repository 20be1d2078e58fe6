"""The ``rnnbench`` command: run, validate, list, plugins, show, compare, check, verify.

Exit codes: 0 success, 1 a run failed (``verify``: a claim fails or is inconclusive), 2 bad
input (suite, plugin or arguments), 130 interrupted.

Everything printed comes from user input at some point (file names, suite values, plugin
messages, record labels), so consoles print text literally: no rich markup, no emoji codes;
styled words are :class:`rich.text.Text` spans.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from rnnbench.api import load_validated_suite, results_table, run_suite, write_tables
from rnnbench.cell_options import describe_options
from rnnbench.claims import (
    CLAIM_COLUMNS,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    KNOWN_FAILURE,
    KNOWN_FAILURE_HOLDS,
    ClaimResult,
    claims_exit_ok,
    claims_suite_file,
    evaluate_claims,
    read_claims,
)
from rnnbench.compare import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    Comparison,
    Difference,
    compare_folders,
)
from rnnbench.errors import RnnbenchError, SuiteError, SuiteProblem
from rnnbench.events import PluginHookWarning
from rnnbench.json_numbers import encode_nonfinite
from rnnbench.kernel_report import kernel_markdown
from rnnbench.kernel_suite import is_kernel_suite, load_kernel_suite, run_kernel_suite
from rnnbench.output_dir import KeptFileWarning, folder_kind, require_writable_folder
from rnnbench.plugin_manager import TRACEBACK_ENV, PluginHost, build_host
from rnnbench.record_file import StoreWarning
from rnnbench.records import RunRecord, RunSpec
from rnnbench.results import (
    RESULTS_FILE,
    SUITE_COPY,
    ResultStore,
    ResultTable,
    format_value,
    runs_cell,
    summary_cell,
    summary_heading,
)
from rnnbench.runner import SilentObserver
from rnnbench.suite import DEFAULT_MAX_RUNS, Suite, read_suite
from rnnbench.suite_variants import apply_variant, recorded_variant, variant_names
from rnnbench.testing import CELL_CHECK_NAMES, TASK_CHECK_NAMES, CheckReport
from rnnbench.testing.commands import check_cell_backends, check_registered_task

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Metrics shown in the terminal summary when a suite does not list its own (all go to files).
TERMINAL_METRICS = ("test_loss", "test_accuracy", "loss_vs_baseline", "step_ms")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


MAX_RUNS_FLAG = ("--max-runs",)
MAX_RUNS_OPTIONS: dict[str, Any] = {
    "type": _positive_int, "metavar": "N",
    "help": "refuse a suite whose axes give more than N runs (default: the suite's max_runs, "
    f"else {DEFAULT_MAX_RUNS})",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnbench",
        description="Benchmark recurrent cells on tasks, from YAML suites, with plugins.",
    )
    plugins = argparse.ArgumentParser(add_help=False)
    plugins.add_argument(
        "-p", dest="plugins", action="append", default=[], metavar="PLUGIN",
        help="load a plugin module or .py file (repeatable); -p no:NAME disables plugin NAME",
    )
    plugins.add_argument(
        "--traceback", action="store_true",
        help=f"print the full traceback of a plugin that fails to load ({TRACEBACK_ENV}=1 too)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[plugins], help="run a suite, write its tables")
    run.add_argument("suite", type=Path, help="suite file (YAML)")
    run.add_argument("-o", "--output", type=Path, help="results folder (default: the suite's "
                     "'output', else results/SUITE_NAME)")
    run.add_argument("-k", dest="select", metavar="EXPR",
                     help="only runs whose label or id match, e.g. -k 'lstm and not seed1'; "
                     "their records replace earlier ones, the others are kept")
    run.add_argument("--resume", action="store_true",
                     help="keep the results folder's records and skip runs already finished")
    run.add_argument("-j", "--jobs", type=_positive_int, default=1, metavar="N",
                     help="run N runs at a time, each in a worker process (default 1: one "
                     "after the other in this process)")
    run.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    run.add_argument("--force", action="store_true",
                     help="write into an existing folder that is not an rnnbench results folder "
                     "(files rnnbench did not write are still never replaced)")
    run.add_argument(*MAX_RUNS_FLAG, **MAX_RUNS_OPTIONS)
    run.add_argument("--threads", type=_positive_int, metavar="N",
                     help="BLAS/OpenMP/Numba threads per run (default: the suite's threads:, "
                     "else the usable cores divided among the runs executing at once)")
    run.add_argument("--dask", metavar="ADDRESS",
                     help="run on a Dask cluster: a scheduler's address (tcp://HOST:8786) or "
                          "local:N (a local cluster of N worker processes)")
    run.add_argument("--variant", metavar="NAME",
                     help="run one of the suite's variants (its 'variants:' key), e.g. a longer "
                     "budget; results go to results/SUITE_NAME-NAME unless the variant sets "
                     "'output'")

    validate = commands.add_parser("validate", parents=[plugins],
                                   help="check a suite without running it")
    validate.add_argument("suite", type=Path)
    validate.add_argument(*MAX_RUNS_FLAG, **MAX_RUNS_OPTIONS)
    validate.add_argument("--variant", metavar="NAME",
                          help="check only this variant (default: the suite and every variant)")

    commands.add_parser(
        "list", parents=[plugins],
        help="every cell, task, metric and reporter, and the plugin it comes from",
    )

    listing = commands.add_parser(
        "plugins", parents=[plugins],
        help="every plugin: its distribution and version, file, hooks, what it registered, "
        "and its status (loaded, broken, disabled, in conflict)",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = commands.add_parser("show", parents=[plugins], help="print a results folder's table "
                               "and rewrite its Markdown/CSV/JSON tables from its records")
    show.add_argument("results", type=Path, help="results folder (holding results.jsonl)")

    compare = commands.add_parser(
        "compare", parents=[plugins],
        help="compare two results folders run by run (e.g. committed results and a re-run); "
        "exit 0 when they match, 1 when they differ",
    )
    compare.add_argument("a", type=Path, metavar="A", help="reference results folder")
    compare.add_argument("b", type=Path, metavar="B", help="results folder to check, e.g. a re-run")
    compare_mode = compare.add_mutually_exclusive_group()
    compare_mode.add_argument(
        "--exact", dest="mode", action="store_const", const="exact",
        help="require bitwise-identical values (default when both ran on the same platform with "
        "the same numeric packages)",
    )
    compare_mode.add_argument(
        "--tolerant", dest="mode", action="store_const", const="tolerant",
        help="floats need only agree within --rtol/--atol (default otherwise)",
    )
    compare.add_argument("--rtol", type=float,
                         help=f"relative tolerance in tolerant mode (default {DEFAULT_RTOL:g})")
    compare.add_argument("--atol", type=float,
                         help=f"absolute tolerance in tolerant mode (default {DEFAULT_ATOL:g})")
    compare.add_argument("--subset", action="store_true",
                         help="B may hold only some of A's runs (e.g. a -k re-run)")

    verify = commands.add_parser(
        "verify", parents=[plugins],
        help="evaluate the claims of the suite that produced a results folder; exit 0 when "
        "each holds or is a known failure, 1 when one fails or is inconclusive (a kernels "
        "folder: its targets; exit 1 when one is not met)")
    verify.add_argument("results", type=Path, nargs="+", help="results folder(s) (each holding "
                        "results.jsonl and the suite copy suite.yaml); several are verified "
                        "one after the other, and the exit code speaks of them all")
    verify.add_argument("--suite", type=Path, help="take the claims from this suite file "
                        "instead of the folder's copy (one folder only)")
    verify.add_argument("--json", action="store_true", help="print JSON instead of a table")

    check = commands.add_parser(
        "check", help="run the test kit's checks (rnnbench.testing) on a registered cell or "
        "task; exit 1 naming the checks that failed")
    subjects = check.add_subparsers(dest="subject", required=True, metavar="SUBJECT")
    check_cell = subjects.add_parser(
        "cell", parents=[plugins], help="gradients, step against forward, shapes, dtypes, "
        "arguments left alone, agreement with another backend, ...")
    check_cell.add_argument("name", help="cell name, e.g. lstm")
    check_cell.add_argument("--backend", help="the backend to check (default: every backend "
                            "of the cell that can run here)")
    check_cell.add_argument("--dtype", action="append", choices=("float32", "float64"),
                            help="only this dtype (repeatable; default: those the cell supports)")
    check_cell.add_argument("--reference", metavar="BACKEND",
                            help="the backend to compare with (default: numpy, else another)")
    check_cell.add_argument("--option", action="append", metavar="NAME=VALUE", default=[],
                            help="a cell option for every case, e.g. nonlinearity=relu "
                            "(repeatable; the value is read as YAML)")
    check_cell.add_argument("--check", action="append", choices=CELL_CHECK_NAMES,
                            metavar="CHECK", help="only this check (repeatable): "
                            + ", ".join(CELL_CHECK_NAMES))
    check_task = subjects.add_parser(
        "task", parents=[plugins], help="determinism by seed, split shapes, baseline computed "
        "from the data, loss and accuracy")
    check_task.add_argument("name", help="task name, e.g. adding")
    check_task.add_argument("--check", action="append", choices=TASK_CHECK_NAMES,
                            metavar="CHECK", help="only this check (repeatable): "
                            + ", ".join(TASK_CHECK_NAMES))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    console = make_console(stderr=True)
    print_store_warnings()
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        console.print("interrupted")
        return EXIT_INTERRUPTED
    try:
        host = make_host(args.plugins, strict=args.command not in ("list", "plugins"))
        if args.command not in ("run", "validate"):  # those warn once the suite's are loaded
            warn_unmatched_blocks(host, console)
        if args.command == "plugins":
            return command_plugins(args, host)
        if args.command == "run":
            return command_run(args, host, console)
        if args.command == "validate":
            return command_validate(args, host, console)
        if args.command == "list":
            return command_list(host)
        if args.command == "show":
            return command_show(args, host)
        if args.command == "compare":
            return command_compare(args, host, console)
        if args.command == "check":
            return command_check(args, host, console)
        if args.command == "verify":
            return command_verify(args, console)
    except RnnbenchError as exc:
        console.print(Text.assemble(("error:", "red"), " ", str(exc)))
        print_details(exc, wants_traceback(args), console)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        saved = ": finished runs are saved; continue with --resume" if args.command == "run" else ""
        console.print(f"interrupted{saved}")
        return EXIT_INTERRUPTED
    except OSError as exc:  # the system refused a read or write: not a bug, no traceback
        print_line(console, os_error_line(exc))
        return EXIT_BAD_INPUT
    raise AssertionError(f"unhandled command {args.command!r}")


def print_store_warnings() -> None:
    """Print each results-folder warning (skipped records, a repaired torn line, a resume
    elsewhere) once, as one ``warning:`` line on stderr; other warnings as Python prints them."""
    if getattr(warnings.showwarning, "prints_store_warnings", False):
        return
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (StoreWarning, PluginHookWarning)):
            print_line(make_console(stderr=True), str(message), "warning")
        else:
            original(message, category, filename, lineno, file, line)

    show.prints_store_warnings = True  # type: ignore[attr-defined]
    warnings.showwarning = show
    warnings.filterwarnings("once", category=StoreWarning)


def make_console(stderr: bool = False) -> Console:
    """A console that never breaks plain lines and prints text literally (no markup, emoji
    codes or highlighting: ``a[/b].yaml`` and ``:x:`` are file names); wide tables when writing
    to a file or pipe."""
    literal: dict[str, Any] = {"highlight": False, "markup": False, "emoji": False}
    console = Console(stderr=stderr, soft_wrap=True, **literal)
    if not console.is_terminal:
        console = Console(stderr=stderr, soft_wrap=True, width=160, **literal)
    return console


def labelled(message: str, label: str = "error") -> Text:
    """``label: message`` with the label coloured and the message literal (paths and values may
    hold brackets, colons, emoji codes)."""
    return Text.assemble((f"{label}:", "red" if label == "error" else "yellow"), " ", message)


def print_line(console: Console, message: str, label: str = "error") -> None:
    """``label: message`` as one line, printed literally."""
    console.print(labelled(message, label), markup=False, soft_wrap=True)


def os_error_line(exc: OSError) -> str:
    """``PATH: reason`` for an OSError: the file it names and the system's words."""
    reason = exc.strerror or str(exc)
    names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    return ": ".join([" -> ".join(names), reason]) if names else reason


@contextlib.contextmanager
def kept_files_reported(console: Console) -> Iterator[None]:
    """Print each reporter file left alone (a user's file of its name) as a warning line, as it
    happens; other warnings go on as before."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", KeptFileWarning)
        shown = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *rest: Any) -> None:
            if issubclass(category, KeptFileWarning):
                print_line(console, str(message), label="warning")
            else:
                shown(message, category, *rest)

        warnings.showwarning = show
        yield


def make_host(plugin_args: Sequence[str], strict: bool = True) -> PluginHost:
    """Entry-point plugins and the ``-p`` ones; ``strict`` False records a broken ``-p`` plugin
    instead of raising (for listings, which show it)."""
    blocked = [p[3:] for p in plugin_args if p.startswith("no:")]
    plugins = [p for p in plugin_args if not p.startswith("no:")]
    return build_host(plugins=plugins, blocked=blocked, strict=strict)


def wants_traceback(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "traceback", False)) or os.environ.get(TRACEBACK_ENV, "0") not in (
        "", "0")


def print_details(exc: BaseException, show: bool, console: Console) -> None:
    """A plugin failure's full traceback when asked for, else how to ask for it."""
    details = getattr(exc, "details", None) or getattr(exc.__cause__, "details", None)
    if not details:
        return
    if show:
        console.print(details, markup=False, highlight=False)
    else:
        console.print(f"(full traceback: add --traceback or set {TRACEBACK_ENV}=1)", markup=False)


def warn_unmatched_blocks(host: PluginHost, console: Console) -> None:
    for warning in host.unmatched_blocks():
        console.print(_warning(warning))


def _warning(message: str) -> Text:
    return labelled(message, "warning")


def warn_broken(host: PluginHost, console: Console, tracebacks: bool = False) -> None:
    for name, reason in host.registry.broken.items():
        console.print(_warning(f"plugin {name!r} not loaded: {reason}"))
        details = host.registry.plugin_info(name).details
        if details and tracebacks:
            console.print(details, markup=False, highlight=False)


def command_validate(args: argparse.Namespace, host: PluginHost, console: Console) -> int:
    """The suite as written and each of its variants (or only ``--variant``'s): one line each,
    or every problem of all of them (exit 2)."""
    warn_broken(host, console, wants_traceback(args))
    if is_kernel_suite(read_suite(args.suite)):
        kernels = load_kernel_suite(args.suite, host)
        make_console().print(
            f"{args.suite}: valid kernels suite; {len(kernels.cells)} cells x "
            f"{len(kernels.points)} points x {len(kernels.backends)} backends x "
            f"{len(kernels.dtypes)} dtypes; {len(kernels.targets)} targets", markup=False)
        return EXIT_OK
    if args.variant is not None:
        suites = [load_validated_suite(args.suite, host, max_runs=args.max_runs,
                                       variant=args.variant)]
    else:
        suites = [load_validated_suite(args.suite, host, max_runs=args.max_runs)]
        problems: list[SuiteProblem] = []
        for variant in variant_names(read_suite(args.suite)):
            try:
                suites.append(load_validated_suite(args.suite, host, max_runs=args.max_runs,
                                                   variant=variant))
            except SuiteError as exc:
                problems += [p for p in exc.problems if p not in problems]
        if problems:
            raise SuiteError(problems)
    warn_unmatched_blocks(host, console)
    for suite in suites:
        what = f" variant {suite.variant}" if suite.variant else ""
        line = f"{args.suite}{what}: valid; {len(suite.runs)} runs"
        if suite.skipped:
            line += f" ({len(suite.skipped)} skipped: backend unavailable)"
        if suite.claims:
            line += f"; {len(suite.claims)} claim{'s' if len(suite.claims) != 1 else ''}"
        if suite.variant:
            line += f"; results to {suite.output}"
        make_console().print(line, markup=False)
    return EXIT_OK


def command_run(args: argparse.Namespace, host: PluginHost, console: Console) -> int:
    if not args.quiet:
        warn_broken(host, console, wants_traceback(args))
    if is_kernel_suite(read_suite(args.suite)):
        return command_run_kernels(args, host, console)
    with kept_files_reported(console):
        result = run_suite(
            args.suite, output_dir=args.output, host=host, resume=args.resume,
            keyword=args.select, observer=make_observer(console, quiet=args.quiet),
            on_validated=None if args.quiet else lambda: warn_unmatched_blocks(host, console),
            force=args.force, max_runs=args.max_runs, variant=args.variant, jobs=args.jobs,
            threads=args.threads,
            dask=args.dask,
        )
    if not args.quiet:
        print_table(result.table, make_console(),
                    suite_metrics(result.suite.path, result.suite.variant))
        print_claims(result.table.claims, make_console())
        make_console().print(f"results: {result.output_dir}")
    for record in result.failures:
        console.print(Text.assemble(("failed", "red"), f" {record.label}: {record.error}"))
    return EXIT_RUN_FAILED if result.failures else EXIT_OK


#: ``rnnbench run`` options that mean nothing to a kernels suite (no runs to select, resume or
#: spread over workers), with their defaults.
_TRAINING_ONLY = {"select": ("-k", None), "resume": ("--resume", False), "jobs": ("-j", 1),
                  "dask": ("--dask", None), "variant": ("--variant", None),
                  "max_runs": ("--max-runs", None)}


def command_run_kernels(args: argparse.Namespace, host: PluginHost, console: Console) -> int:
    """``rnnbench run`` of a ``kind: kernels`` suite: time, write the tables, print the
    Markdown; exit 1 when a measurement failed (a target not met is a finding, exit 0:
    ``rnnbench verify DIR`` gates on the targets)."""
    given = [flag for key, (flag, default) in _TRAINING_ONLY.items()
             if getattr(args, key, default) != default]
    if given:
        raise RnnbenchError(f"{args.suite} is a kernels suite: {', '.join(given)} apply to "
                            "training suites only")

    def log(message: str) -> None:
        if not args.quiet:
            console.print(message, markup=False, highlight=False)

    try:
        with kept_files_reported(console):
            run = run_kernel_suite(args.suite, host, output_dir=args.output,
                                   threads=args.threads, force=args.force, log=log)
    except KeyboardInterrupt:
        console.print("interrupted: the rows measured so far are written (results.md says the "
                      "run was interrupted)", markup=False)
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(kernel_markdown(run), end="")
        make_console().print(f"results: {run.output_dir}")
    return EXIT_RUN_FAILED if run.failed else EXIT_OK


def _is_kernels_folder(folder: Path) -> bool:
    """A kernels suite's results folder (its manifest says so, or kernels.csv without
    results.jsonl)."""
    return folder.is_dir() and folder_kind(folder)[0] == "kernels"


def show_kernels(folder: Path) -> int:
    """``rnnbench show`` of a kernels folder: its results.md, or a summary of results.json."""
    markdown = folder / "results.md"
    if markdown.is_file():
        print(markdown.read_text(encoding="utf-8"), end="")
        return EXIT_OK
    document = _kernel_results(folder)
    rows = document.get("rows", [])
    print(f"kernels suite {document.get('suite')!r}: {len(rows)} rows "
          f"(no results.md; the rows are in {folder / 'kernels.csv'})")
    for target in document.get("targets", []):
        print(f"- {target['id']}: {target['status']} ({target['detail']})")
    return EXIT_OK


def _kernel_results(folder: Path) -> dict[str, Any]:
    path = folder / "results.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RnnbenchError(f"{path}: cannot read the kernels results ({exc}); run the suite "
                            "again") from exc
    if not isinstance(document, dict) or document.get("kind") != "kernels":
        raise RnnbenchError(f"{path}: not a kernels suite's results.json")
    return document


def verify_kernels(folder: Path, as_json: bool) -> bool:
    """``rnnbench verify`` of a kernels folder: every target of its results.json met (or n/a);
    prints those not met. Returns whether none is "not met"."""
    document = _kernel_results(folder)
    targets = document.get("targets", [])
    missed = [t for t in targets if t.get("status") == "not met"]
    if as_json:
        print(json.dumps({"results": str(folder), "kind": "kernels", "ok": not missed,
                          "interrupted": document.get("interrupted"), "targets": targets},
                         indent=2, default=str))
        return not missed
    out = make_console()
    out.print(f"targets of kernels suite {document.get('suite')!r} in {folder}", markup=False)
    if document.get("interrupted"):
        out.print(f"note: the run was {document['interrupted']}; targets are over the rows "
                  "measured before it stopped", markup=False)
    for target in targets:
        out.print(f"  {target['status']:8s} {target['id']}: {target['target']} "
                  f"({target['detail']})", markup=False)
    if not targets:
        out.print("  (the suite states no targets)", markup=False)
    out.print(f"{len(missed)} of {len(targets)} targets not met" + (
        ": " + ", ".join(t["id"] for t in missed) if missed else ""), markup=False)
    return not missed


def command_show(args: argparse.Namespace, host: PluginHost) -> int:
    if _is_kernels_folder(args.results):
        return show_kernels(args.results)
    if not (args.results / "results.jsonl").exists():
        raise RnnbenchError(f"{args.results}: no results.jsonl here; is it a results folder?")
    try:
        require_writable_folder(args.results)  # it rewrites the tables
    except RnnbenchError as exc:  # a colleague's folder, a read-only checkout: show, not write
        print_line(make_console(stderr=True), f"{exc}; the tables there were not rewritten",
                   "warning")
        table = results_table(args.results, host)
    else:
        with kept_files_reported(make_console(stderr=True)):
            table = write_tables(args.results, host)
    metrics = suite_metrics(args.results / SUITE_COPY, recorded_variant(args.results))
    print_table(table, make_console(), metrics)
    print_claims(table.claims, make_console())
    return EXIT_OK


def command_verify(args: argparse.Namespace, console: Console) -> int:
    """Exit 0 when every claim holds or is a known failure (one that now holds too, like
    pytest's non-strict xpass, said loudly), 1 when one fails or is inconclusive, 2 when a
    folder cannot be verified (no records, no suite copy, no claims). Several folders are all
    verified (``tox -e claims`` checks every seed suite in one go) before the exit code is
    decided."""
    if args.suite is not None and len(args.results) > 1:
        raise RnnbenchError("--suite names the claims of one folder; give one results folder "
                            "with it, or leave it out to use each folder's own suite copy")
    kernels = [folder for folder in args.results if _is_kernels_folder(folder)]
    if kernels:
        if len(kernels) != len(args.results) or args.suite is not None:
            raise RnnbenchError(f"{kernels[0]} is a kernels results folder: verify it on its "
                                "own, without --suite (its targets are in its results.json)")
        oks = [verify_kernels(folder, args.json) for folder in kernels]
        return EXIT_OK if all(oks) else EXIT_RUN_FAILED
    checked = [_verify_folder(folder, args.suite) for folder in args.results]
    ok = all(folder_ok for _, _, _, folder_ok in checked)
    if args.json:
        documents = [
            {"results": str(folder), "suite": str(suite_file), "ok": folder_ok,
             "claims": [result.to_dict() for result in results]}
            for folder, suite_file, results, folder_ok in checked
        ]
        document = documents[0] if len(documents) == 1 else {"ok": ok, "folders": documents}
        print(json.dumps(encode_nonfinite(document), indent=2, default=str, allow_nan=False))
        return EXIT_OK if ok else EXIT_RUN_FAILED
    out = make_console()
    for folder, suite_file, results, _ in checked:
        out.print(f"claims of {suite_file} on the records in {folder}", markup=False)
        print_claims(results, out)
    if len(checked) > 1:
        failing = [str(folder) for folder, _, _, folder_ok in checked if not folder_ok]
        out.print(f"{len(checked)} folders verified; " + (
            f"claims fail or are inconclusive in: {', '.join(failing)}" if failing
            else "every claim holds or is a known failure"), markup=False)
    return EXIT_OK if ok else EXIT_RUN_FAILED


def _verify_folder(
    folder: Path, suite: Path | None
) -> tuple[Path, Path, list[ClaimResult], bool]:
    """One folder's claims evaluated on its records: (folder, suite file, results, ok)."""
    if not (folder / RESULTS_FILE).is_file():
        raise RnnbenchError(f"{folder}: no {RESULTS_FILE} here; is it a results folder?")
    suite_file = suite or claims_suite_file(folder)
    if suite_file is None:
        raise RnnbenchError(f"{folder}: no suite.yaml (the copy of the suite a run writes); "
                            "give the suite with --suite FILE")
    claims = read_claims(suite_file, recorded_variant(folder))
    if not claims:
        raise RnnbenchError(f"{suite_file}: the suite states no claims; add a claims: list "
                            "(README.md, 'Claims')")
    results = evaluate_claims(claims, ResultStore(folder).records())
    return folder, suite_file, results, claims_exit_ok(results)


_VERDICT_STYLES = {HOLDS: "green", FAILS: "bold red", INCONCLUSIVE: "yellow",
                   KNOWN_FAILURE: "magenta", KNOWN_FAILURE_HOLDS: "bold yellow reverse"}


def print_claims(results: Sequence[ClaimResult], console: Console) -> None:
    """The claims table, then one line per known failure that now holds (remove its mark) and
    the tally: ``3 hold, 1 known failure; 1 fails: ID``."""
    if not results:
        return
    view = Table(title="claims", title_justify="left")
    for column in CLAIM_COLUMNS:
        view.add_column(column, overflow="fold", no_wrap=column == "id")
    for result in results:
        *cells, verdict = result.cells()
        view.add_row(*(Text(cell) for cell in cells),
                     Text(verdict, style=_VERDICT_STYLES.get(result.verdict, "")))
    console.print(view)
    for result in results:  # one plain line each, whole (a table cell folds): for CI logs
        if result.verdict in (FAILS, INCONCLUSIVE):
            console.print(Text.assemble(
                (f"{result.verdict}:", _VERDICT_STYLES[result.verdict]),
                f" claim {result.claim.id!r}: expected {result.claim.expected}; measured "
                f"{result.measured}" + (f"; {result.reason}" if result.reason else "")))
        if result.verdict == KNOWN_FAILURE_HOLDS:
            console.print(Text.assemble(
                ("KNOWN FAILURE NOW HOLDS:", "bold yellow reverse"),
                f" claim {result.claim.id!r} is marked known_failure "
                f"({result.claim.known_failure}) but holds; remove the mark"))
    counts: dict[str, list[str]] = {}
    for result in results:
        counts.setdefault(result.verdict, []).append(result.claim.id)
    tally = [f"{len(ids)} {verdict}" + (f": {', '.join(ids)}" if verdict in (
        FAILS, INCONCLUSIVE, KNOWN_FAILURE_HOLDS) else "") for verdict, ids in counts.items()]
    ok = claims_exit_ok(results)
    console.print(Text.assemble(("claims hold" if ok else "claims do not hold",
                                 "green" if ok else "bold red"), ": " + "; ".join(tally)))


def command_compare(args: argparse.Namespace, host: PluginHost, console: Console) -> int:
    """Exit 0 when the folders match, 1 (as for a failed run) when they differ."""
    warn_broken(host, console, wants_traceback(args))
    for folder in (args.a, args.b):
        if _is_kernels_folder(Path(folder)):
            raise RnnbenchError(
                f"{folder} is a kernels results folder: compare is for training results. Within "
                "a run, ratios.csv holds each backend against the baseline; across runs, read "
                "the two results.md side by side (or diff kernels.csv); 'rnnbench verify DIR' "
                "checks a kernels run's targets")
    comparison = compare_folders(
        args.a, args.b, host.registry, mode=args.mode,
        rtol=DEFAULT_RTOL if args.rtol is None else args.rtol,
        atol=DEFAULT_ATOL if args.atol is None else args.atol,
        subset=args.subset,
    )
    if comparison.mode == "exact" and (args.rtol is not None or args.atol is not None):
        console.print("note: --rtol/--atol apply in tolerant mode only; add --tolerant to use "
                      "them")
    print_comparison(comparison, make_console())
    return EXIT_OK if comparison.ok else EXIT_RUN_FAILED


def print_comparison(comparison: Comparison, console: Console, max_rows: int = 50) -> None:
    """The mode and why, a table of the first ``max_rows`` differences (by run, then metric),
    the runs found on one side only, and the one-line verdict."""
    console.print(f"A: {comparison.a}\nB: {comparison.b}", markup=False)
    console.print(comparison.mode_line, markup=False)
    if comparison.differences:
        view = Table(title="differences", title_justify="left")
        # Labels are folded, never cut: the seed at their end is what tells runs apart.
        view.add_column("run", overflow="fold")
        view.add_column("metric", no_wrap=True)
        view.add_column("A", justify="right", no_wrap=True)
        view.add_column("B", justify="right", no_wrap=True)
        view.add_column("difference", no_wrap=True)
        shown = comparison.differences[:max_rows]
        for index, difference in enumerate(shown):
            # Each run's label once, on its first row; a rule after its last.
            first = index == 0 or shown[index - 1].run_id != difference.run_id
            last = index == len(shown) - 1 or shown[index + 1].run_id != difference.run_id
            view.add_row(*(Text(cell) for cell in (
                difference.label if first else "", difference.what, _exact_text(difference.a),
                _exact_text(difference.b), _difference_text(difference),
            )), end_section=last)
        console.print(view)
        hidden = len(comparison.differences) - max_rows
        if hidden > 0:
            console.print(f"... and {hidden} more", markup=False)
    for side, records in (("A", comparison.only_in_a), ("B", comparison.only_in_b)):
        if not records:
            continue
        allowed = " (allowed by --subset)" if side == "A" and comparison.subset else ""
        console.print(f"only in {side}{allowed}: {len(records)} runs", markup=False)
        for record in records[:max_rows]:
            console.print(f"  {record.label} ({record.run_id})", markup=False)
        if len(records) > max_rows:
            console.print(f"  ... and {len(records) - max_rows} more", markup=False)
    if comparison.hint:
        console.print(f"note: {comparison.hint}", markup=False)
    for change in comparison.provider_changes:
        console.print(f"note: {change}", markup=False)
    console.print(comparison.verdict, markup=False)


def _exact_text(value: Any) -> str:
    """Floats in full (repr round-trips), so a last-bit difference is visible."""
    return repr(value) if isinstance(value, float) else str(value)


def _difference_text(difference: Difference) -> str:
    if difference.abs_diff is None:
        return ""
    rel = difference.rel_diff
    return f"abs {difference.abs_diff:.3g}" + ("" if rel is None else f", rel {rel:.3g}")


def command_check(args: argparse.Namespace, host: PluginHost, console: Console) -> int:
    """Exit 0 when every check passed, 1 when one failed (named), 2 for an unknown name."""
    warn_broken(host, console)
    out = make_console()
    if args.subject == "task":
        reports = [check_registered_task(host, args.name, checks=args.check)]
        print_check_report(reports[0], out)
    else:
        reports = []
        for each in check_cell_backends(host, args.name, args.backend, dtypes=args.dtype,
                                        reference=args.reference or "auto", checks=args.check,
                                        options=_cell_options(args.option)):
            if each.report is None:
                out.print(f"{args.name}/{each.backend}: not checked, it cannot run here: "
                          f"{each.unavailable}", markup=False)
            else:
                print_check_report(each.report, out)
                reports.append(each.report)
    failed = [f"{report.subject}: {', '.join(r.name for r in report.failures)}"
              for report in reports if not report.passed]
    if failed:
        console.print(Text.assemble(("failed", "red"), " " + "; ".join(failed)))
        return EXIT_RUN_FAILED
    passed = sum(r.passed for report in reports for r in report.results)
    skipped = sum(r.status == "skipped" for report in reports for r in report.results)
    out.print(f"all checks passed: {passed} passed, {skipped} skipped, on "
              + ", ".join(report.subject for report in reports), markup=False)
    return EXIT_OK


def _cell_options(given: list[str]) -> dict[str, Any]:
    """``--option NAME=VALUE`` arguments as a mapping, each value read as a YAML scalar."""
    import yaml

    options = {}
    for text in given:
        name, equals, value = text.partition("=")
        if not equals or not name.strip():
            raise RnnbenchError(f"--option {text!r}: write NAME=VALUE, e.g. nonlinearity=relu")
        try:
            options[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            options[name.strip()] = value
    return options


def print_check_report(report: CheckReport, console: Console) -> None:
    view = Table(title=report.subject, title_justify="left")
    view.add_column("check", no_wrap=True)
    view.add_column("result", no_wrap=True)
    view.add_column("detail", overflow="fold")
    styles = {"passed": "green", "failed": "bold red", "skipped": "yellow"}
    for result in report.results:
        view.add_row(result.name, Text(result.status, style=styles[result.status]),
                     Text(result.message))
    console.print(view)


def print_table(table: ResultTable, console: Console,
                metrics: Sequence[str] | None = None) -> None:
    """The summary over seeds: the varying settings as columns, then ``metrics`` (the suite's
    own ``metrics:``; by default :data:`TERMINAL_METRICS`), each a scalar the records hold.
    Metrics that do not fit the console's width go to further tables with the same settings
    columns, never squeezed into unreadable columns."""
    if not table.records:
        console.print(f"{table.suite}: no runs recorded")
        return
    if metrics is None:
        shown = [m for m in TERMINAL_METRICS if m in table.metrics] or table.metrics[:4]
    else:  # profiles (lists by lag) are not scalars: they go to the plots
        shown = [m for m in dict.fromkeys(metrics) if m in table.metrics]
    columns = [c for c in table.display_columns if c != "seed"]
    summary = table.summary()
    variant = (table.environment or {}).get("variant")
    title = table.suite + (f" (variant {variant})" if isinstance(variant, str) else "")

    def build(chunk: list[str], first: bool) -> Table:
        heading = f"{title}: mean ± std over seeds" + ("" if first else " (continued)")
        view = Table(title=heading, title_justify="left")
        for column in [*columns, "runs", *(summary_heading(m) for m in chunk)]:
            view.add_column(column, justify="left" if column in columns else "right")
        for row in summary:  # the cells results.md has (summary_cell, runs_cell)
            view.add_row(
                *(Text(format_value(table.display_value(row, c))) for c in columns),
                runs_cell(row),
                *(summary_cell(row, m) for m in chunk),
            )
        return view

    chunks: list[list[str]] = [[]]
    for metric in shown:
        trial = build([*chunks[-1], metric], len(chunks) == 1)
        if chunks[-1] and _table_width(console, trial) > console.width:
            chunks.append([metric])
        else:
            chunks[-1].append(metric)
    for index, chunk in enumerate(chunks):
        console.print(build(chunk, index == 0))
    note = table.timing_note()
    if note:
        console.print(note)


def _table_width(console: Console, view: Table) -> int:
    """The width a table takes when nothing in it is wrapped."""
    unbounded = console.options.update(width=1_000_000)
    return Measurement.get(console, unbounded, view).maximum


def suite_metrics(path: Path, variant: str | None = None) -> list[str] | None:
    """The metrics a suite file lists (``metrics:``, with ``variant`` applied), or None when it
    lists none or cannot be read (a results folder's copy may be gone or foreign)."""
    try:
        data = apply_variant(read_suite(path), variant).data
    except (RnnbenchError, OSError):
        return None
    listed = data.get("metrics")
    if not isinstance(listed, list):
        return None
    return [name for name in listed if isinstance(name, str)]


def command_list(host: PluginHost) -> int:
    console = make_console()
    registry = host.registry
    cells = Table(title="Cells", title_justify="left")
    for column in ("cell", "backend", "status", "options (default)", "plugin", "description"):
        cells.add_column(column)
    for (name, backend), entry in registry.cells.claimed():
        reason = entry.unavailable_reason()
        _add_row(cells, name, backend, "available" if reason is None else f"unavailable: {reason}",
                 _options_text(describe_options(entry.options)),
                 _claimant(registry.cells, (name, backend), entry), entry.description)
    tasks = Table(title="Tasks", title_justify="left")
    for column in ("task", "topology", "parameters (default)", "plugin", "description"):
        tasks.add_column(column)
    for name, entry in registry.tasks.claimed():
        params = "\n".join(
            f"{f.name}={_default_of(f)!r}: {f.metadata.get('help', '')}"
            for f in entry.task_class.parameters()
        )
        _add_row(tasks, name, str(entry.topology), params, _claimant(registry.tasks, name, entry),
                 entry.description)
    metrics = Table(title="Metrics", title_justify="left")
    for column in ("metric", "better", "plugin", "description"):
        metrics.add_column(column)
    for name, entry in registry.metrics.claimed():
        better = entry.better or ""
        if entry.timing:
            better += " (timing)"
        _add_row(metrics, name, better, _claimant(registry.metrics, name, entry),
                 entry.description)
    reporters = Table(title="Reporters", title_justify="left")
    for column in ("reporter", "plugin", "description"):
        reporters.add_column(column)
    for name, entry in registry.reporters.claimed():
        _add_row(reporters, name, _claimant(registry.reporters, name, entry), entry.description)
    for view in (cells, tasks, metrics, reporters):
        console.print(view)
    console.print("plugins loaded: " + ", ".join(host.plugin_names()))
    for name, reason in registry.broken.items():
        console.print(f"plugin {name!r} failed to load: {reason}", markup=False)
    for kind, key, names in registry.conflicts():
        console.print(f"in conflict: {registry.tables[kind].what(key)} is registered by "
                      + " and ".join(map(repr, names)) + "; using it is an error (disable one "
                      "with -p no:NAME)", markup=False)
    return EXIT_OK


def _options_text(options: list[dict[str, Any]]) -> str:
    """A cell's options for listings: ``nonlinearity: tanh|relu = 'tanh'``, one a line."""
    return "\n".join(f"{o['name']}: {o['type']} = {o['default']!r}" for o in options)


def _claimant(table: Any, key: Any, entry: Any) -> str:
    """The plugin column of a listing: the plugin, marked when another claims the name too."""
    return entry.plugin + (" (in conflict)" if len(table.claims(key)) > 1 else "")


def command_plugins(args: argparse.Namespace, host: PluginHost) -> int:
    """Every plugin with its provenance and status, as a table or (``--json``) as JSON."""
    plugins = host.plugins()
    if args.json:
        print(json.dumps(host.plugin_report(), indent=2))
        return EXIT_OK
    view = Table(title="Plugins", title_justify="left")
    for column in ("plugin", "distribution", "version", "file", "hooks", "registered", "status"):
        view.add_column(column, overflow="fold")
    for info in plugins:
        registered = "\n".join(
            f"{kind}s: {', '.join(names)}" for kind, names in info.registered.items()
        )
        for cell, options in host.cell_options(info.name).items():
            registered += f"\n{cell} options: " + ", ".join(
                f"{o['name']}={o['default']!r} ({o['type']})" for o in options)
        hooks = ", ".join(hook.removeprefix("rnnbench_") for hook in info.hooks)
        status = info.status + (f": {info.reason}" if info.reason else "")
        where = info.file or info.reference or info.module or ""
        _add_row(view, info.name, info.distribution or "(local)", info.version or "",
                 _display_path(where), hooks, registered, status)
    console = make_console()
    console.print(view)
    counts = {status: sum(info.status == status for info in plugins) for status in
              ("loaded", "in conflict", "broken", "disabled")}
    console.print(", ".join(f"{count} {status}" for status, count in counts.items()))
    for note in host.notes:
        console.print(f"note: {note}", markup=False)
    return EXIT_OK


def _display_path(path: str) -> str:
    """A plugin's file relative to the working directory when it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return path


def _add_row(table: Table, *cells: Any) -> None:
    """A table row of plain text (the console prints it literally: no markup, no emoji)."""
    table.add_row(*(Text(str(cell)) for cell in cells))


def _default_of(field: Any) -> Any:
    import dataclasses

    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()


class QuietObserver(SilentObserver):
    """``-q``: no progress, but warnings (a plugin's event hook that raised) still print."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def warning(self, message: str) -> None:
        self.console.print(f"warning: {message}", markup=False)


class PlainObserver(QuietObserver):
    """Progress as plain lines, for logs and pipes (output that is not a terminal)."""

    def suite_started(
        self, suite: Suite, runs: Sequence[RunSpec], already_done: Sequence[RunSpec],
        output_dir: Path,
    ) -> None:
        if already_done:
            variant = f" (variant {suite.variant})" if suite.variant else ""
            self.console.print(f"resume: {len(already_done)} runs already finished in "
                               f"{output_dir}{variant}", markup=False)
        for spec, reason in suite.skipped:
            self.console.print(f"skipped {spec.label}: {reason}")

    def run_finished(self, record: RunRecord, index: int, total: int) -> None:
        self.console.print(f"[{index}/{total}] {record.label} {record.status} "
                           f"({record.seconds:.1f} s){_headline(record)}", markup=False)


class RichObserver(PlainObserver):
    """Progress bars on a terminal: the suite's runs and the current run's steps; with ``-j N``
    one bar per run in progress (each worker's current run)."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )
        self.suite_bar = self.progress.add_task("suite", total=None)
        self.run_bar = self.progress.add_task("run", total=None)
        #: ``-j N``: a bar per run in progress, by run id.
        self.worker_bars: dict[str, Any] = {}

    def __enter__(self) -> RichObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def suite_started(
        self, suite: Suite, runs: Sequence[RunSpec], already_done: Sequence[RunSpec],
        output_dir: Path,
    ) -> None:
        super().suite_started(suite, runs, already_done, output_dir)
        if runs and runs[0].workers > 1:  # a bar per worker's run instead of the one run bar
            self.progress.remove_task(self.run_bar)
            self.run_bar = None

    def run_started(self, spec: RunSpec, index: int, total: int) -> None:
        self.progress.update(self.suite_bar, total=total, description=f"suite {spec.suite}")
        if self.run_bar is None:
            self.worker_bars[spec.run_id] = self.progress.add_task(spec.label, total=None)
        else:
            self.progress.reset(self.run_bar, total=None, description=spec.label)

    def training_step(self, step: int, total: int) -> None:
        if self.run_bar is not None and (step % 10 == 0 or step == total):
            self.progress.update(self.run_bar, completed=step, total=total)

    def run_step(self, spec: RunSpec, step: int, total: int) -> None:
        if spec.run_id in self.worker_bars:
            self.progress.update(self.worker_bars[spec.run_id], completed=step, total=total)

    def cluster_progress(self, busy: dict[str, str], total: int, finished: int) -> None:
        """``--dask``: submitted / running / finished counts and each worker's run."""
        self.progress.update(self.suite_bar, total=total, completed=finished)
        self.progress.update(self.run_bar, description=(
            f"dask: {total} submitted, {len(busy)} running, {finished} finished | "
            + "; ".join(f"{worker.rsplit('/', 1)[-1]} {label}" for worker, label in busy.items())))

    def run_finished(self, record: RunRecord, index: int, total: int) -> None:
        self.progress.update(self.suite_bar, completed=index)
        if record.run_id in self.worker_bars:
            self.progress.remove_task(self.worker_bars.pop(record.run_id))
        self.progress.console.print(f"{record.label} {record.status} "
                                    f"({record.seconds:.1f} s){_headline(record)}", markup=False)


def _headline(record: RunRecord) -> str:
    value = record.metrics.get("test_loss")
    return f" test_loss={format_value(value)}" if isinstance(value, float) else ""


def make_observer(console: Console, quiet: bool) -> SilentObserver:
    if quiet:
        return QuietObserver(console)
    if console.is_terminal:
        return RichObserver(console)
    return PlainObserver(console)


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (a batch system's time limit) ends a run as Ctrl-C does


def entry_point() -> None:
    """Console-script entry: ``rnnbench``. Ctrl-C or SIGTERM at any point (start-up included)
    is one line and exit 130, never a traceback; a run interrupted so rewrites its tables."""
    signal.signal(signal.SIGTERM, _terminated)
    try:
        code = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry_point()

