"""The ``torch`` and ``torch-cuda`` backends: PyTorch's own ``nn.RNN`` (tanh or relu),
``nn.LSTM`` and ``nn.GRU`` behind the cell protocol, so suites time *and train* PyTorch's cells
beside ours, with the same parameters (PyTorch's names and layout are the protocol's).

- ``torch``: on the CPU; ``torch-cuda``: on the current CUDA device, available only where
  ``torch.cuda.is_available()``. Without PyTorch installed both stay registered but
  unavailable, with the fix (``pip install "rnnbench[torch]"``); importing this module never
  imports ``torch``, so listings stay fast and work without it.
- Backend arrays are ``torch.Tensor`` s on the backend's device; the cells also accept host
  numpy arrays of their dtype (copied over), as the numba-cuda cells do.
- ``forward`` (and ``infer``, its cache-free twin for evaluation, under ``no_grad``) runs the
  whole layer stack in one call of PyTorch's module
  (``torch.func.functional_call`` with the given parameters) and keeps the autograd graph as its
  cache, with ``x``, the initial state and every parameter as leaves that require grad;
  ``backward`` is ``torch.autograd.grad`` over that graph (``retain_graph``: a second
  ``backward`` from the same cache gives the same answer, as the protocol asks).
- ``training.forget_bias``: the LSTM declares its forget gate as gate block 1 (i, f, g, o, as
  PyTorch stacks them), so the harness adds it to ``bias_ih`` exactly as for our LSTM.
- Threads: while a cell computes, PyTorch's intra-op pool is bound to the run's thread budget
  (:func:`rnnbench.current_thread_budget`) and set back after, since threadpoolctl does not reach
  the pool PyTorch sizes itself.
- CUDA: float32 runs in IEEE float32 (cuDNN's TF32 off for the call), the arithmetic of our
  kernels, so timings and numbers compare like for like; :meth:`TorchCell.synchronize` waits for
  the GPU (kernels launch asynchronously) for timers. ``to_host`` synchronizes by copying.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rnnbench import (
    BackwardResult,
    CellConfig,
    ForwardResult,
    StackedCell,
    current_thread_budget,
    hookimpl,
)
from rnnbench.plugins.cells.options import OPTIONS, SUPPORTS, is_relu

BACKEND = "torch"
CUDA_BACKEND = "torch-cuda"
#: The oldest PyTorch the backend is written for (``rnnbench[torch]`` asks for it).
MIN_TORCH = (2, 1)
INSTALL_HINT = 'pip install "rnnbench[torch]"'


def _torch() -> Any:
    import torch

    return torch


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


@functools.cache
def torch_unavailable() -> str | None:
    """``None`` when PyTorch can be imported here (and is new enough), else why not and the fix."""
    try:
        torch = _torch()
    except ImportError as exc:
        return f"PyTorch is not installed ({exc}); install it with: {INSTALL_HINT}"
    except Exception as exc:  # a broken installation must not break a listing
        return (f"PyTorch cannot be imported ({type(exc).__name__}: {exc}); reinstall it with: "
                f"{INSTALL_HINT}")
    version = str(getattr(torch, "__version__", "0"))
    if _version_tuple(version) < MIN_TORCH:
        return (f"PyTorch {version} is older than {'.'.join(map(str, MIN_TORCH))}; upgrade it "
                f"with: {INSTALL_HINT}")
    return None


@functools.cache
def cuda_unavailable() -> str | None:
    """``None`` when PyTorch sees a CUDA GPU, else why not."""
    reason = torch_unavailable()
    if reason is not None:
        return reason
    torch = _torch()
    try:
        if torch.cuda.is_available():
            return None
    except Exception as exc:
        return f"torch.cuda.is_available() failed: {type(exc).__name__}: {exc}"
    why = ("a CPU-only build: install a CUDA build of PyTorch" if torch.version.cuda is None
           else f"built for CUDA {torch.version.cuda}, but torch.cuda.is_available() is False")
    return (f"PyTorch {torch.__version__} has no CUDA GPU here ({why}); backend {BACKEND!r} runs "
            "the same cells on the CPU")


def _require_torch(reason: str | None) -> Any:
    if reason is not None:
        raise RuntimeError(reason)
    return _torch()


@contextmanager
def bounded_threads() -> Iterator[None]:
    """PyTorch's intra-op threads at most the run's budget for the block, as they were after.

    Outside a run (no budget) PyTorch's own setting is left alone.
    """
    budget = current_thread_budget()
    torch = _torch()
    before = torch.get_num_threads()
    changed = budget is not None and before != budget
    if changed:
        torch.set_num_threads(budget)
    try:
        yield
    finally:
        if changed:
            torch.set_num_threads(before)


@contextmanager
def ieee_float32() -> Iterator[None]:
    """cuDNN's RNNs in IEEE float32 for the block (PyTorch's default lets them use TF32 on
    Ampere and later GPUs, 10 mantissa bits), as our kernels compute; set back after."""
    torch = _torch()
    cudnn = torch.backends.cudnn
    rnn = getattr(cudnn, "rnn", None)
    if rnn is not None and hasattr(rnn, "fp32_precision"):  # PyTorch >= 2.9's API
        before = rnn.fp32_precision
        rnn.fp32_precision = "ieee"
        try:
            yield
        finally:
            rnn.fp32_precision = before
        return
    before = cudnn.allow_tf32
    cudnn.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32 = before


@dataclass(frozen=True)
class TorchCache:
    """What ``forward`` keeps for ``backward``: the autograd graph's ends and its leaves."""

    cell: type
    config: CellConfig
    steps: int
    batch: int
    outputs: Any  # (T, B, H), attached to the graph
    final_state: tuple[Any, ...]  # each (L, B, H), attached to the graph
    params: dict[str, Any]  # the leaves, by name
    inputs: Any  # x as a leaf
    initial_state: tuple[Any, ...]  # leaves


