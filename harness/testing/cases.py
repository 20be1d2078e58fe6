"""Test cases for cells: random parameters, inputs and a fixed linear loss, the gradients of that
loss by ``backward`` and by finite differences, and the error measures the cell checks use.

Everything here goes through the Cell protocol only (``init_params``, ``to_backend``,
``to_host``, ``forward``, ``backward``), so it works for any cell on any backend. The loss is
``sum(outputs * w_out) + sum_s sum(final_state[s] * w_state[s])``: linear in the cell's
results, so its gradient with respect to them is ``(w_out, w_state)``, and every output and
state value reaches the loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rnnbench.cell import Cell, CellConfig, ForwardResult

#: ``(T, B, I, H)``: sequence length, batch, input size, hidden size.
Shape = tuple[int, int, int, int]
#: Builds a cell: ``factory(config) -> Cell`` (a registered cell's factory, or its class).
CellFactory = Callable[[CellConfig], Cell]

#: Two implementations of the same cell agree within this, per array, measured by
#: :func:`scaled_error` (the bounds the README states for every backend against the reference).
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}
#: One cell computing the same numbers two ways (``step`` against ``forward``) agrees within this.
SAME_CELL_TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
#: Finite differences (float64): step, tolerance on the relative error, and its floor.
FD_EPS = 1e-3
FD_TOL = 1e-6
#: The floor keeps an exactly zero gradient (a relu unit that is off) from being compared with
#: the finite differences' rounding noise (about 1e-13) as a relative error; it still lets
#: through only absolute errors below FD_TOL * FD_FLOOR = 1e-11.
FD_FLOOR = 1e-5


@dataclass
class CellCase:
    """A cell, host copies of its parameters and inputs, and the weights of the linear loss.

    Gradient names: each parameter's own name, ``"x"`` for the inputs and ``"state[i]"`` for
    the i-th initial state array.
    """

    cell: Cell
    params: dict[str, np.ndarray]
    x: np.ndarray
    state: tuple[np.ndarray, ...]
    w_out: np.ndarray
    w_state: tuple[np.ndarray, ...]

    @property
    def label(self) -> str:
        """``T3 B2 I2 H3 L2 bias float64``: what a failure message says about the case."""
        config = self.cell.config
        steps, batch, inputs = self.x.shape
        return (f"T{steps} B{batch} I{inputs} H{config.hidden_size} L{config.num_layers} "
                f"{'bias' if config.bias else 'nobias'} {config.dtype}")

    def with_cell(self, cell: Cell) -> CellCase:
        """The same numbers for another cell (another backend or dtype), cast to its dtype."""
        dtype = cell.config.np_dtype
        return replace(
            self, cell=cell,
            params={name: value.astype(dtype) for name, value in self.params.items()},
            x=self.x.astype(dtype), state=tuple(s.astype(dtype) for s in self.state),
            w_out=self.w_out.astype(dtype), w_state=tuple(w.astype(dtype) for w in self.w_state),
        )

    # -- running the cell ----------------------------------------------------------------------

    def backend_params(self, params: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        return {n: self.cell.to_backend(v) for n, v in (params or self.params).items()}

    def backend_state(self, state: Sequence[np.ndarray] | None = None) -> tuple[Any, ...]:
        return tuple(self.cell.to_backend(s) for s in (self.state if state is None else state))

    def forward(
        self,
        params: dict[str, np.ndarray] | None = None,
        x: np.ndarray | None = None,
        state: Sequence[np.ndarray] | None = None,
    ) -> ForwardResult:
        """``forward`` on backend copies of the case's (or the given) host arrays."""
        return self.cell.forward(
            self.backend_params(params),
            self.cell.to_backend(self.x if x is None else x),
            self.backend_state(state),
        )

    def loss(
        self,
        params: dict[str, np.ndarray] | None = None,
        x: np.ndarray | None = None,
        state: Sequence[np.ndarray] | None = None,
    ) -> float:
        """The fixed linear loss of the case (or of the given host arrays instead)."""
        result = self.forward(params, x, state)
        total = np.sum(self.cell.to_host(result.outputs).astype(np.float64) * self.w_out)
        for final, weight in zip(result.final_state, self.w_state, strict=True):
            total += np.sum(self.cell.to_host(final).astype(np.float64) * weight)
        return float(total)

    def results(self) -> dict[str, np.ndarray]:
        """Everything the cell computes for this case, as host arrays: ``outputs``,
        ``final_state[i]``, and the loss's gradients named as in :meth:`analytic`."""
        cell = self.cell
        result = self.forward()
        back = cell.backward(
            self.backend_params(), result.cache, cell.to_backend(self.w_out),
            self.backend_state(self.w_state),
        )
        found = {"outputs": cell.to_host(result.outputs)}
        found.update({f"final_state[{i}]": cell.to_host(s)
                      for i, s in enumerate(result.final_state)})
        found.update(self._gradients(back))
        return found

    def analytic(self) -> dict[str, np.ndarray]:
        """The loss's gradient with respect to every parameter, the inputs and the initial
        state, from ``backward`` (host arrays)."""
        result = self.forward()
        back = self.cell.backward(
            self.backend_params(), result.cache, self.cell.to_backend(self.w_out),
            self.backend_state(self.w_state),
        )
        return self._gradients(back)

    def _gradients(self, back: Any) -> dict[str, np.ndarray]:
        to_host = self.cell.to_host
        grads = {name: to_host(g) for name, g in back.param_grads.items()}
        grads["x"] = to_host(back.d_inputs)
        grads.update({f"state[{i}]": to_host(d) for i, d in enumerate(back.d_initial_state)})
        return grads

    # -- finite differences ---------------------------------------------------------------------

    def inputs(self) -> dict[str, tuple[np.ndarray, Callable[[np.ndarray], float]]]:
        """Every differentiable input: its value and the loss as a function of it."""
        found = {
            name: (value, lambda v, name=name: self.loss(params={**self.params, name: v}))
            for name, value in self.params.items()
        }
        found["x"] = (self.x, lambda v: self.loss(x=v))
        for i, value in enumerate(self.state):
            found[f"state[{i}]"] = (
                value,
                lambda v, i=i: self.loss(state=(*self.state[:i], v, *self.state[i + 1:])),
            )
        return found

    def numeric(self, elements: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """The loss's gradients by finite differences (:func:`fd_derivative`): every element, or
        ``elements`` of each array chosen by ``seed`` (the others are NaN, and skipped by
        :func:`max_relative_error`)."""
        rng = np.random.default_rng(seed)
        found = {}
        for name, (value, f) in self.inputs().items():
            grad = np.full(value.shape, np.nan)
            indices = list(np.ndindex(value.shape))
            if elements is not None and elements < len(indices):
                chosen = rng.choice(len(indices), size=elements, replace=False)
                indices = [indices[i] for i in sorted(chosen)]
            for index in indices:
                grad[index] = fd_derivative(f, value, index)
            found[name] = grad
        return found


def fd_derivative(f: Callable[[np.ndarray], float], value: np.ndarray,
                  index: tuple[int, ...]) -> float:
    """d f / d value[index] by the fourth-order central difference
    ``(f(-2h) - 8 f(-h) + 8 f(h) - f(2h)) / 12h``: error O(h^4), about 1e-12 with ``FD_EPS``."""

    def at(delta: float) -> float:
        moved = value.copy()
        moved[index] += delta
        return f(moved)

    h = FD_EPS
    return (at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h)


def max_relative_error(
    analytic: dict[str, np.ndarray], numeric: dict[str, np.ndarray]
) -> tuple[float, str]:
    """The worst elementwise ``|a - n| / max(|a| + |n|, FD_FLOOR)`` over the elements ``numeric``
    has (not NaN), and where it occurs, with both values."""
    if analytic.keys() != numeric.keys():
        missing = sorted(numeric.keys() - analytic.keys())
        extra = sorted(analytic.keys() - numeric.keys())
        raise ValueError(f"gradients differ in names: missing {missing}, unexpected {extra}")
    worst, where = 0.0, "nowhere"
    for name, n in numeric.items():
        a = np.asarray(analytic[name], dtype=np.float64)
        if a.shape != n.shape:
            raise ValueError(f"gradient {name}: backward gives shape {a.shape}, the input has "
                             f"{n.shape}")
        err = np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), FD_FLOOR)
        err = np.where(np.isnan(n), 0.0, np.where(np.isnan(err), np.inf, err))
        if err.size and err.max() > worst:
            index = np.unravel_index(err.argmax(), err.shape)
            worst = float(err.max())
            # repr of a Python float: every digit, without numpy 2's "np.float64(...)" wrapper
            where = f"{name}{list(map(int, index))}: backward {float(a[index])!r}, finite " \
                    f"differences {float(n[index])!r}"
    return worst, where


