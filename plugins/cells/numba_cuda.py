"""The ``numba-cuda`` backend: PyTorch's RNN (tanh or relu), LSTM and GRU as CUDA kernels (Numba).

Same equations, parameter names and layout as the numpy reference (and PyTorch). Arrays live on
the GPU: :meth:`CudaCell.to_backend` copies a host array there, :meth:`CudaCell.to_host` copies
one back, and ``forward``/``backward``/``step`` return device arrays. They accept parameters,
inputs and states either as device arrays or as host numpy arrays (copied over first), always
of the cell's dtype. A whole sequence runs on the device: see
:mod:`rnnbench.plugins.cells.cuda_kernels`.

The layer stack, argument checks and the protocol's shape conventions are
:class:`rnnbench.StackedCell`'s; this module supplies the per-layer forward and backward and the
base's array plumbing for device arrays (copies, zeros, stacking, checking device arguments).

Without a GPU the cells are registered but unavailable, with the reason; with
``NUMBA_ENABLE_CUDASIM=1`` they run on Numba's CUDA simulator (slowly: every GPU thread is a
Python thread), which is how the tests run without a GPU. Importing this module does not import
``numba.cuda``; the availability check and the first use of a cell do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rnnbench import StackedCell, hookimpl
from rnnbench.plugins.cells.options import OPTIONS, SUPPORTS, is_relu

BACKEND = "numba-cuda"

#: One layer's state: ``(h,)`` or ``(h, c)``, each ``(B, H)``, on the device.
LayerState = tuple[Any, ...]


@functools.cache
def unavailable_reason() -> str | None:
    """``None`` when ``numba.cuda`` can run kernels here (a GPU, or the simulator), else why not."""
    try:
        from numba import cuda
    except Exception as exc:  # an unusable CUDA installation must not break a listing
        return f"numba.cuda cannot be imported: {type(exc).__name__}: {exc}"
    try:
        if cuda.is_available():
            return None
    except Exception as exc:
        return f"numba.cuda.is_available() failed: {type(exc).__name__}: {exc}"
    return (
        "no CUDA GPU found (numba.cuda.is_available() is False); set NUMBA_ENABLE_CUDASIM=1 to"
        " run on Numba's CUDA simulator"
    )


def on_simulator() -> bool:
    """Whether ``numba.cuda`` is (or will be, when imported) Numba's CUDA simulator."""
    from numba.core import config

    return bool(config.ENABLE_CUDASIM)


def _cuda() -> Any:
    from numba import cuda

    return cuda


def _kernels_module() -> Any:
    from rnnbench.plugins.cells import cuda_kernels

    return cuda_kernels


def is_device_array(array: Any) -> bool:
    """Whether ``array`` is a Numba CUDA device array (a simulator's fake one included)."""
    if isinstance(array, np.ndarray):
        return False
    return bool(_cuda().devicearray.is_cuda_ndarray(array))


@dataclass(frozen=True)
class CudaLayerCache:
    """What one layer's forward keeps for backward, all on the device."""

    inputs: Any  # (T, B, I_k): the sequence this layer read, C-contiguous
    h_all: Any  # (T+1, B, H): the initial hidden state, then every step's
    buffers: tuple[Any, ...]  # per cell: activated gates, cell states, ...


