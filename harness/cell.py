"""The cell protocol: what every recurrent cell implementation provides, on any backend.

One trainer drives every backend through this protocol, so it is deliberately small and
functional: parameters are passed in explicitly (never hidden inside the cell), and every array
argument or result is a *backend array* (a numpy array on CPU backends, a device array on a GPU
backend). The host sees backend arrays only through :meth:`Cell.to_host`, which the trainer calls
once per training step at most, never once per time step.

Shapes follow PyTorch's ``nn.RNN``/``nn.LSTM``/``nn.GRU`` with ``batch_first=False``:

- inputs ``x``: ``(T, B, input_size)``
- outputs ``y``: ``(T, B, hidden_size)``, the top layer's hidden state at every step
- state: a tuple of ``state_size`` arrays, each ``(num_layers, B, hidden_size)``:
  ``(h,)`` for RNN and GRU, ``(h, c)`` for LSTM
- parameters: a dict keyed by PyTorch's names, ``weight_ih_l{k}`` ``(G*H, I or H)``,
  ``weight_hh_l{k}`` ``(G*H, H)``, ``bias_ih_l{k}`` and ``bias_hh_l{k}`` ``(G*H,)``, where G is
  the number of gates (1 for RNN, 4 for LSTM in order i, f, g, o, 3 for GRU in order r, z, n).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

DTYPES = ("float32", "float64")

#: A backend array: ``numpy.ndarray`` on CPU backends, a device array on GPU backends.
Array = Any
#: Parameters by PyTorch name.
Params = dict[str, Array]
#: Recurrent state: ``(h,)`` or ``(h, c)``, each ``(num_layers, B, H)``.
State = tuple[Array, ...]


@dataclass(frozen=True)
class CellConfig:
    """The size and numeric type of one cell instance, and its options; a cell factory receives
    exactly this."""

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    dtype: str = "float32"
    #: The cell's options (``register(..., options=...)``) as sorted ``(name, value)`` pairs; a
    #: mapping is accepted and sorted. A registered cell's factory gets every option it
    #: declared, defaults filled in; read one with :meth:`option`.
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        options = self.options
        if isinstance(options, Mapping):
            options = options.items()
        try:
            pairs = tuple(sorted(((str(k), v) for k, v in options), key=lambda kv: kv[0]))
        except (TypeError, ValueError):
            raise ValueError(
                f"CellConfig.options must be a mapping or (name, value) pairs, got {options!r}"
            ) from None
        object.__setattr__(self, "options", pairs)
        for name in ("input_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CellConfig.{name} must be a positive integer, got {value!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"CellConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def option(self, name: str, default: Any = None) -> Any:
        """The value of option ``name``, or ``default`` when the config does not set it (a
        config built by hand; a registered cell's factory always gets every option)."""
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class CellSupport:
    """What a cell implementation supports, declared when it is registered
    (``register(..., supports=CellSupport(...))``), so ``rnnbench validate`` rejects a suite that
    asks for more instead of the run failing later. The default supports everything a
    :class:`CellConfig` can say.
    """

    #: The dtypes the cell computes in.
    dtypes: tuple[str, ...] = DTYPES
    #: The largest ``num_layers``; ``None`` for any.
    max_layers: int | None = None
    #: Whether the cell can run with biases (``bias: true``) and without (``bias: false``).
    bias: tuple[bool, ...] = (True, False)
    #: Which gate block of ``bias_ih_l{k}`` (gates stacked as PyTorch stacks them, ``hidden_size``
    #: rows each) is the forget gate, where ``training.forget_bias`` is added (LSTM: 1, for the
    #: gates i, f, g, o); ``None``: the cell has no forget gate, and a non-zero ``forget_bias``
    #: is refused.
    forget_gate: int | None = None

    def __post_init__(self) -> None:
        unknown = [d for d in self.dtypes if d not in DTYPES]
        if not self.dtypes or unknown:
            raise ValueError(f"CellSupport.dtypes must be a non-empty subset of {DTYPES}, "
                             f"got {self.dtypes!r}")
        if self.max_layers is not None and (
            not isinstance(self.max_layers, int) or isinstance(self.max_layers, bool)
            or self.max_layers < 1
        ):
            raise ValueError(
                f"CellSupport.max_layers must be a positive integer or None, got "
                f"{self.max_layers!r}"
            )
        if not self.bias or any(b not in (True, False) for b in self.bias):
            raise ValueError(f"CellSupport.bias must be a non-empty subset of (True, False), "
                             f"got {self.bias!r}")
        if self.forget_gate is not None and (
            not isinstance(self.forget_gate, int) or isinstance(self.forget_gate, bool)
            or self.forget_gate < 0
        ):
            raise ValueError(
                f"CellSupport.forget_gate must be a gate index (0, 1, ...) or None, got "
                f"{self.forget_gate!r}"
            )

    def problems(self, config: CellConfig) -> list[str]:
        """What ``config`` asks for beyond this support, one sentence each; empty when none."""
        found = []
        if config.dtype not in self.dtypes:
            found.append(f"dtype {config.dtype} is not supported (supported: "
                         f"{', '.join(self.dtypes)})")
        if self.max_layers is not None and config.num_layers > self.max_layers:
            found.append(f"num_layers {config.num_layers} is more than the {self.max_layers} "
                         f"supported")
        if config.bias not in self.bias:
            found.append(f"bias {str(config.bias).lower()} is not supported")
        return found


@dataclass
class ForwardResult:
    """What :meth:`Cell.forward` returns.

    ``cache`` is opaque to everyone but the cell that made it: whatever the cell needs to run
    :meth:`Cell.backward` without recomputing the forward pass (it may live on the device).
    """

    outputs: Array
    final_state: State
    cache: Any


@dataclass
class BackwardResult:
    """What :meth:`Cell.backward` returns: gradients of the loss with respect to every input.

    ``param_grads`` has exactly the keys and shapes of the parameters; ``d_inputs`` the shape of
    ``x``; ``d_initial_state`` one array per state tensor, so cells can be stacked or chained
    (encoder-decoder) with gradients flowing through the initial state.
    """

    param_grads: Params
    d_inputs: Array
    d_initial_state: State


@runtime_checkable
class Cell(Protocol):
    """A recurrent cell on one backend. Built by a factory ``factory(config: CellConfig)``.

    :class:`rnnbench.StackedCell` implements all of this but the work of one layer over one
    sequence (its forward and backward); every built-in cell builds on it.
    """

    config: CellConfig
    #: Number of state tensors: 1 for ``(h,)``, 2 for ``(h, c)``.
    state_size: int

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Fresh parameters as *host* numpy arrays of ``config.dtype``, PyTorch layout and names.

        The default initialisation is PyTorch's: uniform on ``[-1/sqrt(H), 1/sqrt(H)]``. The same
        ``rng`` state must give the same parameters on every backend of the same cell.
        """
        ...

    def to_backend(self, array: np.ndarray) -> Array:
        """Copy one host array to the backend (identity on CPU backends), in ``config.dtype``."""
        ...

    def to_host(self, array: Array) -> np.ndarray:
        """Copy one backend array to a host numpy array (identity on CPU backends)."""
        ...

    def initial_state(self, batch_size: int) -> State:
        """A zero state for ``batch_size`` sequences, on the backend."""
        ...

    def forward(self, params: Params, x: Array, initial_state: State) -> ForwardResult:
        """Run the whole sequence ``x`` ``(T, B, I)`` from ``initial_state``."""
        ...

    def backward(
        self,
        params: Params,
        cache: Any,
        d_outputs: Array,
        d_final_state: State | None = None,
    ) -> BackwardResult:
        """Backpropagation through time over the whole sequence of the matching forward call.

        ``d_outputs`` is dLoss/d outputs ``(T, B, H)``; ``d_final_state`` is dLoss/d final state
        (``None`` means zero). Must not modify its arguments.
        """
        ...

    def step(self, params: Params, x_t: Array, state: State) -> tuple[Array, State]:
        """One time step ``x_t`` ``(B, I)``: returns the top layer's output ``(B, H)`` and the new
        state. Used for free-running generation, where each input depends on the last output."""
        ...


#: The members of :class:`Cell`; the runner checks a factory's product has them all.
CELL_MEMBERS = (
    "config", "state_size", "init_params", "to_backend", "to_host", "initial_state",
    "forward", "backward", "step",
)


class InferenceCell(Protocol):
    """The optional member of the cell protocol: a forward pass for evaluation, without cache.

    Contract addition (rnnbench 0.3, contract 2, optional, so no version bump: a cell without
    it runs as before, and a cell with it on an rnnbench that does not know it is simply never
    asked). The harness evaluates a split with it in chunks, over sequences and over time,
    passing the final state of one time chunk as the initial state of the next, so evaluation
    memory is O(chunk x hidden_size) whatever the sequence length. A cell without ``infer``
    gets the harness's fallback: :meth:`Cell.forward` on the same time chunks, each cache
    dropped as soon as the chunk's outputs are read. :class:`rnnbench.StackedCell` implements
    it for every cell built on it (a layer may override ``layer_infer`` to skip the work of
    building a cache at all).
    """

    def infer(self, params: Params, x: Array, initial_state: State) -> tuple[Array, State]:
        """``x`` ``(T, B, I)`` from ``initial_state``: the outputs ``(T, B, H)`` and the final
        state, exactly (to float rounding) what :meth:`Cell.forward` returns for them, keeping
        nothing for a backward pass. Must not modify its arguments."""
        ...


#: Members a cell may have beyond :data:`CELL_MEMBERS`; the harness checks for each before use.
OPTIONAL_CELL_MEMBERS = ("infer",)


def has_infer(cell: Any) -> bool:
    """Whether ``cell`` implements the optional :meth:`InferenceCell.infer`."""
    return callable(getattr(cell, "infer", None))


def parameter_count(params: dict[str, np.ndarray]) -> int:
    """Total number of scalars in a parameter dict."""
    return int(sum(np.size(p) for p in params.values()))


#: Number of gates G of each built-in cell: parameter matrices have ``G * hidden_size`` rows.
GATES: dict[str, int] = {"rnn": 1, "lstm": 4, "gru": 3}


def param_shapes(gates: int, config: CellConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes in PyTorch's layout and order, for a cell with ``gates`` gates.

    For each layer ``k``: ``weight_ih_l{k}`` ``(G*H, I if k == 0 else H)``, ``weight_hh_l{k}``
    ``(G*H, H)`` and, when ``config.bias``, ``bias_ih_l{k}`` and ``bias_hh_l{k}`` ``(G*H,)``.
    """
    rows, hidden = gates * config.hidden_size, config.hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(config.num_layers):
        shapes[f"weight_ih_l{k}"] = (rows, config.input_size if k == 0 else hidden)
        shapes[f"weight_hh_l{k}"] = (rows, hidden)
        if config.bias:
            shapes[f"bias_ih_l{k}"] = (rows,)
            shapes[f"bias_hh_l{k}"] = (rows,)
    return shapes


def init_uniform(
    shapes: dict[str, tuple[int, ...]], config: CellConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """PyTorch's default initialisation: every tensor uniform on ``[-1/sqrt(H), 1/sqrt(H)]``.

    Tensors are drawn in the order of ``shapes`` in float64, then cast to ``config.dtype``, so
    float32 and float64 parameters drawn from the same ``rng`` state correspond element by element.
    """
    bound = 1.0 / float(np.sqrt(config.hidden_size))
    return {
        name: rng.uniform(-bound, bound, size=shape).astype(config.np_dtype)
        for name, shape in shapes.items()
    }