class TorchCell(StackedCell):
    """A PyTorch recurrent module behind the cell protocol; subclasses name the module.

    It builds on :class:`rnnbench.StackedCell` for the protocol's plumbing (parameter names and
    shapes, initialisation, argument checks, state shapes) but runs the whole layer stack in one
    PyTorch call: :meth:`forward`, :meth:`backward` and :meth:`step` are its own, and the
    per-layer hooks are not used.
    """

    kind: ClassVar[str]
    description: ClassVar[str]
    #: The device tensors live on: ``"cpu"`` or ``"cuda"``.
    device: ClassVar[str] = "cpu"
    array_description = "a torch.Tensor or a numpy array"

    def __init__(self, config: CellConfig) -> None:
        super().__init__(config)
        torch = _require_torch(cuda_unavailable() if self.device == "cuda" else torch_unavailable())
        self.torch_dtype = {"float32": torch.float32, "float64": torch.float64}[config.dtype]
        self.torch_device = torch.device(self.device)
        # The module's own parameters are never used: functional_call substitutes the ones
        # passed in, under the same names (PyTorch's are the protocol's).
        self.module = self._module(torch).to(device=self.torch_device, dtype=self.torch_dtype)
        if self.device == "cuda":
            # Parameters arrive as separate tensors (one upload per step), so cuDNN compacts
            # them per call, which it warns about every time; that is the expected cost here.
            warnings.filterwarnings(
                "ignore", message="RNN module weights are not part of single contiguous",
                category=UserWarning)

    def _module(self, torch: Any) -> Any:
        raise NotImplementedError

    @contextmanager
    def computing(self) -> Iterator[None]:
        """Where every PyTorch call of the cell runs: intra-op threads within the run's budget
        and, on CUDA in float32, IEEE float32 (no TF32)."""
        with bounded_threads():
            if self.device == "cuda" and self.config.dtype == "float32":
                with ieee_float32():
                    yield
            else:
                yield

    def synchronize(self) -> None:
        """Wait for the device's queued work (CUDA kernels launch asynchronously), so a timer
        around a call covers its kernels; nothing to wait for on the CPU."""
        if self.device == "cuda":
            _torch().cuda.synchronize()

    # --- Array plumbing ---------------------------------------------------------------------

    def to_backend(self, array: Any) -> Any:
        """A copy of a host array as a tensor of the cell's dtype on its device (a tensor
        already there is returned as it is)."""
        torch = _torch()
        if isinstance(array, torch.Tensor):
            if array.dtype != self.torch_dtype:
                raise ValueError(f"tensor has dtype {array.dtype}, the cell's is "
                                 f"{self.config.dtype}")
            return array.to(self.torch_device)
        host = np.array(array, dtype=self.config.np_dtype, copy=True, order="C")
        return torch.from_numpy(host).to(self.torch_device)

    def to_host(self, array: Any) -> np.ndarray:
        """A host numpy copy (never a view of a tensor the autograd graph may hold)."""
        torch = _torch()
        if isinstance(array, torch.Tensor):
            return array.detach().to("cpu").numpy().copy()
        return np.array(array)

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return _torch().zeros(shape, dtype=self.torch_dtype, device=self.torch_device)

    def stack(self, arrays: Sequence[Any]) -> Any:
        return _torch().stack([self.to_backend(a) for a in arrays])

    def check_array(
        self, name: str, array: Any, shape: Sequence[int | str], *, contiguous: bool = False
    ) -> Any:
        """``array`` checked (shape; dtype the cell's) and returned as a tensor on the device."""
        torch = _torch()
        if isinstance(array, np.ndarray):
            return self.to_backend(super().check_array(name, array, shape))
        if not isinstance(array, torch.Tensor):
            raise TypeError(f"{name} must be {self.array_description} of shape "
                            f"{tuple(shape)}, got {type(array).__name__}")
        found = tuple(array.shape)
        if len(found) != len(shape) or any(
            isinstance(d, int) and d != n for d, n in zip(shape, found, strict=True)
        ):
            raise ValueError(f"{name} must have shape {tuple(shape)}, got {found}")
        if array.dtype != self.torch_dtype:
            raise ValueError(f"{name} must have dtype {self.torch_dtype} (the cell's "
                             f"CellConfig.dtype), got {array.dtype}")
        if array.device.type != self.torch_device.type:
            raise ValueError(f"{name} is on {array.device}, the cell computes on "
                             f"{self.torch_device}; convert it with to_backend")
        return array

    # --- The protocol -----------------------------------------------------------------------

    def layer_forward(self, params, k, inputs, state):  # pragma: no cover - never called
        """Not used: the whole stack runs in one PyTorch call (see :meth:`forward`)."""
        raise NotImplementedError("TorchCell runs all layers in one PyTorch call")

    def layer_backward(self, params, k, layer_cache, d_outputs, d_final):  # pragma: no cover
        """Not used: autograd backpropagates through the whole stack (see :meth:`backward`)."""
        raise NotImplementedError("TorchCell runs all layers in one PyTorch call")

    def _run(self, params: Mapping[str, Any], x: Any, state: tuple[Any, ...]) -> tuple[Any, Any]:
        from torch.func import functional_call

        hx = state if self.state_size == 2 else state[0]
        outputs, final = functional_call(self.module, dict(params), (x, hx))
        return outputs, (tuple(final) if self.state_size == 2 else (final,))

    def _checked(self, params: Mapping[str, Any], x: Any, state: Any, x_name: str,
                 x_shape: tuple[int | str, ...]) -> tuple[dict[str, Any], Any, tuple[Any, ...]]:
        params = self.check_params(params)
        x = self.check_array(x_name, x, x_shape, contiguous=True)
        if any(n < 1 for n in x.shape[:-1]):
            raise ValueError(f"{x_name} must have at least one time step and one sequence, got "
                             f"{tuple(x.shape)}")
        batch = x.shape[-2]
        return params, x, self.check_state("initial_state" if x.dim() == 3 else "state", state,
                                           batch)

    def forward(self, params: Mapping[str, Any], x: Any, initial_state: Any) -> ForwardResult:
        """The whole stack over ``x`` ``(T, B, I)``; the cache is the autograd graph."""
        torch = _torch()
        params, x, state = self._checked(params, x, initial_state, "x",
                                         ("T", "B", self.config.input_size))
        leaves = {name: p.detach().requires_grad_(True) for name, p in params.items()}
        x_leaf = x.detach().requires_grad_(True)
        state_leaves = tuple(s.detach().requires_grad_(True) for s in state)
        with self.computing(), torch.enable_grad():
            outputs, final = self._run(leaves, x_leaf, state_leaves)
        cache = TorchCache(type(self), self.config, x.shape[0], x.shape[1], outputs, final,
                           leaves, x_leaf, state_leaves)
        return ForwardResult(outputs=outputs.detach(),
                             final_state=tuple(s.detach() for s in final), cache=cache)

    def infer(self, params: Mapping[str, Any], x: Any, initial_state: Any) -> tuple[Any, Any]:
        """The whole stack over ``x`` ``(T, B, I)`` without a graph: ``(outputs, final_state)``,
        as :meth:`forward` gives them, keeping nothing for backward (the protocol's optional
        cache-free forward for evaluation; StackedCell's would run the per-layer hooks, which
        this cell does not use)."""
        torch = _torch()
        params, x, state = self._checked(params, x, initial_state, "x",
                                         ("T", "B", self.config.input_size))
        with self.computing(), torch.no_grad():
            return self._run(params, x, state)

    def step(self, params: Mapping[str, Any], x_t: Any, state: Any) -> tuple[Any, Any]:
        """One time step ``x_t`` ``(B, I)``, without a graph (free-running generation)."""
        torch = _torch()
        params, x_t, state = self._checked(params, x_t, state, "x_t", ("B", self.config.input_size))
        with self.computing(), torch.no_grad():
            outputs, final = self._run(params, x_t.unsqueeze(0), state)
        return outputs[0], final

    def check_cache(self, cache: Any) -> None:
        if (not isinstance(cache, TorchCache) or cache.cell is not type(self)
                or cache.config != self.config):
            raise ValueError(f"cache must come from forward() of an identical {self!r}")

    def backward(
        self,
        params: Mapping[str, Any],
        cache: Any,
        d_outputs: Any,
        d_final_state: Any = None,
    ) -> BackwardResult:
        """``torch.autograd.grad`` through the forward's graph: every parameter's gradient,
        dLoss/d ``x`` and dLoss/d the initial state, as fresh tensors."""
        torch = _torch()
        self.check_params(params)
        self.check_cache(cache)
        shape = (cache.steps, cache.batch, self.config.hidden_size)
        d_outputs = self.check_array("d_outputs", d_outputs, shape, contiguous=True)
        ends, seeds = [cache.outputs], [d_outputs]
        if d_final_state is not None:
            d_final_state = self.check_state("d_final_state", d_final_state, cache.batch)
            ends.extend(cache.final_state)
            seeds.extend(d_final_state)
        wrt = [*cache.params.values(), cache.inputs, *cache.initial_state]
        with self.computing():
            grads = torch.autograd.grad(ends, wrt, seeds, retain_graph=True, allow_unused=True)
        grads = self._fresh(grads, wrt, [d_outputs, *seeds[1:]])
        names = list(cache.params)
        count = len(names)
        return BackwardResult(
            param_grads=dict(zip(names, grads[:count], strict=True)),
            d_inputs=grads[count],
            d_initial_state=tuple(grads[count + 1:]),
        )

    @staticmethod
    def _fresh(grads: Sequence[Any], wrt: Sequence[Any], seeds: Sequence[Any]) -> list[Any]:
        """Zeros for unused inputs, and a copy of any gradient sharing memory with another or
        with a seed (the optimizer and clipping update gradients in place)."""
        torch = _torch()
        taken = {s.untyped_storage().data_ptr() for s in seeds}
        out = []
        for grad, leaf in zip(grads, wrt, strict=True):
            if grad is None:
                grad = torch.zeros_like(leaf)
            pointer = grad.untyped_storage().data_ptr()
            if pointer in taken:
                grad = grad.clone()
                pointer = grad.untyped_storage().data_ptr()
            taken.add(pointer)
            out.append(grad)
        return out


