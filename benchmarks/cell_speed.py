"""Cell speed benchmark: how fast each implementation of rnn/lstm/gru runs, next to PyTorch.

Two devices, one machinery (grid, timing, FLOP model, tables, targets); ``--device`` picks which
implementations are timed:

- ``--device cpu`` (the default): every CPU implementation, next to PyTorch on the CPU;
- ``--device cuda``: the CUDA backends (``numba-cuda``), next to PyTorch's cuDNN modules on the
  same GPU in the same run (see "GPU mode" below).

What is measured. For each cell (rnn, lstm, gru) and grid point (T, B, I, H) — one layer, with
bias, ``--dtype`` (float32 by default) — every available implementation is timed:

- each registered backend of the cell for the device (found through ``build_host()``, so a new
  backend such as ``numba-cpu`` appears as soon as it is registered): on the CPU, backends whose
  name does not contain "cuda"; on the GPU, those whose name does. Backends reporting themselves
  unavailable are skipped;
- PyTorch's ``nn.RNN(tanh)`` / ``nn.LSTM`` / ``nn.GRU`` when ``import torch`` works (and not
  ``--no-torch``; on the GPU only when ``torch.cuda.is_available()``), with our parameter values
  copied into the module by name, so every implementation computes the same function of the
  same numbers. On the CPU ``torch.set_num_threads`` is set to our thread count.

Two measurements per implementation:

- **forward**: the whole sequence from a random initial state (torch under ``no_grad``);
- **train step**: forward, then the full backward pass for a fixed random dLoss/d outputs
  (``backward(params, cache, dY, None)``; for torch ``out.backward(dY)`` with ``x`` and ``h0``
  requiring gradients, so torch also computes input and initial-state gradients as ours do).

Inputs are prepared outside the timed region. Each measurement is warmed up (2 calls, which also
trigger any JIT compilation; 1 on Numba's CUDA simulator, which compiles nothing), then repeated
until ``--budget`` seconds have passed (at least 3, at most 200 reps); the MEDIAN is reported.
Every implementation's outputs (forward) and parameter gradients (train step) are compared with
the numpy reference's, outside the timed region.

How to read it. ``GFLOP/s`` counts only the matrix products: forward = 2·T·B·G·H·(I+H) with G =
1/4/3 gates for rnn/lstm/gru; train step = 3 × forward (the forward products, plus per weight the
product giving the input/hidden gradient and the one giving the weight gradient). Element-wise
work is not counted, so small H understates the work done. ``% peak`` compares with the best
float32 numpy ``a @ b`` rate over square sizes 512/1024/2048, measured in the same run.
``X vs Y`` is median(Y) / median(X) from this run: above 1 means X is faster. The Markdown ends
with computed checks of the numba-cpu performance targets. A separate subprocess measures the
first forward+backward of each numba backend in a fresh process (run twice, the second reported,
so a compile cache populated by the first run is in use).

GPU mode (``--device cuda``, grid ``gpu`` by default: the CPU grid plus four larger and longer
points). Parameters, inputs, initial states and dLoss/d outputs are copied to the device before
timing; every timed call is preceded and followed by a device synchronize
(``numba.cuda.synchronize()`` for our kernels, which launch asynchronously;
``torch.cuda.synchronize()`` for torch), so a time covers the call and all its kernels. Outputs
and gradients are copied back to the host once, from a warm-up call, for the agreement check.
The numpy reference runs on the CPU untimed (one forward and one backward per point). The peak is
the best float32 ``torch.matmul`` rate on the device (TF32 off) over square sizes
2048/4096/8192, measured in the same run; without torch on CUDA there is no peak and the % peak
columns are left out. Throughput is reported in TFLOP/s (same FLOP model). PyTorch's cuDNN RNNs
run in IEEE float32 (``torch.backends.cudnn.rnn.fp32_precision = "ieee"``), the arithmetic of our
kernels, unless ``--cudnn-tf32`` (PyTorch's default for cuDNN RNNs: TF32 tensor cores). The
targets: within 2x of cuDNN at the large sizes (B*H >= 64*512) and faster than cuDNN at batch 1
with long sequences (T >= 1000). On Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, no GPU)
the mode runs, very slowly: use ``--grid tiny`` or ``--grid quick``. Without a usable CUDA
backend (no GPU and no simulator) it exits with status 2 and the backend's reason.

Usage::

    python benchmarks/cell_speed.py [--device cpu|cuda] [-o results/cell_speed]
        [--backends numba-cpu,numpy] [--cells rnn,lstm,gru] [--dtype float32]
        [--grid default|quick|tiny|gpu] [--budget SECONDS] [--no-torch] [--no-first-call]
        [--cudnn-tf32] [-p PLUGIN_MODULE_OR_FILE ...]

Writes ``cell_speed.json``, ``cell_speed.csv`` and ``cell_speed.md`` under the output folder
(default ``results/cell_speed``, or ``results/cell_speed_gpu`` with ``--device cuda``) and prints
the Markdown.
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

from rnnbench.cell import DTYPES, GATES, CellConfig, init_uniform, param_shapes
from rnnbench.plugin_manager import Registry, build_host
from rnnbench.results import atomic_write_text, capture_environment, format_value, write_json

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
    # For Numba's CUDA simulator, where every GPU thread is a Python thread.
    "tiny": ((2, 1, 2, 3), (3, 2, 3, 4)),
}
#: --device cuda's default: the CPU grid plus larger and longer points.
GRIDS["gpu"] = GRIDS["default"] + (
    (100, 64, 512, 512),
    (100, 256, 1024, 1024),
    (1000, 32, 256, 256),
    (1000, 1, 64, 128),
)
CELLS = ("rnn", "lstm", "gru")
MEASUREMENTS = ("forward", "train_step")
MEASUREMENT_TITLES = {"forward": "Forward", "train_step": "Train step (forward + backward)"}
REFERENCE = "numpy"  # the registered reference backend
TORCH = "torch"  # how PyTorch's nn modules are labelled
TARGET = "numba-cpu"  # the backend the CPU targets check
DEVICES = ("cpu", "cuda")
#: Per device: the backend its targets check, the default output folder and grid.
TARGETS = {"cpu": TARGET, "cuda": "numba-cuda"}
DEFAULT_OUTPUTS = {"cpu": "results/cell_speed", "cuda": "results/cell_speed_gpu"}
DEFAULT_GRIDS = {"cpu": "default", "cuda": "gpu"}
WARMUP = 2
#: On Numba's CUDA simulator nothing is compiled: one warm-up call is enough (and it is slow).
SIMULATOR_WARMUP = 1
MIN_REPS = 3
MAX_REPS = 200
GEMM_SIZES = (512, 1024, 2048)
GPU_GEMM_SIZES = (2048, 4096, 8192)
LONG_POINT = (1000, 1, 16, 64)
#: GPU targets: the large sizes are the points with B*H at least this (64*512) ...
LARGE_BH = 64 * 512
#: ... and the long batch-1 points those with B = 1 and T at least this.
LONG_T = 1000
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
    sync: Callable[[], Any] | None = None,
) -> tuple[list[float], Any]:
    """Call ``fn`` ``warmup`` times untimed, then time it until ``budget`` seconds have passed
    (at least ``min_reps``, at most ``max_reps`` calls). Returns the times and what the last
    warm-up call returned (for correctness checks outside the timed region).

    ``sync``, for a device that runs work asynchronously (a GPU): called after the warm-up calls
    and before starting and before stopping the clock of every timed call, so each time covers
    the call and everything it launched, and nothing launched before it."""
    result = None
    for _ in range(warmup):
        result = fn()
    if sync is not None:
        sync()
    times: list[float] = []
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(times) < max_reps:
            if sync is not None:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            times.append(time.perf_counter() - t0)
            if len(times) >= min_reps and time.perf_counter() - start >= budget:
                break
    finally:
        if was_enabled:
            gc.enable()
    return times, result


def _gemm_entry(n: int, times: list[float]) -> dict[str, Any]:
    median = statistics.median(times)
    return {"median_s": median, "reps": len(times), "gflops": 2 * n**3 / median / 1e9}


def measure_gemm_peak(budget: float, dtype: str = "float32",
                      sizes: Sequence[int] = GEMM_SIZES) -> dict[str, Any]:
    """The best numpy ``a @ b`` GFLOP/s over square ``sizes`` (median of reps per size)."""
    rng = np.random.default_rng(0)
    per_size = {}
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        times, _ = time_calls(lambda a=a, b=b: a @ b, budget, max_reps=50)
        per_size[str(n)] = _gemm_entry(n, times)
    peak = max(entry["gflops"] for entry in per_size.values())
    return {"dtype": dtype, "sizes": per_size, "peak_gflops": peak}


def measure_torch_gemm_peak(torch: Any, budget: float,
                            sizes: Sequence[int] = GPU_GEMM_SIZES) -> dict[str, Any]:
    """The best float32 ``torch.matmul`` GFLOP/s on the GPU over square ``sizes`` (median of
    reps per size, each timed between two ``torch.cuda.synchronize()``), TF32 off: the
    IEEE float32 peak, the arithmetic of our kernels."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9: the new API
        previous = matmul.fp32_precision
        matmul.fp32_precision = "ieee"

        def restore() -> None:
            matmul.fp32_precision = previous
    else:
        previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

        def restore() -> None:
            torch.set_float32_matmul_precision(previous)
    try:
        generator = torch.Generator(device="cuda").manual_seed(0)
        per_size = {}
        for n in sizes:
            a, b = (torch.randn(n, n, device="cuda", dtype=torch.float32, generator=generator)
                    for _ in range(2))
            c = torch.empty(n, n, device="cuda", dtype=torch.float32)
            times, _ = time_calls(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), budget,
                                  max_reps=50, sync=torch.cuda.synchronize)
            per_size[str(n)] = _gemm_entry(n, times)
            del a, b, c
        torch.cuda.empty_cache()
    finally:
        restore()
    peak = max(entry["gflops"] for entry in per_size.values())
    return {"dtype": "float32", "source": "torch.matmul on the GPU, TF32 off",
            "sizes": per_size, "peak_gflops": peak}


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


