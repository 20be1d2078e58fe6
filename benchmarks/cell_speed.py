"""Cell speed benchmark: how fast each CPU implementation of rnn/lstm/gru runs, next to PyTorch.

What is measured. For each cell (rnn, lstm, gru) and grid point (T, B, I, H) — one layer, with
bias, ``--dtype`` (float32 by default) — every available implementation is timed:

- each registered CPU backend of the cell (found through ``build_host()``, so a new backend such
  as ``numba-cpu`` appears as soon as it is registered; backends whose name contains "cuda" and
  backends reporting themselves unavailable are skipped);
- PyTorch's ``nn.RNN(tanh)`` / ``nn.LSTM`` / ``nn.GRU`` on the CPU when ``import torch`` works
  (and not ``--no-torch``), with ``torch.set_num_threads`` set to our thread count and our
  parameter values copied into the module by name, so every implementation computes the same
  function of the same numbers.

Two measurements per implementation:

- **forward**: the whole sequence from a random initial state (torch under ``no_grad``);
- **train step**: forward, then the full backward pass for a fixed random dLoss/d outputs
  (``backward(params, cache, dY, None)``; for torch ``out.backward(dY)`` with ``x`` and ``h0``
  requiring gradients, so torch also computes input and initial-state gradients as ours do).

Inputs are prepared outside the timed region. Each measurement is warmed up (2 calls, which also
trigger any JIT compilation), then repeated until ``--budget`` seconds have passed (at least 3,
at most 200 reps); the MEDIAN is reported.

How to read it. ``GFLOP/s`` counts only the matrix products: forward = 2·T·B·G·H·(I+H) with G =
1/4/3 gates for rnn/lstm/gru; train step = 3 × forward (the forward products, plus per weight the
product giving the input/hidden gradient and the one giving the weight gradient). Element-wise
work is not counted, so small H understates the work done. ``% peak`` compares with the best
float32 numpy ``a @ b`` rate over square sizes 512/1024/2048, measured in the same run.
``X vs Y`` is median(Y) / median(X) from this run: above 1 means X is faster. The Markdown ends
with computed checks of the numba-cpu performance targets. A separate subprocess measures the
first forward+backward of each numba backend in a fresh process (run twice, the second reported,
so a compile cache populated by the first run is in use).

Usage::

    python benchmarks/cell_speed.py [-o results/cell_speed] [--backends numba-cpu,numpy]
        [--cells rnn,lstm,gru] [--dtype float32] [--grid default|quick] [--budget SECONDS]
        [--no-torch] [--no-first-call] [-p PLUGIN_MODULE_OR_FILE ...]

Writes ``cell_speed.json``, ``cell_speed.csv`` and ``cell_speed.md`` under the output folder and
prints the Markdown.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.cell import DTYPES, GATES, CellConfig, init_uniform, param_shapes
from harness.plugins import Registry, build_host
from harness.results import atomic_write_text, capture_environment, format_value, write_json

PROJECT_DIR = Path(__file__).resolve().parent.parent

#: Grid points (T, B, I, H).
GRIDS: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "default": (
        (100, 64, 32, 128),
        (100, 64, 128, 256),
        (100, 64, 256, 512),
        (50, 16, 64, 1024),
        (1000, 1, 16, 64),
        (25, 256, 128, 256),
    ),
    "quick": ((10, 4, 8, 16), (20, 1, 4, 8)),
}
CELLS = ("rnn", "lstm", "gru")
MEASUREMENTS = ("forward", "train_step")
MEASUREMENT_TITLES = {"forward": "Forward", "train_step": "Train step (forward + backward)"}
REFERENCE = "numpy"  # the registered reference backend
TORCH = "torch"  # how PyTorch's nn modules are labelled
TARGET = "numba-cpu"  # the backend the targets section checks
WARMUP = 2
MIN_REPS = 3
MAX_REPS = 200
GEMM_SIZES = (512, 1024, 2048)
LONG_POINT = (1000, 1, 16, 64)
FLOP_MODEL = (
    "Only matrix products are counted: forward = 2*T*B*G*H*(I+H) with G = 1 (rnn), 4 (lstm), "
    "3 (gru); train step = 3 x forward (forward products, plus per weight the input/hidden "
    "gradient product and the weight gradient product)."
)

Point = tuple[int, int, int, int]


# --- FLOPs and timing --------------------------------------------------------------------------


def flops(cell: str, point: Point, measurement: str) -> int:
    """Matrix-product FLOPs of one call (see FLOP_MODEL)."""
    t, b, i, h = point
    forward = 2 * t * b * GATES[cell] * h * (i + h)
    return forward if measurement == "forward" else 3 * forward


def time_calls(
    fn: Callable[[], Any],
    budget: float,
    warmup: int = WARMUP,
    min_reps: int = MIN_REPS,
    max_reps: int = MAX_REPS,
) -> tuple[list[float], Any]:
    """Call ``fn`` ``warmup`` times untimed, then time it until ``budget`` seconds have passed
    (at least ``min_reps``, at most ``max_reps`` calls). Returns the times and what the last
    warm-up call returned (for correctness checks outside the timed region)."""
    result = None
    for _ in range(warmup):
        result = fn()
    times: list[float] = []
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(times) < max_reps:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if len(times) >= min_reps and time.perf_counter() - start >= budget:
                break
    finally:
        if was_enabled:
            gc.enable()
    return times, result


def measure_gemm_peak(budget: float, dtype: str = "float32",
                      sizes: Sequence[int] = GEMM_SIZES) -> dict[str, Any]:
    """The best numpy ``a @ b`` GFLOP/s over square ``sizes`` (median of reps per size)."""
    rng = np.random.default_rng(0)
    per_size = {}
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        times, _ = time_calls(lambda a=a, b=b: a @ b, budget, max_reps=50)
        median = statistics.median(times)
        per_size[str(n)] = {"median_s": median, "reps": len(times),
                            "gflops": 2 * n**3 / median / 1e9}
    peak = max(entry["gflops"] for entry in per_size.values())
    return {"dtype": dtype, "sizes": per_size, "peak_gflops": peak}


# --- environment ---------------------------------------------------------------------------------


def our_thread_count() -> int:
    """Threads our backends use: numba's thread count, else the CPU count."""
    try:
        import numba

        return int(numba.get_num_threads())
    except Exception:
        return os.cpu_count() or 1


