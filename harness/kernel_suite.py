"""Kernel-benchmark suites (``kind: kernels``): time cells on a grid of (T, B, I, H).

A kernels suite is a YAML file like any suite, run with ``rnnbench run``; instead of training
runs it times each cell x point x backend x dtype (forward, backward, training step) and writes
tidy rows, the ratios between backends measured in the same run, the GEMM peak, the first call
in a fresh process, the thread budget and load, and the agreement of every backend with the
numpy reference. Example::

    kind: kernels
    name: kernels-tiny
    cells: [rnn, lstm]
    backends: [numpy, numba-cpu, torch]
    baseline: torch            # ratios: median(baseline) / median(backend), > 1 is faster
    points: [[10, 4, 8, 16], {T: 20, B: 1, I: 4, H: 8}]
    targets:
      - id: numba-train
        backend: numba-cpu
        measurement: train_step
        metric: ratio
        where: {H: ">= 8"}
        expect: ">= 1.0"

Backends are found through the plugin registry, so any registered backend (a plugin's too) can
be timed; a name that is not registered (a typo) is a problem at its line, with did-you-mean; a
registered one that is not available here (torch not installed, no GPU) is skipped with a note.
The measurement itself lives in :mod:`rnnbench.kernel_bench`, the tables in
:mod:`rnnbench.kernel_report`.
"""

from __future__ import annotations

import contextlib
import csv
import os
import statistics
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rnnbench.blas_info import forced_kernels_note
from rnnbench.cell import DTYPES, GATES
from rnnbench.claims import Expectation, parse_expect
from rnnbench.errors import RnnbenchError, SuiteError, SuiteProblem, did_you_mean
from rnnbench.kernel_bench import (
    FIRST_CALL_POINT,
    MEASUREMENTS,
    Bench,
    Point,
    agreement,
    cuda_device,
    first_call,
    flops,
    gemm_peak,
    host_inputs,
    reference_arrays,
    time_calls,
)
from rnnbench.output_dir import check_output_dir
from rnnbench.plugin_manager import PluginHost
from rnnbench.results import (
    ENVIRONMENT_FILE,
    SUITE_COPY,
    atomic_write_bytes,
    capture_environment,
    write_json,
)
from rnnbench.suite_schema import check_structure
from rnnbench.suite_yaml import SuiteDocument, SuiteProblems, read_suite
from rnnbench.threads import (
    busy_cores,
    load_average,
    resolve_threads,
    thread_budget,
    usable_cores,
)

__all__ = [
    "KERNEL_SCHEMA",
    "KernelRun",
    "KernelSuite",
    "Target",
    "is_kernel_suite",
    "load_kernel_suite",
    "run_kernel_suite",
]

KIND = "kernels"
METRICS = ("ratio", "pct_peak", "gflops", "median_s", "first_call_s")
#: What a target's ``where`` may select on; ``BH`` is B * H (the GPU's "large sizes").
SELECTOR_KEYS = ("cell", "dtype", "T", "B", "I", "H", "BH")
_POSITIVE = {"type": "integer", "minimum": 1, "maximum": 10_000_000}
_NAME = {"type": "string", "minLength": 1}
_NAMES = {"type": "array", "minItems": 1, "items": {**_NAME, "expected": "a backend name"},
          "expected": "a list of backend names, e.g. [numpy, numba-cpu, torch]"}
_POINT = {
    "if": {"type": "array"},
    "then": {"type": "array", "minItems": 4, "maxItems": 4,
             "items": {**_POSITIVE, "expected": "a positive integer"},
             "expected": "four sizes [T, B, I, H]"},
    "else": {"type": "object", "required": ["T", "B", "I", "H"], "additionalProperties": False,
             "properties": {k: {**_POSITIVE, "expected": "a positive integer"} for k in "TBIH"},
             "expected": "[T, B, I, H] or a mapping {T: 100, B: 64, I: 32, H: 128}"},
}
_SELECTOR_VALUE = {"type": ["string", "number"], "expected": 'a value or a comparison, e.g. '
                   '1000 or ">= 512"'}