def import_torch(no_torch: bool, device: str = "cpu") -> tuple[Any, str | None]:
    """``(torch module, None)`` or ``(None, why not)``; for ``device="cuda"`` torch must see a
    CUDA GPU."""
    if no_torch:
        return None, "--no-torch"
    try:
        import torch
    except Exception as exc:
        return None, f"import torch failed: {type(exc).__name__}: {exc}"
    if device == "cuda":
        try:
            available = bool(torch.cuda.is_available())
        except Exception as exc:
            return None, (f"torch {torch.__version__}: torch.cuda.is_available() failed: "
                          f"{type(exc).__name__}: {exc}")
        if not available:
            return None, (f"torch {torch.__version__} has no CUDA GPU "
                          "(torch.cuda.is_available() is False)")
    return torch, None


def configure_torch_cuda(torch: Any, tf32: bool) -> dict[str, Any]:
    """Set the float32 math of cuDNN's RNNs (IEEE unless ``tf32``) and say what torch runs
    with: versions, cuDNN, the GPU."""
    rnn = getattr(torch.backends.cudnn, "rnn", None)
    if rnn is not None and hasattr(rnn, "fp32_precision"):  # torch >= 2.9: the new API
        rnn.fp32_precision = "tf32" if tf32 else "ieee"
        precision = {"setting": "torch.backends.cudnn.rnn.fp32_precision",
                     "value": rnn.fp32_precision}
    else:
        torch.backends.cudnn.allow_tf32 = tf32
        precision = {"setting": "torch.backends.cudnn.allow_tf32",
                     "value": torch.backends.cudnn.allow_tf32}
    return {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version(),
        "cudnn_available": bool(torch.backends.cudnn.is_available()),
        "cudnn_enabled": bool(torch.backends.cudnn.enabled),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_rnn_fp32": precision,
        "gpu": torch.cuda.get_device_name(0),
    }


