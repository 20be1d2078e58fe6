"""A local plugin, as a researcher would write one beside a suite: imports from rnnbench only.

``toy`` is a linear recurrent cell (h' = W_ih x + W_hh h + b), written in a few lines. Two
variants exist to exercise failure handling: ``toy_boom`` raises in forward when the hidden size
is 13, and ``toy_nan`` produces NaN outputs.
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


class ToyCell:
    state_size = 1

    def __init__(self, config: CellConfig) -> None:
        if config.num_layers != 1:
            raise ValueError("toy cell has one layer")
        self.config = config

    def init_params(self, rng):
        return init_uniform(param_shapes(1, self.config), self.config, rng)

    def to_backend(self, array):
        return np.asarray(array, dtype=self.config.dtype)

    def to_host(self, array):
        return np.asarray(array)

    def initial_state(self, batch_size):
        return (np.zeros((1, batch_size, self.config.hidden_size), self.config.dtype),)

    def _bias(self, params):
        if not self.config.bias:
            return 0.0
        return params["bias_ih_l0"] + params["bias_hh_l0"]

    def step(self, params, x_t, state):
        h = x_t @ params["weight_ih_l0"].T + state[0][0] @ params["weight_hh_l0"].T
        h = h + self._bias(params)
        return h, (h[None],)

    def forward(self, params, x, initial_state):
        state = initial_state
        outputs = []
        for x_t in x:
            h, state = self.step(params, x_t, state)
            outputs.append(h)
        outputs = np.stack(outputs)
        return ForwardResult(outputs, state, (x, initial_state[0][0], outputs))

    def backward(self, params, cache, d_outputs, d_final_state=None):
        x, h0, outputs = cache
        w_ih, w_hh = params["weight_ih_l0"], params["weight_hh_l0"]
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
            d_x[t] = d_h @ w_ih
            d_h = d_h @ w_hh
        return BackwardResult(grads, d_x, (d_h[None],))


class BoomCell(ToyCell):
    def forward(self, params, x, initial_state):
        if self.config.hidden_size == 13:
            raise RuntimeError("boom: this cell refuses hidden_size 13")
        return super().forward(params, x, initial_state)


class NanCell(ToyCell):
    def forward(self, params, x, initial_state):
        result = super().forward(params, x, initial_state)
        result.outputs[:] = np.nan
        return result


#: The toy cells are single-layer; saying so lets `validate` reject a suite asking for more.
ONE_LAYER = CellSupport(max_layers=1)


@hookimpl
def rnnbench_register_cells(register):
    register("toy", "numpy", ToyCell, description="linear recurrence, for tests",
             supports=ONE_LAYER)
    register("toy_boom", "numpy", BoomCell, description="fails at hidden_size 13",
             supports=ONE_LAYER)
    register("toy_nan", "numpy", NanCell, description="outputs NaN", supports=ONE_LAYER)
