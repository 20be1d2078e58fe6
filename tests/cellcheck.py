"""Shared gradient and parity checking for cell tests: a fixed linear loss, its gradients by
backward and by finite differences, and random cases reproducible across dtypes and backends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rnnbench.cell import CellConfig
from rnnbench.plugins.cells.reference import GRUCell, LSTMCell, ReferenceCell, RNNCell

CELLS: dict[str, type[ReferenceCell]] = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
KINDS = list(CELLS)

#: Finite differences: step, tolerance on the relative error, and its denominator's floor.
FD_EPS = 1e-3
FD_TOL = 1e-6
FD_FLOOR = 1e-8


@dataclass
class Case:
    """A cell, its parameters and inputs, and the fixed linear loss used to test gradients:
    ``loss = sum(outputs * w_out) + sum_s sum(final_state[s] * w_state[s])``."""

    cell: ReferenceCell
    params: dict[str, np.ndarray]
    x: np.ndarray
    state: tuple[np.ndarray, ...]
    w_out: np.ndarray
    w_state: tuple[np.ndarray, ...]

    def loss(self, params=None, x=None, state=None) -> float:
        result = self.cell.forward(
            self.params if params is None else params,
            self.x if x is None else x,
            self.state if state is None else state,
        )
        total = np.sum(result.outputs * self.w_out)
        for final, weight in zip(result.final_state, self.w_state, strict=True):
            total += np.sum(final * weight)
        return float(total)

    def analytic(self) -> dict[str, np.ndarray]:
        """All gradients of the loss from ``backward``, keyed as in :meth:`numeric`."""
        result = self.cell.forward(self.params, self.x, self.state)
        back = self.cell.backward(self.params, result.cache, self.w_out, self.w_state)
        grads = dict(back.param_grads)
        grads["x"] = back.d_inputs
        for i, d in enumerate(back.d_initial_state):
            grads[f"state[{i}]"] = d
        return grads

    def inputs(self) -> dict[str, tuple[np.ndarray, Callable[[np.ndarray], float]]]:
        """Every differentiable input: its current value and the loss as a function of it."""
        found = {
            name: (value, lambda v, name=name: self.loss(params={**self.params, name: v}))
            for name, value in self.params.items()
        }
        found["x"] = (self.x, lambda v: self.loss(x=v))
        for i, value in enumerate(self.state):
            found[f"state[{i}]"] = (
                value,
                lambda v, i=i: self.loss(state=(*self.state[:i], v, *self.state[i + 1 :])),
            )
        return found

    def numeric(self) -> dict[str, np.ndarray]:
        """All gradients of the loss by central finite differences, element by element."""
        return {
            name: np.array(
                [fd_derivative(f, value, idx) for idx in np.ndindex(value.shape)]
            ).reshape(value.shape)
            for name, (value, f) in self.inputs().items()
        }


def fd_derivative(f, value: np.ndarray, idx: tuple[int, ...]) -> float:
    """d f / d value[idx] by the fourth-order central difference
    ``(f(-2h) - 8 f(-h) + 8 f(h) - f(2h)) / 12h``: error O(h^4), so ~1e-12 here."""

    def at(delta: float) -> float:
        moved = value.copy()
        moved[idx] += delta
        return f(moved)

    h = FD_EPS
    return (at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h)


def max_relative_error(
    analytic: dict[str, np.ndarray], numeric: dict[str, np.ndarray]
) -> tuple[float, str]:
    """The worst elementwise ``|a - n| / max(|a| + |n|, FD_FLOOR)`` and where it occurs."""
    assert analytic.keys() == numeric.keys()
    worst, where = 0.0, "nowhere"
    for name, n in numeric.items():
        a = analytic[name]
        assert a.shape == n.shape, f"{name}: analytic {a.shape} vs numeric {n.shape}"
        err = np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), FD_FLOOR)
        if err.size and err.max() > worst:
            idx = np.unravel_index(err.argmax(), err.shape)
            worst, where = float(err.max()), f"{name}{list(idx)}: analytic {a[idx]}, fd {n[idx]}"
    return worst, where


def assert_gradients_match(analytic: dict[str, np.ndarray], numeric: dict[str, np.ndarray]):
    worst, where = max_relative_error(analytic, numeric)
    assert worst < FD_TOL, f"relative error {worst:.3g} at {where}"


def make_case(
    kind: str,
    shape: tuple[int, int, int, int],
    num_layers: int = 1,
    bias: bool = True,
    dtype: str = "float64",
    seed: int = 0,
    cell_class: type[ReferenceCell] | None = None,
) -> Case:
    """Random parameters, inputs, non-zero initial state and loss weights; the same ``seed`` in
    float32 and float64 gives the same numbers (drawn in float64, then cast)."""
    seq_len, batch, input_size, hidden = shape
    config = CellConfig(input_size, hidden, num_layers, bias, dtype)
    cell = (cell_class or CELLS[kind])(config)
    rng = np.random.default_rng(seed)
    params = cell.init_params(rng)
    state_shape = (num_layers, batch, hidden)

    def draw(shape):
        return rng.standard_normal(shape).astype(dtype)

    x = draw((seq_len, batch, input_size))
    state = tuple(draw(state_shape) for _ in range(cell.state_size))
    w_out = draw((seq_len, batch, hidden))
    w_state = tuple(draw(state_shape) for _ in range(cell.state_size))
    return Case(cell, params, x, state, w_out, w_state)