_TARGET = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$",
               "expected": "an id of letters, digits, '-', '_' and '.'"},
        "target": {**_NAME, "expected": "the target as a sentence"},
        "backend": {**_NAME, "expected": "a backend name"},
        "measurement": {"enum": list(MEASUREMENTS), "expected": "one of " + ", ".join(
            MEASUREMENTS)},
        "metric": {"enum": list(METRICS), "expected": "one of " + ", ".join(METRICS)},
        "where": {
            "type": "object", "minProperties": 1,
            "propertyNames": {"enum": list(SELECTOR_KEYS),
                              "expected": "one of " + ", ".join(SELECTOR_KEYS)},
            "additionalProperties": {
                "if": {"type": "array"},
                "then": {"type": "array", "minItems": 1, "items": _SELECTOR_VALUE},
                "else": _SELECTOR_VALUE,
            },
            "expected": 'a selector, e.g. {cell: lstm, H: ">= 512"}',
            "empty": "an empty selector selects every point; leave 'where' out instead",
        },
        "expect": {**_NAME, "expected": 'a comparison in quotes, e.g. ">= 1.0"'},
    },
    "required": ["id", "backend", "metric", "expect"],
    "additionalProperties": False,
    "expected": "a mapping with id, backend, metric and expect",
}

#: The JSON Schema of a kernels suite's structure (names are checked against the registry).
KERNEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "expected": "a mapping of kernels-suite keys",
    "properties": {
        "kind": {"const": KIND, "expected": f"{KIND!r}"},
        "name": {"type": "string", "pattern": r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$",
                 "expected": "a name of letters, digits, '-', '_' and '.'"},
        "description": {"type": "string", "expected": "a string"},
        "output": {"type": "string", "minLength": 1, "expected": "a path"},
        "plugins": {"type": "array", "items": {**_NAME, "expected": "a module or .py file"},
                    "expected": "a list of plugins"},
        "device": {"enum": ["cpu", "cuda"], "expected": "cpu or cuda"},
        "cells": {"type": "array", "minItems": 1,
                  "items": {"enum": sorted(GATES), "expected": "one of " + ", ".join(
                      sorted(GATES))},
                  "expected": "a list of cells, e.g. [rnn, lstm, gru]"},
        "backends": _NAMES,
        "baseline": {**_NAME, "expected": "a backend name (one of 'backends')"},
        "reference": {**_NAME, "expected": "a backend name (default numpy)"},
        "dtype": {
            "if": {"type": "array"},
            "then": {"type": "array", "minItems": 1,
                     "items": {"enum": list(DTYPES), "expected": "one of " + ", ".join(DTYPES)}},
            "else": {"enum": list(DTYPES), "expected": "one of " + ", ".join(DTYPES)},
        },
        "points": {"type": "array", "minItems": 1, "items": _POINT,
                   "expected": "a list of points [T, B, I, H]"},
        "measurements": {"type": "array", "minItems": 1,
                         "items": {"enum": list(MEASUREMENTS),
                                   "expected": "one of " + ", ".join(MEASUREMENTS)},
                         "expected": "a list of measurements"},
        "budget": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600,
                   "expected": "seconds per measurement, > 0"},
        "warmup": {"type": "integer", "minimum": 0, "maximum": 100,
                   "expected": "an integer from 0 to 100"},
        "min_reps": {**_POSITIVE, "expected": "a positive integer"},
        "max_reps": {**_POSITIVE, "expected": "a positive integer"},
        "threads": {**_POSITIVE, "expected": "a positive integer (BLAS/OpenMP/Numba/torch "
                    "threads)"},
        "first_call": {
            "if": {"type": "array"},
            "then": _NAMES,
            "else": {"type": "boolean",
                     "expected": "true (every backend), false, or a list of backends"},
        },
        "gemm_sizes": {"type": "array", "minItems": 1,
                       "items": {**_POSITIVE, "expected": "a positive integer"},
                       "expected": "a list of square GEMM sizes, e.g. [512, 1024, 2048]"},
        "targets": {"type": "array", "items": _TARGET, "expected": "a list of targets"},
    },
    "required": ["kind", "name", "cells", "backends", "points"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Target:
    """A speed target checked on the rows: ``metric`` of ``backend`` meets ``expect`` at every
    point ``where`` selects (n/a when no row matches)."""

    id: str
    backend: str
    metric: str
    expect: Expectation
    measurement: str | None = None
    where: dict[str, list[Any]] = field(default_factory=dict)
    text: str = ""

    def selects(self, row: dict[str, Any]) -> bool:
        if row["backend"] != self.backend:
            return False
        if self.measurement is not None and row["measurement"] != self.measurement:
            return False
        for key, values in self.where.items():
            value = row["B"] * row["H"] if key == "BH" else row.get(key)
            if not any(_value_matches(value, v) for v in values):
                return False
        return True

    def sentence(self) -> str:
        if self.text:
            return self.text
        where = ", ".join(_selector_text(k, values) for k, values in self.where.items())
        what = f"{self.backend} {self.measurement or ''} {self.metric}".replace("  ", " ")
        return f"{what} {self.expect}" + (f" where {where}" if where else " at every point")


def _value_matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, Expectation):
        return isinstance(value, (int, float)) and wanted.met(float(value))
    return value == wanted