def cuda_device_info(torch: Any) -> dict[str, Any]:
    """The GPU the CUDA backends run on (Numba's view; torch's name for it when torch has
    CUDA), or Numba's CUDA simulator."""
    from numba import cuda
    from numba.core import config

    info: dict[str, Any] = {"type": "cuda", "simulator": bool(config.ENABLE_CUDASIM)}
    if info["simulator"]:
        info["name"] = "Numba CUDA simulator (no GPU)"
        return info
    try:
        device = cuda.get_current_device()
        name = getattr(device, "name", None)
        info["name"] = name.decode() if isinstance(name, bytes) else str(name)
        info["compute_capability"] = ".".join(map(str, device.compute_capability))
    except Exception as exc:
        info["name"] = f"unknown ({type(exc).__name__}: {exc})"
    if torch is not None:
        info["torch_name"] = torch.cuda.get_device_name(0)
        info["name"] = info["torch_name"]
    for key, probe in (
        ("memory_bytes", lambda: int(cuda.current_context().get_memory_info()[1])),
        ("driver_version", lambda: ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))),
        ("runtime_version", lambda: ".".join(map(str, cuda.runtime.get_version()))),
    ):
        try:
            info[key] = probe()
        except Exception:
            pass
    return info


# --- implementations -----------------------------------------------------------------------------
#
# An implementation holds its arrays where it computes (prepared once, outside the timing) and
# has forward() and train_step() to time, outputs()/grads() to bring a result back to the host
# for the agreement check, and sync: None, or what waits for its device to finish.


def host_inputs(cell: str, point: Point, dtype: str, seed: int = 0) -> dict[str, Any]:
    """Parameters, input, random initial state and dLoss/d outputs, as host numpy arrays.

    The parameters are our ``init_params``: PyTorch's initialisation through
    :func:`rnnbench.cell.init_uniform`, identical on every backend for the same seed.
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
    """One registered backend's cell on prepared backend arrays (``to_backend``: on the device,
    for a GPU backend, whose ``sync`` then waits for the device)."""

    def __init__(self, factory: Callable[..., Any], data: dict[str, Any],
                 sync: Callable[[], Any] | None = None) -> None:
        cell = factory(data["config"])
        self.cell = cell
        self.sync = sync
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

    def checks(self) -> dict[str, Any]:
        """Untimed: outputs and parameter gradients of one forward and one backward, by
        measurement (how the GPU mode uses the numpy reference)."""
        result = self.forward()
        backward = self.cell.backward(self.params, result.cache, self.d_outputs, None)
        return {"forward": self.outputs(result), "train_step": self.grads(backward)}


class TorchImplementation:
    """PyTorch's nn.RNN(tanh) / nn.LSTM / nn.GRU with our parameter values, on ``device``
    ("cpu", or "cuda": cuDNN's kernels where cuDNN is enabled, as by default)."""

    MODULES: ClassVar[dict[str, str]] = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}

    def __init__(self, torch: Any, cell: str, data: dict[str, Any], device: str = "cpu") -> None:
        self.torch = torch
        self.sync = torch.cuda.synchronize if device == "cuda" else None
        config: CellConfig = data["config"]
        dtype = getattr(torch, config.dtype)
        kwargs = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        module = getattr(torch.nn, self.MODULES[cell])(
            config.input_size, config.hidden_size, num_layers=1, bias=True, **kwargs
        ).to(dtype)
        if device != "cpu":
            module = module.to(device)
        with torch.no_grad():
            names = {name for name, _ in module.named_parameters()}
            if names != set(data["params"]):
                raise ValueError(f"torch parameter names {sorted(names)} differ from ours "
                                 f"{sorted(data['params'])}")
            for name, p in module.named_parameters():
                p.copy_(torch.from_numpy(data["params"][name]))
        if device != "cpu":
            module.flatten_parameters()  # in place already; cuDNN wants one weight buffer
        self.module = module

        def tensor(array: np.ndarray) -> Any:
            value = torch.from_numpy(array.copy())
            return value if device == "cpu" else value.to(device)

        # x and the initial state need gradients: our backward computes d_inputs and
        # d_initial_state, so torch must do the same work.
        self.x = tensor(data["x"]).requires_grad_(True)
        self.state = [tensor(s).requires_grad_(True) for s in data["state"]]
        self.h0 = self.state[0] if cell != "lstm" else tuple(self.state)
        self.d_outputs = tensor(data["d_outputs"])

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
        return result.detach().cpu().numpy()

    def grads(self, result: Any) -> dict[str, np.ndarray]:
        return {name: p.grad.detach().cpu().numpy().copy()
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
                    skipped: list[dict[str, Any]], device: str = "cpu") -> list[str]:
    """The registered backends of ``cell`` to time on ``device`` (``wanted`` ones only, when
    given): names with "cuda" are the GPU's, the others the CPU's. On the GPU a CPU backend is
    left out silently unless it was asked for."""
    registered = registry.backends_of(cell)
    chosen = []
    for backend in (wanted if wanted is not None else registered):
        if wanted is None and backend.startswith("torch"):
            continue  # the torch backends' cells: this script times PyTorch's modules directly
        if device == "cpu" and "cuda" in backend:
            skipped.append({"cell": cell, "implementation": backend, "reason": "not a CPU backend"})
            continue
        if device == "cuda" and "cuda" not in backend:
            if wanted is not None:
                skipped.append({"cell": cell, "implementation": backend,
                                "reason": "not a CUDA backend"})
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


