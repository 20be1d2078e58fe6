"""A base for recurrent cells made of layers: the :class:`rnnbench.Cell` protocol's plumbing, once.

Every cell stacks ``num_layers`` layers (layer ``k`` reads layer ``k - 1``'s outputs), keeps its
state as ``(num_layers, B, H)`` tensors, checks its arguments and draws its parameters the same
way. :class:`StackedCell` does all of that, so a cell implements only the work of *one layer over
one whole sequence*, in two methods:

- :meth:`~StackedCell.layer_forward` ``(params, k, inputs, state)`` returns
  ``(outputs, final_state, layer_cache)``;
- :meth:`~StackedCell.layer_backward` ``(params, k, layer_cache, d_outputs, d_final)`` returns
  ``(d_inputs, d_initial_state, layer_grads)``;

and declares its state in class attributes (``state_names``, ``state_size``) and its parameters
either as PyTorch's layout for ``gates`` gates or by overriding
:meth:`~StackedCell.layer_param_shapes` (a minGRU has no ``weight_hh``; an IndRNN's recurrent
weight is a vector). A minimal cell, a linear recurrence ``h' = W_ih x + W_hh h``::

    class LinearCell(rnnbench.StackedCell):
        gates = 1  # PyTorch's layout with G = 1: weight_ih_l{k}, weight_hh_l{k}, biases

        def layer_forward(self, params, k, inputs, state):
            w_ih, w_hh = params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"]
            hs = [state[0]]
            for x_t in inputs:
                hs.append(x_t @ w_ih.T + hs[-1] @ w_hh.T)  # (biases left out for brevity)
            return np.stack(hs[1:]), (hs[-1],), (inputs, hs)

        def layer_backward(self, params, k, layer_cache, d_outputs, d_final): ...

Why a shared base, and why it does not weaken the parity tests: every backend (the numpy
reference, numba-cpu, numba-cuda, a third party's) builds on this class, so the per-layer work is
all that differs between them and all that the parity tests compare. The plumbing here is tested
on its own, against a cell that belongs to no backend (``tests/test_stacked_cell.py``), so a bug
in it cannot hide by living on both sides of a parity test.

Arrays: the defaults are for numpy (host) arrays. A device backend overrides the array plumbing:
:meth:`~StackedCell.to_backend`, :meth:`~StackedCell.to_host`, :meth:`~StackedCell.zeros`,
:meth:`~StackedCell.stack` and :meth:`~StackedCell.check_array` (which may also copy a host
argument to the device), and sets :attr:`~StackedCell.array_description` for messages.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rnnbench.cell import (
    Array,
    BackwardResult,
    CellConfig,
    ForwardResult,
    Params,
    State,
    init_uniform,
    param_shapes,
)

#: One layer's state: one ``(B, H)`` array per state tensor, in the order of ``state_names``.
LayerState = tuple[Array, ...]


def _shape_text(shape: Sequence[int | str]) -> str:
    inner = ", ".join(str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


@dataclass(frozen=True)
class StackedCache:
    """The ``cache`` of :meth:`StackedCell.forward`: each layer's own cache, and which cell made
    it, so that ``backward`` refuses a cache from another cell or config instead of
    misreading it."""

    cell: type
    config: CellConfig
    steps: int
    batch: int
    layers: tuple[Any, ...]


class StackedCell(abc.ABC):
    """A :class:`rnnbench.Cell` built from per-layer work; see :mod:`rnnbench.stacked_cell`.

    A subclass implements :meth:`layer_forward` and :meth:`layer_backward`, sets ``state_names``
    and ``state_size`` (when its state is not just ``(h,)``) and either sets ``gates`` (PyTorch's
    parameter layout) or overrides :meth:`layer_param_shapes`. Everything else (argument checks,
    the layer loop, state stacking, ``step``, ``init_params``, ``initial_state``) is here.
    """

    #: Names of the state tensors, in order (``("h",)``, ``("h", "c")``); used in messages.
    state_names: ClassVar[tuple[str, ...]] = ("h",)
    #: Number of state tensors; must equal ``len(state_names)``.
    state_size: ClassVar[int] = 1
    #: Number of gates G for PyTorch's layout (weights of ``G * hidden_size`` rows), read by the
    #: default :meth:`layer_param_shapes` only.
    gates: ClassVar[int | None] = None
    #: What an argument array must be, for messages; a device backend names its own arrays.
    array_description: ClassVar[str] = "a numpy array"

    def __init__(self, config: CellConfig) -> None:
        if not isinstance(config, CellConfig):
            raise TypeError(f"{type(self).__name__} needs a CellConfig, got {config!r}")
        if len(self.state_names) != self.state_size:
            raise TypeError(
                f"{type(self).__name__}: state_size is {self.state_size} but state_names"
                f" {self.state_names} names {len(self.state_names)}; set both"
            )
        self.config = config
        #: Every parameter's name and shape, layer by layer: the keys ``params`` must have, in
        #: the order :meth:`init_params` draws them.
        self.param_shapes: dict[str, tuple[int, ...]] = {}
        self._layer_names: list[tuple[str, ...]] = []
        for k in range(config.num_layers):
            shapes = self.layer_param_shapes(k)
            repeated = sorted(shapes.keys() & self.param_shapes.keys())
            if repeated:
                raise TypeError(
                    f"{type(self).__name__}.layer_param_shapes({k}) repeats the names {repeated}"
                    " of a lower layer; end each name in _l{k}"
                )
            self.param_shapes.update(shapes)
            self._layer_names.append(tuple(shapes))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # --- What a subclass implements --------------------------------------------------------------

    def layer_param_shapes(self, k: int) -> dict[str, tuple[int, ...]]:
        """Names and shapes of layer ``k``'s parameters, in the order they are drawn.

        Default: PyTorch's layout for ``gates`` gates (:func:`rnnbench.param_shapes`):
        ``weight_ih_l{k}`` ``(G*H, I or H)``, ``weight_hh_l{k}`` ``(G*H, H)`` and, with bias,
        ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(G*H,)``. Override it for any other parameters;
        names must differ between layers (end them in ``_l{k}``).
        """
        if self.gates is None:
            raise TypeError(
                f"{type(self).__name__} must set the class attribute gates (PyTorch's layout) or"
                " override layer_param_shapes"
            )
        suffix = f"_l{k}"
        return {
            name: shape
            for name, shape in param_shapes(self.gates, self.config).items()
            if name.endswith(suffix)
        }

    def layer_input_size(self, k: int) -> int:
        """The width of layer ``k``'s inputs: ``input_size`` for layer 0, else ``hidden_size``."""
        return self.config.input_size if k == 0 else self.config.hidden_size

    @abc.abstractmethod
    def layer_forward(
        self, params: Params, k: int, inputs: Array, state: LayerState
    ) -> tuple[Array, LayerState, Any]:
        """Layer ``k`` over a whole sequence.

        ``inputs`` ``(T, B, I_k)`` is ``x`` for layer 0 and layer ``k - 1``'s outputs above it;
        ``state`` the layer's initial state, one ``(B, H)`` array per state tensor (views into
        the caller's arrays: never write to them, nor to ``params`` or ``inputs``). Returns the
        outputs ``(T, B, H)`` (the hidden state at every step), the final state (one ``(B, H)``
        array per state tensor), and whatever :meth:`layer_backward` needs, opaque to the base.
        """

    @abc.abstractmethod
    def layer_backward(
        self, params: Params, k: int, layer_cache: Any, d_outputs: Array, d_final: LayerState
    ) -> tuple[Array, LayerState, dict[str, Array]]:
        """Backpropagation through time through layer ``k``, top layer first.

        ``layer_cache`` is what :meth:`layer_forward` returned for this layer; ``d_outputs``
        ``(T, B, H)`` is dLoss/d the layer's outputs (for lower layers: the ``d_inputs`` of the
        layer above); ``d_final`` dLoss/d its final state, one ``(B, H)`` array per state tensor
        (zeros when the caller passed ``d_final_state=None``). Returns dLoss/d ``inputs``
        ``(T, B, I_k)``, dLoss/d the initial state (one ``(B, H)`` array per state tensor), and
        the gradient of every parameter of :meth:`layer_param_shapes` ``(k)`` by name, each a
        fresh array (optimizers update gradients in place). Must not modify its arguments.
        """

    def layer_infer(
        self, params: Params, k: int, inputs: Array, state: LayerState
    ) -> tuple[Array, LayerState]:
        """Layer ``k`` over ``inputs`` for evaluation: ``(outputs, final_state)`` as
        :meth:`layer_forward` returns them, nothing kept for backward.

        Default: :meth:`layer_forward` with its cache dropped at once (the harness runs
        evaluation on time chunks, so that cache is O(chunk) while it lives). Override it when a
        cache costs work or memory worth skipping (the numpy reference does).
        """
        outputs, final, _ = self.layer_forward(params, k, inputs, state)
        return outputs, final

    # --- Array plumbing: a device backend overrides these ----------------------------------------

    def to_backend(self, array: np.ndarray) -> Array:
        """A host array as the backend's array of ``config.dtype`` (a contiguous numpy copy
        where needed, by default)."""
        return np.ascontiguousarray(array, dtype=self.config.np_dtype)

    def to_host(self, array: Array) -> np.ndarray:
        """A backend array as a host numpy array (itself, by default)."""
        return np.asarray(array)

    def zeros(self, shape: tuple[int, ...]) -> Array:
        """A backend array of zeros of ``config.dtype``."""
        return np.zeros(shape, self.config.np_dtype)

    def stack(self, arrays: Sequence[Array]) -> Array:
        """Equal-shaped backend arrays stacked along a new first axis (a new array)."""
        return np.stack(arrays)

    def check_array(
        self, name: str, array: Any, shape: Sequence[int | str], *, contiguous: bool = False
    ) -> Array:
        """``array`` checked as argument ``name`` and returned as the array the layers get.

        ``shape`` entries that are strings (``"T"``, ``"B"``) match any size. ``contiguous``
        marks the arguments a backend may need as one block of memory (``x``, ``d_outputs``);
        numpy does not care. A device backend overrides this to accept its own arrays (checked
        with :meth:`check_shape_and_dtype`) and may copy host arrays over.
        """
        if not isinstance(array, np.ndarray):
            raise TypeError(
                f"{name} must be {self.array_description} of shape {_shape_text(shape)}, got"
                f" {type(array).__name__}"
            )
        self.check_shape_and_dtype(name, array, shape)
        return array

    def check_shape_and_dtype(self, name: str, array: Any, shape: Sequence[int | str]) -> None:
        """Raise unless ``array`` (anything with ``.shape`` and ``.dtype``) has ``shape`` and the
        cell's dtype."""
        found = tuple(array.shape)
        if len(found) != len(shape) or any(
            isinstance(d, int) and d != n for d, n in zip(shape, found, strict=True)
        ):
            raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {found}")
        if array.dtype != self.config.np_dtype:
            raise ValueError(
                f"{name} must have dtype {self.config.np_dtype} (the cell's CellConfig.dtype),"
                f" got {array.dtype}; convert host arrays with to_backend"
            )

    # --- The protocol ----------------------------------------------------------------------------

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """PyTorch's uniform initialisation of every parameter, drawn in the order of
        ``param_shapes``: the same ``rng`` gives the same parameters on every backend."""
        return init_uniform(self.param_shapes, self.config, rng)

    def initial_state(self, batch_size: int) -> State:
        """A zero state for ``batch_size`` sequences: ``state_size`` arrays ``(L, B, H)``."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        return tuple(self.zeros(shape) for _ in range(self.state_size))

    def _check_sequence_call(self, params: Params, x: Array, initial_state: State
                             ) -> tuple[Params, Array, State]:
        """``forward``'s and ``infer``'s arguments checked: parameters, ``x`` ``(T, B, I)``
        with at least one step and sequence, and the initial state for its batch."""
        params = self.check_params(params)
        x = self.check_array("x", x, ("T", "B", self.config.input_size), contiguous=True)
        steps, batch = x.shape[:2]
        if steps < 1 or batch < 1:
            raise ValueError(
                f"x must have at least one time step and one sequence, got {tuple(x.shape)}"
            )
        return params, x, self.check_state("initial_state", initial_state, batch)

    def forward(self, params: Params, x: Array, initial_state: State) -> ForwardResult:
        """Every layer over the whole sequence ``x`` ``(T, B, I)``; see :class:`rnnbench.Cell`."""
        params, x, state = self._check_sequence_call(params, x, initial_state)
        steps, batch = x.shape[:2]
        outputs, final_state, layers = self._run_layers(params, x, state)
        cache = StackedCache(type(self), self.config, steps, batch, layers)
        return ForwardResult(outputs=outputs, final_state=final_state, cache=cache)

    def infer(self, params: Params, x: Array, initial_state: State) -> tuple[Array, State]:
        """Every layer over ``x`` ``(T, B, I)`` without a cache: ``(outputs, final_state)``, the
        optional :meth:`rnnbench.cell.InferenceCell.infer`. Each layer's input sequence is
        dropped as soon as the layer above has read it.

        A subclass that overrides :meth:`forward` but not this method gets its own ``forward``
        with the cache dropped: evaluation must compute what training computes."""
        if type(self).forward is not StackedCell.forward:
            result = self.forward(params, x, initial_state)
            return result.outputs, result.final_state
        params, x, state = self._check_sequence_call(params, x, initial_state)
        steps, batch = x.shape[:2]
        layer_input, finals = x, []
        for k in range(self.config.num_layers):
            layer_input, final_k = self.layer_infer(
                params, k, layer_input, tuple(s[k] for s in state)
            )
            self._check_layer_result("layer_infer", k, final_k, sequence=layer_input,
                                     sequence_shape=(steps, batch, self.config.hidden_size))
            finals.append(final_k)
        return layer_input, self._stack_layers(finals)

    def step(self, params: Params, x_t: Array, state: State) -> tuple[Array, State]:
        """One time step ``x_t`` ``(B, I)``: the top layer's output ``(B, H)`` and the new state."""
        params = self.check_params(params)
        x_t = self.check_array("x_t", x_t, ("B", self.config.input_size), contiguous=True)
        if x_t.shape[0] < 1:
            raise ValueError(f"x_t must hold at least one sequence, got {tuple(x_t.shape)}")
        state = self.check_state("state", state, x_t.shape[0])
        outputs, new_state, _ = self._run_layers(params, x_t.reshape(1, *x_t.shape), state)
        return outputs[0], new_state

    def backward(
        self,
        params: Params,
        cache: Any,
        d_outputs: Array,
        d_final_state: State | None = None,
    ) -> BackwardResult:
        """Backpropagation through time, down the layer stack; see :class:`rnnbench.Cell`."""
        params = self.check_params(params)
        self.check_cache(cache)
        shape = (cache.steps, cache.batch, self.config.hidden_size)
        d_outputs = self.check_array("d_outputs", d_outputs, shape, contiguous=True)
        if d_final_state is None:
            d_final_state = self.initial_state(cache.batch)
        d_final_state = self.check_state("d_final_state", d_final_state, cache.batch)

        grads: dict[str, Array] = {}
        d_initial: list[LayerState] = [()] * self.config.num_layers
        d_layer = d_outputs
        for k in reversed(range(self.config.num_layers)):
            d_layer, d_initial[k], layer_grads = self.layer_backward(
                params, k, cache.layers[k], d_layer, tuple(d[k] for d in d_final_state)
            )
            self._check_layer_result(
                "layer_backward", k, d_initial[k], layer_grads, sequence=d_layer,
                sequence_shape=(cache.steps, cache.batch, self.layer_input_size(k)),
            )
            grads.update(layer_grads)
        return BackwardResult(
            param_grads={name: grads[name] for name in self.param_shapes},
            d_inputs=d_layer,
            d_initial_state=self._stack_layers(d_initial),
        )

    # --- Argument checks -------------------------------------------------------------------------

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Array]:
        """``params`` checked (exactly the keys of ``param_shapes``, each of its shape and the
        cell's dtype) and returned as a new dict of the arrays the layers get."""
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        missing = [n for n in self.param_shapes if n not in params]
        extra = [n for n in params if n not in self.param_shapes]
        if missing or extra:
            raise ValueError(
                f"params of {self!r} must have exactly the keys {list(self.param_shapes)};"
                f" missing {missing}, unexpected {extra}"
            )
        return {
            name: self.check_array(f"params[{name!r}]", params[name], shape)
            for name, shape in self.param_shapes.items()
        }

    def check_state(self, name: str, state: Any, batch: int) -> State:
        """A state argument checked: a tuple of ``state_size`` arrays ``(L, batch, H)``."""
        if not isinstance(state, (tuple, list)) or len(state) != self.state_size:
            raise ValueError(
                f"{name} must be a tuple of {self.state_size} array(s)"
                f" {_shape_text(self.state_names)}, got {state!r:.80}"
            )
        shape = (self.config.num_layers, batch, self.config.hidden_size)
        return tuple(
            self.check_array(f"{name} {part}", array, shape)
            for part, array in zip(self.state_names, state, strict=True)
        )

    def check_cache(self, cache: Any) -> None:
        """Raise unless ``cache`` came from :meth:`forward` of a cell of this class and config."""
        if (
            not isinstance(cache, StackedCache)
            or cache.cell is not type(self)
            or cache.config != self.config
        ):
            raise ValueError(f"cache must come from forward() of an identical {self!r}")

    # --- The layer stack -------------------------------------------------------------------------

    def _run_layers(
        self, params: Params, x: Array, state: State
    ) -> tuple[Array, State, tuple[Any, ...]]:
        """Forward through every layer; layer ``k`` reads layer ``k - 1``'s output sequence."""
        layer_input, finals, caches = x, [], []
        for k in range(self.config.num_layers):
            steps, batch = layer_input.shape[:2]
            layer_input, final_k, cache_k = self.layer_forward(
                params, k, layer_input, tuple(s[k] for s in state)
            )
            self._check_layer_result("layer_forward", k, final_k, sequence=layer_input,
                                     sequence_shape=(steps, batch, self.config.hidden_size))
            finals.append(final_k)
            caches.append(cache_k)
        return layer_input, self._stack_layers(finals), tuple(caches)

    def _stack_layers(self, per_layer: Sequence[LayerState]) -> State:
        """Per-layer states (each ``(B, H)``) to the protocol's state (each ``(L, B, H)``)."""
        return tuple(self.stack([s[i] for s in per_layer]) for i in range(self.state_size))

    def _check_layer_result(
        self, method: str, k: int, state: Any, grads: Mapping[str, Any] | None = None,
        sequence: Any = None, sequence_shape: tuple[int, ...] | None = None,
    ) -> None:
        """A subclass's mistake named where it is made, not three calls later (a wrong-shaped
        sequence between layers would otherwise broadcast into the next layer silently)."""
        where = f"{type(self).__name__}.{method} of layer {k}"
        if sequence_shape is not None and tuple(getattr(sequence, "shape", ())) != sequence_shape:
            what = "d_inputs" if method == "layer_backward" else "outputs"
            raise ValueError(
                f"{where} must return {what} of shape {sequence_shape}, got "
                f"{tuple(getattr(sequence, 'shape', ())) or type(sequence).__name__}"
            )
        if not isinstance(state, (tuple, list)) or len(state) != self.state_size:
            raise TypeError(
                f"{where} must return a state of {self.state_size} array(s)"
                f" {_shape_text(self.state_names)}, got {state!r:.80}"
            )
        if grads is not None and set(grads) != set(self._layer_names[k]):
            raise TypeError(
                f"{where} must return the gradients of {list(self._layer_names[k])}, got"
                f" {list(grads)}"
            )
