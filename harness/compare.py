"""Compare two results folders run by run: is a re-run the same result as the committed one?

A benchmark result is only worth committing if it can be reproduced. ``rnnbench compare A B``
(and :func:`compare_folders` under it) answers that for two results folders, typically the
committed ``results/NAME`` and a fresh re-run of the same suite:

- Runs are matched by ``run_id``: a hash of the fully resolved configuration, so the same run has
  the same id whatever the suite file looked like. A run in only one folder is a difference,
  except that with ``subset=True`` runs of A missing from B are allowed (B re-ran only some of
  them, e.g. with ``-k``).
- For each matched run the status, every non-timing metric and every non-timing value of the
  learning curve must agree. Timing values (wall-clock) differ between identical runs and are
  left out; so are the record's ``started``, ``seconds`` and ``error`` (a traceback holds paths).
- What "agree" means depends on where the two folders were produced. The harness is
  deterministic: on the same platform with the same numeric packages a re-run gives bitwise
  identical numbers, so anything less is a bug worth seeing (**exact** mode). Across platforms or
  package versions, floating-point results legitimately differ in the last bits (different BLAS
  kernels, SIMD paths, libm), so floats need only agree within a tolerance (**tolerant** mode);
  bools, ints, strings and None must still be equal. The mode is chosen from the two
  ``environment.json`` files, and the runs' thread budgets (``RunRecord.execution``; a
  different budget is tolerant mode too), unless the caller forces one.

Which values count as timing: a metric whose registry entry says ``timing=True``; for a metric
name the registry does not know (a plugin that is not loaded, an older record), names ending in
``_seconds``, ``_ms``, ``seconds`` or ``per_second`` are taken as timing and every other name as
not. In a learning-curve point every key but ``seconds`` (and other names that rule calls timing)
is compared.
"""

from __future__ import annotations

import json
import math
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rnnbench.errors import RnnbenchError
from rnnbench.record_file import StoreWarning, read_record_file
from rnnbench.records import RunRecord
from rnnbench.results import ENVIRONMENT_FILE, RESULTS_FILE, environment_problems

Mode = Literal["exact", "tolerant"]
MODES: tuple[Mode, ...] = ("exact", "tolerant")
DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-9
#: Unknown metric names with these endings are wall-clock measurements (see the module doc).
TIMING_SUFFIXES = ("_seconds", "_ms", "seconds", "per_second")
#: Packages whose version can change the harness's floating-point results; a difference in any
#: of them (among those recorded in either environment) means tolerant mode. PyTorch is not one:
#: only the speed benchmark and the parity tests use it, never a suite run.
NUMERIC_PACKAGES = ("numpy", "numba", "llvmlite", "scipy")
#: Environment fields that must be equal for exact mode: interpreter, CPU architecture, OS/libc.
PLATFORM_FIELDS = ("python", "machine", "platform")


