"""A local stand-in for ``rnnbench.StackedCell``, which rnnbench's plugin contract version 1
provides; delete this module and subclass ``rnnbench.StackedCell`` once that is released.

It does what the public base will do, so a cell only writes the work of one layer:

- checks every argument (parameter names, shapes and dtypes; input and state shapes), with
  messages that name the argument;
- creates zero states, and initialises parameters PyTorch's way (uniform on +-1/sqrt(H), drawn in
  the order of :meth:`param_shapes`, in float64 and then cast, so float32 and float64 parameters
  from the same ``rng`` state correspond element by element);
- stacks layers: layer ``k`` reads layer ``k - 1``'s output sequence in ``forward`` and ``step``,
  and ``backward`` runs the layers top first, passing each layer's input gradient down as the
  output gradient of the layer below.

A subclass sets ``state_size`` and implements :meth:`layer_param_shapes`,
:meth:`layer_forward` and :meth:`layer_backward`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from rnnbench import BackwardResult, CellConfig, ForwardResult, init_uniform

#: One layer's state: one ``(B, H)`` array per state tensor (``(h,)`` or ``(h, c)``).
LayerState = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class StackCache:
    """What :meth:`LayerStackCell.forward` keeps: the config it ran with and each layer's cache."""

    config: CellConfig
    #: ``(T, B)`` of the forward pass: what ``d_outputs`` must match.
    steps_and_batch: tuple[int, int]
    layers: tuple[Any, ...]


