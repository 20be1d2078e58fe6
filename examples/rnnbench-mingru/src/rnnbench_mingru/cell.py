"""minGRU in numpy: forward and full backpropagation through time, as an rnnbench cell.

minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201) is a GRU whose update gate
and candidate state depend on the current input only, never on the previous hidden state. Per
layer ``k`` and time step ``t``::

    z_t  = sigmoid(W_z x_t + b_z)                   update gate
    h~_t = W_h x_t + b_h                            candidate state (no tanh)
    h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

where ``x_t`` is the cell's input for layer 0 and the output of layer ``k - 1`` above it. The
parameters follow PyTorch's naming: ``weight_ih_l{k}`` ``(2H, I_k)``, whose rows are ``[W_z;
W_h]``, and, with ``bias``, ``bias_ih_l{k}`` ``(2H,)`` ``[b_z; b_h]``. There is no recurrent
weight: ``h_{t-1}`` enters only through the gated sum, which is what lets the paper compute the
whole sequence with a parallel scan. This reference runs the recurrence as a plain loop over
time, which is the clearest statement of the equations and fast enough for a benchmark's sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rnnbench
from rnnbench import CellSupport, hookimpl

#: One layer's state, ``(h,)``: minGRU has one state tensor, ``(B, H)`` per layer.
LayerState = tuple[np.ndarray]

#: The version of rnnbench's plugin contract this module was written for.
RNNBENCH_CONTRACT = 2


def sigmoid(a: np.ndarray) -> np.ndarray:
    """The logistic function without overflow (``exp`` is only taken of ``-|a|``); keeps the
    dtype of ``a``."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e))


@dataclass(frozen=True)
class MinGRULayerCache:
    """What one layer's forward pass keeps for its backward pass, all ``(T, B, ...)``."""

    inputs: np.ndarray  # x_t, (T, B, I_k)
    z: np.ndarray  # update gate z_t, (T, B, H)
    candidate: np.ndarray  # h~_t, (T, B, H)
    previous: np.ndarray  # h_{t-1}, (T, B, H): the state before each step


class MinGRUCell(rnnbench.StackedCell):
    """minGRU on the numpy backend: the equations of one layer, forward and backward.

    Argument checks, zero states, PyTorch-style initialisation and the stacking of layers come
    from :class:`rnnbench.StackedCell`; this class implements one layer. Its one state tensor is
    ``h`` (the base's default ``state_names = ("h",)``, ``state_size = 1``).
    """

    def layer_param_shapes(self, k: int) -> dict[str, tuple[int, ...]]:
        """``weight_ih_l{k}`` ``(2H, I_k)`` and, with bias, ``bias_ih_l{k}`` ``(2H,)``: PyTorch's
        names, but no ``weight_hh_l{k}`` (the default layout for ``gates`` would add one)."""
        rows = 2 * self.config.hidden_size
        shapes: dict[str, tuple[int, ...]] = {f"weight_ih_l{k}": (rows, self.layer_input_size(k))}
        if self.config.bias:
            shapes[f"bias_ih_l{k}"] = (rows,)
        return shapes

    def layer_forward(
        self, params: dict[str, np.ndarray], k: int, inputs: np.ndarray, state: LayerState
    ) -> tuple[np.ndarray, LayerState, MinGRULayerCache]:
        hidden = self.config.hidden_size
        # The gates read the input only, so they are computed for every step at once.
        a = inputs @ params[f"weight_ih_l{k}"].T  # (T, B, 2H): rows [z; h~]
        if self.config.bias:
            a = a + params[f"bias_ih_l{k}"]
        z, candidate = sigmoid(a[..., :hidden]), a[..., hidden:]
        (h,) = state
        outputs = np.empty_like(candidate)
        for t in range(inputs.shape[0]):
            h = (1 - z[t]) * h + z[t] * candidate[t]
            outputs[t] = h
        previous = np.concatenate([state[0][np.newaxis], outputs[:-1]])
        return outputs, (h,), MinGRULayerCache(inputs, z, candidate, previous)

    def layer_backward(
        self,
        params: dict[str, np.ndarray],
        k: int,
        layer_cache: MinGRULayerCache,
        d_outputs: np.ndarray,
        d_final: LayerState,
    ) -> tuple[np.ndarray, LayerState, dict[str, np.ndarray]]:
        c, hidden = layer_cache, self.config.hidden_size
        d_a = np.empty((*d_outputs.shape[:2], 2 * hidden), self.config.np_dtype)
        (d_h,) = d_final  # dLoss/d h_t, from the steps after t; never modified in place
        for t in reversed(range(d_outputs.shape[0])):
            d_h = d_h + d_outputs[t]
            d_z = d_h * (c.candidate[t] - c.previous[t])
            d_a[t, :, :hidden] = d_z * c.z[t] * (1 - c.z[t])  # through the sigmoid
            d_a[t, :, hidden:] = d_h * c.z[t]  # d h~_t
            d_h = d_h * (1 - c.z[t])  # d h_{t-1}
        over_time_and_batch = ([0, 1], [0, 1])
        grads = {f"weight_ih_l{k}": np.tensordot(d_a, c.inputs, axes=over_time_and_batch)}
        if self.config.bias:
            grads[f"bias_ih_l{k}"] = d_a.sum(axis=(0, 1))
        return d_a @ params[f"weight_ih_l{k}"], (d_h,), grads


#: minGRU computes in either dtype, with any number of layers, with or without biases. It has no
#: forget gate (its update gate z mixes h and the candidate; there is no LSTM-style forget block
#: in its biases), so ``training.forget_bias`` is refused for it at validation.
SUPPORTS = CellSupport(dtypes=("float32", "float64"), max_layers=None, bias=(True, False),
                       forget_gate=None)


@hookimpl
def rnnbench_register_cells(register: rnnbench.CellRegistrar) -> None:
    register(
        "mingru",
        "numpy",
        MinGRUCell,
        description="minGRU (Feng et al. 2024): gates read the input only; numpy, full BPTT",
        supports=SUPPORTS,
    )