def thread_info() -> dict[str, Any]:
    info: dict[str, Any] = {"ours": our_thread_count(), "cpu_count": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["affinity"] = len(os.sched_getaffinity(0))
    try:
        import numba

        info["numba"] = int(numba.get_num_threads())
        info["numba_threading_layer_config"] = str(numba.config.THREADING_LAYER)
    except Exception:
        pass
    info["env"] = {
        var: os.environ.get(var)
        for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")
    }
    return info


def blas_info() -> dict[str, Any]:
    """numpy's BLAS thread pools (via threadpoolctl when installed)."""
    try:
        import threadpoolctl
    except ImportError:
        return {
            "source": "threadpoolctl not installed",
            "cpu_count": os.cpu_count(),
            "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        }
    pools = [
        {k: pool.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                   "threading_layer", "architecture")}
        for pool in threadpoolctl.threadpool_info()
    ]
    return {"source": "threadpoolctl", "pools": pools}


def import_torch(no_torch: bool) -> tuple[Any, str | None]:
    """``(torch module, None)`` or ``(None, why not)``."""
    if no_torch:
        return None, "--no-torch"
    try:
        import torch
    except Exception as exc:
        return None, f"import torch failed: {type(exc).__name__}: {exc}"
    return torch, None


# --- implementations -----------------------------------------------------------------------------


def host_inputs(cell: str, point: Point, dtype: str, seed: int = 0) -> dict[str, Any]:
    """Parameters, input, random initial state and dLoss/d outputs, as host numpy arrays.

    The parameters are our ``init_params``: PyTorch's initialisation through
    :func:`harness.cell.init_uniform`, identical on every backend for the same seed.
    """
    t, b, i, h = point
    config = CellConfig(input_size=i, hidden_size=h, num_layers=1, bias=True, dtype=dtype)
    rng = np.random.default_rng(seed)
    params = init_uniform(param_shapes(GATES[cell], config), config, rng)
    state_size = 2 if cell == "lstm" else 1
    return {
        "config": config,
        "params": params,
        "x": rng.standard_normal((t, b, i)).astype(dtype),
        "state": tuple(rng.uniform(-1, 1, (1, b, h)).astype(dtype) for _ in range(state_size)),
        "d_outputs": rng.standard_normal((t, b, h)).astype(dtype),
    }


class RegistryImplementation:
    """One registered backend's cell on prepared backend arrays."""

    def __init__(self, factory: Callable[..., Any], data: dict[str, Any]) -> None:
        cell = factory(data["config"])
        self.cell = cell
        self.params = {k: cell.to_backend(v) for k, v in data["params"].items()}
        self.x = cell.to_backend(data["x"])
        self.state = tuple(cell.to_backend(s) for s in data["state"])
        self.d_outputs = cell.to_backend(data["d_outputs"])

    def forward(self) -> Any:
        return self.cell.forward(self.params, self.x, self.state)

    def train_step(self) -> Any:
        result = self.cell.forward(self.params, self.x, self.state)
        return self.cell.backward(self.params, result.cache, self.d_outputs, None)

    def outputs(self, result: Any) -> np.ndarray:
        return np.asarray(self.cell.to_host(result.outputs))

    def grads(self, result: Any) -> dict[str, np.ndarray]:
        return {k: np.asarray(self.cell.to_host(v)) for k, v in result.param_grads.items()}


class TorchImplementation:
    """PyTorch's nn.RNN(tanh) / nn.LSTM / nn.GRU with our parameter values."""

    MODULES: ClassVar[dict[str, str]] = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}

    def __init__(self, torch: Any, cell: str, data: dict[str, Any]) -> None:
        self.torch = torch
        config: CellConfig = data["config"]
        dtype = getattr(torch, config.dtype)
        kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        module = getattr(torch.nn, self.MODULES[cell])(
            config.input_size, config.hidden_size, num_layers=1, bias=True, **kwargs
        ).to(dtype)
        with torch.no_grad():
            names = {name for name, _ in module.named_parameters()}
            if names != set(data["params"]):
                raise ValueError(f"torch parameter names {sorted(names)} differ from ours "
                                 f"{sorted(data['params'])}")
            for name, p in module.named_parameters():
                p.copy_(torch.from_numpy(data["params"][name]))
        self.module = module
        # x and the initial state need gradients: our backward computes d_inputs and
        # d_initial_state, so torch must do the same work.
        self.x = torch.from_numpy(data["x"].copy()).requires_grad_(True)
        self.state = [torch.from_numpy(s.copy()).requires_grad_(True) for s in data["state"]]
        self.h0 = self.state[0] if cell != "lstm" else tuple(self.state)
        self.d_outputs = torch.from_numpy(data["d_outputs"].copy())

    def forward(self) -> Any:
        with self.torch.no_grad():
            out, _ = self.module(self.x, self.h0)
        return out

    def train_step(self) -> Any:
        self.module.zero_grad(set_to_none=True)
        self.x.grad = None
        for s in self.state:
            s.grad = None
        out, _ = self.module(self.x, self.h0)
        out.backward(self.d_outputs)
        return None

    def outputs(self, result: Any) -> np.ndarray:
        return result.detach().numpy()

    def grads(self, result: Any) -> dict[str, np.ndarray]:
        return {name: p.grad.detach().numpy().copy()
                for name, p in self.module.named_parameters()}


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| (0 when both are zero)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.max(np.abs(b64))) if b64.size else 0.0
    diff = float(np.max(np.abs(a64 - b64))) if b64.size else 0.0
    return diff / scale if scale > 0 else diff