def _selector_text(key: str, values: list[Any]) -> str:
    """``cell = rnn/gru``, ``T >= 1000``."""
    return " or ".join(f"{key} {v}" if isinstance(v, Expectation) else f"{key} = {v}"
                       for v in values).replace(f" or {key} = ", "/")


@dataclass
class KernelSuite:
    """A validated kernels suite."""

    path: Path
    name: str
    cells: list[str]
    backends: list[str]
    points: list[Point]
    dtypes: list[str] = field(default_factory=lambda: ["float32"])
    measurements: list[str] = field(default_factory=lambda: list(MEASUREMENTS))
    device: str = "cpu"
    baseline: str | None = None
    reference: str = "numpy"
    budget: float = 1.0
    warmup: int = 2
    min_reps: int = 3
    max_reps: int = 200
    threads: int | None = None
    first_call: list[str] = field(default_factory=list)
    gemm_sizes: list[int] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    output: Path | None = None
    description: str = ""
    plugins: list[str] = field(default_factory=list)


KINDS = ("training", KIND)


def is_kernel_suite(doc: SuiteDocument) -> bool:
    """Whether the document says ``kind: kernels``; a ``kind`` that is neither ``training``
    (the default) nor ``kernels`` is a :class:`SuiteError` at its line."""
    kind = doc.data.get("kind", "training")
    if kind not in KINDS:
        problems = SuiteProblems(doc)
        problems.add(("kind",), f"expected one of {', '.join(KINDS)}, got {kind!r}",
                     did_you_mean(str(kind), KINDS))
        problems.raise_if_any()
    return kind == KIND


def load_kernel_suite(path: str | Path, host: PluginHost) -> KernelSuite:
    """Read a kernels suite, load the plugins it names, check it (every problem with file, line
    and field); raises :class:`SuiteError`."""
    doc = read_suite(path)
    for reference, line in doc.plugins:
        try:
            host.load_local(reference, base_dir=doc.path.parent)
        except RnnbenchError as exc:
            raise SuiteError([SuiteProblem(str(doc.path), line, "plugins", str(exc))]) from exc
    return validate_kernel_suite(doc, host.registry.backend_names)


def validate_kernel_suite(doc: SuiteDocument,
                          known: Collection[str] | None = None) -> KernelSuite:
    """Structure against :data:`KERNEL_SCHEMA`, then how the keys fit together (the baseline
    and targets name timed backends, comparisons read, reps in order). With ``known`` (the
    registry's backend names), every backend and the reference must be registered (a misspelt
    name is a problem at its line, with did-you-mean); a registered backend that is not
    available here (``torch`` not installed, ``torch-cuda`` without a GPU) is skipped with a
    note at run time instead."""
    problems = SuiteProblems(doc)
    check_structure(doc, problems, schema=KERNEL_SCHEMA)
    problems.raise_if_any()
    data = doc.data
    backends = list(dict.fromkeys(data["backends"]))
    default_sizes = [512, 1024, 2048] if data.get("device", "cpu") == "cpu" else [2048, 4096, 8192]
    suite = KernelSuite(
        path=doc.path,
        name=data["name"],
        cells=list(dict.fromkeys(data["cells"])),
        backends=backends,
        points=list(dict.fromkeys(
            tuple(p) if isinstance(p, list) else (p["T"], p["B"], p["I"], p["H"])
            for p in data["points"])),
        dtypes=list(dict.fromkeys(_as_list(data.get("dtype", "float32")))),
        measurements=[m for m in MEASUREMENTS if m in data.get("measurements", MEASUREMENTS)],
        device=data.get("device", "cpu"),
        baseline=data.get("baseline"),
        reference=data.get("reference", "numpy"),
        budget=float(data.get("budget", 1.0)),
        warmup=data.get("warmup", 2),
        min_reps=data.get("min_reps", 3),
        max_reps=data.get("max_reps", 200),
        threads=data.get("threads"),
        gemm_sizes=list(data.get("gemm_sizes", default_sizes)),
        output=Path(data["output"]) if "output" in data else None,
        description=data.get("description", ""),
        plugins=[reference for reference, _ in doc.plugins],
    )
    if known is not None:
        known = sorted(known)
        for index, name in enumerate(data["backends"]):
            if name not in known:
                problems.add(("backends", index), f"backend {name!r} is not registered",
                             did_you_mean(name, known) + _PLUGIN_HINT)
        if suite.reference not in known:
            problems.add(("reference",), f"backend {suite.reference!r} is not registered",
                         did_you_mean(suite.reference, known) + _PLUGIN_HINT)
    first = data.get("first_call", True)
    suite.first_call = backends if first is True else [] if first is False else list(first)
    if suite.baseline is not None and suite.baseline not in backends:
        problems.add(("baseline",), f"baseline {suite.baseline!r} is not one of the backends",
                     did_you_mean(suite.baseline, backends))
    if suite.min_reps > suite.max_reps:
        problems.add(("min_reps",), f"min_reps {suite.min_reps} is above max_reps "
                     f"{suite.max_reps}")
    if isinstance(first, list):
        for index, name in enumerate(first):
            if name not in backends:
                problems.add(("first_call", index), f"{name!r} is not one of the backends",
                             did_you_mean(name, backends))
    for index, raw in enumerate(data.get("targets", [])):
        target = _target(raw, index, suite, problems)
        if target is not None:
            suite.targets.append(target)
    ids = [t.id for t in suite.targets]
    for index, target in enumerate(suite.targets):
        if ids.index(target.id) != index:
            problems.add(("targets", index, "id"), f"duplicate target id {target.id!r}")
    problems.raise_if_any()
    return suite


