"""The ``numpy`` backend: PyTorch's RNN (tanh or relu), LSTM and GRU as plain, readable numpy.

These cells are the oracle every faster backend is checked against, so they are written for
clarity rather than speed: vectorised over the batch, a plain Python loop over time, all
arithmetic in ``config.dtype``. They build on :class:`rnnbench.StackedCell` (argument checks, the
layer stack, state shapes, parameters) like every other backend, and share nothing else with
them: no backend imports this module.

:class:`ReferenceCell` runs one layer over a sequence, and backpropagates through it, for all
three cells. A cell adds only its equations, as two functions of one time step of one layer:

- ``step_forward(gi, gh, state) -> (new_state, saved)``, where ``gi = x W_ih^T + b_ih`` and
  ``gh = h W_hh^T + b_hh`` are the gate pre-activations ``(B, G*H)`` coming from the input and
  from the previous hidden state, ``state`` is the layer's state before the step (each ``(B, H)``,
  ``h`` first), ``new_state[0]`` is the new ``h`` (the layer's output) and ``saved`` is whatever
  the backward step needs;
- ``step_backward(d_new_state, state, saved) -> (d_gi, d_gh, d_state)``: from dLoss/d new state,
  the gradients with respect to ``gi``, ``gh`` and ``state``, the last along the paths that do
  not pass through ``gh`` only (the layer adds ``d_gh W_hh`` to ``d_h``).

``gi`` and ``gh`` are kept apart because GRU needs them apart (its reset gate multiplies
``W_hn h + b_hn`` only); for RNN and LSTM both gradients are the same array.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rnnbench import StackedCell, hookimpl
from rnnbench.plugins.cells.options import OPTIONS, SUPPORTS, is_relu

BACKEND = "numpy"

#: One layer's state at one time step: ``(h,)`` or ``(h, c)``, each ``(B, H)``.
LayerState = tuple[np.ndarray, ...]
#: What a cell's ``step_forward`` keeps for its ``step_backward``.
Saved = tuple[np.ndarray, ...]


def sigmoid(a: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow: ``exp`` is only taken of ``-|a|``."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


def _affine(a: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``a @ weight.T + bias`` over the last axis of ``a`` (no bias term when ``bias`` is None)."""
    out = a @ weight.T
    return out if bias is None else out + bias


@dataclass(frozen=True)
class LayerCache:
    """What one layer's forward pass keeps for backpropagation through time."""

    inputs: np.ndarray  # (T, B, I_k): the sequence this layer read
    states: list[LayerState]  # states[t]: the state before step t; states[T] is the final one
    saved: list[Saved]  # saved[t]: what step_forward kept at step t


