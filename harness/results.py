"""The results store (JSON Lines), environment capture, atomic writes, and result tables.

A results folder holds:

- ``results.jsonl``: one RunRecord per line, appended (and fsync'ed) as each run finishes;
- ``environment.json``: where and with what the latest invocation ran (a ``--resume`` in a
  different environment keeps it and writes ``environment.resumed-<UTC time>.json`` beside it);
- ``suite.yaml``: the suite file as it was run;
- the reporters' tables (``results.md``, ``runs.csv``, ...), regenerated from the records;
- ``results.previous-<UTC time>.jsonl``: the results file of each earlier full run, never
  overwritten; ``results.torn.jsonl``: partial last lines moved aside (see
  :func:`rnnbench.record_file.repair_torn_tail`); ``.rnnbench.lock``: held by the run writing the
  folder (:mod:`rnnbench.store_lock`).

Non-finite numbers (an exploding run's inf) are recorded as ``{"$float": "inf"}``, ``"-inf"`` or
``"nan"`` objects, so every line is standard JSON (:mod:`rnnbench.json_numbers`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnbench import json_numbers
from rnnbench.blas_info import CORETYPE_VAR, blas_in_use
from rnnbench.record_file import StoreWarning, read_record_file, repair_torn_tail
from rnnbench.records import RunRecord

if TYPE_CHECKING:
    from rnnbench.claims import ClaimResult

RESULTS_FILE = "results.jsonl"
ENVIRONMENT_FILE = "environment.json"
SUITE_COPY = "suite.yaml"
#: Distributions whose versions every environment records (when installed).
KEY_PACKAGES = (
    "rnnbench", "numpy", "numba", "numba-cuda", "llvmlite", "pluggy", "PyYAML", "jsonschema",
    "rich", "scipy", "torch",
)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() respects the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a full disk fails write() or fsync(), which name nothing
        raise
    return path


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> Path:
    """:func:`atomic_write_bytes` for text, UTF-8, newlines as given."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