def cuda_sync() -> Callable[[], Any]:
    """What waits for the kernels Numba launched (a no-op on the simulator)."""
    from numba import cuda

    return cuda.synchronize


# --- the benchmark -------------------------------------------------------------------------------


Builder = tuple[str, Callable[[dict[str, Any]], Any]]


def implementation_builders(registry: Registry, cell: str, chosen: Sequence[str], torch: Any,
                            device: str) -> list[Builder]:
    """(label, build(data)) of every implementation to time for ``cell`` on ``device``."""
    sync = cuda_sync() if device == "cuda" else None
    builders: list[Builder] = [
        (backend, lambda data, f=registry.cells[(cell, backend)].factory:
         RegistryImplementation(f, data, sync))
        for backend in chosen
    ]
    if torch is not None:
        builders.append(
            (TORCH, lambda data: TorchImplementation(torch, cell, data, device))
        )
    return builders


def run_benchmark(
    registry: Registry,
    cells: Sequence[str],
    grid: Sequence[Point],
    dtype: str,
    budget: float,
    backends: Sequence[str] | None,
    torch: Any,
    log: Callable[[str], None],
    device: str = "cpu",
    warmup: int = WARMUP,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Time everything; returns (rows, skipped, errors). Rows lack peak and speed-ups.

    On the CPU the numpy reference is timed like any implementation, first, and the others are
    compared with it; on the GPU it runs once per point, untimed, for the comparison only."""
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for cell in cells:
        chosen = select_backends(registry, cell, backends, skipped, device)
        if TORCH in chosen:  # the label is taken by PyTorch's nn modules
            chosen.remove(TORCH)
            skipped.append({"cell": cell, "implementation": TORCH,
                            "reason": "backend name clashes with the PyTorch nn label"})
        # The reference first, so every other implementation is compared with it.
        chosen.sort(key=lambda backend: backend != REFERENCE)
        builders = implementation_builders(registry, cell, chosen, torch, device)
        untimed_reference = device != "cpu" and (cell, REFERENCE) in registry.cells
        if device != "cpu" and not untimed_reference:
            skipped.append({"cell": cell, "implementation": REFERENCE,
                            "reason": "not registered: no agreement check"})
        for point in grid:
            data = host_inputs(cell, point, dtype)
            reference: dict[str, Any] = {}
            if untimed_reference:
                try:
                    reference = RegistryImplementation(
                        registry.cells[(cell, REFERENCE)].factory, data).checks()
                except Exception as exc:
                    errors.append(_error(cell, point, REFERENCE, "reference", exc))
                    log(f"  {cell} {point} {REFERENCE}: reference failed: {exc!r}")
            for name, build in builders:
                try:
                    impl = build(data)
                except Exception as exc:
                    errors.append(_error(cell, point, name, "setup", exc))
                    log(f"  {cell} {point} {name}: setup failed: {exc!r}")
                    continue
                for measurement in MEASUREMENTS:
                    row = time_measurement(impl, name, cell, point, measurement, dtype, budget,
                                           warmup, reference, errors, log)
                    if row is not None:
                        rows.append(row)
                del impl  # free its (device) arrays before the next one allocates
    return rows, skipped, errors


def time_measurement(impl: Any, name: str, cell: str, point: Point, measurement: str,
                     dtype: str, budget: float, warmup: int, reference: dict[str, Any],
                     errors: list[dict[str, Any]],
                     log: Callable[[str], None]) -> dict[str, Any] | None:
    """Time one measurement of one implementation and check its result against ``reference``
    (filled in here when ``name`` is the reference); a row, or ``None`` after an error."""
    fn = impl.forward if measurement == "forward" else impl.train_step
    try:
        times, last = time_calls(fn, budget, warmup=warmup, sync=impl.sync)
        check = impl.outputs(last) if measurement == "forward" else impl.grads(last)
    except Exception as exc:
        errors.append(_error(cell, point, name, measurement, exc))
        log(f"  {cell} {point} {name} {measurement}: failed: {exc!r}")
        return None
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
    log(f"  {cell:4s} T={point[0]:<4d} B={point[1]:<3d} I={point[2]:<3d} "
        f"H={point[3]:<4d} {name:10s} {measurement:10s} "
        f"{median * 1e3:10.3f} ms  {row['gflops']:8.2f} GFLOP/s  "
        f"({len(times)} reps)")
    return row


def _error(cell: str, point: Point, name: str, what: str, exc: Exception) -> dict[str, Any]:
    return {"cell": cell, "T": point[0], "B": point[1], "I": point[2], "H": point[3],
            "implementation": name, "measurement": what,
            "error": f"{type(exc).__name__}: {exc}"}


def _key(row: dict[str, Any]) -> tuple:
    return (row["cell"], row["T"], row["B"], row["I"], row["H"], row["measurement"])


def add_derived(rows: list[dict[str, Any]], peak_gflops: float | None) -> None:
    """Add % of GEMM peak (``None`` without a peak) and the speed-ups vs numpy and vs torch
    (ratios of medians; ``None`` where the other was not timed)."""
    medians = {(*_key(r), r["implementation"]): r["median_s"] for r in rows}
    for row in rows:
        row["pct_peak"] = None if peak_gflops is None else 100.0 * row["gflops"] / peak_gflops
        for other, column in ((REFERENCE, "speedup_vs_numpy"), (TORCH, "speedup_vs_torch")):
            base = medians.get((*_key(row), other))
            row[column] = base / row["median_s"] if base is not None else None


# --- first call in a fresh process ---------------------------------------------------------------

FIRST_CALL_CODE = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from rnnbench.cell import CellConfig
from rnnbench.plugin_manager import build_host
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
grads = cell.backward(params, result.cache, dy, None).param_grads
cell.to_host(next(iter(grads.values())))  # waits for a GPU's asynchronous kernels
t3 = time.perf_counter()
print(json.dumps({"setup_s": t1 - t0, "forward_s": t2 - t1, "backward_s": t3 - t2,
                  "first_call_s": t3 - t1}))
"""


def first_call_backends(registry: Registry, cells: Sequence[str],
                        backends: Sequence[str] | None,
                        device: str = "cpu") -> list[tuple[str, str]]:
    """(cell, backend) pairs of the device's JIT-compiled backends (name contains "numba")."""
    pairs = []
    for cell in cells:
        for backend in select_backends(registry, cell, backends, [], device):
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


def _ratio_text(value: float) -> str:
    return f"{value:.2f}x"


def _speedup_target(name: str, ours: list[dict[str, Any]], measurement: str,
                    where: Callable[[dict[str, Any]], bool], ok: Callable[[float], bool],
                    have_torch: bool, target: str, no_point: str) -> dict[str, Any]:
    """A target on ``target``'s speed-up vs torch at the points ``where`` selects: met when
    ``ok`` holds at every such point measured, n/a (saying why) when none was."""
    values = [(r["speedup_vs_torch"], r) for r in ours
              if r["measurement"] == measurement and r["speedup_vs_torch"] is not None
              and where(r)]
    if not ours or not have_torch or not values:
        status, detail = "n/a", _missing(bool(ours), have_torch, target) or no_point
    else:
        status, detail = _status(values, ok, _ratio_text)
    return {"target": name, "status": status, "detail": detail}


def compute_targets(rows: list[dict[str, Any]], first_calls: list[dict[str, Any]],
                    have_torch: bool, device: str = "cpu") -> list[dict[str, Any]]:
    """The device's performance targets (numba-cpu's, or numba-cuda's on the GPU), each checked
    from the measurements: met / not met / n/a."""
    if device == "cuda":
        return _gpu_targets(rows, have_torch)
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
    targets.append(_speedup_target(
        f"{TARGET} train step >= 10x torch at (T,B,I,H) = {LONG_POINT}", ours, "train_step",
        lambda r: (r["T"], r["B"], r["I"], r["H"]) == LONG_POINT, lambda v: v >= 10,
        have_torch, TARGET, "point not in this grid",
    ))

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


def _gpu_targets(rows: list[dict[str, Any]], have_torch: bool) -> list[dict[str, Any]]:
    """numba-cuda vs PyTorch's cuDNN cells: within 2x at the large sizes, faster at batch 1 with
    long sequences; forward and train step each."""
    target = TARGETS["cuda"]
    ours = [r for r in rows if r["implementation"] == target]
    targets = []
    for measurement in MEASUREMENTS:
        targets.append(_speedup_target(
            f"{target} {measurement.replace('_', ' ')} within 2x of cuDNN (>= 0.5x torch) at "
            f"the large sizes, B*H >= {LARGE_BH} (64*512)", ours, measurement,
            lambda r: r["B"] * r["H"] >= LARGE_BH, lambda v: v >= 0.5, have_torch, target,
            f"no point with B*H >= {LARGE_BH} in this grid",
        ))
    for measurement in MEASUREMENTS:
        targets.append(_speedup_target(
            f"{target} {measurement.replace('_', ' ')} faster than cuDNN (> 1x torch) at batch "
            f"1 with long sequences, B = 1 and T >= {LONG_T}", ours, measurement,
            lambda r: r["B"] == 1 and r["T"] >= LONG_T, lambda v: v > 1, have_torch, target,
            f"no point with B = 1 and T >= {LONG_T} in this grid",
        ))
    return targets


def _missing(have_ours: bool, have_torch: bool, target: str = TARGET) -> str:
    parts = []
    if not have_ours:
        parts.append(f"{target} not measured")
    if not have_torch:
        parts.append("torch not measured")
    return ", ".join(parts)


# --- reports -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "cell", "T", "B", "I", "H", "implementation", "measurement", "dtype", "reps", "median_s",
    "min_s", "max_s", "flops", "gflops", "pct_peak", "speedup_vs_numpy", "speedup_vs_torch",
    "rel_diff_vs_numpy",
)