_PLUGIN_HINT = "; a plugin's backend needs its plugin installed or named under plugins:"


def _target(raw: dict[str, Any], index: int, suite: KernelSuite,
            problems: SuiteProblems) -> Target | None:
    path = ("targets", index)
    ok = True
    if raw["backend"] not in suite.backends:
        problems.add((*path, "backend"), f"{raw['backend']!r} is not one of the backends",
                     did_you_mean(raw["backend"], suite.backends))
        ok = False
    metric = raw["metric"]
    if metric == "ratio" and suite.baseline is None:
        problems.add((*path, "metric"), "a ratio target needs a baseline",
                     "add e.g. 'baseline: torch' to the suite")
        ok = False
    if metric != "first_call_s" and "measurement" not in raw:
        problems.add(path, f"a {metric} target needs a measurement",
                     "e.g. measurement: train_step")
        ok = False
    try:
        expect = parse_expect(raw["expect"])
    except ValueError as exc:
        problems.add((*path, "expect"), str(exc))
        ok = False
    if metric == "first_call_s":
        # A first call is one forward + backward at a fixed small point in a fresh process.
        if "measurement" in raw:
            problems.add((*path, "measurement"), "a first_call_s target names no measurement "
                         "(the first call is one forward + backward in a fresh process)",
                         "leave 'measurement' out")
            ok = False
        sizes = [k for k in raw.get("where", {}) if k not in ("cell", "dtype")]
        if sizes:
            problems.add((*path, "where", sizes[0]), f"a first_call_s target cannot select on "
                         f"{', '.join(sizes)}: the first call is timed at one fixed point "
                         f"{FIRST_CALL_POINT}, not at the suite's points",
                         "select on cell or dtype only")
            ok = False
    choices = {"cell": suite.cells, "dtype": suite.dtypes}
    where: dict[str, list[Any]] = {}
    for key, value in raw.get("where", {}).items():
        values = []
        for position, item in enumerate(_as_list(value)):
            spot = (*path, "where", key) + ((position,) if isinstance(value, list) else ())
            if key in choices:
                if str(item) not in choices[key]:
                    problems.add(spot, f"{key} {item!r} is not one of the suite's {key}s "
                                 f"({', '.join(choices[key])})",
                                 did_you_mean(str(item), choices[key]))
                    ok = False
                item = str(item)
            elif isinstance(item, str):
                try:
                    item = float(item) if _is_number(item) else parse_expect(item)
                except ValueError as exc:
                    problems.add(spot, str(exc))
                    ok = False
            values.append(item)
        where[key] = values
    if not ok:
        return None
    return Target(raw["id"], raw["backend"], metric, expect, raw.get("measurement"), where,
                  raw.get("target", ""))


