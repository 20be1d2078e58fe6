"""Timing cells: the measurement machinery of kernel-benchmark suites (``kind: kernels``).

One module for how a number is taken, so every backend is timed the same way:

- :func:`time_calls`: warm-up calls (which also trigger JIT compilation), then repeated calls
  until a time budget is spent (at least ``min_reps``); the MEDIAN is reported. Garbage
  collection is off while timing. A device backend's ``sync`` is called before starting and
  before stopping each clock, so a time covers the call and every kernel it launched.
- :func:`flops`: only matrix products count: forward = 2*T*B*G*H*(I+H) with G = 1/4/3 gates for
  rnn/lstm/gru; backward = 2 x forward (per weight the input/hidden gradient product and the
  weight gradient product); training step = 3 x forward.
- :func:`gemm_peak`: the best float32 GEMM rate over square sizes measured in the same run
  (numpy ``a @ b`` on the CPU, ``torch.matmul`` with TF32 off on CUDA), the 100% of ``% peak``.
- :class:`Bench`: one registered backend's cell on prepared backend arrays, with its forward,
  backward (on a fresh forward's cache, made untimed) and training step (forward + backward),
  and the host copies of what they return for the agreement check with the numpy reference.
- :func:`first_call`: the first forward + backward of a backend in a fresh Python process.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnbench.cell import GATES, CellConfig, init_uniform, param_shapes
from rnnbench.threads import THREAD_VARIABLES

__all__ = [
    "MEASUREMENTS",
    "Bench",
    "Point",
    "Timing",
    "agreement",
    "first_call",
    "flops",
    "gemm_peak",
    "host_inputs",
    "sync_for",
    "time_calls",
]

#: What a kernels suite can time, in the order tables show them.
MEASUREMENTS = ("forward", "backward", "train_step")
#: (T, B, I, H): sequence length, batch, input size, hidden size.
Point = tuple[int, int, int, int]
FLOP_MODEL = (
    "Only matrix products count: forward = 2*T*B*G*H*(I+H) with G = 1 (rnn), 4 (lstm), 3 (gru); "
    "backward = 2 x forward; train step (forward + backward) = 3 x forward."
)
_FLOP_FACTOR = {"forward": 1, "backward": 2, "train_step": 3}


def flops(cell: str, point: Point, measurement: str) -> int:
    """Matrix-product FLOPs of one call (see :data:`FLOP_MODEL`)."""
    t, b, i, h = point
    return _FLOP_FACTOR[measurement] * 2 * t * b * GATES[cell] * h * (i + h)


@dataclass(frozen=True)
class Timing:
    """The times of one measurement and what its last warm-up call returned."""

    times: list[float]
    last: Any

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def time_calls(fn: Callable[[], Any], budget: float, warmup: int = 2, min_reps: int = 3,
               max_reps: int = 200, sync: Callable[[], Any] | None = None,
               prepare: Callable[[], Any] | None = None) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then time it until ``budget`` seconds have passed
    (at least ``min_reps``, at most ``max_reps`` calls). ``sync`` (a device's "wait for my
    kernels") runs before each clock starts and before it stops; ``prepare``, when given, runs
    before every call, untimed (the backward pass gets a fresh forward's cache each time, so a
    backend may consume or free its cache, as PyTorch's autograd graph is freed)."""
    last = None
    for _ in range(warmup):
        if prepare is not None:
            prepare()
        last = fn()
    if sync is not None:
        sync()
    times: list[float] = []
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(times) < max_reps:
            if prepare is not None:
                prepare()
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
    return Timing(times, last)


# --- the GEMM peak ------------------------------------------------------------------------------