class LayerStackCell:
    """Argument checks, state, initialisation and layer stacking for a numpy cell."""

    #: Number of state tensors: 1 for ``(h,)``, 2 for ``(h, c)``.
    state_size: ClassVar[int] = 1

    def __init__(self, config: CellConfig) -> None:
        if not isinstance(config, CellConfig):
            raise TypeError(f"{type(self).__name__} needs a rnnbench.CellConfig, got {config!r}")
        self.config = config
        self.param_shapes = self._all_param_shapes()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # --- What a subclass implements --------------------------------------------------------------

    def layer_param_shapes(self, k: int, input_size: int) -> dict[str, tuple[int, ...]]:
        """Names and shapes of layer ``k``'s parameters; ``input_size`` is what the layer reads
        (the cell's input size for layer 0, the hidden size above it)."""
        raise NotImplementedError

    def layer_forward(
        self, params: Mapping[str, np.ndarray], k: int, inputs: np.ndarray, state: LayerState
    ) -> tuple[np.ndarray, LayerState, Any]:
        """Layer ``k`` over the sequence ``inputs`` ``(T, B, I_k)`` from ``state``: returns its
        outputs ``(T, B, H)``, its final state and whatever :meth:`layer_backward` needs."""
        raise NotImplementedError

    def layer_backward(
        self,
        params: Mapping[str, np.ndarray],
        k: int,
        layer_cache: Any,
        d_outputs: np.ndarray,
        d_final: LayerState,
    ) -> tuple[np.ndarray, LayerState, dict[str, np.ndarray]]:
        """BPTT through layer ``k``: from dLoss/d its outputs and dLoss/d its final state, returns
        dLoss/d its inputs, dLoss/d its initial state and the gradients of its parameters."""
        raise NotImplementedError

    # --- The rnnbench.Cell protocol ---------------------------------------------------------------

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return init_uniform(self.param_shapes, self.config, rng)

    def to_backend(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array, dtype=self.config.np_dtype)

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)

    def initial_state(self, batch_size: int) -> tuple[np.ndarray, ...]:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        return tuple(np.zeros(shape, self.config.np_dtype) for _ in range(self.state_size))

    def forward(
        self, params: Mapping[str, np.ndarray], x: np.ndarray, initial_state: Sequence[np.ndarray]
    ) -> ForwardResult:
        self._check_params(params)
        _check_array("x", x, ("T", "B", self.config.input_size), self.config.np_dtype)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"x must have at least one time step and one sequence, got {x.shape}")
        self._check_state("initial_state", initial_state, x.shape[1])
        outputs, final_state, caches = self._run_layers(params, x, initial_state)
        cache = StackCache(self.config, x.shape[:2], tuple(caches))
        return ForwardResult(outputs, final_state, cache)

    def step(
        self, params: Mapping[str, np.ndarray], x_t: np.ndarray, state: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        self._check_params(params)
        _check_array("x_t", x_t, ("B", self.config.input_size), self.config.np_dtype)
        if x_t.shape[0] < 1:
            raise ValueError(f"x_t must hold at least one sequence, got {x_t.shape}")
        self._check_state("state", state, x_t.shape[0])
        outputs, new_state, _ = self._run_layers(params, x_t[np.newaxis], state)
        return outputs[0], new_state

    def backward(
        self,
        params: Mapping[str, np.ndarray],
        cache: Any,
        d_outputs: np.ndarray,
        d_final_state: Sequence[np.ndarray] | None = None,
    ) -> BackwardResult:
        self._check_params(params)
        if not isinstance(cache, StackCache) or cache.config != self.config:
            raise ValueError(f"cache must come from forward() of an identical {self!r}")
        seq_len, batch = cache.steps_and_batch
        hidden = self.config.hidden_size
        _check_array("d_outputs", d_outputs, (seq_len, batch, hidden), self.config.np_dtype)
        if d_final_state is None:
            d_final_state = self.initial_state(batch)
        self._check_state("d_final_state", d_final_state, batch)
        grads: dict[str, np.ndarray] = {}
        d_initial: list[LayerState] = []
        d_layer_outputs = d_outputs
        for k in reversed(range(self.config.num_layers)):
            d_final_k = tuple(d[k] for d in d_final_state)
            d_layer_outputs, d_state_k, layer_grads = self.layer_backward(
                params, k, cache.layers[k], d_layer_outputs, d_final_k
            )
            grads.update(layer_grads)
            d_initial.insert(0, d_state_k)
        return BackwardResult(
            param_grads={name: grads[name] for name in self.param_shapes},
            d_inputs=d_layer_outputs,
            d_initial_state=self._stack(d_initial),
        )

    # --- Scaffolding ------------------------------------------------------------------------------

    def _all_param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for k in range(self.config.num_layers):
            layer_input = self.config.input_size if k == 0 else self.config.hidden_size
            shapes.update(self.layer_param_shapes(k, layer_input))
        return shapes

    def _run_layers(
        self, params: Mapping[str, np.ndarray], x: np.ndarray, state: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...], list[Any]]:
        layer_input, finals, caches = x, [], []
        for k in range(self.config.num_layers):
            layer_input, final_k, cache_k = self.layer_forward(
                params, k, layer_input, tuple(s[k] for s in state)
            )
            finals.append(final_k)
            caches.append(cache_k)
        return layer_input, self._stack(finals), caches

    def _stack(self, per_layer: list[LayerState]) -> tuple[np.ndarray, ...]:
        """Per-layer states (each ``(B, H)``) to the protocol's state (each ``(L, B, H)``)."""
        return tuple(np.stack([s[i] for s in per_layer]) for i in range(self.state_size))

    def _check_params(self, params: Mapping[str, np.ndarray]) -> None:
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        missing = [n for n in self.param_shapes if n not in params]
        extra = [n for n in params if n not in self.param_shapes]
        if missing or extra:
            raise ValueError(
                f"params of {self!r} must have exactly the keys {list(self.param_shapes)};"
                f" missing {missing}, unexpected {extra}"
            )
        for name, shape in self.param_shapes.items():
            _check_array(f"params[{name!r}]", params[name], shape, self.config.np_dtype)

    def _check_state(self, name: str, state: Any, batch: int) -> None:
        if not isinstance(state, (tuple, list)) or len(state) != self.state_size:
            raise ValueError(
                f"{name} must be a tuple of {self.state_size} array(s), got {state!r:.80}"
            )
        shape = (self.config.num_layers, batch, self.config.hidden_size)
        for i, array in enumerate(state):
            _check_array(f"{name}[{i}]", array, shape, self.config.np_dtype)


def _check_array(name: str, a: Any, shape: Sequence[int | str], dtype: np.dtype) -> None:
    """Raise unless ``a`` is a numpy array of ``shape`` (str entries match any size) and dtype."""
    text = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of shape {text}, got {type(a).__name__}")
    if a.ndim != len(shape) or any(
        isinstance(d, int) and d != n for d, n in zip(shape, a.shape, strict=True)
    ):
        raise ValueError(f"{name} must have shape {text}, got {a.shape}")
    if a.dtype != dtype:
        raise ValueError(
            f"{name} must have dtype {dtype} (the cell's CellConfig.dtype), got {a.dtype};"
            " convert host arrays with to_backend"
        )