def _is_number(text: str) -> bool:
    """``"2"``, ``" 512 "``, ``"1e3"``: a quoted number selects that value."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


# --- running ------------------------------------------------------------------------------------


@dataclass
class KernelRun:
    """What a kernels suite measured, as written to its results folder."""

    suite: KernelSuite
    output_dir: Path
    rows: list[dict[str, Any]]
    ratios: list[dict[str, Any]]
    targets: list[dict[str, Any]]
    notes: list[str]
    errors: list[dict[str, Any]]
    gemm: dict[str, Any]
    threads: dict[str, Any]
    environment: dict[str, Any]
    #: Why the run stopped before the end (Ctrl-C, an exception), or None for a complete run.
    interrupted: str | None = None

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def run_kernel_suite(path: str | Path, host: PluginHost, output_dir: str | Path | None = None,
                     threads: int | None = None, force: bool = False,
                     log: Callable[[str], None] = lambda message: None) -> KernelRun:
    """Run a kernels suite and write its results folder (``results.md``, ``kernels.csv``,
    ``ratios.csv``, ``results.json``, ``environment.json`` and the suite copy).

    The previous run's tables are kept as ``*.previous-<UTC time>.*``; each row is appended to
    ``kernels.csv`` as it is measured, and an interrupted run (Ctrl-C, a crash) still writes its
    tables, with ``results.md`` saying so, before the exception goes on."""
    from rnnbench.kernel_report import TABLE_FILES, write_kernel_tables

    suite = load_kernel_suite(path, host)
    out_dir = Path(output_dir) if output_dir is not None else (
        suite.output or Path("results") / suite.name)
    output = check_output_dir(out_dir, suite.path, force=force,
                              run_files=(ENVIRONMENT_FILE, SUITE_COPY), kind=KIND,
                              suite_name=suite.name)
    environment = capture_environment(plugins=host.environment_plugins())
    if suite.device == "cuda":
        environment["gpu"] = cuda_device()
    budget = resolve_threads(threads if threads is not None else suite.threads)
    notes: list[str] = []
    if suite.device == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        notes.append("Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) runs numba-cuda on the CPU: "
                     "its times say nothing about a GPU")
    free = usable_cores() - busy_cores(usable_cores())
    if budget > free:
        notes.append(f"the thread budget {budget} is above the {free} cores free of other work "
                     "(load average): timings are oversubscribed, compare backends only by their "
                     "ratios, or re-run on an idle machine")
    blas_note = forced_kernels_note()
    if blas_note:
        notes.append(blas_note)
    benches = _available(suite, host, notes)
    reference_cells = _reference_cells(suite, host, notes)
    for note in notes:
        log(f"note: {note}")
    thread_info: dict[str, Any] = {"budget": budget, "usable_cores": usable_cores(),
                                   "busy_cores_before": busy_cores(usable_cores()),
                                   "load_average_before": load_average()}
    out_dir.mkdir(parents=True, exist_ok=True)
    kept = _keep_previous(out_dir, output.owned, TABLE_FILES)
    atomic_write_bytes(out_dir / SUITE_COPY, suite.path.read_bytes())
    output.claim(SUITE_COPY, *kept)
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    gemm: dict[str, Any] = {"source": None, "sizes": {}, "peak_gflops": None,
                            "absent": "the run stopped before it was measured"}
    progress = _RowLog(out_dir / ROWS_FILE, suite.device, budget)
    output.claim(ROWS_FILE)
    interrupted: str | None = None
    try:
        torch_context = _TorchThreads(budget, benches, suite.device)
        with thread_budget(budget) as blas_threads, torch_context as torch_threads:
            thread_info.update({"blas": blas_threads, "torch": torch_threads,
                                "numba": _numba_threads()})
            log(f"GEMM peak ({suite.device}, sizes {suite.gemm_sizes})...")
            gemm = _gemm_peaks(suite)
            _measure(suite, host, benches, reference_cells, log, rows, errors, progress)
            _gemm_again(suite, gemm)  # again after: the load may have changed meanwhile
        thread_info["load_average_after"] = load_average()
        # The fresh process loads the same local plugins (-p and the suite's), as absolute paths.
        plugins = list(dict.fromkeys(host.local_references))
        for cell in suite.cells:
            for backend in suite.first_call:
                if (cell, backend) not in benches:
                    continue
                for dtype in suite.dtypes:
                    log(f"first call of {cell}/{backend} in a fresh process (twice)...")
                    call = first_call(cell, backend, dtype, plugins, threads=budget)
                    row = _first_call_row(cell, backend, dtype, call)
                    rows.append(row)
                    progress.add(row)
    except BaseException as exc:
        interrupted = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else \
            f"stopped by {type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            _finish(suite, out_dir, rows, errors, notes, gemm, thread_info, environment, output,
                    interrupted, write_kernel_tables)
        raise
    finally:
        progress.close()
    return _finish(suite, out_dir, rows, errors, notes, gemm, thread_info, environment, output,
                   interrupted, write_kernel_tables)


#: The rows as they are measured (a Ctrl-C or a crash keeps them); kernels.csv at the end.
ROWS_FILE = "kernels.partial.csv"


class _RowLog:
    """Appends each row to ``kernels.partial.csv`` as it is measured (flushed), so an
    interrupted run keeps what it measured; removed when the run's tables are written."""

    def __init__(self, path: Path, device: str, threads: int) -> None:
        from rnnbench.kernel_report import ROW_COLUMNS

        self.path, self.device, self.threads = path, device, threads
        self.handle = open(path, "w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.handle, fieldnames=ROW_COLUMNS, lineterminator="\n",
                                     extrasaction="ignore")
        self.writer.writeheader()
        self.handle.flush()

    def add(self, row: dict[str, Any]) -> None:
        row.update(device=self.device, threads=self.threads)
        self.writer.writerow({k: "" if v is None else v for k, v in row.items()})
        self.handle.flush()

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.close()