class CudaCell(StackedCell):
    """A cell whose arrays live on a CUDA device and whose layers run as kernels."""

    kind: ClassVar[str]
    description: ClassVar[str]
    array_description = "a CUDA device array or a numpy array"

    def __init__(self, config) -> None:
        super().__init__(config)
        #: Thread-block shapes (a :class:`rnnbench.plugins.cells.cuda_kernels.Geometry`);
        #: ``None``: the default for the GPU, or small blocks on the simulator.
        self.geometry = None

    def training_ops(self) -> Any:
        """Training resident on the GPU: the readout, standard losses, clipping and optimizer
        as kernels (:mod:`rnnbench.plugins.cells.cuda_training`); see
        :mod:`rnnbench.device_ops`."""
        from rnnbench.plugins.cells.cuda_training import CudaArrayOps

        return CudaArrayOps(self)

    # --- Array plumbing (StackedCell's hooks) ---------------------------------------------------

    def to_backend(self, array: np.ndarray) -> Any:
        if is_device_array(array):
            if array.dtype != self.config.np_dtype:
                raise ValueError(
                    f"device array has dtype {array.dtype}, the cell's is {self.config.dtype}"
                )
            return array
        return _cuda().to_device(np.ascontiguousarray(array, dtype=self.config.np_dtype))

    def synchronize(self) -> None:
        """Waits for this cell's kernels (they launch asynchronously): timers call it."""
        _cuda().synchronize()

    def to_host(self, array: Any) -> np.ndarray:
        if is_device_array(array):
            return array.copy_to_host()
        return np.asarray(array)

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return self._zeros(*shape)

    def stack(self, arrays: Sequence[Any]) -> Any:
        """``(B, H)`` device arrays stacked into a new ``(len(arrays), B, H)`` one."""
        out = self._empty(len(arrays), *arrays[0].shape)
        for k, array in enumerate(arrays):
            self._copy(array, out[k])
        return out

    def check_array(
        self, name: str, array: Any, shape: Sequence[int | str], *, contiguous: bool = False
    ) -> Any:
        """``array`` on the device, checked: a host array is checked as numpy arrays are, then
        copied over; a device array must have the shape and dtype (and be C-contiguous where
        ``contiguous``)."""
        if not is_device_array(array):
            return self.to_backend(super().check_array(name, array, shape))
        self.check_shape_and_dtype(name, array, shape)
        if contiguous and not array.is_c_contiguous():
            raise ValueError(f"{name} must be a C-contiguous device array")
        return array

    # --- Layers ---------------------------------------------------------------------------------

    def _layer_params(self, params: Mapping[str, Any], k: int) -> tuple[Any, Any, Any, Any]:
        """``(W_ih, W_hh, b_ih, b_hh)`` of layer ``k``; the biases are None without bias."""
        if not self.config.bias:
            return params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"], None, None
        return tuple(params[f"{p}_l{k}"] for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def layer_forward(
        self, params: Mapping[str, Any], k: int, inputs: Any, state: LayerState
    ) -> tuple[Any, LayerState, CudaLayerCache]:
        """Layer ``k`` over the whole sequence ``inputs`` (T, B, I_k) from ``state``: one GEMM for
        the input's share of every step, then one fused kernel per step."""
        steps, batch, width_in = inputs.shape
        hidden, width = self.config.hidden_size, self.gates * self.config.hidden_size
        w_ih, w_hh, b_ih, b_hh = self._layer_params(params, k)
        if b_ih is None:
            b_ih = b_hh = self._zeros(width)
        pre = self._empty(steps, batch, width)
        self._matmul(
            inputs.reshape(steps * batch, width_in), w_ih, pre.reshape(steps * batch, width),
            bias=b_ih, trans_b=True,
        )
        w_hh_t = self._empty(hidden, width)
        self._launch_2d(self._k.transpose, hidden, width, w_hh, w_hh_t)
        h_all = self._empty(steps + 1, batch, hidden)
        self._copy(state[0], h_all[0])
        buffers = self._forward_steps(pre, w_hh_t, b_hh, h_all, state)
        cache = CudaLayerCache(inputs=inputs, h_all=h_all, buffers=buffers)
        return h_all[1:], self._final_state(cache), cache

    def layer_backward(
        self,
        params: Mapping[str, Any],
        k: int,
        layer_cache: CudaLayerCache,
        d_outputs: Any,
        d_final: LayerState,
    ) -> tuple[Any, LayerState, dict[str, Any]]:
        """BPTT through layer ``k``: one fused kernel per step (and one more for the initial
        state), then every weight gradient as one GEMM over all ``T*B`` rows."""
        cache = layer_cache
        w_ih, w_hh, _, _ = self._layer_params(params, k)
        steps, batch, width_in = cache.inputs.shape
        hidden, width = self.config.hidden_size, self.gates * self.config.hidden_size
        rows = steps * batch
        carries = tuple(self._copy(d, self._empty(batch, hidden)) for d in d_final)
        d_in, d_hid = self._backward_steps(cache, w_hh, d_outputs, carries)
        d_in2, d_hid2 = d_in.reshape(rows, width), d_hid.reshape(rows, width)
        x2 = cache.inputs.reshape(rows, width_in)
        h_prev2 = cache.h_all[:steps].reshape(rows, hidden)
        dw_ih, dw_hh = self._empty(width, width_in), self._empty(width, hidden)
        self._matmul(d_in2, x2, dw_ih, trans_a=True)
        self._matmul(d_hid2, h_prev2, dw_hh, trans_a=True)
        d_inputs = self._empty(steps, batch, width_in)
        self._matmul(d_in2, w_ih, d_inputs.reshape(rows, width_in))
        grads = {f"weight_ih_l{k}": dw_ih, f"weight_hh_l{k}": dw_hh}
        if self.config.bias:
            grads[f"bias_ih_l{k}"] = self._column_sums(d_in2)
            grads[f"bias_hh_l{k}"] = self._column_sums(d_hid2)
        return d_inputs, carries, grads

    # Per cell: the time loops.
    _forward_steps: Callable[..., tuple[Any, ...]]
    _backward_steps: Callable[..., tuple[Any, Any]]
    _final_state: Callable[[CudaLayerCache], LayerState]

    # --- Launching ------------------------------------------------------------------------------

    @property
    def _k(self) -> Any:
        module = _kernels_module()
        if self.geometry is None:
            self.geometry = module.default_geometry()
        return module.kernels(self.config.dtype, self.geometry)

    def _blocks(self, n: int, per_block: int) -> int:
        """Blocks of ``per_block`` to cover ``n``: at least one, at most ``max_blocks`` (the
        kernels launched this way loop over the rest)."""
        return min(max(1, -(-n // per_block)), self._k.geometry.max_blocks)

    def _launch_2d(self, kernel: Any, n_cols: int, n_rows: int, *args: Any) -> None:
        """A grid-stride helper over a ``(n_rows, n_cols)`` index space, x along the columns."""
        tile = self._k.geometry.tile
        kernel[(self._blocks(n_cols, tile), self._blocks(n_rows, tile)), (tile, tile)](*args)

    def _launch_1d(self, kernel: Any, n: int, *args: Any) -> None:
        threads = self._k.geometry.threads
        kernel[self._blocks(n, threads), threads](*args)

    def _launch_step(self, kernel: Any, batch: int, *args: Any) -> None:
        """A step kernel: x over the hidden units, y over the batch (every block's grid point is
        needed: these do not loop)."""
        geometry = self._k.geometry
        grid = (
            -(-self.config.hidden_size // geometry.cols),
            -(-batch // (geometry.rows * geometry.per_thread)),
        )
        kernel[grid, (geometry.cols, geometry.rows)](*args)

    def _matmul(self, a, b, c, bias=None, trans_a=False, trans_b=False) -> None:
        """``c = op(a) @ op(b) (+ bias)``; see :func:`cuda_kernels.kernels`."""
        geometry = self._k.geometry
        block = geometry.tile * geometry.micro
        grid = (self._blocks(c.shape[1], block), self._blocks(c.shape[0], block))
        self._k.matmul[grid, (geometry.tile, geometry.tile)](
            a, b, c, c[0] if bias is None else bias, int(trans_a), int(trans_b),
            int(bias is not None),
        )

    def _column_sums(self, d: Any) -> Any:
        out = self._empty(d.shape[1])
        self._launch_1d(self._k.column_sums, d.shape[1], d, out)
        return out

    def _copy(self, src: Any, dst: Any) -> Any:
        """``dst[:, :] = src`` for ``(B, H)`` arrays; returns ``dst``."""
        self._launch_2d(self._k.copy2d, dst.shape[1], dst.shape[0], src, dst)
        return dst

    def _empty(self, *shape: int) -> Any:
        return _cuda().device_array(shape, self.config.np_dtype)

    def _zeros(self, *shape: int) -> Any:
        array = self._empty(*shape)
        flat = array.reshape(int(np.prod(shape)))
        self._launch_1d(self._k.fill_zero, flat.shape[0], flat)
        return array


class CudaRNNCell(CudaCell):
    kind = "rnn"
    description = "Elman RNN (tanh or relu), PyTorch nn.RNN equations; Numba CUDA kernels (GPU)"
    gates = 1

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.relu = is_relu(config.option("nonlinearity"))

    def _forward_steps(self, pre, w_hh_t, b_hh, h_all, state):
        batch = h_all.shape[1]
        for t in range(pre.shape[0]):
            self._launch_step(self._k.rnn_forward_step, batch, t, pre, w_hh_t, b_hh, h_all,
                              self.relu)
        return ()

    def _final_state(self, cache):
        return (cache.h_all[cache.h_all.shape[0] - 1],)

    def _backward_steps(self, cache, w_hh, d_outputs, carries):
        steps, batch, hidden = d_outputs.shape
        d_pre = self._empty(steps, batch, hidden)
        for t in range(steps - 1, -2, -1):
            self._launch_step(
                self._k.rnn_backward_step, batch, t, cache.h_all, d_outputs, w_hh, d_pre, *carries,
                self.relu,
            )
        return d_pre, d_pre


class CudaLSTMCell(CudaCell):
    kind = "lstm"
    description = "LSTM, PyTorch nn.LSTM equations (gates i, f, g, o); Numba CUDA kernels (GPU)"
    gates = 4
    state_size = 2
    state_names = ("h", "c")

    def _forward_steps(self, gates, w_hh_t, b_hh, h_all, state):
        steps, batch = gates.shape[:2]
        c_all = self._empty(*h_all.shape)
        self._copy(state[1], c_all[0])
        for t in range(steps):
            self._launch_step(
                self._k.lstm_forward_step, batch, t, gates, w_hh_t, b_hh, h_all, c_all
            )
        return (gates, c_all)

    def _final_state(self, cache):
        last = cache.h_all.shape[0] - 1
        return (cache.h_all[last], cache.buffers[1][last])

    def _backward_steps(self, cache, w_hh, d_outputs, carries):
        gates, c_all = cache.buffers
        d_pre = self._empty(*gates.shape)
        batch = gates.shape[1]
        for t in range(gates.shape[0] - 1, -2, -1):
            self._launch_step(
                self._k.lstm_backward_step, batch, t, gates, c_all, d_outputs, w_hh, d_pre,
                *carries,
            )
        return d_pre, d_pre


class CudaGRUCell(CudaCell):
    kind = "gru"
    description = "GRU, PyTorch nn.GRU equations (gates r, z, n); Numba CUDA kernels (GPU)"
    gates = 3

    def _forward_steps(self, gates, w_hh_t, b_hh, h_all, state):
        steps, batch = gates.shape[:2]
        gh_n = self._empty(steps, batch, self.config.hidden_size)
        for t in range(steps):
            self._launch_step(self._k.gru_forward_step, batch, t, gates, w_hh_t, b_hh, h_all, gh_n)
        return (gates, gh_n)

    def _final_state(self, cache):
        return (cache.h_all[cache.h_all.shape[0] - 1],)

    def _backward_steps(self, cache, w_hh, d_outputs, carries):
        gates, gh_n = cache.buffers
        d_in, d_hid = self._empty(*gates.shape), self._empty(*gates.shape)
        batch = gates.shape[1]
        for t in range(gates.shape[0] - 1, -2, -1):
            self._launch_step(
                self._k.gru_backward_step, batch, t, gates, gh_n, cache.h_all, d_outputs, w_hh,
                d_in, d_hid, *carries,
            )
        return d_in, d_hid


CELLS: tuple[type[CudaCell], ...] = (CudaRNNCell, CudaLSTMCell, CudaGRUCell)


@hookimpl
def rnnbench_register_cells(register: Callable[..., Any]) -> None:
    for cell in CELLS:
        register(
            cell.kind, BACKEND, cell, description=cell.description, available=unavailable_reason,
            supports=SUPPORTS.get(cell.kind), options=OPTIONS.get(cell.kind),
        )
