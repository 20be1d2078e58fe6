"""The ``numpy`` backend: PyTorch's RNN (tanh), LSTM and GRU as plain, readable numpy.

These cells are the oracle every faster backend is checked against, so they are written for
clarity rather than speed: vectorised over the batch, a plain Python loop over layers and time,
all arithmetic in ``config.dtype``.

:class:`ReferenceCell` holds everything the three cells share: input validation, the loops over
layers and time, and backpropagation through time and down the layer stack. A cell adds only its
equations, as two functions of one time step of one layer:

- ``step_forward(gi, gh, state) -> (new_state, saved)``, where ``gi = x W_ih^T + b_ih`` and
  ``gh = h W_hh^T + b_hh`` are the gate pre-activations ``(B, G*H)`` coming from the input and
  from the previous hidden state, ``state`` is the layer's state before the step (each ``(B, H)``,
  ``h`` first), ``new_state[0]`` is the new ``h`` (the layer's output) and ``saved`` is whatever
  the backward step needs;
- ``step_backward(d_new_state, state, saved) -> (d_gi, d_gh, d_state)``: from dLoss/d new state,
  the gradients with respect to ``gi``, ``gh`` and ``state``, the last along the paths that do
  not pass through ``gh`` only (the base class adds ``d_gh W_hh`` to ``d_h``).

``gi`` and ``gh`` are kept apart because GRU needs them apart (its reset gate multiplies
``W_hn h + b_hn`` only); for RNN and LSTM both gradients are the same array.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rnnbench import hookimpl
from rnnbench.cell import (
    GATES,
    BackwardResult,
    CellConfig,
    ForwardResult,
    init_uniform,
    param_shapes,
)

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


def _shape_text(shape: Sequence[int | str]) -> str:
    inner = ", ".join(str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _check_array(name: str, a: Any, shape: Sequence[int | str], dtype: np.dtype) -> None:
    """Raise unless ``a`` is a numpy array of ``shape`` (str entries match any size) and dtype."""
    if not isinstance(a, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array of shape {_shape_text(shape)}, got {type(a).__name__}"
        )
    if a.ndim != len(shape) or any(
        isinstance(d, int) and d != n for d, n in zip(shape, a.shape, strict=True)
    ):
        raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {a.shape}")
    if a.dtype != dtype:
        raise ValueError(
            f"{name} must have dtype {dtype} (the cell's CellConfig.dtype), got {a.dtype};"
            " convert host arrays with to_backend"
        )


@dataclass(frozen=True)
class LayerCache:
    """What one layer's forward pass keeps for backpropagation through time."""

    inputs: np.ndarray  # (T, B, I_k): the sequence this layer read
    states: list[LayerState]  # states[t]: the state before step t; states[T] is the final one
    saved: list[Saved]  # saved[t]: what step_forward kept at step t


@dataclass(frozen=True)
class ReferenceCache:
    """The ``cache`` of :class:`ReferenceCell`'s forward: one :class:`LayerCache` per layer."""

    config: CellConfig
    kind: str
    layers: tuple[LayerCache, ...]