def gemm_peak(device: str, budget: float, sizes: Sequence[int],
              dtype: str = "float32") -> dict[str, Any]:
    """The best GEMM GFLOP/s of ``dtype`` over square ``sizes`` (median per size): numpy on
    the CPU; on CUDA ``torch.matmul`` with TF32 off (IEEE float32, our kernels' arithmetic), or
    ``{"peak_gflops": None, "absent": why}`` without torch on CUDA."""
    if device == "cpu":
        rng = np.random.default_rng(0)
        per_size = {}
        for n in sizes:
            a = rng.standard_normal((n, n)).astype(dtype)
            b = rng.standard_normal((n, n)).astype(dtype)
            median = time_calls(lambda a=a, b=b: a @ b, budget, max_reps=50).median
            per_size[str(n)] = 2 * n**3 / median / 1e9
        return {"source": f"numpy a @ b, {dtype}", "sizes": per_size,
                "peak_gflops": max(per_size.values())}
    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False")
    except Exception as exc:
        return {"source": None, "sizes": {}, "peak_gflops": None,
                "absent": f"needs torch with CUDA ({type(exc).__name__}: {exc})"}
    matmul = torch.backends.cuda.matmul
    previous = getattr(matmul, "fp32_precision", None)
    if previous is not None:
        matmul.fp32_precision = "ieee"
    else:
        previous_allow = matmul.allow_tf32
        matmul.allow_tf32 = False
    try:
        gen = torch.Generator(device="cuda").manual_seed(0)
        per_size = {}
        for n in sizes:
            kind = getattr(torch, dtype)
            a, b = (torch.randn(n, n, device="cuda", generator=gen, dtype=kind)
                    for _ in range(2))
            c = torch.empty(n, n, device="cuda", dtype=kind)
            median = time_calls(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), budget,
                                max_reps=50, sync=torch.cuda.synchronize).median
            per_size[str(n)] = 2 * n**3 / median / 1e9
            del a, b, c
        torch.cuda.empty_cache()
    finally:
        if previous is not None:
            matmul.fp32_precision = previous
        else:
            matmul.allow_tf32 = previous_allow
    return {"source": f"torch.matmul on the GPU, {dtype}, TF32 off", "sizes": per_size,
            "peak_gflops": max(per_size.values())}


def cuda_device() -> dict[str, Any]:
    """The GPU Numba sees (name, compute capability), or that it is Numba's simulator."""
    try:
        from numba import cuda
        from numba.core import config

        if config.ENABLE_CUDASIM:
            return {"name": "Numba CUDA simulator (no GPU)", "simulator": True}
        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        return {"name": name, "simulator": False,
                "compute_capability": ".".join(map(str, device.compute_capability))}
    except Exception as exc:
        return {"name": f"unknown ({type(exc).__name__}: {exc})", "simulator": False}


# --- what is timed ------------------------------------------------------------------------------


def host_inputs(cell: str, point: Point, dtype: str, seed: int = 0) -> dict[str, Any]:
    """Parameters (PyTorch's initialisation, identical on every backend), input, a random
    initial state and dLoss/d outputs, as host arrays: every backend computes the same function
    of the same numbers."""
    t, b, i, h = point
    config = CellConfig(input_size=i, hidden_size=h, num_layers=1, bias=True, dtype=dtype)
    rng = np.random.default_rng(seed)
    states = 2 if cell == "lstm" else 1
    return {
        "config": config,
        "params": init_uniform(param_shapes(GATES[cell], config), config, rng),
        "x": rng.standard_normal((t, b, i)).astype(dtype),
        "state": tuple(rng.uniform(-1, 1, (1, b, h)).astype(dtype) for _ in range(states)),
        "d_outputs": rng.standard_normal((t, b, h)).astype(dtype),
    }


def sync_for(cell: Any, backend: str) -> Callable[[], Any] | None:
    """What waits for a backend's device: the cell's own ``synchronize`` when it has one, else
    ``numba.cuda.synchronize`` / ``torch.cuda.synchronize`` for backends named like CUDA ones;
    ``None`` for host backends, which finish before they return."""
    own = getattr(cell, "synchronize", None)
    if callable(own):
        return own
    if "cuda" not in backend:
        return None
    if "torch" in backend:
        import torch

        return torch.cuda.synchronize
    from numba import cuda

    return cuda.synchronize


class Bench:
    """One backend's cell with its arrays where it computes (copied once, outside the timing)."""

    def __init__(self, factory: Callable[..., Any], backend: str, data: dict[str, Any]) -> None:
        cell = factory(data["config"])
        self.cell = cell
        self.sync = sync_for(cell, backend)
        self.params = {k: cell.to_backend(v) for k, v in data["params"].items()}
        self.x = cell.to_backend(data["x"])
        self.state = tuple(cell.to_backend(s) for s in data["state"])
        self.d_outputs = cell.to_backend(data["d_outputs"])
        self._cache: Any = None

    def forward(self) -> Any:
        return self.cell.forward(self.params, self.x, self.state)

    def make_cache(self) -> None:
        """The untimed forward before each timed backward."""
        self._cache = self.forward().cache

    def backward(self) -> Any:
        """The backward pass alone, on the cache :meth:`make_cache` made."""
        cache, self._cache = self._cache, None
        return self.cell.backward(self.params, cache, self.d_outputs, None)

    def train_step(self) -> Any:
        result = self.cell.forward(self.params, self.x, self.state)
        return self.cell.backward(self.params, result.cache, self.d_outputs, None)

    def call(self, measurement: str) -> tuple[Callable[[], Any], Callable[[], Any] | None]:
        """What to time for ``measurement``, and what to run untimed before each call."""
        return getattr(self, measurement), self.make_cache if measurement == "backward" else None

    def to_host(self, measurement: str, result: Any) -> dict[str, np.ndarray]:
        """Outputs (forward) or every gradient (backward, train step) as host arrays."""
        host = self.cell.to_host
        if measurement == "forward":
            return {"outputs": np.asarray(host(result.outputs))}
        arrays = {f"d_{k}": np.asarray(host(v)) for k, v in result.param_grads.items()}
        arrays["d_inputs"] = np.asarray(host(result.d_inputs))
        return arrays


