"""Training resident on the GPU for the ``numba-cuda`` backend: the readout, the standard losses,
the gradient norm and clipping, and the SGD, Adam and RMSprop updates as CUDA kernels, behind
:class:`rnnbench.device_ops.ArrayOps` (``CudaCell.training_ops()`` returns one).

The training split goes over once; per training step the host sends the batch's ``B``
indices (a gather kernel picks the sequences there; ``data: online`` batches are new each step,
so they go over whole: inputs and targets, and decoder inputs for an encoder-decoder) and
receives two small arrays: the loss (one float64) and the
squared norm of each gradient (one float64 per parameter tensor). Parameters and optimizer
state never cross; the parameters come back only when the training loop asks
(:meth:`CudaArrayOps.params_to_host`: evaluations and the end).

The kernels are deliberately simple: one-dimensional grid-stride loops with bounds checks, and
reductions done by one block (each thread sums a strided share in float64, then thread 0 adds
the block's partial sums in order), so they are correct for any size and any launch shape. The
GEMMs of the readout reuse the cells' tiled ``matmul``. Arithmetic follows the host's numpy
expressions operation for operation in the arrays' dtype, with every constant cast to it, so
float32 training matches the host path to float32 rounding.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import cuda  # module level: the simulator swaps the kernels' global ``cuda``
from numba.np.numpy_support import from_dtype

from rnnbench import SGD, Adam, ArrayOps, Readout, RMSprop, Split
from rnnbench.plugins.cells import numba_cuda_compat  # noqa: F401  (numpy 2.5: before any kernel compiles)

if TYPE_CHECKING:  # pragma: no cover
    from rnnbench.plugins.cells.numba_cuda import CudaCell

#: Threads of the one block that does a reduction (the simulator: few, every thread is a Python
#: thread).
REDUCE_THREADS_GPU, REDUCE_THREADS_SIMULATOR = 256, 4


@functools.cache
def training_kernels(dtype_name: str, reduce_threads: int) -> SimpleNamespace:
    """The kernels for one dtype, compiled lazily at their first launch."""
    np_dtype = np.dtype(dtype_name)
    dt, f64 = from_dtype(np_dtype), from_dtype(np.dtype(np.float64))
    one = np_dtype.type(1)
    threads = reduce_threads

    @cuda.jit
    def subtract(a, b, out):
        """``out = a - b`` (flat; ``b`` converted to ``out``'s dtype first, as numpy's
        ``astype``)."""
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, out.shape[0], stride):
            out[i] = a[i] - dt(b[i])

    @cuda.jit
    def gather(src, index, out):
        """``out[o, b, k] = src[o, index[b], k]``: a batch's sequences out of a split laid out
        ``(outer, N, inner)``; an index outside ``[0, N)`` is skipped (the caller checks)."""
        start, stride = cuda.grid(1), cuda.gridsize(1)
        outer, count, inner = out.shape[0], out.shape[1], out.shape[2]
        n = src.shape[1]
        for flat in range(start, outer * count * inner, stride):
            o, rest = flat // (count * inner), flat % (count * inner)
            b, k = rest // inner, rest % inner
            j = index[b]
            if j >= 0 and j < n:
                out[o, b, k] = src[o, j, k]

    @cuda.jit
    def scale(a, factor):
        """``a *= factor`` (flat, in place)."""
        f = dt(factor)
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, a.shape[0], stride):
            a[i] = a[i] * f

    @cuda.jit
    def block_sum(a, out, slot, square):
        """``out[slot] = sum a`` (``square``: ``sum a**2``) in float64 (flat ``a``). Launch
        with ONE block of ``threads`` threads."""
        partial = cuda.shared.array(threads, f64)
        tid = cuda.threadIdx.x
        acc = 0.0
        for i in range(tid, a.shape[0], cuda.blockDim.x):
            value = f64(a[i])
            acc += value * value if square else value
        if tid < threads:
            partial[tid] = acc
        cuda.syncthreads()
        if tid == 0:
            total = 0.0
            for k in range(min(threads, cuda.blockDim.x)):
                total += partial[k]
            out[slot] = total

    @cuda.jit
    def cross_entropy_rows(logits, labels, grad, row_loss, count):
        """Softmax cross-entropy of every row of ``logits`` ``(R, C)`` at ``labels`` ``(R,)``:
        ``row_loss[r]`` (float64) is minus the row's log-probability of its label, ``grad``
        ``(R, C)`` is ``(softmax - one_hot) / count``. A label outside ``[0, C)`` gives NaN."""
        start, stride = cuda.grid(1), cuda.gridsize(1)
        classes = logits.shape[1]
        divisor = dt(count)
        for r in range(start, logits.shape[0], stride):
            top = logits[r, 0]
            for c in range(1, classes):
                if logits[r, c] > top:
                    top = logits[r, c]
            total = dt(0)
            for c in range(classes):
                total += math.exp(logits[r, c] - top)
            log_norm = math.log(total)
            label = labels[r]
            if label < 0 or label >= classes:
                row_loss[r] = math.nan
            else:
                row_loss[r] = -f64((logits[r, label] - top) - log_norm)
            for c in range(classes):
                g = math.exp((logits[r, c] - top) - log_norm)
                if c == label:
                    g = g - one
                grad[r, c] = g / divisor

    @cuda.jit
    def sgd(p, g, velocity, lr, momentum, use_momentum, first):
        """SGD as :class:`rnnbench.training.SGD` (flat arrays, in place)."""
        lr_, mom = dt(lr), dt(momentum)
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, p.shape[0], stride):
            step = g[i]
            if use_momentum:
                step = g[i] if first else mom * velocity[i] + g[i]
                velocity[i] = step
            p[i] -= lr_ * step

    @cuda.jit
    def adam(p, g, m, v, lr, beta1, beta2, eps, correction1, correction2):
        """Adam as :class:`rnnbench.training.Adam` (flat arrays, in place)."""
        b1, b2, one_b1, one_b2 = dt(beta1), dt(beta2), dt(1.0 - beta1), dt(1.0 - beta2)
        lr_, eps_, c1, c2 = dt(lr), dt(eps), dt(correction1), dt(correction2)
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, p.shape[0], stride):
            grad = g[i]
            m_i = b1 * m[i] + one_b1 * grad
            v_i = b2 * v[i] + one_b2 * grad * grad
            m[i] = m_i
            v[i] = v_i
            p[i] -= lr_ * (m_i / c1) / (math.sqrt(v_i / c2) + eps_)

    @cuda.jit
    def rmsprop(p, g, square_avg, grad_avg, buffer, lr, alpha, eps, momentum, centered):
        """RMSprop as :class:`rnnbench.training.RMSprop` (flat arrays, in place)."""
        a, one_a, lr_, eps_, mom = dt(alpha), dt(1.0 - alpha), dt(lr), dt(eps), dt(momentum)
        start, stride = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, p.shape[0], stride):
            grad = g[i]
            s = a * square_avg[i] + one_a * grad * grad
            square_avg[i] = s
            if centered:
                ga = a * grad_avg[i] + one_a * grad
                grad_avg[i] = ga
                avg = math.sqrt(s - ga * ga) + eps_
            else:
                avg = math.sqrt(s) + eps_
            if momentum > 0:
                direction = mom * buffer[i] + grad / avg
                buffer[i] = direction
            else:
                direction = grad / avg
            p[i] -= lr_ * direction

    return SimpleNamespace(
        subtract=subtract, gather=gather, scale=scale, block_sum=block_sum,
        cross_entropy_rows=cross_entropy_rows, sgd=sgd, adam=adam,
        rmsprop=rmsprop,
    )


def _flat(array: Any) -> Any:
    """A contiguous device array as one dimension (a view)."""
    return array.reshape(int(np.prod(array.shape)))


class CudaArrayOps(ArrayOps):
    """:class:`~rnnbench.device_ops.ArrayOps` on the GPU, for the cells of one dtype.

    ``cell``: any cell of the model (its kernels' geometry and array helpers are used; every
    cell of a model has the same dtype). :attr:`copies` counts this object's transfers:
    ``"to_device"`` and ``"to_host"`` arrays and elements, for reports and tests.
    """

    name = "device (numba-cuda: parameters, optimizer state, readout, loss, clipping)"

    def __init__(self, cell: CudaCell) -> None:
        from rnnbench.plugins.cells.numba_cuda import on_simulator

        self.cell, self.cuda = cell, cuda
        self.dtype = cell.config.np_dtype
        threads = REDUCE_THREADS_SIMULATOR if on_simulator() else REDUCE_THREADS_GPU
        self.reduce_threads = threads
        self.k = training_kernels(cell.config.dtype, threads)

    # --- transfers ---------------------------------------------------------------------------

    def _to_device(self, array: np.ndarray) -> Any:
        return self.cuda.to_device(np.ascontiguousarray(array))

    def params_to_backend(self, params: dict[str, Any]) -> dict[str, Any]:
        return {name: self._to_device(np.asarray(value, dtype=self.dtype))
                for name, value in params.items()}

    def params_to_host(self, backend_params: dict[str, Any], params: dict[str, Any]) -> None:
        for name, value in backend_params.items():
            params[name][...] = value.copy_to_host()

    def batch_to_backend(self, batch: Split) -> Split:
        """Inputs (and decoder inputs) in the cells' dtype; float targets in the cells' dtype,
        class labels as int64: one copy per array (online batches, every step; a fixed
        training split, once: :meth:`batch_source`). A batch already on the device is kept."""
        if not isinstance(batch.inputs, np.ndarray):
            return batch
        targets = np.asarray(batch.targets)
        if np.issubdtype(targets.dtype, np.integer):
            targets = targets.astype(np.int64, copy=False)
        else:
            targets = targets.astype(self.dtype, copy=False)
        return Split(
            self._to_device(np.asarray(batch.inputs, dtype=self.dtype)),
            self._to_device(targets),
            batch.targets_axis,
            None if batch.decoder_inputs is None
            else self._to_device(np.asarray(batch.decoder_inputs, dtype=self.dtype)),
        )

    def batch_source(self, split: Split) -> Any:
        """The split goes over once; each batch then costs one copy of its ``B`` indices and
        a gather kernel per array."""
        on_device, count = self.batch_to_backend(split), len(split)

        def take(index: np.ndarray) -> Split:
            index = np.asarray(index, dtype=np.int64)
            if index.size and (index.min() < 0 or index.max() >= count):
                raise IndexError(f"batch index out of range for a split of {count} sequences")
            on_index = self._to_device(index)
            return Split(
                self._gather(on_device.inputs, 1, on_index),
                self._gather(on_device.targets, split.targets_axis, on_index),
                split.targets_axis,
                None if on_device.decoder_inputs is None
                else self._gather(on_device.decoder_inputs, 1, on_index),
            )

        return take

    def _gather(self, array: Any, axis: int, index: Any) -> Any:
        """``np.take(array, index, axis)`` on the device."""
        shape = tuple(array.shape)
        outer, inner = int(np.prod(shape[:axis])), int(np.prod(shape[axis + 1:]))
        batch = int(index.shape[0])
        out = self.cuda.device_array((outer, batch, inner), array.dtype)
        self._launch(self.k.gather, outer * batch * inner,
                     array.reshape(outer, shape[axis], inner), index, out)
        return out.reshape(*shape[:axis], batch, *shape[axis + 1:])

    def from_cell(self, cell: Any, array: Any) -> Any:
        return array  # stays on the device

    # --- launches ----------------------------------------------------------------------------

    def _launch(self, kernel: Any, n: int, *args: Any) -> None:
        geometry = self.cell._k.geometry
        kernel[self.cell._blocks(n, geometry.threads), geometry.threads](*args)

    def _reduce(self, flat: Any, out: Any, slot: int, square: bool = False) -> None:
        """``out[slot]``: the float64 sum of ``flat`` (of its squares with ``square``)."""
        self.k.block_sum[1, self.reduce_threads](flat, out, slot, square)

    def _scalars(self, n: int) -> Any:
        return self.cuda.device_array(n, np.float64)

    # --- the model's arithmetic --------------------------------------------------------------

    def readout_apply(self, params: dict[str, Any], hidden: Any) -> Any:
        weight, bias = params[Readout.WEIGHT], params[Readout.BIAS]
        outputs, shape = weight.shape[0], tuple(hidden.shape)  # the simulator's shape: no [-1]
        rows = int(np.prod(shape[:-1]))
        out = self.cell._empty(rows, outputs)
        self.cell._matmul(hidden.reshape(rows, shape[-1]), weight, out, bias=bias, trans_b=True)
        return out.reshape(*shape[:-1], outputs)

    def readout_backward(self, readout: Any, params: dict[str, Any], hidden: Any,
                         d_predictions: Any, grads: dict[str, Any]) -> Any:
        weight = params[Readout.WEIGHT]
        outputs, width = weight.shape
        shape = tuple(hidden.shape)
        rows = int(np.prod(shape[:-1]))
        flat_d, flat_h = d_predictions.reshape(rows, outputs), hidden.reshape(rows, width)
        d_weight = self.cell._empty(outputs, width)
        self.cell._matmul(flat_d, flat_h, d_weight, trans_a=True)
        grads[Readout.WEIGHT] = d_weight
        grads[Readout.BIAS] = self.cell._column_sums(flat_d)
        d_hidden = self.cell._empty(rows, width)
        self.cell._matmul(flat_d, weight, d_hidden)
        return d_hidden.reshape(*shape[:-1], width)

    def last_step_gradient(self, outputs: Any, d_last: Any) -> Any:
        d_outputs = self.cell._zeros(*outputs.shape)
        self.cell._copy(d_last, d_outputs[outputs.shape[0] - 1])
        return d_outputs

    def zeros_like(self, array: Any) -> Any:
        return self.cell._zeros(*array.shape)

    def loss(self, task: Any, predictions: Any, targets: Any) -> tuple[float, Any]:
        kind = task.standard_loss
        if kind == "mse":
            return self._mse(predictions, targets)
        if kind == "cross_entropy":
            return self._cross_entropy(predictions, targets)
        raise ValueError(f"device training has no loss {kind!r} (task {task.name!r})")

    def _mse(self, predictions: Any, targets: Any) -> tuple[float, Any]:
        if tuple(targets.shape) != tuple(predictions.shape):
            raise ValueError(f"mse: targets {tuple(targets.shape)} and predictions "
                             f"{tuple(predictions.shape)} differ in shape")
        size = int(np.prod(predictions.shape))
        diff = self.cell._empty(*predictions.shape)
        flat = _flat(diff)
        self._launch(self.k.subtract, size, _flat(predictions), _flat(targets), flat)
        total = self._scalars(1)
        self._reduce(flat, total, 0, square=True)
        self._launch(self.k.scale, size, flat, 2.0 / size)
        return float(total.copy_to_host()[0]) / size, diff

    def _cross_entropy(self, logits: Any, labels: Any) -> tuple[float, Any]:
        shape = tuple(logits.shape)
        if tuple(labels.shape) != shape[:-1]:
            raise ValueError(f"cross_entropy: labels {tuple(labels.shape)} do not match logits "
                             f"{shape} less the class axis")
        classes = shape[-1]
        rows = int(np.prod(shape[:-1]))
        grad = self.cell._empty(*logits.shape)
        row_loss = self.cuda.device_array(rows, np.float64)
        self._launch(self.k.cross_entropy_rows, rows, logits.reshape(rows, classes),
                     _flat(labels), grad.reshape(rows, classes), row_loss, rows)
        total = self._scalars(1)
        self._reduce(row_loss, total, 0)
        return float(total.copy_to_host()[0]) / rows, grad

    # --- clipping and the optimizer ----------------------------------------------------------

    def global_norm(self, grads: dict[str, Any]) -> float:
        """One reduction per tensor into a small float64 array, one copy of it back; summed on
        the host in the tensors' order, as the host's ``global_norm``."""
        squares = self._scalars(max(1, len(grads)))
        for slot, grad in enumerate(grads.values()):
            self._reduce(_flat(grad), squares, slot, square=True)
        values = squares.copy_to_host()[: len(grads)]
        return math.sqrt(sum(float(v) for v in values))

    def scale(self, grads: dict[str, Any], factor: float) -> None:
        for grad in grads.values():
            flat = _flat(grad)
            self._launch(self.k.scale, flat.shape[0], flat, factor)

    def optimizer_update(self, optimizer: Any, params: dict[str, Any],
                         grads: dict[str, Any]) -> None:
        self.check_same_keys(params, grads)
        if isinstance(optimizer, Adam):
            optimizer.t += 1
            c1 = 1.0 - optimizer.beta1**optimizer.t
            c2 = 1.0 - optimizer.beta2**optimizer.t
        for name, grad in grads.items():
            p, g = _flat(params[name]), _flat(grad)
            n = p.shape[0]
            if isinstance(optimizer, SGD):
                first = name not in optimizer.velocity
                if first and optimizer.momentum:
                    optimizer.velocity[name] = self.cell._empty(n)
                velocity = optimizer.velocity[name] if optimizer.momentum else g  # g: unused
                self._launch(self.k.sgd, n, p, g, velocity, optimizer.lr,
                             optimizer.momentum, bool(optimizer.momentum), first)
            elif isinstance(optimizer, Adam):
                if name not in optimizer.m:
                    optimizer.m[name], optimizer.v[name] = self.cell._zeros(n), self.cell._zeros(n)
                self._launch(self.k.adam, n, p, g, optimizer.m[name], optimizer.v[name],
                             optimizer.lr, optimizer.beta1, optimizer.beta2, optimizer.eps, c1, c2)
            elif isinstance(optimizer, RMSprop):
                if name not in optimizer.square_avg:
                    for state in (optimizer.square_avg, optimizer.grad_avg, optimizer.buffer):
                        state[name] = self.cell._zeros(n)
                self._launch(self.k.rmsprop, n, p, g, optimizer.square_avg[name],
                             optimizer.grad_avg[name], optimizer.buffer[name], optimizer.lr,
                             optimizer.alpha, optimizer.eps, optimizer.momentum,
                             bool(optimizer.centered))
            else:
                raise TypeError(f"device training has no update for {type(optimizer).__name__}")
