"""The ``numba-cpu`` backend: PyTorch's RNN (tanh or relu), LSTM and GRU compiled with Numba.

Same equations, parameter names and layout as the numpy reference (and PyTorch), so a suite
switches backend with one word and gets the same numbers to the dtype's precision. The protocol
plumbing (argument checks, the layer stack, state shapes, parameters) is
:class:`rnnbench.StackedCell`'s; this module supplies the work of one layer over one whole
sequence, as the kernels in :mod:`rnnbench.plugins.cells.numba_kernels`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rnnbench import StackedCell, hookimpl
from rnnbench.plugins.cells import numba_kernels as kernels
from rnnbench.plugins.cells.options import OPTIONS, SUPPORTS, is_relu

BACKEND = "numba-cpu"

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
        kernels.rnn_forward(x2, w_ih, w_hh, b_ih + b_hh, state[0], gi, h_all, self.relu)
        return h_all, (h_all[steps],), (h_all,)

    def _backward_kernel(self, cache, w_ih, w_hh, d_outputs, d_final, grads, d_initial):
        (h_all,) = cache.buffers
        d_pre = np.empty_like(d_outputs)
        kernels.rnn_backward(cache.x2, w_ih, w_hh, h_all, d_outputs, d_final[0], d_pre, *grads,
                             d_initial[0], self.relu)


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
        kernels.lstm_forward(x2, w_ih, w_hh, b_ih + b_hh, state[0], state[1], gates, h_all, c_all)
        return h_all, (h_all[steps], c_all[steps]), (gates, h_all, c_all)

    def _backward_kernel(self, cache, w_ih, w_hh, d_outputs, d_final, grads, d_initial):
        gates, h_all, c_all = cache.buffers
        d_pre = np.empty_like(gates)
        kernels.lstm_backward(cache.x2, w_ih, w_hh, gates, h_all, c_all, d_outputs, d_final[0],
                              d_final[1], d_pre, *grads, d_initial[0], d_initial[1])


class NumbaGRUCell(NumbaCell):
    kind = "gru"
    description = "GRU, PyTorch nn.GRU equations (gates r, z, n); Numba-compiled for the CPU"
    gates = 3

    def _forward_kernel(self, x2, w_ih, w_hh, b_ih, b_hh, state, steps, batch):
        hidden = self.config.hidden_size
        gates, gh_n = self._empty(steps, batch, 3 * hidden), self._empty(steps, batch, hidden)
        h_all = self._empty(steps + 1, batch, hidden)
        kernels.gru_forward(x2, w_ih, w_hh, b_ih, b_hh, state[0], gates, gh_n, h_all)
        return h_all, (h_all[steps],), (gates, gh_n, h_all)

    def _backward_kernel(self, cache, w_ih, w_hh, d_outputs, d_final, grads, d_initial):
        gates, gh_n, h_all = cache.buffers
        d_in, d_hid = np.empty_like(gates), np.empty_like(gates)
        kernels.gru_backward(cache.x2, w_ih, w_hh, gates, gh_n, h_all, d_outputs, d_final[0],
                             d_in, d_hid, *grads, d_initial[0])


CELLS: tuple[type[NumbaCell], ...] = (NumbaRNNCell, NumbaLSTMCell, NumbaGRUCell)


@hookimpl
def rnnbench_register_cells(register: Callable[..., Any]) -> None:
    for cell in CELLS:
        register(cell.kind, BACKEND, cell, description=cell.description,
                 supports=SUPPORTS.get(cell.kind), options=OPTIONS.get(cell.kind))