def grads_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(relative_difference(a[k], b[k]) for k in b)


def select_backends(registry: Registry, cell: str, wanted: Sequence[str] | None,
                    skipped: list[dict[str, Any]]) -> list[str]:
    """The registered CPU backends of ``cell`` to time (``wanted`` ones only, when given)."""
    registered = registry.backends_of(cell)
    chosen = []
    for backend in (wanted if wanted is not None else registered):
        if "cuda" in backend:
            skipped.append({"cell": cell, "implementation": backend, "reason": "not a CPU backend"})
            continue
        if backend not in registered:
            skipped.append({"cell": cell, "implementation": backend,
                            "reason": "not registered for this cell"})
            continue
        reason = registry.cells[(cell, backend)].unavailable_reason()
        if reason is not None:
            skipped.append({"cell": cell, "implementation": backend, "reason": reason})
            continue
        chosen.append(backend)
    return chosen


# --- the benchmark -------------------------------------------------------------------------------


def run_benchmark(
    registry: Registry,
    cells: Sequence[str],
    grid: Sequence[Point],
    dtype: str,
    budget: float,
    backends: Sequence[str] | None,
    torch: Any,
    log: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Time everything; returns (rows, skipped, errors). Rows lack peak and speed-ups."""
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for cell in cells:
        chosen = select_backends(registry, cell, backends, skipped)
        if TORCH in chosen:  # the label is taken by PyTorch's nn modules
            chosen.remove(TORCH)
            skipped.append({"cell": cell, "implementation": TORCH,
                            "reason": "backend name clashes with the PyTorch nn label"})
        # The reference first, so every other implementation is compared with it.
        chosen.sort(key=lambda backend: backend != REFERENCE)
        builders: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
            (backend, lambda data, f=registry.cells[(cell, backend)].factory:
             RegistryImplementation(f, data))
            for backend in chosen
        ]
        if torch is not None:
            builders.append((TORCH, lambda data, cell=cell: TorchImplementation(torch, cell, data)))
        for point in grid:
            data = host_inputs(cell, point, dtype)
            reference: dict[str, Any] = {}
            for name, build in builders:
                try:
                    impl = build(data)
                except Exception as exc:
                    errors.append(_error(cell, point, name, "setup", exc))
                    log(f"  {cell} {point} {name}: setup failed: {exc!r}")
                    continue
                for measurement in MEASUREMENTS:
                    fn = impl.forward if measurement == "forward" else impl.train_step
                    try:
                        times, last = time_calls(fn, budget)
                        check = (impl.outputs(last) if measurement == "forward"
                                 else impl.grads(last))
                    except Exception as exc:
                        errors.append(_error(cell, point, name, measurement, exc))
                        log(f"  {cell} {point} {name} {measurement}: failed: {exc!r}")
                        continue
                    if name == REFERENCE:
                        reference[measurement] = check
                    diff = None
                    if measurement in reference:
                        diff = (relative_difference(check, reference[measurement])
                                if measurement == "forward"
                                else grads_difference(check, reference[measurement]))
                    median = statistics.median(times)
                    row = {
                        "cell": cell, "T": point[0], "B": point[1], "I": point[2], "H": point[3],
                        "implementation": name, "measurement": measurement, "dtype": dtype,
                        "reps": len(times), "median_s": median, "min_s": min(times),
                        "max_s": max(times), "flops": flops(cell, point, measurement),
                        "gflops": flops(cell, point, measurement) / median / 1e9,
                        "rel_diff_vs_numpy": diff,
                    }
                    rows.append(row)
                    log(f"  {cell:4s} T={point[0]:<4d} B={point[1]:<3d} I={point[2]:<3d} "
                        f"H={point[3]:<4d} {name:10s} {measurement:10s} "
                        f"{median * 1e3:10.3f} ms  {row['gflops']:8.2f} GFLOP/s  "
                        f"({len(times)} reps)")
    return rows, skipped, errors


def _error(cell: str, point: Point, name: str, what: str, exc: Exception) -> dict[str, Any]:
    return {"cell": cell, "T": point[0], "B": point[1], "I": point[2], "H": point[3],
            "implementation": name, "measurement": what,
            "error": f"{type(exc).__name__}: {exc}"}


def _key(row: dict[str, Any]) -> tuple:
    return (row["cell"], row["T"], row["B"], row["I"], row["H"], row["measurement"])


def add_derived(rows: list[dict[str, Any]], peak_gflops: float) -> None:
    """Add % of GEMM peak and the speed-ups vs numpy and vs torch (ratios of medians)."""
    medians = {(*_key(r), r["implementation"]): r["median_s"] for r in rows}
    for row in rows:
        row["pct_peak"] = 100.0 * row["gflops"] / peak_gflops
        for other, column in ((REFERENCE, "speedup_vs_numpy"), (TORCH, "speedup_vs_torch")):
            base = medians.get((*_key(row), other))
            row[column] = base / row["median_s"] if base is not None else None


# --- first call in a fresh process ---------------------------------------------------------------

FIRST_CALL_CODE = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from harness.cell import CellConfig
from harness.plugins import build_host
cell_name, backend, dtype = sys.argv[1:4]
host = build_host(plugins=sys.argv[4:])
entry = host.registry.cells[(cell_name, backend)]
cell = entry.factory(CellConfig(input_size=4, hidden_size=8, dtype=dtype))
rng = np.random.default_rng(0)
params = {k: cell.to_backend(v) for k, v in cell.init_params(rng).items()}
x = cell.to_backend(rng.standard_normal((5, 3, 4)).astype(dtype))
dy = cell.to_backend(rng.standard_normal((5, 3, 8)).astype(dtype))
state = cell.initial_state(3)
t1 = time.perf_counter()
result = cell.forward(params, x, state)
t2 = time.perf_counter()
cell.backward(params, result.cache, dy, None)
t3 = time.perf_counter()
print(json.dumps({"setup_s": t1 - t0, "forward_s": t2 - t1, "backward_s": t3 - t2,
                  "first_call_s": t3 - t1}))
"""


def first_call_backends(registry: Registry, cells: Sequence[str],
                        backends: Sequence[str] | None) -> list[tuple[str, str]]:
    """(cell, backend) pairs of JIT-compiled CPU backends (name contains "numba")."""
    pairs = []
    for cell in cells:
        for backend in select_backends(registry, cell, backends, []):
            if "numba" in backend:
                pairs.append((cell, backend))
    return pairs


def measure_first_call(cell: str, backend: str, dtype: str, plugins: Sequence[str] = (),
                       runs: int = 2, timeout: float = 600.0) -> dict[str, Any]:
    """Time the first forward+backward on a tiny shape in a fresh process, ``runs`` times; the
    last run is reported (earlier ones may have populated the compile cache). ``plugins`` are
    local plugins to load besides the entry-point ones, as for :func:`build_host`."""
    entry: dict[str, Any] = {"cell": cell, "implementation": backend, "runs": []}
    for _ in range(runs):
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", FIRST_CALL_CODE, cell, backend, dtype, *plugins],
                cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            entry["runs"].append({"error": f"timed out after {timeout} s"})
            continue
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            entry["runs"].append({"error": f"exit {proc.returncode}: {tail[0]}",
                                  "process_s": wall})
            continue
        try:
            run = json.loads(proc.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            entry["runs"].append({"error": f"unreadable output: {proc.stdout[-200:]!r}"})
            continue
        run["process_s"] = wall
        entry["runs"].append(run)
    last = entry["runs"][-1] if entry["runs"] else {"error": "not run"}
    entry.update({k: last.get(k) for k in ("first_call_s", "forward_s", "backward_s", "setup_s",
                                             "process_s", "error")})
    return entry


# --- targets -------------------------------------------------------------------------------------


def _point_text(row: dict[str, Any]) -> str:
    return f"{row['cell']} ({row['T']},{row['B']},{row['I']},{row['H']})"


def _status(values: list[tuple[float, dict[str, Any]]], ok: Callable[[float], bool],
            fmt: Callable[[float], str]) -> tuple[str, str]:
    worst_ok = all(ok(v) for v, _ in values)
    detail = "; ".join(f"{_point_text(r)} {fmt(v)}" for v, r in values)
    return ("met" if worst_ok else "not met"), detail


def compute_targets(rows: list[dict[str, Any]], first_calls: list[dict[str, Any]],
                    have_torch: bool) -> list[dict[str, Any]]:
    """The numba-cpu targets, each checked from the measurements: met / not met / n/a."""
    ours = [r for r in rows if r["implementation"] == TARGET]
    have_ours = bool(ours)
    targets = []

    def add(name: str, status: str, detail: str) -> None:
        targets.append({"target": name, "status": status, "detail": detail})

    # 1. train step at least as fast as torch everywhere
    name = f"{TARGET} train step >= torch at every point"
    values = [(r["speedup_vs_torch"], r) for r in ours
              if r["measurement"] == "train_step" and r["speedup_vs_torch"] is not None]
    if not have_ours or not have_torch or not values:
        add(name, "n/a", _missing(have_ours, have_torch))
    else:
        worst = min(values, key=lambda vr: vr[0])
        status = "met" if worst[0] >= 1 else "not met"
        slower = [vr for vr in values if vr[0] < 1]
        detail = f"min {worst[0]:.2f}x at {_point_text(worst[1])}"
        if slower:
            detail += f"; below 1x at {len(slower)} of {len(values)} points"
        add(name, status, detail)

    # 2. >= 10x torch at the long, batch-1 point
    name = f"{TARGET} train step >= 10x torch at (T,B,I,H) = {LONG_POINT}"
    values = [(r["speedup_vs_torch"], r) for r in ours
              if r["measurement"] == "train_step" and r["speedup_vs_torch"] is not None
              and (r["T"], r["B"], r["I"], r["H"]) == LONG_POINT]
    if not have_ours or not have_torch or not values:
        add(name, "n/a", _missing(have_ours, have_torch) or "point not in this grid")
    else:
        add(name, *_status(values, lambda v: v >= 10, lambda v: f"{v:.2f}x"))

    # 3. >= 70% of the GEMM peak at H >= 512
    for measurement in MEASUREMENTS:
        name = f"{TARGET} {measurement.replace('_', ' ')} >= 70% of GEMM peak at H >= 512"
        values = [(r["pct_peak"], r) for r in ours
                  if r["measurement"] == measurement and r["H"] >= 512]
        if not have_ours or not values:
            add(name, "n/a", _missing(have_ours, True) or "no point with H >= 512 in this grid")
        else:
            add(name, *_status(values, lambda v: v >= 70, lambda v: f"{v:.1f}%"))

    # 4. first call in a fresh process under 1 s
    name = f"{TARGET} first forward+backward in a fresh process < 1 s"
    calls = [c for c in first_calls if c["implementation"] == TARGET]
    if not calls:
        add(name, "n/a", _missing(have_ours, True) or "not measured (--no-first-call)")
    elif any(c.get("first_call_s") is None for c in calls):
        failed = [c for c in calls if c.get("first_call_s") is None]
        add(name, "not met", "; ".join(f"{c['cell']}: {c.get('error')}" for c in failed))
    else:
        ok = all(c["first_call_s"] < 1 for c in calls)
        detail = "; ".join(
            f"{c['cell']} {c['first_call_s']:.3f} s (import + registry + build "
            f"{c['setup_s']:.2f} s)" for c in calls
        )
        add(name, "met" if ok else "not met", detail)
    return targets


def _missing(have_ours: bool, have_torch: bool) -> str:
    parts = []
    if not have_ours:
        parts.append(f"{TARGET} not measured")
    if not have_torch:
        parts.append("torch not measured")
    return ", ".join(parts)


# --- reports -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "cell", "T", "B", "I", "H", "implementation", "measurement", "dtype", "reps", "median_s",
    "min_s", "max_s", "flops", "gflops", "pct_peak", "speedup_vs_numpy", "speedup_vs_torch",
    "rel_diff_vs_numpy",
)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
    return buffer.getvalue()


def implementation_order(rows: list[dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(r["implementation"] for r in rows))
    first = [n for n in (REFERENCE, TARGET) if n in names]
    last = [TORCH] if TORCH in names else []
    return first + sorted(n for n in names if n not in first and n not in last) + last


def _table(header: list[str], body: list[list[str]], right_from: int = 0,
           right_to: int | None = None) -> list[str]:
    """A Markdown table; columns ``right_from`` to ``right_to`` (exclusive) right-aligned."""
    end = len(header) if right_to is None else right_to
    align = ["---:" if right_from <= i < end else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def to_markdown(report: dict[str, Any]) -> str:
    rows = report["measurements"]
    peak = report["gemm"]["peak_gflops"]
    impls = implementation_order(rows)
    by_key = {(*_key(r), r["implementation"]): r for r in rows}
    points = list(dict.fromkeys((r["cell"], r["T"], r["B"], r["I"], r["H"]) for r in rows))
    pairs = [(a, b) for a in impls for b in (TORCH, REFERENCE)
             if a != b and b in impls and not (a == REFERENCE and b == TORCH)]
    settings = report["settings"]
    lines = [
        "# Cell speed",
        "",
        f"{settings['dtype']}, one layer, with bias; median of repeated calls after "
        f"{WARMUP} warm-up calls (budget {settings['budget_s']} s per measurement, "
        f"{MIN_REPS}-{MAX_REPS} reps). ms = median milliseconds per call.",
        "",
        f"FLOPs: {FLOP_MODEL} % peak is relative to the float32 GEMM peak below. "
        "`X vs Y` = median(Y) / median(X): above 1 means X is faster.",
    ]
    for measurement in MEASUREMENTS:
        header = ["cell", "T", "B", "I", "H", "GFLOP"]
        for impl in impls:
            header += [f"{impl} ms", f"{impl} GFLOP/s", f"{impl} % peak"]
        header += [f"{a} vs {b}" for a, b in pairs]
        body = []
        for point in points:
            key = (*point, measurement)
            present = [by_key.get((*key, impl)) for impl in impls]
            if not any(present):
                continue
            first = next(r for r in present if r)
            cells = [point[0], *(str(v) for v in point[1:]),
                     format_value(first["flops"] / 1e9, 3)]
            for row in present:
                cells += (["", "", ""] if row is None else [
                    format_value(row["median_s"] * 1e3), f"{row['gflops']:.2f}",
                    f"{row['pct_peak']:.1f}",
                ])
            for a, b in pairs:
                row = by_key.get((*key, a))
                column = "speedup_vs_torch" if b == TORCH else "speedup_vs_numpy"
                cells.append(_ratio(row[column]) if row else "")
            body.append(cells)
        lines += ["", f"## {MEASUREMENT_TITLES[measurement]}", ""]
        lines += _table(header, body, right_from=1) if body else ["(no measurements)"]

    agreement = [r for r in rows if r["rel_diff_vs_numpy"] is not None
                 and r["implementation"] != REFERENCE]
    if agreement:
        lines += ["", "## Agreement with the numpy reference", "",
                  "Largest max|Δ| / max|numpy| over all points: outputs (forward) and parameter "
                  "gradients (train step).", ""]
        body = []
        for impl in impls:
            mine = [r for r in agreement if r["implementation"] == impl]
            if mine:
                body.append([impl] + [
                    format_value(max((r["rel_diff_vs_numpy"] for r in mine
                                      if r["measurement"] == m), default=None), 3)
                    for m in MEASUREMENTS
                ])
        lines += _table(["implementation", "outputs", "gradients"], body, right_from=1)

    if report["first_call"]:
        lines += ["", "## First call in a fresh process", "",
                  "First forward + backward (T=5, B=3, I=4, H=8) in a new Python process, second "
                  "of two runs; setup = imports + plugin registry + building the cell.", ""]
        body = [[c["cell"], c["implementation"], format_value(c.get("first_call_s")),
                 format_value(c.get("setup_s")), format_value(c.get("process_s")),
                 c.get("error") or ""] for c in report["first_call"]]
        lines += _table(["cell", "implementation", "first call s", "setup s", "process s",
                         "error"], body, right_from=2, right_to=5)

    env, threads, torch_info = report["environment"], report["threads"], report["torch"]
    gemm = ", ".join(f"{n}: {v['gflops']:.1f}" for n, v in report["gemm"]["sizes"].items())
    packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items()
                         if k in ("numpy", "numba", "llvmlite", "torch"))
    torch_text = (f"torch {torch_info['version']} with {torch_info['threads']} threads"
                  if torch_info.get("version") else f"torch: {torch_info.get('absent')}")
    lines += [
        "", "## Machine", "",
        f"GEMM peak (float32 numpy `a @ b`, best median GFLOP/s over sizes): **{peak:.1f} "
        f"GFLOP/s** ({gemm}).",
        f"CPU: {env.get('cpu')}, {env.get('cpu_count')} logical CPUs; our threads: "
        f"{threads['ours']}; {torch_text}; {packages}; BLAS: {_blas_text(report['blas'])}.",
    ]

    lines += ["", "## Targets", ""]
    lines += [f"- {t['target']}: **{t['status']}**" + (f" — {t['detail']}" if t["detail"] else "")
              for t in report["targets"]]

    if report["skipped"] or report["errors"]:
        lines += ["", "## Skipped and failed", ""]
        lines += [f"- skipped {s['implementation']} for {s['cell']}: {s['reason']}"
                  for s in report["skipped"]]
        lines += [f"- FAILED {e['implementation']} {e['measurement']} at {_point_text(e)}: "
                  f"{e['error']}" for e in report["errors"]]
    return "\n".join(lines) + "\n"


def _blas_text(blas: dict[str, Any]) -> str:
    if blas.get("source") == "threadpoolctl":
        return "; ".join(f"{p.get('internal_api')} {p.get('version')} "
                         f"{p.get('num_threads')} threads" for p in blas["pools"]) or "none"
    return (f"{blas.get('source')}, cpu_count {blas.get('cpu_count')}, "
            f"NUMBA_NUM_THREADS={blas.get('NUMBA_NUM_THREADS')}, "
            f"OMP_NUM_THREADS={blas.get('OMP_NUM_THREADS')}")


# --- command line --------------------------------------------------------------------------------


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cell_speed.py",
        description="Time forward and train step of every CPU cell implementation (and PyTorch).",
    )
    parser.add_argument("-o", "--output", default="results/cell_speed",
                        help="output folder (default: results/cell_speed)")
    parser.add_argument("--backends", type=_csv_list, default=None,
                        help="comma-separated registered backends (default: every CPU backend)")
    parser.add_argument("--cells", type=_csv_list, default=list(CELLS),
                        help="comma-separated cells (default: rnn,lstm,gru)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--grid", default="default", choices=sorted(GRIDS))
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds per measurement (default 1.0; at least 3 reps)")
    parser.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    parser.add_argument("--no-first-call", action="store_true",
                        help="skip the fresh-process first-call measurement")
    parser.add_argument("-p", "--plugin", dest="plugins", action="append", default=[],
                        metavar="MODULE_OR_FILE",
                        help="also load this local plugin (module name or .py file); repeatable")
    args = parser.parse_args(argv)
    unknown = [c for c in args.cells if c not in GATES]
    if unknown:
        parser.error(f"unknown cell(s) {unknown}; choose from {sorted(GATES)}")
    if not args.budget > 0 or not math.isfinite(args.budget):
        parser.error("--budget must be a positive number of seconds")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.output)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    # Plugin files as absolute paths: the first-call subprocess runs in the project folder.
    plugins = [str(Path(p).resolve()) if p.endswith(".py") or "/" in p else p
               for p in args.plugins]
    host = build_host(plugins=plugins)
    registry = host.registry
    for plugin, reason in registry.broken.items():
        log(f"warning: plugin {plugin!r} is broken: {reason}")
    if args.backends is not None:
        known = set(registry.backend_names)
        for backend in args.backends:
            if backend not in known:
                log(f"warning: backend {backend!r} is not registered "
                    f"(registered: {', '.join(sorted(known))})")

    torch, torch_absent = import_torch(args.no_torch)
    threads = thread_info()
    torch_info: dict[str, Any] = {"absent": torch_absent}
    if torch is not None:
        torch.set_num_threads(threads["ours"])
        torch_info = {"version": torch.__version__, "threads": torch.get_num_threads(),
                      "interop_threads": torch.get_num_interop_threads()}
        threads["torch"] = torch_info["threads"]

    log(f"GEMM peak (float32, sizes {', '.join(map(str, GEMM_SIZES))})...")
    gemm = measure_gemm_peak(args.budget)
    log(f"  peak {gemm['peak_gflops']:.1f} GFLOP/s")

    grid = GRIDS[args.grid]
    rows, skipped, errors = run_benchmark(
        registry, args.cells, grid, args.dtype, args.budget, args.backends, torch, log
    )
    add_derived(rows, gemm["peak_gflops"])

    first_calls = []
    if not args.no_first_call:
        for cell, backend in first_call_backends(registry, args.cells, args.backends):
            log(f"first call of {cell}/{backend} in a fresh process (twice)...")
            first_calls.append(measure_first_call(cell, backend, args.dtype, plugins))

    report = {
        "benchmark": "cell_speed",
        "settings": {
            "grid": args.grid, "points": [list(p) for p in grid], "cells": list(args.cells),
            "backends": args.backends, "plugins": plugins, "dtype": args.dtype,
            "budget_s": args.budget,
            "warmup": WARMUP, "min_reps": MIN_REPS, "max_reps": MAX_REPS,
            "num_layers": 1, "bias": True, "statistic": "median",
        },
        "flop_model": FLOP_MODEL,
        "gemm": gemm,
        "threads": threads,
        "blas": blas_info(),
        "torch": torch_info,
        "environment": capture_environment(PROJECT_DIR),
        "registered_backends": {c: registry.backends_of(c) for c in args.cells},
        "broken_plugins": dict(registry.broken),
        "measurements": rows,
        "first_call": first_calls,
        "skipped": skipped,
        "errors": errors,
    }
    report["targets"] = compute_targets(rows, first_calls, torch is not None)
    markdown = to_markdown(report)
    write_json(out / "cell_speed.json", report)
    atomic_write_text(out / "cell_speed.csv", to_csv(rows))
    atomic_write_text(out / "cell_speed.md", markdown)
    print(markdown, end="")
    log(f"wrote {out / 'cell_speed.json'}, {out / 'cell_speed.csv'}, {out / 'cell_speed.md'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
