"""The options and declared support the built-in cells share on every backend (numpy,
numba-cpu, numba-cuda), so a suite's ``cell: {name: rnn, params: {nonlinearity: relu}}`` means
the same on each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rnnbench import CellSupport, param


@dataclass(frozen=True)
class RNNOptions:
    """Options of the built-in ``rnn`` cell, as ``torch.nn.RNN``'s."""

    nonlinearity: Literal["tanh", "relu"] = param(
        "tanh", "h' = f(W_ih x + b_ih + W_hh h + b_hh) with f tanh or relu (PyTorch's "
        "nn.RNN(nonlinearity=...); relu with init: identity is Le et al. 2015's IRNN)"
    )


#: The options class of each built-in cell that has options.
OPTIONS: dict[str, type] = {"rnn": RNNOptions}
#: What each built-in cell declares: the LSTM's forget gate is gate block 1 (i, f, g, o).
SUPPORTS: dict[str, CellSupport] = {"lstm": CellSupport(forget_gate=1)}


def is_relu(nonlinearity: str | None) -> bool:
    """Whether an RNN's ``nonlinearity`` option asks for relu (``None``, from a config built
    by hand without options, is PyTorch's default tanh)."""
    if nonlinearity not in (None, "tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity == "relu"
