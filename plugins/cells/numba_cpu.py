"""The ``numba-cpu`` backend: PyTorch's RNN (tanh or relu), LSTM and GRU compiled with Numba.

Same equations, parameter names and layout as the numpy reference (and PyTorch), so a suite
switches backend with one word and gets the same numbers to the dtype's precision. The protocol
plumbing (argument checks, the layer stack, state shapes, parameters) is
:class:`rnnbench.StackedCell`'s; this module supplies the work of one layer over one whole
sequence, as the kernels in :mod:`rnnbench.plugins.cells.numba_kernels`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rnnbench import StackedCell, hookimpl
from rnnbench.plugins.cells import numba_kernels as kernels
from rnnbench.plugins.cells.options import OPTIONS, SUPPORTS, is_relu

BACKEND = "numba-cpu"

def _tiled_min_hidden_from_environment() -> int | None:
    value = os.environ.get("RNNBENCH_NUMBA_TILED_MIN_HIDDEN", "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"RNNBENCH_NUMBA_TILED_MIN_HIDDEN must be an integer hidden size, got {value!r}"
        ) from None


#: The threaded, tiled kernels (``*_tiled`` in numba_kernels) run when this is set, the hidden
#: size is at least this, and Numba may use 2+ threads (the run's thread budget, through
#: ``numba.set_num_threads``). Off (None) by default: on the shared 2-core machine they were
#: measured, they were slower than the serial kernels at every grid point (0.3-0.8x their
#: speed at H >= 512, 0.1-0.4x at H = 128; see numba_kernels' docstring), so the default stays the
#: serial kernels until a quiet machine shows where they win. Set it for a run with the
#: environment variable ``RNNBENCH_NUMBA_TILED_MIN_HIDDEN``; tests set it to force a path.
TILED_MIN_HIDDEN: int | None = _tiled_min_hidden_from_environment()
#: Tests only: this many tiles whatever the thread count (None: one per Numba thread).
TILED_BLOCKS: int | None = None

# The tiled kernels launch one parallel region per time step. Numba's OpenMP layer (the
# default here, without TBB) spins its idle threads: on a loaded machine a 20-step LSTM forward
# took 1-4 s with it, 4-15 ms with OMP_WAIT_POLICY=PASSIVE or the workqueue layer. Which layer
# runs is the user's choice (NUMBA_THREADING_LAYER); the workqueue layer is not safe for
# parallel regions launched from several threads at once, so the tiled kernels run under one
# lock (see _tiled_section).
_TILED_LOCK = threading.Lock()
_BLAS: Any = None


def _blas_controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries, numpy's and the one Numba's
    ``np.dot`` calls (SciPy's), created once."""
    global _BLAS
    if _BLAS is None:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS Numba's np.dot uses)
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS


@contextmanager
def _tiled_section() -> Iterator[None]:
    """BLAS capped to one thread (each Numba thread calls BLAS on its own tile; a threaded
    BLAS would run budget x budget threads) and one tiled kernel at a time (see above)."""
    with _TILED_LOCK, _blas_controller().limit(limits=1, user_api="blas"):
        yield


def tiled_blocks(hidden: int) -> int:
    """Threads for the tiled kernels (Numba's thread count in this thread: the run's budget),
    or 0 for the serial kernels."""
    if TILED_MIN_HIDDEN is None or hidden < TILED_MIN_HIDDEN:
        return 0
    if TILED_BLOCKS is not None:
        return TILED_BLOCKS
    import numba

    threads = int(numba.get_num_threads())
    return threads if threads >= 2 else 0

def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