class ResultStore:
    """The records of one results folder. Appends are one ``write`` of a whole line plus fsync,
    so a crash leaves at most one torn last line: :meth:`records` skips it (and any corrupt
    record) with a warning, and :meth:`repair` moves it aside before the next append."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / RESULTS_FILE

    def start_fresh(self) -> None:
        """Begin a new results file; an existing one that holds anything is kept as
        ``results.previous-<UTC time>.jsonl`` (never overwriting an earlier one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = self.directory / f"results.previous-{stamp}.jsonl"
            number = 1
            while kept.exists():
                number += 1
                kept = self.directory / f"results.previous-{stamp}-{number}.jsonl"
            os.replace(self.path, kept)
        self.path.touch()

    def repair(self) -> None:
        """Before appending: move a torn last line aside (a :class:`StoreWarning` says so)."""
        message = repair_torn_tail(self.path)
        if message:
            warnings.warn(message, StoreWarning, stacklevel=2)

    def append(self, record: RunRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json_numbers.dumps(record.to_dict(), default=_json_default) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def records(self) -> list[RunRecord]:
        """The latest record of every run id, in the order runs were first recorded."""
        if not self.path.exists():
            return []
        found = read_record_file(self.path)
        if found.skipped_line():
            warnings.warn(found.skipped_line(), StoreWarning, stacklevel=2)
        return found.records

    def finished_ids(self) -> set[str]:
        """Ids of runs that need not run again on ``--resume``: finished ``ok`` or ``diverged``
        (a divergence is a result). ``failed`` runs are retried."""
        return {r.run_id for r in self.records() if r.status in ("ok", "diverged")}


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# --- environment -------------------------------------------------------------------------------


def capture_environment(
    project_dir: Path | None = None, plugins: Sequence[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Where and with what a suite ran: enough for a reviewer to judge a difference.

    ``plugins`` (``PluginHost.environment_plugins()``) lists every plugin met, with the
    distribution and version that provided it and its status; recorded as ``plugins``.
    """
    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": {
            var: os.environ[var]
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "NUMBA_NUM_THREADS")
            if var in os.environ
        },
        "blas": blas_in_use(),
        **({CORETYPE_VAR: os.environ[CORETYPE_VAR]} if os.environ.get(CORETYPE_VAR) else {}),
        "packages": packages,
        "git": _git_state(project_dir or Path(__file__).resolve().parent.parent),
        **({"plugins": list(plugins)} if plugins is not None else {}),
    }


def environment_problems(environment: Any) -> list[str]:
    """What in an ``environment.json`` document readers cannot use: not an object, or a field
    of the wrong JSON type (``packages`` must be an object of versions, ``git`` an object whose
    ``commit`` is a string). One phrase per problem; empty when it is usable."""
    if not isinstance(environment, dict):
        return [f"expected a JSON object, not {type(environment).__name__}"]
    problems = []
    packages = environment.get("packages")
    if packages is not None and not isinstance(packages, dict):
        problems.append(f"'packages' is a {type(packages).__name__}, not an object of versions")
    threads = environment.get("threads")
    if threads is not None and not isinstance(threads, dict):
        problems.append(f"'threads' is a {type(threads).__name__}, not an object")
    git = environment.get("git")
    if git is not None and not (isinstance(git, dict)
                                and isinstance(git.get("commit", ""), str)):
        problems.append("'git' is not an object with a string 'commit'")
    return problems


def read_environment(path: Path) -> dict[str, Any] | None:
    """``environment.json`` for display: None when absent or unreadable, fields of the wrong type
    left out; each problem is a warning naming the file, never a crash (it is information about
    the runs, not part of them)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        environment = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        warnings.warn(f"{path}: unreadable, left out ({exc})", StoreWarning, stacklevel=2)
        return None
    problems = environment_problems(environment)
    for problem in problems:
        warnings.warn(f"{path}: {problem}; left out", StoreWarning, stacklevel=2)
    if not isinstance(environment, dict):
        return None
    return {key: value for key, value in environment.items()
            if not any(problem.startswith(f"'{key}'") for problem in problems)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_state(directory: Path) -> dict[str, Any] | None:
    """The project's commit and whether the work tree had changes, or None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


# --- tables ------------------------------------------------------------------------------------

#: Configuration columns first, in this order; the rest (task parameters) follow sorted.
COLUMN_ORDER = (
    "cell", "backend", "task", "hidden_size", "num_layers", "bias", "dtype", "seed",
    "optimizer", "lr", "momentum", "batch_size", "steps", "epochs", "clip", "eval_every",
    "target_loss", "init", "spectral_radius", "forget_bias", "schedule", "warmup_steps",
    "decay_every", "decay_rate", "data",
)


#: Metrics whose ``None`` means "the target was not reached" when the run had a ``target_loss``:
#: their summary counts the runs that did not reach it (see :meth:`ResultTable.summary`).
TARGET_METRICS = ("steps_to_target", "seconds_to_target")
#: The metric whose summary is a count of runs, ``solved_count`` of ``solved_n``.
SOLVED = "solved"


@dataclass
class ResultTable:
    """Records as tidy rows (one per run) and a summary aggregated over seeds (mean ± std).

    ``config_columns`` are the configuration columns in display order; ``varying`` those whose
    value differs between runs (the others are constant and shown once, above a table).
    """

    suite: str
    records: list[RunRecord]
    metrics: list[str]
    better: dict[str, str | None] = field(default_factory=dict)
    environment: dict[str, Any] | None = None
    #: Metrics whose values are lists (curves such as gradient norm by lag): not table columns.
    profiles: list[str] = field(default_factory=list)
    #: The suite's claims evaluated on these records (:class:`rnnbench.ClaimResult`), in the
    #: suite's order; empty when the suite states none.
    claims: list[ClaimResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        listed = {
            name for record in self.records for name, value in record.metrics.items()
            if isinstance(value, list)
        }
        self.profiles = [m for m in self.metrics if m in listed]
        self.metrics = [m for m in self.metrics if m not in listed]

    def timing_note(self) -> str | None:
        """A footnote for the timing columns when runs were timed while other runs shared the
        machine (``execution.workers`` > 1): None when every run had the machine to itself."""
        workers = [
            record.execution.get("workers") for record in self.records
            if isinstance(record.execution, dict)
        ]
        parallel = [w for w in workers if isinstance(w, int) and w > 1]
        if not parallel:
            return None
        return (f"Timings: {len(parallel)} of {len(self.records)} runs were timed with up to "
                f"{max(parallel)} runs in parallel: comparable to each other, not to serial runs.")

    def thread_budgets(self) -> list[int]:
        """The thread budgets the runs executed under (``execution.threads``), sorted."""
        return sorted({
            record.execution["threads"] for record in self.records
            if isinstance(record.execution, dict) and isinstance(record.execution.get("threads"),
                                                                 int)
        })

    @property
    def config_columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for record in self.records:
            for key in record.flat_config():
                seen[key] = None
        ordered = [c for c in COLUMN_ORDER if c in seen]
        return ordered + sorted(c for c in seen if c not in COLUMN_ORDER)

    def _values(self, column: str) -> list[Any]:
        return [record.flat_config().get(column) for record in self.records]

    @property
    def varying(self) -> list[str]:
        return [c for c in self.config_columns if len({_key(v) for v in self._values(c)}) > 1]

    @property
    def display_columns(self) -> list[str]:
        """The varying configuration columns for human-facing tables, with the task and its
        parameters folded into one ``task`` column (``adding[length=30]``): a suite of several
        tasks would otherwise get a column for every parameter of every task."""
        varying = self.varying
        columns = [c for c in varying if not c.startswith("task")]
        if any(c.startswith("task") for c in varying):
            columns.insert(min(2, len(columns)), "task")
        return columns

    @staticmethod
    def display_value(record_or_row: dict[str, Any], column: str) -> Any:
        if column == "task" and record_or_row.get("task_label"):
            return record_or_row["task_label"]
        return record_or_row.get(column)

    @property
    def constant(self) -> dict[str, Any]:
        return {
            c: self._values(c)[0] for c in self.config_columns if c not in self.varying
        } if self.records else {}

    def rows(self) -> list[dict[str, Any]]:
        """One row per run: run id, configuration, status, every metric, error."""
        rows = []
        for record in self.records:
            row: dict[str, Any] = {"run_id": record.run_id}
            config = record.flat_config()
            row.update({c: config.get(c) for c in self.config_columns})
            row["task_label"] = record.task_label or config.get("task")
            row["status"] = record.status
            row.update({m: record.metrics.get(m) for m in self.metrics})
            row["seconds"] = record.seconds
            row["error"] = (record.error or "").splitlines()[0] if record.error else ""
            rows.append(row)
        return rows

    def summary(self) -> list[dict[str, Any]]:
        """One row per configuration without its seed: run counts, and per metric the mean and
        sample standard deviation over the runs that have a numeric value for it
        (``<metric>_mean``, ``_std``, ``_n``).

        Two metrics say more, because their ``None`` means something:

        - ``solved`` (a verdict per run): ``solved_count`` runs solved the task out of
          ``solved_n`` that have a verdict (a diverged run counts as not solved; a failed run
          has no metrics and is not counted, the ``failed`` column shows it), and
          ``solved_fraction`` = count / n (``None`` without a verdict). Tables print "2/3".
        - ``steps_to_target``, ``seconds_to_target`` (``None`` when the run did not reach
          ``target_loss``): the mean is over the runs that reached it, which alone would hide
          the others; ``<metric>_reached`` of ``<metric>_targeted`` (the runs with a
          ``target_loss`` that finished, ok or diverged) reached it, and ``<metric>_median``
          is the median over all targeted runs with an unreached one counted as never (+inf):
          ``None`` when half of them or more did not reach it. Tables print
          "400 (2/3 reached)" or "not reached (1/3 reached)".
        """
        group_columns = [c for c in self.config_columns if c != "seed"]
        groups: dict[tuple, list[RunRecord]] = {}
        for record in self.records:
            config = record.flat_config()
            groups.setdefault(tuple(_key(config.get(c)) for c in group_columns), []).append(record)
        summary = []
        for members in groups.values():
            config = members[0].flat_config()
            row: dict[str, Any] = {c: config.get(c) for c in group_columns}
            row["task_label"] = members[0].task_label or config.get("task")
            row["runs"] = len(members)
            row["ok"] = sum(r.status == "ok" for r in members)
            row["diverged"] = sum(r.status == "diverged" for r in members)
            row["failed"] = sum(r.status == "failed" for r in members)
            for metric in self.metrics:
                values = [_number(r.metrics.get(metric)) for r in members]
                numbers = [v for v in values if v is not None]
                finite = all(math.isfinite(v) for v in numbers)
                row[f"{metric}_mean"] = (
                    (statistics.fmean(numbers) if finite else _infinite_mean(numbers))
                    if numbers else None
                )
                row[f"{metric}_std"] = (
                    statistics.stdev(numbers) if len(numbers) > 1 and finite else None
                )
                row[f"{metric}_n"] = len(numbers)
                if metric == SOLVED:
                    solved = sum(r.metrics.get(metric) is True for r in members)
                    row["solved_count"] = solved
                    row["solved_fraction"] = solved / len(numbers) if numbers else None
                elif metric in TARGET_METRICS:
                    row.update(_target_summary(metric, members))
            summary.append(row)
        return summary


def _target_summary(metric: str, members: list[RunRecord]) -> dict[str, Any]:
    """``_reached``, ``_targeted`` and ``_median`` (unreached counted as +inf) of a
    time-to-target metric over the runs of one summary row."""
    targeted = [
        r for r in members
        if r.status in ("ok", "diverged") and r.flat_config().get("target_loss") is not None
    ]
    times = [_number(r.metrics.get(metric)) for r in targeted]
    times = [math.inf if t is None else t for t in times]
    median = statistics.median(times) if times else None
    return {
        f"{metric}_reached": sum(math.isfinite(t) for t in times),
        f"{metric}_targeted": len(targeted),
        f"{metric}_median": median if median is not None and math.isfinite(median) else None,
    }


def runs_cell(row: dict[str, Any]) -> str:
    """The runs of a :meth:`ResultTable.summary` row in a human-facing summary: ``2/3`` ok of
    all, then how many diverged or failed, ``0/3 (3 diverged)``."""
    counts = f"{row['ok']}/{row['runs']}"
    if row["diverged"]:
        counts += f" ({row['diverged']} diverged)"
    if row["failed"]:
        counts += f" ({row['failed']} failed)"
    return counts


def summary_heading(metric: str) -> str:
    """A metric's column heading in a human-facing summary: ``solved`` reads
    ``solved_fraction`` (its cells are counts, :func:`summary_cell`)."""
    return "solved_fraction" if metric == SOLVED else metric


def summary_cell(row: dict[str, Any], metric: str) -> str:
    """A metric's cell in a human-facing summary (Markdown, terminal) from a
    :meth:`ResultTable.summary` row: ``mean ± std``; for ``solved`` the count "2/3"; for a
    time-to-target metric of runs with a target, the median and how many reached it,
    "400 (2/3 reached)" (see :meth:`ResultTable.summary`)."""
    if metric == SOLVED and "solved_count" in row:
        return f"{row['solved_count']}/{row[f'{metric}_n']}" if row[f"{metric}_n"] else ""
    if metric in TARGET_METRICS and row.get(f"{metric}_targeted"):
        median = row[f"{metric}_median"]
        reached = f"({row[f'{metric}_reached']}/{row[f'{metric}_targeted']} reached)"
        return f"{'not reached' if median is None else format_value(median)} {reached}"
    return format_mean_std(row.get(f"{metric}_mean"), row.get(f"{metric}_std"))


def _key(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str)


def _number(value: Any) -> float | None:
    """A metric value as a float for means: bools and numbers, inf and -inf included (a mean
    with inf is inf); None for NaN and non-numbers."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float) and not math.isnan(value):
        return value
    return None


def _infinite_mean(numbers: list[float]) -> float:
    """inf or -inf when the infinities agree in sign, NaN (no mean) when both occur."""
    signs = {math.copysign(1.0, v) for v in numbers if math.isinf(v)}
    return math.nan if len(signs) > 1 else signs.pop() * math.inf


def format_value(value: Any, digits: int = 4) -> str:
    """Compact, readable cell text: 4 significant digits for floats, blank for missing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def format_mean_std(mean: float | None, std: float | None, digits: int = 4) -> str:
    """``mean ± std`` as tables show it (the mean alone when std is missing or zero; empty when
    there is no mean), each to ``digits`` significant digits as :func:`format_value` writes."""
    if mean is None:
        return ""
    if std is None or std == 0:
        return format_value(mean, digits)
    return f"{format_value(mean, digits)} ± {format_value(std, 2)}"


def load_table(directory: Path, metrics: Sequence[str] | None = None,
               better: dict[str, str | None] | None = None) -> ResultTable:
    """A ResultTable from a results folder; metrics default to those found in the records."""
    directory = Path(directory)
    store = ResultStore(directory)
    records = store.records()
    if metrics is None:
        metrics = _metric_names(records)
    environment = read_environment(directory / ENVIRONMENT_FILE)
    suite = records[0].suite if records else directory.name
    return ResultTable(suite, records, list(metrics), dict(better or {}), environment)


def _metric_names(records: Iterable[RunRecord]) -> list[str]:
    names: dict[str, None] = {}
    for record in records:
        for name in record.metrics:
            names[name] = None
    return list(names)