class TorchRNNCell(TorchCell):
    kind = "rnn"
    description = "PyTorch's nn.RNN (tanh or relu), on the CPU"
    gates = 1

    def _module(self, torch: Any) -> Any:
        relu = is_relu(self.config.option("nonlinearity"))
        return torch.nn.RNN(self.config.input_size, self.config.hidden_size,
                            num_layers=self.config.num_layers, bias=self.config.bias,
                            nonlinearity="relu" if relu else "tanh")


class TorchLSTMCell(TorchCell):
    kind = "lstm"
    description = "PyTorch's nn.LSTM (gates i, f, g, o), on the CPU"
    gates = 4
    state_size = 2
    state_names = ("h", "c")

    def _module(self, torch: Any) -> Any:
        return torch.nn.LSTM(self.config.input_size, self.config.hidden_size,
                             num_layers=self.config.num_layers, bias=self.config.bias)


class TorchGRUCell(TorchCell):
    kind = "gru"
    description = "PyTorch's nn.GRU (gates r, z, n), on the CPU"
    gates = 3

    def _module(self, torch: Any) -> Any:
        return torch.nn.GRU(self.config.input_size, self.config.hidden_size,
                            num_layers=self.config.num_layers, bias=self.config.bias)


def _on_cuda(cell: type[TorchCell]) -> type[TorchCell]:
    """The same cell with its tensors on the current CUDA device."""
    return type(f"Cuda{cell.__name__}", (cell,), {
        "device": "cuda",
        "description": cell.description.replace("on the CPU", "on a CUDA GPU"),
        "__doc__": f"{cell.__name__} on a CUDA GPU.",
        "__module__": __name__,
    })


CELLS: tuple[type[TorchCell], ...] = (TorchRNNCell, TorchLSTMCell, TorchGRUCell)
CUDA_CELLS: tuple[type[TorchCell], ...] = tuple(_on_cuda(cell) for cell in CELLS)
TorchCudaRNNCell, TorchCudaLSTMCell, TorchCudaGRUCell = CUDA_CELLS


@hookimpl
def rnnbench_register_cells(register: Callable[..., Any]) -> None:
    for backend, cells, available in ((BACKEND, CELLS, torch_unavailable),
                                      (CUDA_BACKEND, CUDA_CELLS, cuda_unavailable)):
        for cell in cells:
            register(cell.kind, backend, cell, description=cell.description,
                     available=available, supports=SUPPORTS.get(cell.kind),
                     options=OPTIONS.get(cell.kind))