def scaled_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """``max|ours - reference| / max|reference|``: the error of one array relative to its scale
    (elementwise relative error means nothing for elements that are zero up to rounding)."""
    scale = max(float(np.max(np.abs(reference), initial=0.0)), np.finfo(reference.dtype).tiny)
    diff = np.abs(ours.astype(np.float64) - reference.astype(np.float64))
    return float(np.max(diff, initial=0.0)) / scale


def worst_scaled_error(
    ours: dict[str, np.ndarray], reference: dict[str, np.ndarray]
) -> tuple[float, str]:
    """The largest :func:`scaled_error` over arrays of the same names, and which array; arrays
    missing on one side or of another shape or dtype are errors (``ValueError``)."""
    if ours.keys() != reference.keys():
        raise ValueError(f"results differ in names: only here {sorted(ours.keys() - reference)}, "
                         f"only in the reference {sorted(reference.keys() - ours)}")
    worst, where = 0.0, "nowhere"
    for name, expected in reference.items():
        got = ours[name]
        if got.shape != expected.shape or got.dtype != expected.dtype:
            raise ValueError(f"{name}: {got.dtype}{list(got.shape)} here, "
                             f"{expected.dtype}{list(expected.shape)} in the reference")
        error = scaled_error(got, expected)
        if not error <= worst:  # NaN counts as the worst
            worst, where = error, name
    return worst, where


def make_case(
    factory: CellFactory,
    shape: Shape,
    num_layers: int = 1,
    bias: bool = True,
    dtype: str = "float64",
    seed: int = 0,
) -> CellCase:
    """A cell from ``factory`` with parameters from its ``init_params`` and random inputs, a
    non-zero initial state and loss weights. The same ``seed`` gives the same inputs in float32
    and float64 (drawn in float64, then cast) and on every backend."""
    steps, batch, input_size, hidden = shape
    cell = factory(CellConfig(input_size, hidden, num_layers, bias, dtype))
    rng = np.random.default_rng(seed)
    params = {name: np.array(value, copy=True) for name, value in cell.init_params(rng).items()}
    state_shape = (num_layers, batch, hidden)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    x = draw((steps, batch, input_size))
    state = tuple(draw(state_shape) for _ in range(cell.state_size))
    w_out = draw((steps, batch, hidden))
    w_state = tuple(draw(state_shape) for _ in range(cell.state_size))
    return CellCase(cell, params, x, state, w_out, w_state)