#: The packed kernels (``lstm_*_packed`` in numba_kernels: W_hh packed once per call,
#: hand-written products, no BLAS in the time loop; LSTM only so far). Parallel driver (one
#: region per step, ``prange`` over blocks of ``PACKED_BLOCK`` units) when
#: ``2 <= B <= PACKED_MAX_BATCH`` and ``H >= PACKED_MIN_HIDDEN`` and Numba may use 2+ threads
#: (the run's budget): there BLAS re-packs all of W_hh every step for a product of 2 rows
#: (measured train step, float32, 2 threads, SkylakeX kernels: (50,2,256,2048) 325 vs 494 ms,
#: 404 vs 680 ms across two processes; B=4 a wash: (50,4,64,1536) 235 vs 254 ms, 290 vs 261);
#: not at B=1 (BLAS's GEMV does not pack: (50,1,64,2048) 291 vs 188 ms) nor B=16
#: ((50,16,64,1024) 254 vs 137 ms), nor at H<=512 (2-5x slower). Serial driver when the
#: whole recurrent product, B*G*H*H multiply-adds, is at most
#: ``PACKED_SERIAL_MAX_WORK``: off (0) by default, slower than BLAS everywhere measured
#: ((1000,1,16,64) 8.0 vs 1.9 ms). Environment: RNNBENCH_NUMBA_PACKED_SERIAL_MAX_WORK /
#: _MAX_BATCH / _MIN_HIDDEN (MAX_BATCH=1 turns the parallel driver off); tests force a driver.
PACKED_SERIAL_MAX_WORK: int = _env_int("RNNBENCH_NUMBA_PACKED_SERIAL_MAX_WORK", 0)
PACKED_MAX_BATCH: int = _env_int("RNNBENCH_NUMBA_PACKED_MAX_BATCH", 2)
PACKED_MIN_HIDDEN: int = _env_int("RNNBENCH_NUMBA_PACKED_MIN_HIDDEN", 1536)
PACKED_BLOCK: int = 32
#: Tests only: "serial" or "parallel" forces that packed driver (None: the heuristic).
PACKED_FORCE: str | None = None


def packed_path(hidden: int, batch: int, gates: int) -> str | None:
    """``"serial"``, ``"parallel"`` (the packed kernels' driver) or None (BLAS kernels)."""
    if PACKED_FORCE is not None:
        return PACKED_FORCE
    if TILED_MIN_HIDDEN is not None and hidden >= TILED_MIN_HIDDEN:
        return None  # the user asked for the tiled kernels
    if batch * gates * hidden * hidden <= PACKED_SERIAL_MAX_WORK:
        return "serial"
    if 2 <= batch <= PACKED_MAX_BATCH and hidden >= PACKED_MIN_HIDDEN:
        import numba

        if int(numba.get_num_threads()) >= 2:
            return "parallel"
    return None


def _packed_block(hidden: int, way: str) -> int:
    # The serial driver runs one block of all units (one pass over h per step).
    return hidden if way == "serial" else min(PACKED_BLOCK, hidden)


#: One layer's state: ``(h,)`` or ``(h, c)``, each ``(B, H)``.
LayerState = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class KernelCache:
    """What one layer's forward keeps for backward: its input and the kernel's buffers."""

    inputs: np.ndarray  # (T, B, I_k): the sequence this layer read, C-contiguous
    buffers: tuple[np.ndarray, ...]  # per cell: gates / states, as the kernel wrote them

    @property
    def x2(self) -> np.ndarray:
        """The input as ``(T*B, I_k)`` rows: every step's input in one matrix, for one GEMM."""
        steps, batch = self.inputs.shape[:2]
        return self.inputs.reshape(steps * batch, -1)


def _c(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array)