class ReferenceCell:
    """Shared scaffolding of the reference cells; subclasses add their equations only."""

    kind: ClassVar[str]
    description: ClassVar[str]
    state_size: ClassVar[int]
    #: Names of the state tensors, for error messages.
    state_names: ClassVar[tuple[str, ...]]
    step_forward: ClassVar[Callable[..., tuple[LayerState, Saved]]]
    step_backward: ClassVar[Callable[..., tuple[np.ndarray, np.ndarray, LayerState]]]

    def __init__(self, config: CellConfig) -> None:
        if not isinstance(config, CellConfig):
            raise TypeError(f"{type(self).__name__} needs a CellConfig, got {config!r}")
        self.config = config
        self.gates = GATES[self.kind]
        self.param_shapes = param_shapes(self.gates, config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # --- Protocol: parameters, arrays and state -------------------------------------------------

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

    # --- Protocol: computation ------------------------------------------------------------------

    def forward(
        self, params: Mapping[str, np.ndarray], x: np.ndarray, initial_state: Sequence[np.ndarray]
    ) -> ForwardResult:
        self._check_params(params)
        _check_array("x", x, ("T", "B", self.config.input_size), self.config.np_dtype)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"x must have at least one time step and one sequence, got {x.shape}")
        self._check_state("initial_state", initial_state, x.shape[1])
        outputs, final_state, cache = self._run(params, x, initial_state)
        return ForwardResult(outputs=outputs, final_state=final_state, cache=cache)

    def step(
        self, params: Mapping[str, np.ndarray], x_t: np.ndarray, state: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        self._check_params(params)
        _check_array("x_t", x_t, ("B", self.config.input_size), self.config.np_dtype)
        if x_t.shape[0] < 1:
            raise ValueError(f"x_t must hold at least one sequence, got {x_t.shape}")
        self._check_state("state", state, x_t.shape[0])
        outputs, new_state, _ = self._run(params, x_t[np.newaxis], state)
        return outputs[0], new_state

    def backward(
        self,
        params: Mapping[str, np.ndarray],
        cache: Any,
        d_outputs: np.ndarray,
        d_final_state: Sequence[np.ndarray] | None = None,
    ) -> BackwardResult:
        self._check_params(params)
        if not isinstance(cache, ReferenceCache) or (cache.kind, cache.config) != (
            self.kind,
            self.config,
        ):
            raise ValueError(f"cache must come from forward() of an identical {self!r}")
        seq_len, batch = cache.layers[0].inputs.shape[:2]
        dtype, hidden = self.config.np_dtype, self.config.hidden_size
        _check_array("d_outputs", d_outputs, (seq_len, batch, hidden), dtype)
        if d_final_state is None:
            d_final_state = self.initial_state(batch)
        self._check_state("d_final_state", d_final_state, batch)

        return self._backward_layers(params, cache, d_outputs, d_final_state)

    def _backward_layers(
        self, params: Mapping[str, Any], cache: ReferenceCache, d_outputs: Any,
        d_final_state: Sequence[Any],
    ) -> BackwardResult:
        """BPTT down the layer stack, top first; layer ``k``'s input gradient is layer
        ``k - 1``'s output gradient. Shared by every backend built on this scaffolding."""
        grads: dict[str, Any] = {}
        d_initial: list[LayerState] = []
        d_layer_outputs = d_outputs
        for k in reversed(range(self.config.num_layers)):
            d_final_k = tuple(d[k] for d in d_final_state)
            d_layer_outputs, d_state_k = self._layer_backward(
                params, k, cache.layers[k], d_layer_outputs, d_final_k, grads
            )
            d_initial.insert(0, d_state_k)
        return BackwardResult(
            param_grads={name: grads[name] for name in self.param_shapes},
            d_inputs=d_layer_outputs,
            d_initial_state=self._stack_layers(d_initial),
        )

    # --- Shared scaffolding ---------------------------------------------------------------------

    def _layer_params(
        self, params: Mapping[str, np.ndarray], k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(W_ih, W_hh, b_ih, b_hh)`` of layer ``k``; the biases are None without bias."""
        if not self.config.bias:
            return params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"], None, None
        return tuple(params[f"{p}_l{k}"] for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _stack_layers(self, per_layer: list[LayerState]) -> tuple[np.ndarray, ...]:
        """Per-layer states (each ``(B, H)``) to the protocol's state (each ``(L, B, H)``)."""
        return tuple(np.stack([s[i] for s in per_layer]) for i in range(self.state_size))

    def _run(
        self, params: Mapping[str, np.ndarray], x: np.ndarray, state: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...], ReferenceCache]:
        """Forward through every layer; layer ``k`` reads layer ``k - 1``'s output sequence."""
        layer_input, finals, caches = x, [], []
        for k in range(self.config.num_layers):
            layer_input, final_k, cache_k = self._layer_forward(
                params, k, layer_input, tuple(s[k] for s in state)
            )
            finals.append(final_k)
            caches.append(cache_k)
        cache = ReferenceCache(config=self.config, kind=self.kind, layers=tuple(caches))
        return layer_input, self._stack_layers(finals), cache

    def _layer_forward(
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

    def _layer_backward(
        self,
        params: Mapping[str, np.ndarray],
        k: int,
        cache: LayerCache,
        d_outputs: np.ndarray,
        d_final: LayerState,
        grads: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, LayerState]:
        """BPTT through layer ``k``: fills ``grads`` with the layer's parameter gradients and
        returns dLoss/d its input sequence and dLoss/d its initial state."""
        w_ih, w_hh, _, _ = self._layer_params(params, k)
        seq_len, batch = d_outputs.shape[:2]
        d_gi = np.empty((seq_len, batch, w_hh.shape[0]), self.config.np_dtype)
        d_gh = np.empty_like(d_gi)
        d_state = d_final
        for t in reversed(range(seq_len)):
            d_new = (d_state[0] + d_outputs[t], *d_state[1:])
            d_gi[t], d_gh[t], d_prev = self.step_backward(d_new, cache.states[t], cache.saved[t])
            d_state = (d_prev[0] + d_gh[t] @ w_hh, *d_prev[1:])
        h_prev = np.stack([s[0] for s in cache.states[:-1]])  # (T, B, H)
        over_time_and_batch = ([0, 1], [0, 1])
        grads[f"weight_ih_l{k}"] = np.tensordot(d_gi, cache.inputs, axes=over_time_and_batch)
        grads[f"weight_hh_l{k}"] = np.tensordot(d_gh, h_prev, axes=over_time_and_batch)
        if self.config.bias:
            grads[f"bias_ih_l{k}"] = d_gi.sum(axis=(0, 1))
            grads[f"bias_hh_l{k}"] = d_gh.sum(axis=(0, 1))
        return d_gi @ w_ih, d_state

    # --- Validation -----------------------------------------------------------------------------

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
        names = _shape_text(self.state_names)
        if not isinstance(state, (tuple, list)) or len(state) != self.state_size:
            raise ValueError(
                f"{name} must be a tuple of {self.state_size} array(s) {names}, got {state!r:.80}"
            )
        shape = (self.config.num_layers, batch, self.config.hidden_size)
        for part, array in zip(self.state_names, state, strict=True):
            _check_array(f"{name} {part}", array, shape, self.config.np_dtype)


class RNNCell(ReferenceCell):
    """Elman RNN with tanh, as ``torch.nn.RNN``: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``."""

    kind = "rnn"
    description = "Elman RNN (tanh), PyTorch nn.RNN equations; plain numpy reference"
    state_size = 1
    state_names = ("h",)

    @staticmethod
    def step_forward(gi: np.ndarray, gh: np.ndarray, state: LayerState) -> tuple[LayerState, Saved]:
        h_new = np.tanh(gi + gh)
        return (h_new,), (h_new,)

    @staticmethod
    def step_backward(
        d_new_state: LayerState, state: LayerState, saved: Saved
    ) -> tuple[np.ndarray, np.ndarray, LayerState]:
        (dh,), (h_new,) = d_new_state, saved
        d_pre = dh * (1 - h_new * h_new)
        return d_pre, d_pre, (np.zeros_like(dh),)


class LSTMCell(ReferenceCell):
    """LSTM as ``torch.nn.LSTM``: gates ``i, f, g, o`` from ``W_ih x + b_ih + W_hh h + b_hh``,
    ``c' = f*c + i*g``, ``h' = o*tanh(c')``, with ``i, f, o`` sigmoid and ``g`` tanh."""

    kind = "lstm"
    description = "LSTM, PyTorch nn.LSTM equations (gates i, f, g, o); plain numpy reference"
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
        register(cell.kind, BACKEND, cell, description=cell.description)