def _finish(suite: KernelSuite, out_dir: Path, rows: list[dict[str, Any]],
            errors: list[dict[str, Any]], notes: list[str], gemm: dict[str, Any],
            thread_info: dict[str, Any], environment: dict[str, Any], output: Any,
            interrupted: str | None, write: Callable[[KernelRun], list[Path]]) -> KernelRun:
    _add_derived(rows, gemm, suite.baseline)
    for row in rows:
        row.update(device=suite.device, threads=thread_info["budget"])
    run = KernelRun(suite, out_dir, rows, _ratios(rows, suite.baseline),
                    check_targets(suite.targets, rows), notes, errors, gemm, thread_info,
                    environment, interrupted)
    write_json(out_dir / ENVIRONMENT_FILE, {**environment, "execution": thread_info})
    written = write(run)
    (out_dir / ROWS_FILE).unlink(missing_ok=True)  # kernels.csv now holds every row
    output.owned.discard(ROWS_FILE)
    output.claim(SUITE_COPY, ENVIRONMENT_FILE, *(p.name for p in written))
    return run


def _keep_previous(out_dir: Path, owned: set[str], names: Sequence[str]) -> list[str]:
    """Move the previous run's tables aside as ``NAME.previous-<UTC time>.EXT`` (never over an
    earlier one); returns the new names."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = []
    for name in names:
        source = out_dir / name
        if name not in owned or not source.is_file():
            continue
        stem, dot, ext = name.partition(".")
        target = out_dir / f"{stem}.previous-{stamp}{dot}{ext}"
        number = 1
        while target.exists():
            number += 1
            target = out_dir / f"{stem}.previous-{stamp}-{number}{dot}{ext}"
        os.replace(source, target)
        kept.append(target.name)
    return kept


def _gemm_peaks(suite: KernelSuite) -> dict[str, Any]:
    """The float32 GEMM peak, and each other dtype's (``by_dtype``) measured in the same run,
    so a float64 row's % peak is of a float64 GEMM."""
    gemm = gemm_peak(suite.device, suite.budget, suite.gemm_sizes)
    gemm["by_dtype"] = {"float32": gemm["peak_gflops"]}
    for dtype in suite.dtypes:
        if dtype != "float32":
            other = gemm_peak(suite.device, suite.budget, suite.gemm_sizes, dtype)
            gemm.setdefault("other_dtypes", {})[dtype] = other
            gemm["by_dtype"][dtype] = other["peak_gflops"]
    return gemm


def _gemm_again(suite: KernelSuite, gemm: dict[str, Any]) -> None:
    if gemm["peak_gflops"] is None:
        return
    after = gemm_peak(suite.device, suite.budget, suite.gemm_sizes)
    gemm["peak_gflops_before"] = gemm["peak_gflops"]
    gemm["peak_gflops_after"] = after["peak_gflops"]
    gemm["peak_gflops"] = max(gemm["peak_gflops"], after["peak_gflops"])
    gemm["sizes"] = {n: max(v, after["sizes"][n]) for n, v in gemm["sizes"].items()}
    gemm["by_dtype"]["float32"] = gemm["peak_gflops"]
    for dtype, other in gemm.get("other_dtypes", {}).items():
        if other["peak_gflops"] is not None:
            again = gemm_peak(suite.device, suite.budget, suite.gemm_sizes, dtype)
            other["peak_gflops"] = max(other["peak_gflops"], again["peak_gflops"])
            gemm["by_dtype"][dtype] = other["peak_gflops"]


def _available(suite: KernelSuite, host: PluginHost, notes: list[str]) -> dict[tuple[str, str],
                                                                              Callable[..., Any]]:
    """(cell, backend) -> factory of each pair that can run here; a note for each that cannot."""
    registry = host.registry
    known = registry.backend_names
    found = {}
    for backend in suite.backends:
        if backend not in known:
            hint = did_you_mean(backend, known)
            notes.append(f"backend {backend!r} skipped: not registered ({hint}; is the plugin "
                         "that provides it installed?)")
            continue
        for cell in suite.cells:
            entry = registry.cells.get((cell, backend))
            if entry is None:
                notes.append(f"{cell}/{backend} skipped: {backend} has no {cell}")
                continue
            reason = entry.unavailable_reason()
            if reason is not None:
                notes.append(f"{cell}/{backend} skipped: {reason}")
                continue
            found[(cell, backend)] = entry.factory
    return found