class NumbaCell(StackedCell):
    """One layer over a whole sequence as a compiled kernel pair; a cell adds its kernels."""

    kind: ClassVar[str]
    description: ClassVar[str]

    def _weights(self, params: Mapping[str, np.ndarray], k: int):
        """``(W_ih, W_hh, b_ih, b_hh)`` of layer ``k``, contiguous; zero biases without bias."""
        w_ih, w_hh = params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"]
        if self.config.bias:
            b_ih, b_hh = params[f"bias_ih_l{k}"], params[f"bias_hh_l{k}"]
        else:
            b_ih = b_hh = np.zeros(w_hh.shape[0], self.config.np_dtype)
        return _c(w_ih), _c(w_hh), _c(b_ih), _c(b_hh)

    def layer_forward(
        self, params: Mapping[str, np.ndarray], k: int, inputs: np.ndarray, state: LayerState
    ) -> tuple[np.ndarray, LayerState, KernelCache]:
        steps, batch = inputs.shape[:2]
        cache = KernelCache(_c(inputs), ())
        h_all, final, buffers = self._forward_kernel(
            cache.x2, *self._weights(params, k), tuple(_c(s) for s in state), steps, batch
        )
        return h_all[1:], final, KernelCache(cache.inputs, buffers)

    def layer_backward(
        self,
        params: Mapping[str, np.ndarray],
        k: int,
        layer_cache: KernelCache,
        d_outputs: np.ndarray,
        d_final: LayerState,
    ) -> tuple[np.ndarray, LayerState, dict[str, np.ndarray]]:
        w_ih, w_hh, _, _ = self._weights(params, k)
        steps, batch = d_outputs.shape[:2]
        dtype = self.config.np_dtype
        dx2 = np.empty_like(layer_cache.x2)
        dw_ih, dw_hh = np.empty_like(w_ih), np.empty_like(w_hh)
        db_ih = np.empty(w_hh.shape[0], dtype)
        db_hh = np.empty_like(db_ih)
        d_initial = tuple(np.empty_like(d) for d in d_final)
        self._backward_kernel(
            layer_cache, w_ih, w_hh, _c(d_outputs), tuple(_c(d) for d in d_final),
            (dx2, dw_ih, dw_hh, db_ih, db_hh), d_initial,
        )
        grads = {f"weight_ih_l{k}": dw_ih, f"weight_hh_l{k}": dw_hh}
        if self.config.bias:
            grads[f"bias_ih_l{k}"] = db_ih
            grads[f"bias_hh_l{k}"] = db_hh
        return dx2.reshape(steps, batch, -1), d_initial, grads

    def _empty(self, *shape: int) -> np.ndarray:
        return np.empty(shape, self.config.np_dtype)

    _forward_kernel: Callable[..., Any]
    _backward_kernel: Callable[..., Any]


class NumbaRNNCell(NumbaCell):
    kind = "rnn"
    description = "Elman RNN (tanh or relu), PyTorch nn.RNN equations; Numba-compiled for the CPU"
    gates = 1

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.relu = is_relu(config.option("nonlinearity"))

    def _forward_kernel(self, x2, w_ih, w_hh, b_ih, b_hh, state, steps, batch):
        hidden = self.config.hidden_size
        gi, h_all = self._empty(steps, batch, hidden), self._empty(steps + 1, batch, hidden)
        blocks = tiled_blocks(hidden)
        if blocks:
            rows, bs = kernels.pack_panels(w_hh, 1, blocks)
            np.dot(x2, w_ih.T, out=gi.reshape(steps * batch, hidden))
            tiles = self._empty(rows.shape[0], batch, bs)
            with _tiled_section():
                kernels.rnn_forward_tiled(rows, bs, b_ih + b_hh, state[0], gi, h_all, tiles,
                                          self.relu)
        else:
            kernels.rnn_forward(x2, w_ih, w_hh, b_ih + b_hh, state[0], gi, h_all, self.relu)
        return h_all, (h_all[steps],), (h_all,)

    def _backward_kernel(self, cache, w_ih, w_hh, d_outputs, d_final, grads, d_initial):
        (h_all,) = cache.buffers
        d_pre = np.empty_like(d_outputs)
        steps, batch, hidden = d_pre.shape
        blocks = tiled_blocks(hidden)
        if not blocks:
            kernels.rnn_backward(cache.x2, w_ih, w_hh, h_all, d_outputs, d_final[0], d_pre,
                                 *grads, d_initial[0], self.relu)
            return
        rows, bs = kernels.pack_panels(w_hh, 1, blocks)
        tiles = np.zeros((rows.shape[0], batch, bs), d_pre.dtype)
        partials = np.empty((2, rows.shape[0], batch, hidden), d_pre.dtype)
        with _tiled_section():
            kernels.rnn_backward_tiled(rows, bs, h_all, d_outputs, d_final[0], d_pre,
                                       d_initial[0], tiles, partials, self.relu)
        d2 = d_pre.reshape(steps * batch, hidden)
        kernels._weight_grads(d2, d2, cache.x2, h_all[:steps].reshape(steps * batch, hidden),
                              w_ih, *grads)


