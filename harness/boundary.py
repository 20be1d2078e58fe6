"""Checks at the run boundary: what a cell hands back is held against the Cell protocol.

A plugin's mistake in ``forward``, ``step`` or ``backward`` would otherwise surface far from its
cause, or not at all: a missing gradient silently freezes its parameter, a wrong-shaped
``d_inputs`` is ignored, a transposed gradient fails deep in the optimizer naming neither plugin
nor parameter. The model checks the first result of each kind in a run (so there is no per-step
cost) with these functions, and the test kit (:mod:`rnnbench.testing`) checks every result it
sees with them. Each raises :class:`CellContractError` naming the cell, its plugin and the
parameter or array at fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnbench.errors import RnnbenchError


@dataclass(frozen=True)
class CellOrigin:
    """Where a cell comes from, for error messages: its name, backend and plugin."""

    cell: str
    backend: str
    plugin: str | None = None

    def __str__(self) -> str:
        where = f"cell {self.cell!r} on backend {self.backend!r}"
        return f"plugin {self.plugin!r} {where}" if self.plugin else where


class CellContractError(RnnbenchError):
    """A cell returned something the Cell protocol does not allow. ``parameter`` names the
    parameter at fault when there is one (``None`` for outputs, state and ``d_inputs``)."""

    def __init__(self, origin: CellOrigin | str, problem: str, parameter: str | None = None):
        super().__init__(f"{origin}: {problem}")
        self.origin = origin
        self.problem = problem
        self.parameter = parameter


def describe(cell: Any, origin: CellOrigin | str | None) -> CellOrigin | str:
    """``origin``, or the cell's class name when the cell was not built through a plugin."""
    return origin if origin else f"cell class {type(cell).__name__!r}"


def check_forward_result(
    cell: Any, result: Any, x: Any, initial_state: Sequence[Any],
    origin: CellOrigin | str | None = None,
) -> None:
    """``forward(params, x, initial_state)`` returned a ``ForwardResult`` whose outputs are
    ``(T, B, H)`` and whose final state matches the initial state, array by array."""
    where = describe(cell, origin)
    _require_members(where, "forward", result, "ForwardResult", ("outputs", "final_state", "cache"))
    steps, batch = _shape(where, "x", x)[:2]
    _check_array(cell, where, "forward's outputs", result.outputs,
                 (steps, batch, cell.config.hidden_size))
    _check_state(cell, where, "forward's final_state", result.final_state, initial_state,
                 "initial_state")


def check_infer_result(
    cell: Any, result: Any, x: Any, initial_state: Sequence[Any],
    origin: CellOrigin | str | None = None,
) -> None:
    """``infer(params, x, initial_state)`` (the optional cache-free forward) returned
    ``(outputs, final_state)``: outputs ``(T, B, H)`` and a final state like the initial one."""
    where = describe(cell, origin)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CellContractError(
            where, f"infer returned {type(result).__name__}; it must return a pair "
            "(outputs, final_state)")
    outputs, final_state = result
    steps, batch = _shape(where, "x", x)[:2]
    _check_array(cell, where, "infer's outputs", outputs, (steps, batch, cell.config.hidden_size))
    _check_state(cell, where, "infer's final_state", final_state, initial_state, "initial_state")


def _require_members(
    where: str, method: str, result: Any, expected: str, members: tuple[str, ...]
) -> None:
    """``result`` has every member of the record ``method`` must return, or an error that
    says how to build that record."""
    for member in members:
        if not hasattr(result, member):
            raise CellContractError(
                where, f"{method} returned {type(result).__name__}, which has no {member!r}; "
                f"return rnnbench.{expected}({', '.join(members)})")


def check_step_result(
    cell: Any, output: Any, new_state: Any, x_t: Any, state: Sequence[Any],
    origin: CellOrigin | str | None = None,
) -> None:
    """``step(params, x_t, state)`` returned an output ``(B, H)`` and a state like ``state``."""
    where = describe(cell, origin)
    batch = _shape(where, "x_t", x_t)[0]
    _check_array(cell, where, "step's output", output, (batch, cell.config.hidden_size))
    _check_state(cell, where, "step's new state", new_state, state, "the state passed in")