def _reference_cells(suite: KernelSuite, host: PluginHost, notes: list[str]) -> set[str]:
    """The cells whose reference backend can run here; one note when it cannot (not
    registered, or registered but unavailable: ``reference: torch-cuda`` on a CPU machine), and
    the run goes on without the agreement check."""
    registry = host.registry
    usable: set[str] = set()
    reasons: list[str] = []
    for cell in suite.cells:
        entry = registry.cells.get((cell, suite.reference))
        if entry is None:
            reasons.append(f"not registered for {cell}" if suite.reference in
                           registry.backend_names else "not registered")
            continue
        reason = entry.unavailable_reason()
        if reason is not None:
            reasons.append(reason)
            continue
        usable.add(cell)
    if reasons:
        why = "; ".join(dict.fromkeys(reasons))
        scope = "" if not usable else f" for {', '.join(c for c in suite.cells if c not in usable)}"
        notes.append(f"reference {suite.reference} unavailable ({why}): no agreement check{scope}")
    return usable


class _TorchThreads:
    """Set torch's intra-op threads to the budget while timing, when a torch backend is timed
    (torch keeps its own pool, which threadpoolctl does not see); on CUDA, cuDNN's RNNs in IEEE
    float32 rather than TF32 (PyTorch's default for them)."""

    def __init__(self, budget: int, benches: dict[tuple[str, str], Any], device: str) -> None:
        self.budget = budget
        self.device = device
        self.precision: str | None = None
        self.wanted = any("torch" in backend for _, backend in benches)
        self.before: int | None = None

    def __enter__(self) -> int | None:
        if not self.wanted:
            return None
        try:
            import torch
        except Exception:
            return None
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.budget)
        rnn = getattr(torch.backends.cudnn, "rnn", None)
        if self.device == "cuda" and hasattr(rnn, "fp32_precision"):  # torch >= 2.9
            self.precision = rnn.fp32_precision
            rnn.fp32_precision = "ieee"  # cuDNN's RNNs in IEEE float32, our kernels' arithmetic
        return int(torch.get_num_threads())

    def __exit__(self, *exc: object) -> None:
        if self.before is not None:
            import torch

            torch.set_num_threads(self.before)
            if self.precision is not None:
                torch.backends.cudnn.rnn.fp32_precision = self.precision


def _numba_threads() -> int | None:
    try:
        import numba

        return int(numba.get_num_threads())
    except Exception:
        return None


def _measure(suite: KernelSuite, host: PluginHost, benches: dict[tuple[str, str], Any],
             reference_cells: set[str], log: Callable[[str], None], rows: list[dict[str, Any]],
             errors: list[dict[str, Any]], progress: _RowLog) -> None:
    warmup = suite.warmup
    if suite.device == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        warmup = min(warmup, 1)  # the simulator compiles nothing, and is slow
    reference = host.registry.cells
    for dtype in suite.dtypes:
        for cell in suite.cells:
            timed = [b for b in suite.backends if (cell, b) in benches]
            for point in suite.points:
                data = host_inputs(cell, point, dtype)
                want: dict[str, Any] = {}
                if cell in reference_cells:
                    try:
                        want = reference_arrays(Bench(
                            reference[(cell, suite.reference)].factory, suite.reference, data))
                    except Exception as exc:
                        errors.append(_error(cell, point, dtype, suite.reference, "reference",
                                             exc))
                for backend in timed:
                    try:
                        bench = Bench(benches[(cell, backend)], backend, data)
                    except Exception as exc:
                        errors.append(_error(cell, point, dtype, backend, "setup", exc))
                        log(f"  {cell} {point} {backend}: setup failed: {exc!r}")
                        continue
                    for measurement in suite.measurements:
                        try:
                            fn, prepare = bench.call(measurement)
                            timing = time_calls(fn, suite.budget, warmup=warmup,
                                                min_reps=suite.min_reps, max_reps=suite.max_reps,
                                                sync=bench.sync, prepare=prepare)
                            got = bench.to_host(measurement, timing.last) if warmup else None
                        except Exception as exc:
                            errors.append(_error(cell, point, dtype, backend, measurement, exc))
                            log(f"  {cell} {point} {backend} {measurement}: failed: {exc!r}")
                            continue
                        row = _row(cell, point, dtype, backend, measurement, timing.times)
                        if got is not None and measurement in want:
                            row["rel_diff"] = agreement(got, want[measurement])
                        rows.append(row)
                        progress.add(row)
                        log(f"  {cell:4s} T={point[0]:<4d} B={point[1]:<3d} I={point[2]:<4d} "
                            f"H={point[3]:<4d} {backend:10s} {measurement:10s} "
                            f"{row['median_s'] * 1e3:10.3f} ms {row['gflops']:8.2f} GFLOP/s")
                    del bench  # free its (device) arrays before the next one allocates