def to_csv(rows: list[dict[str, Any]], device_name: str | None = None) -> str:
    """The rows as CSV; with ``device_name`` (GPU reports) a last column ``device`` holds it."""
    columns = CSV_COLUMNS if device_name is None else (*CSV_COLUMNS, "device")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        values = {k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS}
        if device_name is not None:
            values["device"] = device_name
        writer.writerow(values)
    return buffer.getvalue()


def implementation_order(rows: list[dict[str, Any]], target: str = TARGET) -> list[str]:
    names = list(dict.fromkeys(r["implementation"] for r in rows))
    first = [n for n in (REFERENCE, target) if n in names]
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
    """The report as Markdown: the CPU's, or with a ``device`` entry the GPU's (TFLOP/s, the
    GPU and cuDNN described, % peak only where a peak was measured)."""
    rows = report["measurements"]
    gpu = report.get("device")
    peak = report["gemm"]["peak_gflops"]
    impls = implementation_order(rows, TARGETS["cuda"] if gpu else TARGET)
    by_key = {(*_key(r), r["implementation"]): r for r in rows}
    points = list(dict.fromkeys((r["cell"], r["T"], r["B"], r["I"], r["H"]) for r in rows))
    pairs = [(a, b) for a in impls for b in (TORCH, REFERENCE)
             if a != b and b in impls and not (a == REFERENCE and b == TORCH)]
    settings = report["settings"]
    if gpu:
        lines = _gpu_intro(report)
        unit = "TFLOP/s"

        def rate(row: dict[str, Any]) -> str:
            return format_value(row["gflops"] / 1e3, 3)
    else:
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
        unit = "GFLOP/s"

        def rate(row: dict[str, Any]) -> str:
            return f"{row['gflops']:.2f}"
    with_peak = peak is not None
    per_impl = 3 if with_peak else 2
    for measurement in MEASUREMENTS:
        header = ["cell", "T", "B", "I", "H", "GFLOP"]
        for impl in impls:
            header += [f"{impl} ms", f"{impl} {unit}"] + ([f"{impl} % peak"] if with_peak else [])
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
                if row is None:
                    cells += [""] * per_impl
                    continue
                cells += [format_value(row["median_s"] * 1e3), rate(row)]
                if with_peak:
                    cells.append(f"{row['pct_peak']:.1f}")
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
                  "of two runs; setup = imports + plugin registry + building the cell."
                  + (" On the GPU it includes compiling the kernels, and ends when a gradient "
                     "is back on the host." if gpu else ""), ""]
        body = [[c["cell"], c["implementation"], format_value(c.get("first_call_s")),
                 format_value(c.get("setup_s")), format_value(c.get("process_s")),
                 c.get("error") or ""] for c in report["first_call"]]
        lines += _table(["cell", "implementation", "first call s", "setup s", "process s",
                         "error"], body, right_from=2, right_to=5)

    if gpu:
        lines += _gpu_machine(report)
    else:
        env, threads, torch_info = report["environment"], report["threads"], report["torch"]
        gemm = ", ".join(f"{n}: {v['gflops']:.1f}" for n, v in report["gemm"]["sizes"].items())
        packages = _packages_text(env, ("numpy", "numba", "llvmlite", "torch"))
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