def check_backward_result(
    cell: Any, back: Any, params: Mapping[str, Any], d_outputs: Any, final_state: Sequence[Any],
    origin: CellOrigin | str | None = None,
) -> None:
    """``backward`` returned a ``BackwardResult`` with a gradient for exactly every parameter,
    each of its parameter's shape and the cell's dtype, ``d_inputs`` of the inputs' shape, and
    one initial-state gradient per state array, each of that array's shape."""
    where = describe(cell, origin)
    _require_members(where, "backward", back, "BackwardResult",
                     ("param_grads", "d_inputs", "d_initial_state"))
    grads = back.param_grads
    if not isinstance(grads, Mapping):
        raise CellContractError(
            where, f"backward's param_grads is a {type(grads).__name__}; it must be a dict "
            "from parameter name to gradient")
    missing = [name for name in params if name not in grads]
    if missing:
        raise CellContractError(
            where, f"backward returned no gradient for parameter {missing[0]!r}"
            + (f" (nor for {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "")
            + "; param_grads must have a gradient for every parameter (a missing one would "
            "silently freeze it)", parameter=missing[0])
    extra = [name for name in grads if name not in params]
    if extra:
        raise CellContractError(
            where, f"backward returned a gradient for {extra[0]!r}, which is not a parameter "
            f"(parameters: {', '.join(params)})", parameter=extra[0])
    for name, param in params.items():
        expected = _shape(where, f"parameter {name!r}", param)
        _check_array(cell, where, f"backward's gradient for parameter {name!r}", grads[name],
                     expected, parameter=name,
                     hint=" (transposed?)" if _transposed(grads[name], expected) else "")
    steps, batch = _shape(where, "d_outputs", d_outputs)[:2]
    _check_array(cell, where, "backward's d_inputs", back.d_inputs,
                 (steps, batch, cell.config.input_size))
    _check_state(cell, where, "backward's d_initial_state", back.d_initial_state, final_state,
                 "the state")


# --- helpers -----------------------------------------------------------------------------------


def _shape(where: CellOrigin | str, what: str, array: Any) -> tuple[int, ...]:
    shape = getattr(array, "shape", None)
    if shape is None:
        raise CellContractError(where, f"{what} is a {type(array).__name__}, not an array")
    return tuple(int(n) for n in shape)


def _transposed(array: Any, expected: tuple[int, ...]) -> bool:
    shape = tuple(getattr(array, "shape", ()))
    return len(expected) == 2 and shape == expected[::-1] and shape != expected


def array_dtype(array: Any) -> np.dtype | None:
    """The numpy dtype of a backend array: its ``dtype`` as numpy reads it, or by name for an
    array library whose dtypes numpy does not know (``torch.float32`` is float32); ``None`` when
    it has no dtype numpy can name."""
    dtype = getattr(array, "dtype", None)
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError:
        pass
    try:
        return np.dtype(str(dtype).rpartition(".")[2])
    except TypeError:
        return None


def _check_array(
    cell: Any, where: CellOrigin | str, what: str, array: Any, expected: tuple[int, ...],
    parameter: str | None = None, hint: str = "",
) -> None:
    shape = _shape(where, what, array)
    if shape != expected:
        raise CellContractError(
            where, f"{what} has shape {shape}{hint}, expected {expected}", parameter=parameter)
    dtype = getattr(array, "dtype", None)
    if array_dtype(array) != cell.config.np_dtype:
        raise CellContractError(
            where, f"{what} has dtype {dtype}, expected the cell's dtype {cell.config.dtype}",
            parameter=parameter)


def _check_state(
    cell: Any, where: CellOrigin | str, what: str, state: Any, like: Sequence[Any],
    like_name: str,
) -> None:
    if not isinstance(state, (tuple, list)):
        raise CellContractError(
            where, f"{what} is a {type(state).__name__}; it must be a tuple of "
            f"{cell.state_size} array(s)")
    if len(state) != cell.state_size or len(state) != len(like):
        raise CellContractError(
            where, f"{what} has {len(state)} array(s), expected {len(like)} (state_size is "
            f"{cell.state_size})")
    for index, (array, other) in enumerate(zip(state, like, strict=True)):
        _check_array(cell, where, f"{what}[{index}]", array,
                     _shape(where, f"{like_name}[{index}]", other))