def _row(cell: str, point: Point, dtype: str, backend: str, measurement: str,
         times: Sequence[float]) -> dict[str, Any]:
    median = statistics.median(times)
    work = flops(cell, point, measurement)
    return {"cell": cell, "T": point[0], "B": point[1], "I": point[2], "H": point[3],
            "dtype": dtype, "backend": backend, "measurement": measurement,
            "median_s": median, "min_s": min(times), "max_s": max(times), "reps": len(times),
            "flops": work, "gflops": work / median / 1e9, "pct_peak": None, "ratio": None,
            "rel_diff": None, "first_call_s": None, "error": None}


def _first_call_row(cell: str, backend: str, dtype: str, call: dict[str, Any]
                    ) -> dict[str, Any]:
    point = FIRST_CALL_POINT
    seconds = call.get("first_call_s")
    return {"cell": cell, "T": point[0], "B": point[1], "I": point[2], "H": point[3],
            "dtype": dtype, "backend": backend, "measurement": "first_call",
            "median_s": seconds, "min_s": seconds, "max_s": seconds, "reps": 1,
            "flops": None, "gflops": None, "pct_peak": None, "ratio": None, "rel_diff": None,
            "first_call_s": seconds, "setup_s": call.get("setup_s"),
            "process_s": call.get("process_s"), "error": call.get("error")}


def _error(cell: str, point: Point, dtype: str, backend: str, what: str,
           exc: Exception) -> dict[str, Any]:
    return {"cell": cell, "T": point[0], "B": point[1], "I": point[2], "H": point[3],
            "dtype": dtype, "backend": backend, "measurement": what,
            "error": f"{type(exc).__name__}: {exc}"}


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["cell"], row["T"], row["B"], row["I"], row["H"], row["dtype"],
            row["measurement"])


def _add_derived(rows: list[dict[str, Any]], gemm: dict[str, Any],
                 baseline: str | None) -> None:
    """% of the GEMM peak of the row's dtype, and the ratio to the baseline measured in the
    same run: median(baseline) / median(backend), above 1 when the backend is faster."""
    medians = {(*_key(r), r["backend"]): r["median_s"] for r in rows}
    for row in rows:
        peak = gemm.get("by_dtype", {}).get(row["dtype"], gemm.get("peak_gflops")
                                            if row["dtype"] == "float32" else None)
        if row["gflops"] is not None and peak:
            row["pct_peak"] = 100.0 * row["gflops"] / peak
        base = medians.get((*_key(row), baseline)) if baseline else None
        if base is not None and row["median_s"]:
            row["ratio"] = base / row["median_s"]


def _ratios(rows: list[dict[str, Any]], baseline: str | None) -> list[dict[str, Any]]:
    """One row per backend x point x measurement that has a ratio to the baseline."""
    return [{**{k: r[k] for k in ("cell", "T", "B", "I", "H", "dtype", "measurement",
                                  "backend")},
             "baseline": baseline, "ratio": r["ratio"]}
            for r in rows if r["ratio"] is not None and r["backend"] != baseline]


def check_targets(targets: Sequence[Target], rows: Sequence[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """Each target: met (at every selected row), not met (naming the worst), or n/a (no row)."""
    results = []
    for target in targets:
        values = [(r.get(target.metric), r) for r in rows if target.selects(r)
                  and (target.metric != "first_call_s" or r["measurement"] == "first_call")]
        values = [(v, r) for v, r in values if isinstance(v, (int, float))]
        if not values:
            status, detail = "n/a", "no measured row matches (backend or baseline skipped, or "\
                "no such point)"
        else:
            failing = [(v, r) for v, r in values if not target.expect.met(float(v))]
            status = "not met" if failing else "met"
            shown = failing or values
            worst = min(shown, key=lambda vr: vr[0]) if target.expect.op in (">", ">=") else \
                max(shown, key=lambda vr: vr[0])
            detail = (f"{len(values) - len(failing)} of {len(values)} rows meet it; "
                      f"{'worst' if failing else 'closest'}: {worst[0]:.3g} at {_where(worst[1])}")
        results.append({"id": target.id, "target": target.sentence(), "status": status,
                        "detail": detail})
    return results


def _where(row: dict[str, Any]) -> str:
    return (f"{row['cell']} {row['measurement']} (T={row['T']}, B={row['B']}, I={row['I']}, "
            f"H={row['H']})")