class NumbaLSTMCell(NumbaCell):
    kind = "lstm"
    description = "LSTM, PyTorch nn.LSTM equations (gates i, f, g, o); Numba-compiled for the CPU"
    gates = 4
    state_size = 2
    state_names = ("h", "c")

    def _forward_kernel(self, x2, w_ih, w_hh, b_ih, b_hh, state, steps, batch):
        hidden = self.config.hidden_size
        gates = self._empty(steps, batch, 4 * hidden)
        h_all, c_all = self._empty(steps + 1, batch, hidden), self._empty(steps + 1, batch, hidden)
        blocks = tiled_blocks(hidden)
        way = packed_path(hidden, batch, 4)
        if way:
            sb = _packed_block(hidden, way)
            fwd = kernels.pack_forward(w_hh, 4, sb)
            np.dot(x2, w_ih.T, out=gates.reshape(steps * batch, 4 * hidden))
            acc = self._empty(fwd.shape[0], batch, 4 * sb)
            if way == "parallel":
                with _tiled_section():
                    kernels.lstm_forward_packed_par(fwd, sb, b_ih + b_hh, state[0], state[1],
                                                    gates, h_all, c_all, acc)
            else:
                kernels.lstm_forward_packed(fwd, sb, b_ih + b_hh, state[0], state[1], gates,
                                            h_all, c_all, acc)
        elif blocks:
            rows, bs = kernels.pack_panels(w_hh, 4, blocks)
            np.dot(x2, w_ih.T, out=gates.reshape(steps * batch, 4 * hidden))
            tiles = self._empty(rows.shape[0], batch, 4 * bs)
            with _tiled_section():
                kernels.lstm_forward_tiled(rows, bs, b_ih + b_hh, state[0], state[1], gates,
                                           h_all, c_all, tiles)
        else:
            kernels.lstm_forward(x2, w_ih, w_hh, b_ih + b_hh, state[0], state[1], gates, h_all,
                                 c_all)
        return h_all, (h_all[steps], c_all[steps]), (gates, h_all, c_all)

    def _backward_kernel(self, cache, w_ih, w_hh, d_outputs, d_final, grads, d_initial):
        gates, h_all, c_all = cache.buffers
        d_pre = np.empty_like(gates)
        steps, batch, width = gates.shape
        hidden = width // 4
        blocks = tiled_blocks(hidden)
        way = packed_path(hidden, batch, 4)
        if way:
            sb = _packed_block(hidden, way)
            bwd = kernels.pack_backward(w_hh, sb)
            dh = np.empty((bwd.shape[0], batch, sb), gates.dtype)
            tiles = np.zeros((bwd.shape[0], batch, 4 * sb), gates.dtype)
            if way == "parallel":
                with _tiled_section():
                    kernels.lstm_backward_packed_par(bwd, sb, gates, c_all, d_outputs,
                                                     d_final[0], d_final[1], d_pre, d_initial[0],
                                                     d_initial[1], dh, tiles)
            else:
                kernels.lstm_backward_packed(bwd, sb, gates, c_all, d_outputs, d_final[0],
                                             d_final[1], d_pre, d_initial[0], d_initial[1], dh,
                                             tiles)
            d2 = d_pre.reshape(steps * batch, width)
            kernels._weight_grads(d2, d2, cache.x2, h_all[:steps].reshape(steps * batch, hidden),
                                  w_ih, *grads)
            return
        if not blocks:
            kernels.lstm_backward(cache.x2, w_ih, w_hh, gates, h_all, c_all, d_outputs,
                                  d_final[0], d_final[1], d_pre, *grads, d_initial[0],
                                  d_initial[1])
            return
        rows, bs = kernels.pack_panels(w_hh, 4, blocks)
        tiles = np.zeros((rows.shape[0], batch, 4 * bs), gates.dtype)
        partials = np.empty((2, rows.shape[0], batch, hidden), gates.dtype)
        dh_tiles = np.empty((rows.shape[0], bs), gates.dtype)
        with _tiled_section():
            kernels.lstm_backward_tiled(rows, bs, gates, c_all, d_outputs, d_final[0],
                                        d_final[1], d_pre, d_initial[0], d_initial[1], tiles,
                                        partials, dh_tiles)
        d2 = d_pre.reshape(steps * batch, width)
        kernels._weight_grads(d2, d2, cache.x2, h_all[:steps].reshape(steps * batch, hidden),
                              w_ih, *grads)