def _packages_text(env: dict[str, Any], names: Sequence[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if k in names)


def _cudnn_text(torch_info: dict[str, Any]) -> str:
    """How torch runs its RNNs on the GPU, in a few words."""
    if not (torch_info.get("cudnn_available") and torch_info.get("cudnn_enabled")):
        return "cuDNN not in use: PyTorch's own CUDA kernels"
    precision = torch_info.get("cudnn_rnn_fp32", {})
    return (f"cuDNN {torch_info.get('cudnn_version')}, float32 RNN math "
            f"`{precision.get('value')}` ({precision.get('setting')})")


def _gpu_intro(report: dict[str, Any]) -> list[str]:
    settings, device, torch_info = report["settings"], report["device"], report["torch"]
    target = TARGETS["cuda"]
    if torch_info.get("version"):
        against = (f"against `{TORCH}` = PyTorch {torch_info['version']}'s nn.RNN(tanh) / "
                   f"nn.LSTM / nn.GRU on the same GPU ({_cudnn_text(torch_info)}), with the same "
                   "parameter values")
    else:
        against = f"alone (`{TORCH}` not measured: {torch_info.get('absent')})"
    peak = report["gemm"]
    peak_text = ("% peak is relative to the float32 GEMM peak below."
                 if peak["peak_gflops"] is not None
                 else f"No % peak: the GEMM peak was not measured ({peak.get('absent')}).")
    warmup = settings["warmup"]
    return [
        "# Cell speed on the GPU",
        "",
        f"Device: **{device['name']}**. `{target}` (our Numba CUDA kernels) {against}. The numpy "
        "reference runs on the CPU, untimed: it only checks agreement.",
        "",
        f"{settings['dtype']}, one layer, with bias; median of repeated calls after {warmup} "
        f"warm-up call{'s' if warmup != 1 else ''} (budget {settings['budget_s']} s per "
        f"measurement, {MIN_REPS}-{MAX_REPS} reps). Parameters and inputs are on the GPU before "
        "timing, and every timed call starts and ends with a device synchronize "
        "(`numba.cuda.synchronize()` / `torch.cuda.synchronize()`): a time covers the call and "
        "all its kernels. ms = median milliseconds per call.",
        "",
        f"FLOPs: {FLOP_MODEL} TFLOP/s = FLOPs / median time. {peak_text} "
        "`X vs Y` = median(Y) / median(X): above 1 means X is faster.",
    ]


def _gpu_machine(report: dict[str, Any]) -> list[str]:
    device, gemm, torch_info = report["device"], report["gemm"], report["torch"]
    env = report["environment"]
    if device.get("simulator"):
        gpu = f"GPU: **{device['name']}**: Numba's CUDA simulator runs the kernels on the CPU " \
              "(NUMBA_ENABLE_CUDASIM=1), so these times say nothing about a GPU."
    else:
        details = [f"compute capability {device['compute_capability']}"
                   if device.get("compute_capability") else None,
                   f"{device['memory_bytes'] / 2**30:.0f} GiB"
                   if device.get("memory_bytes") else None,
                   f"driver {device['driver_version']}" if device.get("driver_version") else None,
                   f"CUDA runtime {device['runtime_version']}"
                   if device.get("runtime_version") else None]
        shown = ", ".join(d for d in details if d)
        gpu = f"GPU: **{device['name']}**" + (f" ({shown})." if shown else ".")
    if gemm["peak_gflops"] is not None:
        sizes = ", ".join(f"{n}: {v['gflops'] / 1e3:.1f}" for n, v in gemm["sizes"].items())
        peak = (f"GEMM peak ({gemm['source']}, best median TFLOP/s over square sizes): "
                f"**{gemm['peak_gflops'] / 1e3:.1f} TFLOP/s** ({sizes}).")
    else:
        peak = f"GEMM peak: not measured ({gemm.get('absent')}); the % peak columns are left out."
    if torch_info.get("version"):
        torch_text = (f"torch {torch_info['version']} (CUDA {torch_info.get('cuda')}; "
                      f"{_cudnn_text(torch_info)}; cudnn.benchmark "
                      f"{'on' if torch_info.get('cudnn_benchmark') else 'off'}).")
    else:
        torch_text = f"torch: not measured ({torch_info.get('absent')})."
    packages = _packages_text(env, ("numpy", "numba", "numba-cuda", "llvmlite", "torch"))
    return [
        "", "## Machine", "",
        gpu,
        peak,
        torch_text,
        f"Host CPU (the numpy reference, untimed): {env.get('cpu')}, {env.get('cpu_count')} "
        f"logical CPUs; {packages}.",
    ]


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
        description="Time forward and train step of every cell implementation on the CPU "
                    "(or the GPU), next to PyTorch.",
    )
    parser.add_argument("--device", default="cpu", choices=DEVICES,
                        help="cpu: the CPU backends vs torch on the CPU (default); cuda: the "
                             "CUDA backends vs torch's cuDNN cells on the GPU")
    parser.add_argument("-o", "--output", default=None,
                        help="output folder (default: results/cell_speed, or "
                             "results/cell_speed_gpu with --device cuda)")
    parser.add_argument("--backends", type=_csv_list, default=None,
                        help="comma-separated registered backends (default: every backend of "
                             "the device)")
    parser.add_argument("--cells", type=_csv_list, default=list(CELLS),
                        help="comma-separated cells (default: rnn,lstm,gru)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--grid", default=None, choices=sorted(GRIDS),
                        help="grid points (default: 'default', or 'gpu' with --device cuda; "
                             "'tiny' for Numba's CUDA simulator)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds per measurement (default 1.0; at least 3 reps)")
    parser.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    parser.add_argument("--no-first-call", action="store_true",
                        help="skip the fresh-process first-call measurement")
    parser.add_argument("--cudnn-tf32", action="store_true",
                        help="--device cuda: let cuDNN's float32 RNNs use TF32 tensor cores "
                             "(PyTorch's default); without it they run in IEEE float32, as our "
                             "kernels do")
    parser.add_argument("-p", "--plugin", dest="plugins", action="append", default=[],
                        metavar="MODULE_OR_FILE",
                        help="also load this local plugin (module name or .py file); repeatable")
    args = parser.parse_args(argv)
    unknown = [c for c in args.cells if c not in GATES]
    if unknown:
        parser.error(f"unknown cell(s) {unknown}; choose from {sorted(GATES)}")
    if not args.budget > 0 or not math.isfinite(args.budget):
        parser.error("--budget must be a positive number of seconds")
    if args.output is None:
        args.output = DEFAULT_OUTPUTS[args.device]
    if args.grid is None:
        args.grid = DEFAULT_GRIDS[args.device]
    return args


