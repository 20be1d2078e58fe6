"""Where training's arithmetic outside the cell runs: the readout, the loss, gradient clipping
and the optimizer, behind one small interface, so the training loop is written once.

:class:`ArrayOps` is the host (numpy) implementation and the default: every method is exactly
the arithmetic the harness always did (the readout's :class:`~rnnbench.model.Readout`, the
task's own :meth:`~rnnbench.Task.loss`, :func:`~rnnbench.training.global_norm`, the
optimizers' ``update``), so runs on CPU backends give the same numbers bit for bit.

A backend whose arrays live on a device may offer its own implementation (a cell's optional
``training_ops()`` method, returning a subclass): then parameters, optimizer state, readout,
loss and clipping stay on the device. Per training step the host then sends what picks the batch
(:meth:`ArrayOps.batch_source`: the batch's indices into a split copied over once; a fresh
online batch whole) and gets back two small arrays (the loss; the squared norm of each gradient
tensor). Parameters come back only when an evaluation, a metric or the end of training needs
them (:meth:`ArrayOps.params_to_host`).

A device implementation can compute only the *standard* losses (a task declaring
``standard_loss = "mse"`` or ``"cross_entropy"``, whose :meth:`~rnnbench.Task.loss` is exactly
:func:`rnnbench.mse` or :func:`rnnbench.cross_entropy`); any other task trains on the host
path, and :func:`choose_training_ops` says so in its placement, which the run's record keeps
(``execution.training``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from rnnbench.cell import Cell
    from rnnbench.model import Readout
    from rnnbench.task import Split, Task

#: The losses a device implementation must provide (``Task.standard_loss``).
STANDARD_LOSSES = ("mse", "cross_entropy")

Params = dict[str, Any]


class ArrayOps:
    """The host implementation: numpy arrays, today's arithmetic. Subclass for a device.

    Arrays passed to and returned by these methods are *training arrays*: host numpy arrays
    here, the backend's device arrays in a device implementation.
    """

    #: Shown in the run's record: where the training step's arithmetic ran.
    name = "host"

    # --- moving things between host and training arrays ------------------------------------

    def params_to_backend(self, params: Params) -> Params:
        """The parameters as training arrays, once before training. Host: the same dict (the
        optimizer updates it in place)."""
        return params

    def params_to_host(self, backend_params: Params, params: Params) -> None:
        """Write ``backend_params`` into the host arrays of ``params`` (in place), before an
        evaluation and at the end of training. Host: nothing to do."""

    def batch_to_backend(self, batch: Split) -> Split:
        """One training batch (host arrays, e.g. an online batch) as training arrays; one that
        already is, unchanged. Host: the batch itself."""
        return batch

    def batch_source(self, split: Split) -> Callable[[np.ndarray], Split]:
        """``take(index)``: the sequences of ``split`` at ``index`` as a batch of training
        arrays. Host: :meth:`Split.batch`; a device implementation copies ``split`` over once
        here and gathers each batch there."""
        return split.batch

    def from_cell(self, cell: Cell, array: Any) -> Any:
        """A cell result (outputs, gradients, state) as a training array: a copy to the host
        here; a device implementation keeps the device array."""
        return cell.to_host(array)

    # --- the model's arithmetic ------------------------------------------------------------

    def readout_apply(self, params: Params, hidden: Any) -> Any:
        """The readout's predictions from ``hidden`` ``(..., H)``."""
        from rnnbench.model import Readout

        return Readout.apply(params, hidden)

    def readout_backward(self, readout: Readout, params: Params, hidden: Any,
                         d_predictions: Any, grads: Params) -> Any:
        """Adds the readout's gradients to ``grads``; returns dLoss/d ``hidden``."""
        return readout.backward(params, hidden, d_predictions, grads)

    def last_step_gradient(self, outputs: Any, d_last: Any) -> Any:
        """dLoss/d ``outputs`` ``(T, B, H)`` when only the last step was read: zeros, then
        ``d_last`` at ``T - 1``."""
        d_outputs = np.zeros_like(outputs)
        d_outputs[-1] = d_last
        return d_outputs

    def zeros_like(self, array: Any) -> Any:
        return np.zeros_like(array)

    def loss(self, task: Task, predictions: Any, targets: Any) -> tuple[float, Any]:
        """The batch's mean loss (a host float: the one scalar the loop needs per step) and
        dLoss/d ``predictions`` (a training array). Host: the task's own :meth:`loss`."""
        loss, d_predictions = task.loss(predictions, targets)
        return loss, d_predictions

    # --- clipping and the optimizer --------------------------------------------------------

    def global_norm(self, grads: Params) -> float:
        """The L2 norm of all gradients together, in float64, as a host float."""
        from rnnbench.training import global_norm

        return global_norm(grads)

    def scale(self, grads: Params, factor: float) -> None:
        """Multiply every gradient by ``factor`` (in the gradients' dtype), in place."""
        for name in grads:
            grads[name] *= grads[name].dtype.type(factor)

    def optimizer_update(self, optimizer: Any, params: Params, grads: Params) -> None:
        """One optimizer step on ``params`` in place; a device implementation keeps the
        optimizer's state arrays on the device too."""
        optimizer.update(params, grads)

    @staticmethod
    def check_same_keys(params: Mapping[str, Any], grads: Mapping[str, Any]) -> None:
        """Guard for device implementations: a gradient for every parameter, nothing else."""
        if params.keys() != grads.keys():
            differ = sorted(set(params) ^ set(grads))
            raise ValueError(f"gradients and parameters differ in names: {differ}")


#: The host implementation, shared (it has no state).
HOST_OPS = ArrayOps()


def choose_training_ops(task: Task, cells: Iterable[Cell]) -> tuple[ArrayOps, str]:
    """The ops a model's training uses, and the placement to record.

    The cells' backend's ops (every cell must offer the same kind) when it offers them and the
    task's loss is a standard one; otherwise the host's, with the reason when a device
    implementation was on offer but could not be used.
    """
    offered = []
    for cell in cells:
        make = getattr(cell, "training_ops", None)
        offered.append(make() if callable(make) else None)
    if not offered or any(ops is None for ops in offered):
        return HOST_OPS, "host"
    ops = offered[0]
    if any(type(other) is not type(ops) for other in offered[1:]):
        return HOST_OPS, "host (the model's cells offer different device ops)"
    loss = getattr(task, "standard_loss", None)
    if loss not in STANDARD_LOSSES:
        return HOST_OPS, (
            f"host (fallback: task {task.name!r} declares no standard loss "
            f"(standard_loss = {loss!r}; device training supports {', '.join(STANDARD_LOSSES)}),"
            " so the readout, loss and optimizer run on the host)"
        )
    loss_owner, declared_by = _owner(task, "loss"), _owner(task, "standard_loss")
    if loss_owner is not declared_by and issubclass(loss_owner, declared_by):
        return HOST_OPS, (
            f"host (fallback: {loss_owner.__name__} overrides loss() but inherits "
            f"standard_loss = {loss!r} from {declared_by.__name__}, so its loss may not be "
            f"{loss}; declare standard_loss in {loss_owner.__name__} when it still is)"
        )
    return ops, ops.name


def _owner(obj: object, attribute: str) -> type:
    """The class in ``obj``'s MRO that defines ``attribute``: a subclass that overrides a
    task's ``loss`` without restating ``standard_loss`` may compute another loss."""
    return next((klass for klass in type(obj).__mro__ if attribute in vars(klass)), object)