class _Missing:
    """A value one side does not have (a metric only one run recorded)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(missing)"


#: Stands for a value absent on one side of a :class:`Difference`.
MISSING: Any = _Missing()


@dataclass(frozen=True)
class Difference:
    """One value that does not agree: ``what`` is ``status``, a metric name (``NAME[I]`` for
    element I of a list-valued metric), ``curve[I].KEY`` (point I of the learning curve) or
    ``curve points`` (their number)."""

    run_id: str
    label: str
    what: str
    a: Any
    b: Any
    #: Orders differences within a run: status, metrics, curve length, curve points.
    order: tuple[int, int, str] = field(default=(0, 0, ""), repr=False, compare=False)

    @property
    def abs_diff(self) -> float | None:
        """``|a - b|`` for two numbers (not bools), else None."""
        if not (_is_number(self.a) and _is_number(self.b)):
            return None
        return abs(float(self.a) - float(self.b))

    @property
    def rel_diff(self) -> float | None:
        """``|a - b| / max(|a|, |b|)`` for two numbers (0 when both are 0), else None."""
        diff = self.abs_diff
        if diff is None:
            return None
        scale = max(abs(float(self.a)), abs(float(self.b)))
        if scale == 0:
            return 0.0
        return diff / scale if math.isfinite(scale) else math.nan


@dataclass
class Comparison:
    """The outcome of comparing results folder ``a`` with ``b``; :attr:`ok` says whether they
    match, :attr:`mode_line` and :attr:`verdict` say it in words."""

    a: Path
    b: Path
    mode: Mode
    #: Why this mode: the environments' agreement or their differences.
    reason: str
    rtol: float
    atol: float
    subset: bool = False
    #: Runs found in both folders.
    matched: int = 0
    #: Values checked over the matched runs: statuses, metrics (each element of a list-valued
    #: one) and curve values.
    values_compared: int = 0
    differences: list[Difference] = field(default_factory=list)
    only_in_a: list[RunRecord] = field(default_factory=list)
    only_in_b: list[RunRecord] = field(default_factory=list)
    #: Cells whose providing plugin, distribution or version differs between A and B (from the
    #: records' provenance), in words: worth knowing when numbers differ, no difference itself.
    provider_changes: list[str] = field(default_factory=list)

    @property
    def differing_runs(self) -> list[str]:
        """Ids of matched runs with at least one difference, in the differences' order."""
        return list(dict.fromkeys(d.run_id for d in self.differences))

    @property
    def ok(self) -> bool:
        """Every matched value agrees and no run is missing (from B, with ``subset``: runs of
        A may be missing, but at least one must have been re-run)."""
        if self.differences or self.only_in_b:
            return False
        if self.subset:
            return self.matched > 0 or not self.only_in_a
        return not self.only_in_a

    @property
    def hint(self) -> str | None:
        """Why runs of the same label are on one side each: the configuration keys in which
        their (differently hashed) configurations differ, e.g. a training setting added since A
        was produced, which changes every run id. None when no label is on both sides."""
        by_label = {record.label: record for record in self.only_in_b}
        pairs = [(r, by_label[r.label]) for r in self.only_in_a if r.label in by_label]
        if not pairs:
            return None
        changes: dict[str, str] = {}
        for record_a, record_b in pairs:
            flat_a, flat_b = _flatten(record_a.config), _flatten(record_b.config)
            for key in sorted(flat_a.keys() | flat_b.keys()):
                x, y = flat_a.get(key, MISSING), flat_b.get(key, MISSING)
                if key in changes or (x is not MISSING and y is not MISSING and identical(x, y)):
                    continue
                if x is MISSING:
                    changes[key] = f"{key} (only in B)"
                elif y is MISSING:
                    changes[key] = f"{key} (only in A)"
                else:
                    changes[key] = f"{key} {x!r} vs {y!r}"
        shown = list(changes.values())
        listed = ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")
        verb = "has" if len(pairs) == 1 else "have"
        return (f"{_plural(len(pairs), 'run')} of the same label {verb} different ids in A and "
                f"B: their configurations differ in {listed}")

    @property
    def mode_line(self) -> str:
        """E.g. ``exact: same python 3.11.7, numpy 2.4.6 on x86_64`` or
        ``tolerant (rtol 1e-06, atol 1e-09): numpy 2.4.6 vs 2.3.0``."""
        if self.mode == "exact":
            return f"exact: {self.reason}"
        return f"tolerant (rtol {self.rtol:g}, atol {self.atol:g}): {self.reason}"

    @property
    def verdict(self) -> str:
        """One line: ``identical: ...``, ``MATCH within rtol=...`` or ``DIFFER: ...``."""
        counted = f"{_plural(self.matched, 'run')}, {_plural(self.values_compared, 'value')}"
        skipped = (
            f"; {_plural(len(self.only_in_a), 'run')} of A not in B (--subset)"
            if self.subset and self.only_in_a else ""
        )
        if self.ok:
            if self.mode == "exact":
                return f"identical: {counted}{skipped}"
            return f"MATCH within rtol={self.rtol:g}, atol={self.atol:g}: {counted}{skipped}"
        parts = []
        if self.differences:
            runs = len(self.differing_runs)
            parts.append(f"{_plural(len(self.differences), 'value')} in {_plural(runs, 'run')}")
        if self.only_in_a and not self.subset:
            parts.append(f"{_plural(len(self.only_in_a), 'run')} only in A")
        if self.only_in_b:
            parts.append(f"{_plural(len(self.only_in_b), 'run')} only in B")
        if self.subset and self.matched == 0 and self.only_in_a:
            parts.append("no run of A is in B")
        return "DIFFER: " + "; ".join(parts)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"lr": 0.1}}`` -> ``{"training.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# --- what counts ---------------------------------------------------------------------------------


def is_timing(name: str, metrics: Mapping[str, Any] | None = None) -> bool:
    """Whether metric (or curve key) ``name`` is a wall-clock measurement, left out of every
    comparison. The registry's ``timing`` flag decides for names it knows (``metrics`` maps
    names to :class:`~rnnbench.plugin_manager.MetricEntry`); other names are timing when they end in
    ``_seconds``, ``_ms``, ``seconds`` or ``per_second``, so a record written by a plugin that is
    not loaded now is still compared sensibly."""
    entry = (metrics or {}).get(name)
    if entry is not None:
        return bool(getattr(entry, "timing", False))
    return name.endswith(TIMING_SUFFIXES)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def identical(a: Any, b: Any) -> bool:
    """Exact-mode equality: same JSON type and value, floats bitwise (so ``0.0`` and ``-0.0``
    differ and NaN equals a NaN of the same bits); lists and dicts element by element."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    return bool(a == b)


def close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    """Tolerant-mode agreement: when either is a float (and both are numbers),
    ``|a - b| <= atol + rtol * max(|a|, |b|)`` (symmetric in a and b; NaN only agrees with NaN,
    infinities only with themselves); bools, ints, strings and None must be equal; lists and
    dicts element by element."""
    if _is_number(a) and _is_number(b) and (isinstance(a, float) or isinstance(b, float)):
        x, y = float(a), float(b)
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        if math.isinf(x) or math.isinf(y):
            return x == y
        return abs(x - y) <= atol + rtol * max(abs(x), abs(y))
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, rtol, atol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rtol, atol) for k in a)
    return bool(a == b)


# --- environments --------------------------------------------------------------------------------


def _blas_kernels(env: Mapping[str, Any]) -> list[str]:
    """The BLAS kernels an environment recorded (``blas``; older results have none): other
    kernels (e.g. AVX2 vs AVX-512) round a few sums differently."""
    libraries = env.get("blas")
    if not isinstance(libraries, list):
        return []
    return sorted({f"{lib.get('library')} {lib.get('kernels')}" for lib in libraries
                   if isinstance(lib, Mapping)})


def choose_mode(env_a: Mapping[str, Any] | None,
                env_b: Mapping[str, Any] | None) -> tuple[Mode, str]:
    """Exact when both environments are known and agree on python version, machine, platform
    string, BLAS kernels (where both record them) and the version of every numeric package
    either records; else tolerant. Returns the
    mode and the reason in words: what agrees (exact) or every difference (tolerant)."""
    if env_a is None or env_b is None:
        missing = " and ".join(side for side, env in (("A", env_a), ("B", env_b)) if env is None)
        return "tolerant", f"environment unknown: no {ENVIRONMENT_FILE} in {missing}"
    differences = []
    for name in PLATFORM_FIELDS:
        a, b = env_a.get(name), env_b.get(name)
        if a is None or b is None or a != b:
            differences.append(f"{name} {_shown(a)} vs {_shown(b)}")
    for side, env in (("A", env_a), ("B", env_b)):
        differences += [f"{side}'s {ENVIRONMENT_FILE}: {p}" for p in environment_problems(env)]
    kernels_a, kernels_b = _blas_kernels(env_a), _blas_kernels(env_b)
    if kernels_a and kernels_b and kernels_a != kernels_b:
        differences.append(f"BLAS kernels {', '.join(kernels_a)} vs {', '.join(kernels_b)}")
    packages_a = _packages(env_a)
    packages_b = _packages(env_b)
    recorded = [p for p in NUMERIC_PACKAGES if p in packages_a or p in packages_b]
    for name in recorded:
        a, b = packages_a.get(name), packages_b.get(name)
        if a != b:
            differences.append(f"{name} {_shown(a)} vs {_shown(b)}")
    if differences:
        return "tolerant", "; ".join(differences)
    versions = ", ".join(f"{p} {packages_a[p]}" for p in recorded)
    same = f"python {env_a['python']}" + (f", {versions}" if versions else "")
    return "exact", f"same {same} on {env_a['machine']}"


def thread_budgets(records: list[RunRecord], environment: Mapping[str, Any] | None) -> set[int]:
    """The thread budgets a folder's runs executed under: from each record's ``execution``
    (the threads the BLAS pools had, where recorded),
    else the suite-level ``execution`` of ``environment.json``; empty when neither records one
    (folders written before rnnbench had budgets)."""
    budgets = {
        _effective(record.execution) for record in records
        if isinstance(record.execution, dict) and isinstance(_effective(record.execution), int)
    }
    if not budgets and environment is not None:
        execution = environment.get("execution")
        if isinstance(execution, dict) and isinstance(execution.get("threads"), int):
            budgets = {execution["threads"]}
    return budgets


def _effective(execution: Mapping[str, Any]) -> Any:
    """The threads the BLAS pools had (``blas_threads``: fewer than the budget where an
    environment variable capped them), else the budget."""
    blas = execution.get("blas_threads")
    return blas if isinstance(blas, int) else execution.get("threads")


def budget_difference(records_a: list[RunRecord], env_a: Mapping[str, Any] | None,
                      records_b: list[RunRecord], env_b: Mapping[str, Any] | None) -> str | None:
    """Why tolerant mode, when both folders record thread budgets and they differ (a BLAS sum
    split over other threads rounds differently); None when they agree or one is unrecorded."""
    a, b = thread_budgets(records_a, env_a), thread_budgets(records_b, env_b)
    if not a or not b or a == b:
        return None

    def shown(budgets: set[int]) -> str:
        return "/".join(str(n) for n in sorted(budgets))

    return (f"thread budget {shown(a)} vs {shown(b)} (BLAS/OpenMP/Numba threads per run; "
            "sums split over other threads round differently)")


def _packages(environment: Mapping[str, Any]) -> Mapping[str, Any]:
    """The recorded package versions; none when ``packages`` is not an object."""
    packages = environment.get("packages")
    return packages if isinstance(packages, dict) else {}


def _shown(value: Any) -> str:
    return "(not recorded)" if value is None else str(value)


# --- reading -------------------------------------------------------------------------------------


def read_folder(folder: Path) -> tuple[list[RunRecord], dict[str, Any] | None]:
    """A results folder's records (the latest per run id) and its environment (None when it has
    no environment.json). A folder or file that cannot be read is an :class:`RnnbenchError`;
    unreadable records are skipped with one :class:`~rnnbench.record_file.StoreWarning` that
    counts them (so a run they held shows as missing, and the warning says why)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RnnbenchError(f"{folder}: no such folder")
    if not (folder / RESULTS_FILE).is_file():
        raise RnnbenchError(f"{folder}: no {RESULTS_FILE} here; is it a results folder?")
    path = folder / RESULTS_FILE
    try:
        found = read_record_file(path)
    except OSError as exc:
        raise RnnbenchError(f"{path}: cannot read: {exc}") from exc
    if found.skipped_line():
        warnings.warn(found.skipped_line(), StoreWarning, stacklevel=2)
    records = found.records
    environment = None
    env_path = folder / ENVIRONMENT_FILE
    if env_path.exists():
        try:
            environment = json.loads(env_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RnnbenchError(f"{env_path}: cannot read: {exc}") from exc
        if not isinstance(environment, dict):
            raise RnnbenchError(f"{env_path}: expected a JSON object")
        # Fields of the wrong type stay: choose_mode names them and falls back to tolerant.
    return records, environment


# --- comparing -----------------------------------------------------------------------------------


def compare_records(a: RunRecord, b: RunRecord, metrics: Mapping[str, Any] | None, mode: Mode,
                    rtol: float = DEFAULT_RTOL,
                    atol: float = DEFAULT_ATOL) -> tuple[list[Difference], int]:
    """The differences between two records of the same run, and how many values were compared.
    ``metrics`` is the registry's metric table (name -> entry), used to leave timing out."""
    def agree(x: Any, y: Any) -> bool:
        if x is MISSING or y is MISSING:
            return x is y
        return identical(x, y) if mode == "exact" else close(x, y, rtol, atol)

    differences: list[Difference] = []
    compared = 1
    if a.status != b.status:
        differences.append(Difference(a.run_id, a.label, "status", a.status, b.status))
    names = [n for n in dict.fromkeys([*a.metrics, *b.metrics]) if not is_timing(n, metrics)]
    for name in sorted(names):
        for what, x, y in _leaves(name, a.metrics.get(name, MISSING),
                                  b.metrics.get(name, MISSING)):
            compared += 1
            if not agree(x, y):
                differences.append(Difference(a.run_id, a.label, what, x, y, (1, 0, name)))
    if len(a.curve) != len(b.curve):
        differences.append(Difference(a.run_id, a.label, "curve points", len(a.curve),
                                      len(b.curve), (2, 0, "")))
    for index, (point_a, point_b) in enumerate(zip(a.curve, b.curve, strict=False)):
        keys = dict.fromkeys([*point_a, *point_b])
        for key in (k for k in keys if not is_timing(k, metrics)):
            for what, x, y in _leaves(f"curve[{index}].{key}", point_a.get(key, MISSING),
                                      point_b.get(key, MISSING)):
                compared += 1
                if not agree(x, y):
                    differences.append(Difference(a.run_id, a.label, what, x, y,
                                                  (3, index, key)))
    return differences, compared


def _leaves(what: str, a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """Pairs to compare one by one: two lists of one length element by element (``name[i]``;
    list-valued metrics such as a gradient profile), so a difference names the element and has
    numbers; anything else (lists of different lengths included) as one value."""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [leaf for i, (x, y) in enumerate(zip(a, b, strict=True))
                for leaf in _leaves(f"{what}[{i}]", x, y)]
    return [(what, a, b)]


def _provider_change(a: RunRecord, b: RunRecord) -> str | None:
    """``cell lstm/numpy: reference_cells (rnnbench 0.2.0) in A, my_cells (my-dist 1.0) in B``
    when the records' provenance names different providers of the run's cell; None when they
    agree or either record predates provenance."""
    def provider(record: RunRecord) -> tuple[Any, Any, Any] | None:
        provenance = record.provenance
        cell = provenance.get("cell") if isinstance(provenance, dict) else None
        if not isinstance(cell, dict):
            return None
        return cell.get("plugin"), cell.get("distribution"), cell.get("version")

    pa, pb = provider(a), provider(b)
    if pa is None or pb is None or pa == pb:
        return None

    def shown(p: tuple[Any, Any, Any]) -> str:
        plugin, distribution, version = p
        return f"{plugin} ({distribution or 'local'}{f' {version}' if version else ''})"

    cell = f"{a.config.get('cell')}/{a.config.get('backend')}"
    return f"cell {cell} is provided by {shown(pa)} in A, by {shown(pb)} in B"


def compare_folders(a: Path, b: Path, registry: Any = None, mode: Mode | None = None,
                    rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                    subset: bool = False) -> Comparison:
    """Compare results folder ``a`` (the reference) with ``b`` (e.g. a re-run).

    ``registry`` (a :class:`~rnnbench.plugin_manager.Registry`, or None for the name rule
    alone) says which metrics are timing. ``mode`` None picks exact or tolerant from the two
    environments (:func:`choose_mode`); "exact" or "tolerant" forces it, and the reason says
    so. ``subset`` allows runs of A that B lacks. Raises :class:`RnnbenchError` for unreadable
    folders and negative tolerances.
    """
    if mode is not None and mode not in MODES:
        raise RnnbenchError(f"unknown comparison mode {mode!r}; use one of {MODES}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise RnnbenchError(f"{name} must be a finite number >= 0, not {value!r}")
    records_a, env_a = read_folder(a)
    records_b, env_b = read_folder(b)
    auto_mode, reason = choose_mode(env_a, env_b)
    budgets = budget_difference(records_a, env_a, records_b, env_b)
    if budgets is not None:
        reason = budgets if auto_mode == "exact" else f"{reason}; {budgets}"
        auto_mode = "tolerant"
    if mode is None:
        mode = auto_mode
    elif mode == auto_mode:
        reason = f"requested; {reason}"
    else:
        reason = f"requested, although {reason}" if mode == "exact" else f"requested ({reason})"
    metrics = getattr(registry, "metrics", None)
    comparison = Comparison(Path(a), Path(b), mode, reason, float(rtol), float(atol), subset)
    by_id_b = {record.run_id: record for record in records_b}
    ids_a = {record.run_id for record in records_a}
    for record in records_a:
        other = by_id_b.get(record.run_id)
        if other is None:
            comparison.only_in_a.append(record)
            continue
        differences, compared = compare_records(record, other, metrics, mode, rtol, atol)
        change = _provider_change(record, other)
        if change is not None and change not in comparison.provider_changes:
            comparison.provider_changes.append(change)
        comparison.matched += 1
        comparison.values_compared += compared
        comparison.differences.extend(differences)
    comparison.only_in_b = [r for r in records_b if r.run_id not in ids_a]
    comparison.differences.sort(key=lambda d: (d.label, d.run_id, d.order))
    comparison.only_in_a.sort(key=lambda r: (r.label, r.run_id))
    comparison.only_in_b.sort(key=lambda r: (r.label, r.run_id))
    return comparison