def cuda_unavailable(registry: Registry, cells: Sequence[str],
                     backends: Sequence[str] | None) -> str | None:
    """``None`` when some CUDA backend can run one of ``cells`` here, else why none can."""
    skipped: list[dict[str, Any]] = []
    if any(select_backends(registry, cell, backends, skipped, "cuda") for cell in cells):
        return None
    reasons = list(dict.fromkeys(f"{s['implementation']}: {s['reason']}" for s in skipped))
    if not reasons:
        reasons = ["no CUDA backend is registered"]
        reasons += [f"plugin {name!r} is broken: {why}" for name, why in registry.broken.items()]
    return "; ".join(reasons)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.output)
    device = args.device

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
    if device == "cuda":
        reason = cuda_unavailable(registry, args.cells, args.backends)
        if reason is not None:
            log(f"error: --device cuda: no CUDA backend can run here: {reason}")
            return 2

    torch, torch_absent = import_torch(args.no_torch, device)
    threads = thread_info()
    torch_info: dict[str, Any] = {"absent": torch_absent}
    warmup = WARMUP
    extra: dict[str, Any] = {}
    if device == "cpu":
        if torch is not None:
            torch.set_num_threads(threads["ours"])
            torch_info = {"version": torch.__version__, "threads": torch.get_num_threads(),
                          "interop_threads": torch.get_num_interop_threads()}
            threads["torch"] = torch_info["threads"]

        log(f"GEMM peak (float32, sizes {', '.join(map(str, GEMM_SIZES))})...")
        gemm = measure_gemm_peak(args.budget)
        log(f"  peak {gemm['peak_gflops']:.1f} GFLOP/s")
    else:
        if torch is not None:
            torch_info = configure_torch_cuda(torch, args.cudnn_tf32)
        gpu = cuda_device_info(torch)
        extra["device"] = gpu
        if gpu["simulator"]:
            warmup = SIMULATOR_WARMUP
        log(f"device: {gpu['name']}")
        if torch is not None:
            log(f"GEMM peak (float32 torch.matmul on the GPU, sizes "
                f"{', '.join(map(str, GPU_GEMM_SIZES))})...")
            gemm = measure_torch_gemm_peak(torch, args.budget)
            log(f"  peak {gemm['peak_gflops'] / 1e3:.1f} TFLOP/s")
        else:
            gemm = {"dtype": "float32", "source": None, "sizes": {}, "peak_gflops": None,
                    "absent": f"needs torch with CUDA; {torch_absent}"}
            log(f"no GEMM peak ({gemm['absent']}): no % peak")

    grid = GRIDS[args.grid]
    rows, skipped, errors = run_benchmark(
        registry, args.cells, grid, args.dtype, args.budget, args.backends, torch, log,
        device=device, warmup=warmup,
    )
    add_derived(rows, gemm["peak_gflops"])

    first_calls = []
    if not args.no_first_call:
        for cell, backend in first_call_backends(registry, args.cells, args.backends, device):
            log(f"first call of {cell}/{backend} in a fresh process (twice)...")
            first_calls.append(measure_first_call(cell, backend, args.dtype, plugins))

    settings = {
        "grid": args.grid, "points": [list(p) for p in grid], "cells": list(args.cells),
        "backends": args.backends, "plugins": plugins, "dtype": args.dtype,
        "budget_s": args.budget,
        "warmup": warmup, "min_reps": MIN_REPS, "max_reps": MAX_REPS,
        "num_layers": 1, "bias": True, "statistic": "median",
    }
    if device != "cpu":
        settings.update({"device": device, "cudnn_tf32": args.cudnn_tf32,
                         "synchronize": "before starting and before stopping each timed call"})
    report = {
        "benchmark": "cell_speed",
        **extra,
        "settings": settings,
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
    report["targets"] = compute_targets(rows, first_calls, torch is not None, device)
    markdown = to_markdown(report)
    write_json(out / "cell_speed.json", report)
    atomic_write_text(out / "cell_speed.csv",
                      to_csv(rows, extra["device"]["name"] if "device" in extra else None))
    atomic_write_text(out / "cell_speed.md", markdown)
    print(markdown, end="")
    log(f"wrote {out / 'cell_speed.json'}, {out / 'cell_speed.csv'}, {out / 'cell_speed.md'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