class NumbaGRUCell(NumbaCell):
    kind = "gru"
    description = "GRU, PyTorch nn.GRU equations (gates r, z, n); Numba-compiled for the CPU"
    gates = 3

    def _forward_kernel(self, x2, w_ih, w_hh, b_ih, b_hh, state, steps, batch):
        hidden = self.config.hidden_size
        gates, gh_n = self._empty(steps, batch, 3 * hidden), self._empty(steps, batch, hidden)
        h_all = self._empty(steps + 1, batch, hidden)
        blocks = tiled_blocks(hidden)
        if blocks:
            rows, bs = kernels.pack_panels(w_hh, 3, blocks)
            np.dot(x2, w_ih.T, out=gates.reshape(steps * batch, 3 * hidden))
            tiles = self._empty(rows.shape[0], batch, 3 * bs)
            with _tiled_section():
                kernels.gru_forward_tiled(rows, bs, b_ih, b_hh, state[0], gates, gh_n, h_all,
                                          tiles)
        else:
            kernels.gru_forward(x2, w_ih, w_hh, b_ih, b_hh, state[0], gates, gh_n, h_all)
        return h_all, (h_all[steps],), (gates, gh_n, h_all)

    def _backward_kernel(self, cache, w_ih, w_hh, d_outputs, d_final, grads, d_initial):
        gates, gh_n, h_all = cache.buffers
        d_in, d_hid = np.empty_like(gates), np.empty_like(gates)
        steps, batch, width = gates.shape
        hidden = width // 3
        blocks = tiled_blocks(hidden)
        if not blocks:
            kernels.gru_backward(cache.x2, w_ih, w_hh, gates, gh_n, h_all, d_outputs,
                                 d_final[0], d_in, d_hid, *grads, d_initial[0])
            return
        rows, bs = kernels.pack_panels(w_hh, 3, blocks)
        tiles = np.zeros((rows.shape[0], batch, 3 * bs), gates.dtype)
        partials = np.empty((2, rows.shape[0] + 1, batch, hidden), gates.dtype)
        dh_tiles = np.empty((rows.shape[0], bs), gates.dtype)
        with _tiled_section():
            kernels.gru_backward_tiled(rows, bs, gates, gh_n, h_all, d_outputs, d_final[0], d_in,
                                       d_hid, d_initial[0], tiles, partials, dh_tiles)
        kernels._weight_grads(d_in.reshape(steps * batch, width),
                              d_hid.reshape(steps * batch, width), cache.x2,
                              h_all[:steps].reshape(steps * batch, hidden), w_ih, *grads)


CELLS: tuple[type[NumbaCell], ...] = (NumbaRNNCell, NumbaLSTMCell, NumbaGRUCell)


@hookimpl
def rnnbench_register_cells(register: Callable[..., Any]) -> None:
    for cell in CELLS:
        register(cell.kind, BACKEND, cell, description=cell.description,
                 supports=SUPPORTS.get(cell.kind), options=OPTIONS.get(cell.kind))
