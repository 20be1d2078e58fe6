"""A local plugin of cells that break the Cell protocol on purpose, one mistake each, beside a
correct one (``lin``), for the run-boundary checks and the test kit.

``lin`` is a one-layer linear recurrence, ``h' = W_ih x + W_hh h + b_ih + b_hh``, with its own
BPTT. Each ``lin_*`` cell returns what ``lin`` does but for one mistake a plugin author could
make in ``backward`` or ``forward``.
"""

from __future__ import annotations

import numpy as np

from rnnbench import (
    BackwardResult,
    CellConfig,
    CellSupport,
    ForwardResult,
    hookimpl,
    init_uniform,
    param_shapes,
)


class LinearCell:
    state_size = 1

    def __init__(self, config: CellConfig) -> None:
        if config.num_layers != 1:
            raise ValueError("the linear cell has one layer")
        self.config = config

    def init_params(self, rng):
        return init_uniform(param_shapes(1, self.config), self.config, rng)

    def to_backend(self, array):
        return np.ascontiguousarray(array, dtype=self.config.dtype)

    def to_host(self, array):
        return np.asarray(array)

    def initial_state(self, batch_size):
        return (np.zeros((1, batch_size, self.config.hidden_size), self.config.dtype),)

    def _next(self, params, x_t, h):
        h = x_t @ params["weight_ih_l0"].T + h @ params["weight_hh_l0"].T
        if self.config.bias:
            h = h + params["bias_ih_l0"] + params["bias_hh_l0"]
        return h

    def step(self, params, x_t, state):
        h = self._next(params, x_t, state[0][0])
        return h, (h[None].copy(),)

    def forward(self, params, x, initial_state):
        h, outputs = initial_state[0][0], []
        for x_t in x:
            h = self._next(params, x_t, h)
            outputs.append(h)
        outputs = np.stack(outputs)
        return ForwardResult(outputs, (h[None].copy(),), (x, initial_state[0][0], outputs))

    def backward(self, params, cache, d_outputs, d_final_state=None):
        x, h0, outputs = cache
        grads = {name: np.zeros_like(value) for name, value in params.items()}
        d_x = np.zeros_like(x)
        d_h = np.zeros_like(h0) if d_final_state is None else d_final_state[0][0].copy()
        for t in range(x.shape[0] - 1, -1, -1):
            d_h = d_h + d_outputs[t]
            previous = outputs[t - 1] if t > 0 else h0
            grads["weight_ih_l0"] += d_h.T @ x[t]
            grads["weight_hh_l0"] += d_h.T @ previous
            if self.config.bias:
                grads["bias_ih_l0"] += d_h.sum(axis=0)
                grads["bias_hh_l0"] += d_h.sum(axis=0)
            d_x[t] = d_h @ params["weight_ih_l0"]
            d_h = d_h @ params["weight_hh_l0"]
        return BackwardResult(grads, d_x, (d_h[None],))


class MissingGradient(LinearCell):
    """Forgets the recurrent weights' gradient: they would silently never train."""

    def backward(self, params, cache, d_outputs, d_final_state=None):
        back = super().backward(params, cache, d_outputs, d_final_state)
        del back.param_grads["weight_hh_l0"]
        return back


class TransposedGradient(LinearCell):
    """Returns the input weights' gradient transposed, ``(I, H)`` instead of ``(H, I)``."""

    def backward(self, params, cache, d_outputs, d_final_state=None):
        back = super().backward(params, cache, d_outputs, d_final_state)
        back.param_grads["weight_ih_l0"] = back.param_grads["weight_ih_l0"].T.copy()
        return back


class WrongInputGradient(LinearCell):
    """Returns the input gradient of the last step only, ``(B, I)`` instead of ``(T, B, I)``."""

    def backward(self, params, cache, d_outputs, d_final_state=None):
        back = super().backward(params, cache, d_outputs, d_final_state)
        back.d_inputs = back.d_inputs[-1]
        return back


class WrongStateGradientArity(LinearCell):
    """Returns two initial-state gradients for its one state array."""

    def backward(self, params, cache, d_outputs, d_final_state=None):
        back = super().backward(params, cache, d_outputs, d_final_state)
        back.d_initial_state = (*back.d_initial_state, back.d_initial_state[0].copy())
        return back


class WrongFinalStateArity(LinearCell):
    """Returns the final state as a bare array instead of a tuple of one."""

    def forward(self, params, x, initial_state):
        result = super().forward(params, x, initial_state)
        result.final_state = result.final_state[0]
        return result


class WrongGradientDtype(LinearCell):
    """Returns float32 gradients for float64 parameters."""

    def backward(self, params, cache, d_outputs, d_final_state=None):
        back = super().backward(params, cache, d_outputs, d_final_state)
        back.param_grads = {n: g.astype(np.float32) for n, g in back.param_grads.items()}
        return back


class WrongStepState(LinearCell):
    """``step`` returns the new state without its layer axis, ``(B, H)``."""

    def step(self, params, x_t, state):
        h, _ = super().step(params, x_t, state)
        return h, (h.copy(),)


ONE_LAYER = CellSupport(max_layers=1)
CELLS = {
    "lin": (LinearCell, "a correct linear recurrence"),
    "lin_missing_grad": (MissingGradient, "no gradient for weight_hh_l0"),
    "lin_transposed_grad": (TransposedGradient, "weight_ih_l0's gradient transposed"),
    "lin_bad_d_inputs": (WrongInputGradient, "d_inputs of one step"),
    "lin_bad_state_arity": (WrongStateGradientArity, "two initial-state gradients"),
    "lin_bad_final_state": (WrongFinalStateArity, "final state not a tuple"),
    "lin_bad_grad_dtype": (WrongGradientDtype, "float32 gradients"),
    "lin_bad_step_state": (WrongStepState, "step's state without its layer axis"),
}


@hookimpl
def rnnbench_register_cells(register):
    for name, (factory, description) in CELLS.items():
        register(name, "numpy", factory, description=description, supports=ONE_LAYER)