class ReferenceCell(StackedCell):
    """One layer of a reference cell over a sequence; subclasses add their equations only."""

    kind: ClassVar[str]
    description: ClassVar[str]
    step_forward: ClassVar[Callable[..., tuple[LayerState, Saved]]]
    step_backward: ClassVar[Callable[..., tuple[np.ndarray, np.ndarray, LayerState]]]

    def _layer_params(
        self, params: Mapping[str, np.ndarray], k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(W_ih, W_hh, b_ih, b_hh)`` of layer ``k``; the biases are None without bias."""
        if not self.config.bias:
            return params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"], None, None
        return tuple(params[f"{p}_l{k}"] for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def layer_forward(
        self, params: Mapping[str, np.ndarray], k: int, inputs: np.ndarray, state: LayerState
    ) -> tuple[np.ndarray, LayerState, LayerCache]:
        """Layer ``k`` over the whole sequence ``inputs`` ``(T, B, I_k)`` from ``state``."""
        w_ih, w_hh, b_ih, b_hh = self._layer_params(params, k)
        gi = _affine(inputs, w_ih, b_ih)  # (T, B, G*H): the input's share, for all steps at once
        states, saved = [state], []
        for t in range(inputs.shape[0]):
            state, saved_t = self.step_forward(gi[t], _affine(state[0], w_hh, b_hh), state)
            states.append(state)
            saved.append(saved_t)
        outputs = np.stack([s[0] for s in states[1:]])
        return outputs, state, LayerCache(inputs=inputs, states=states, saved=saved)

    def layer_infer(
        self, params: Mapping[str, np.ndarray], k: int, inputs: np.ndarray, state: LayerState
    ) -> tuple[np.ndarray, LayerState]:
        """:meth:`layer_forward`'s arithmetic, step for step, keeping only the outputs: no
        list of states or saved gates (evaluation's cache-free forward)."""
        w_ih, w_hh, b_ih, b_hh = self._layer_params(params, k)
        gi = _affine(inputs, w_ih, b_ih)
        outputs = np.empty((inputs.shape[0], inputs.shape[1], w_hh.shape[1]), self.config.np_dtype)
        for t in range(inputs.shape[0]):
            state, _ = self.step_forward(gi[t], _affine(state[0], w_hh, b_hh), state)
            outputs[t] = state[0]
        return outputs, state

    def layer_backward(
        self,
        params: Mapping[str, np.ndarray],
        k: int,
        layer_cache: LayerCache,
        d_outputs: np.ndarray,
        d_final: LayerState,
    ) -> tuple[np.ndarray, LayerState, dict[str, np.ndarray]]:
        """BPTT through layer ``k``: dLoss/d its input sequence, dLoss/d its initial state, and
        its parameters' gradients."""
        w_ih, w_hh, _, _ = self._layer_params(params, k)
        seq_len, batch = d_outputs.shape[:2]
        d_gi = np.empty((seq_len, batch, w_hh.shape[0]), self.config.np_dtype)
        d_gh = np.empty_like(d_gi)
        d_state = d_final
        for t in reversed(range(seq_len)):
            d_new = (d_state[0] + d_outputs[t], *d_state[1:])
            d_gi[t], d_gh[t], d_prev = self.step_backward(
                d_new, layer_cache.states[t], layer_cache.saved[t]
            )
            d_state = (d_prev[0] + d_gh[t] @ w_hh, *d_prev[1:])
        h_prev = np.stack([s[0] for s in layer_cache.states[:-1]])  # (T, B, H)
        over_time_and_batch = ([0, 1], [0, 1])
        grads = {
            f"weight_ih_l{k}": np.tensordot(d_gi, layer_cache.inputs, axes=over_time_and_batch),
            f"weight_hh_l{k}": np.tensordot(d_gh, h_prev, axes=over_time_and_batch),
        }
        if self.config.bias:
            grads[f"bias_ih_l{k}"] = d_gi.sum(axis=(0, 1))
            grads[f"bias_hh_l{k}"] = d_gh.sum(axis=(0, 1))
        return d_gi @ w_ih, d_state, grads


class RNNCell(ReferenceCell):
    """Elman RNN as ``torch.nn.RNN``: ``h' = f(W_ih x + b_ih + W_hh h + b_hh)``, ``f`` tanh or
    (option ``nonlinearity: relu``) ``max(0, .)``, whose derivative at 0 is taken as 0, as
    PyTorch takes it."""

    kind = "rnn"
    description = "Elman RNN (tanh or relu), PyTorch nn.RNN equations; plain numpy reference"
    gates = 1
    state_size = 1
    state_names = ("h",)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.relu = is_relu(config.option("nonlinearity"))

    def step_forward(
        self, gi: np.ndarray, gh: np.ndarray, state: LayerState
    ) -> tuple[LayerState, Saved]:
        pre = gi + gh
        h_new = np.maximum(pre, 0) if self.relu else np.tanh(pre)
        return (h_new,), (h_new,)

    def step_backward(
        self, d_new_state: LayerState, state: LayerState, saved: Saved
    ) -> tuple[np.ndarray, np.ndarray, LayerState]:
        (dh,), (h_new,) = d_new_state, saved
        d_pre = dh * (h_new > 0) if self.relu else dh * (1 - h_new * h_new)
        return d_pre, d_pre, (np.zeros_like(dh),)


class LSTMCell(ReferenceCell):
    """LSTM as ``torch.nn.LSTM``: gates ``i, f, g, o`` from ``W_ih x + b_ih + W_hh h + b_hh``,
    ``c' = f*c + i*g``, ``h' = o*tanh(c')``, with ``i, f, o`` sigmoid and ``g`` tanh."""

    kind = "lstm"
    description = "LSTM, PyTorch nn.LSTM equations (gates i, f, g, o); plain numpy reference"
    gates = 4
    state_size = 2
    state_names = ("h", "c")

    @staticmethod
    def step_forward(gi: np.ndarray, gh: np.ndarray, state: LayerState) -> tuple[LayerState, Saved]:
        _, c = state
        a_i, a_f, a_g, a_o = np.split(gi + gh, 4, axis=1)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
        c_new = f * c + i * g
        tanh_c = np.tanh(c_new)
        return (o * tanh_c, c_new), (i, f, g, o, tanh_c)

    @staticmethod
    def step_backward(
        d_new_state: LayerState, state: LayerState, saved: Saved
    ) -> tuple[np.ndarray, np.ndarray, LayerState]:
        (dh, dc), (_, c), (i, f, g, o, tanh_c) = d_new_state, state, saved
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        d_pre = np.concatenate(
            [
                dc * g * i * (1 - i),  # input gate
                dc * c * f * (1 - f),  # forget gate
                dc * i * (1 - g * g),  # cell candidate
                dh * tanh_c * o * (1 - o),  # output gate
            ],
            axis=1,
        )
        return d_pre, d_pre, (np.zeros_like(dh), dc * f)


class GRUCell(ReferenceCell):
    """GRU as ``torch.nn.GRU``, gates ``r, z, n``: ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``,
    ``z = σ(W_iz x + b_iz + W_hz h + b_hz)``, ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``,
    ``h' = (1 - z)*n + z*h``."""

    kind = "gru"
    description = "GRU, PyTorch nn.GRU equations (gates r, z, n); plain numpy reference"
    gates = 3
    state_size = 1
    state_names = ("h",)

    @staticmethod
    def step_forward(gi: np.ndarray, gh: np.ndarray, state: LayerState) -> tuple[LayerState, Saved]:
        (h,) = state
        gi_r, gi_z, gi_n = np.split(gi, 3, axis=1)
        gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
        r, z = sigmoid(gi_r + gh_r), sigmoid(gi_z + gh_z)
        n = np.tanh(gi_n + r * gh_n)
        return ((1 - z) * n + z * h,), (r, z, n, gh_n)

    @staticmethod
    def step_backward(
        d_new_state: LayerState, state: LayerState, saved: Saved
    ) -> tuple[np.ndarray, np.ndarray, LayerState]:
        (dh,), (h,), (r, z, n, gh_n) = d_new_state, state, saved
        d_n = dh * (1 - z) * (1 - n * n)  # dLoss/d the pre-activation of n
        d_r = d_n * gh_n * r * (1 - r)
        d_z = dh * (h - n) * z * (1 - z)
        d_gi = np.concatenate([d_r, d_z, d_n], axis=1)
        d_gh = np.concatenate([d_r, d_z, d_n * r], axis=1)
        return d_gi, d_gh, (dh * z,)


CELLS: tuple[type[ReferenceCell], ...] = (RNNCell, LSTMCell, GRUCell)


@hookimpl
def rnnbench_register_cells(register: Callable[..., Any]) -> None:
    for cell in CELLS:
        register(cell.kind, BACKEND, cell, description=cell.description,
                 supports=SUPPORTS.get(cell.kind), options=OPTIONS.get(cell.kind))