def reference_arrays(bench: Bench) -> dict[str, dict[str, np.ndarray]]:
    """Untimed: the reference's outputs and gradients, by measurement."""
    result = bench.forward()
    grads = bench.cell.backward(bench.params, result.cache, bench.d_outputs, None)
    backward = bench.to_host("backward", grads)
    return {"forward": bench.to_host("forward", result), "backward": backward,
            "train_step": backward}


def agreement(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    """The largest max|got - want| / max|want| over the arrays both hold."""
    worst = 0.0
    for key in want.keys() & got.keys():
        a = np.asarray(got[key], np.float64)
        b = np.asarray(want[key], np.float64)
        if a.shape != b.shape:
            return float("inf")
        if not b.size:
            continue
        scale = float(np.max(np.abs(b)))
        diff = float(np.max(np.abs(a - b)))
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst


# --- the first call in a fresh process -----------------------------------------------------------

_FIRST_CALL_CODE = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from rnnbench.cell import CellConfig
from rnnbench.plugin_manager import build_host
from rnnbench.kernel_bench import sync_for
cell_name, backend, dtype = sys.argv[1:4]
host = build_host(plugins=sys.argv[4:])
cell = host.registry.cells[(cell_name, backend)].factory(
    CellConfig(input_size=4, hidden_size=8, dtype=dtype))
sync = sync_for(cell, backend) or (lambda: None)
rng = np.random.default_rng(0)
params = {k: cell.to_backend(v) for k, v in cell.init_params(rng).items()}
x = cell.to_backend(rng.standard_normal((5, 3, 4)).astype(dtype))
dy = cell.to_backend(rng.standard_normal((5, 3, 8)).astype(dtype))
state = cell.initial_state(3)
sync()
t1 = time.perf_counter()
result = cell.forward(params, x, state)
sync()
t2 = time.perf_counter()
grads = cell.backward(params, result.cache, dy, None).param_grads
cell.to_host(next(iter(grads.values())))
sync()
t3 = time.perf_counter()
print(json.dumps({"setup_s": t1 - t0, "forward_s": t2 - t1, "backward_s": t3 - t2,
                  "first_call_s": t3 - t1}))
"""
#: The shape of the first call: tiny, so the time is compilation and set-up, not work.
FIRST_CALL_POINT: Point = (5, 3, 4, 8)


def first_call(cell: str, backend: str, dtype: str, plugins: Sequence[str] = (),
               runs: int = 2, timeout: float = 600.0, threads: int | None = None
               ) -> dict[str, Any]:
    """The first forward + backward (T=5, B=3, I=4, H=8) in a new Python process, ``runs``
    times; the last is reported (an earlier one may have filled a compile cache, as a user's
    second session would find it). ``threads``: the process's BLAS/OpenMP/Numba thread budget
    (through their environment variables, read when each library loads). ``error`` says why
    when it failed."""
    env = dict(os.environ)
    if threads is not None:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    last: dict[str, Any] = {"error": "not run"}
    for _ in range(runs):
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _FIRST_CALL_CODE, cell, backend, dtype, *plugins],
                capture_output=True, text=True, timeout=timeout, env=env,
            )
        except subprocess.TimeoutExpired:
            last = {"error": f"timed out after {timeout:g} s"}
            continue
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            last = {"error": f"exit {proc.returncode}: {tail[0]}", "process_s": wall}
            continue
        try:
            last = json.loads(proc.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            last = {"error": f"unreadable output: {proc.stdout[-200:]!r}"}
            continue
        last["process_s"] = wall
    return last
