"""The model a run trains: a cell, plus the task's linear readout and loss.

The cell may run on a device; the readout and loss run on the host. Per training step exactly one
copy goes each way (outputs to the host, their gradient back), never one per time step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.cell import Cell
from harness.task import Split, Task

READOUT_WEIGHT = "readout.weight"
READOUT_BIAS = "readout.bias"
#: Sequences per forward pass when evaluating a whole split, to bound memory.
EVAL_CHUNK = 1024


@dataclass
class Evaluation:
    loss: float
    accuracy: float | None


class SequenceModel:
    """``cell`` -> linear readout (``output_size`` values) -> the task's loss.

    Parameters are one flat dict of host arrays: the cell's (PyTorch names) plus
    ``readout.weight`` ``(O, H)`` and ``readout.bias`` ``(O,)``.
    """

    def __init__(self, cell: Cell, task: Task, output_size: int) -> None:
        self.cell = cell
        self.task = task
        self.output_size = output_size
        self.dtype = cell.config.np_dtype

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        params = dict(self.cell.init_params(rng))
        hidden = self.cell.config.hidden_size
        bound = 1.0 / np.sqrt(hidden)  # PyTorch's nn.Linear default
        shape = (self.output_size, hidden)
        params[READOUT_WEIGHT] = rng.uniform(-bound, bound, shape).astype(self.dtype)
        params[READOUT_BIAS] = rng.uniform(-bound, bound, self.output_size).astype(self.dtype)
        return params

    def _cell_params(self, params: dict[str, np.ndarray]) -> dict:
        return {
            name: self.cell.to_backend(value)
            for name, value in params.items()
            if not name.startswith("readout.")
        }

    def _hidden_outputs(self, cell_params: dict, inputs: np.ndarray):
        x = self.cell.to_backend(inputs.astype(self.dtype, copy=False))
        state = self.cell.initial_state(inputs.shape[1])
        result = self.cell.forward(cell_params, x, state)
        outputs = self.cell.to_host(result.outputs)
        seen = outputs[-1] if self.task.readout == "last" else outputs
        return result, outputs, seen

    def predict(self, params: dict[str, np.ndarray], inputs: np.ndarray) -> np.ndarray:
        """The readout's predictions for ``inputs`` ``(T, N, I)``."""
        _, _, seen = self._hidden_outputs(self._cell_params(params), inputs)
        return seen @ params[READOUT_WEIGHT].T + params[READOUT_BIAS]

    def loss_and_grads(
        self, params: dict[str, np.ndarray], batch: Split
    ) -> tuple[float, dict[str, np.ndarray]]:
        """The batch's mean loss and its gradient for every parameter (host arrays)."""
        cell_params = self._cell_params(params)
        result, outputs, seen = self._hidden_outputs(cell_params, batch.inputs)
        weight = params[READOUT_WEIGHT]
        predictions = seen @ weight.T + params[READOUT_BIAS]
        loss, d_predictions = self.task.loss(predictions, batch.targets)
        d_predictions = d_predictions.astype(self.dtype, copy=False)
        flat_d = d_predictions.reshape(-1, self.output_size)
        flat_seen = seen.reshape(-1, seen.shape[-1])
        grads = {
            READOUT_WEIGHT: flat_d.T @ flat_seen,
            READOUT_BIAS: flat_d.sum(axis=0),
        }
        d_seen = d_predictions @ weight
        if self.task.readout == "last":
            d_outputs = np.zeros_like(outputs)
            d_outputs[-1] = d_seen
        else:
            d_outputs = d_seen
        backward = self.cell.backward(cell_params, result.cache, self.cell.to_backend(d_outputs))
        for name, grad in backward.param_grads.items():
            grads[name] = self.cell.to_host(grad)
        return loss, grads

    def evaluate(self, params: dict[str, np.ndarray], split: Split) -> Evaluation:
        """Loss and accuracy over a whole split, in chunks; weighted by chunk size."""
        total_loss, total_correct, count = 0.0, 0.0, len(split)
        has_accuracy = True
        for start in range(0, count, EVAL_CHUNK):
            chunk = split.batch(np.arange(start, min(start + EVAL_CHUNK, count)))
            predictions = self.predict(params, chunk.inputs)
            loss, _ = self.task.loss(predictions, chunk.targets)
            total_loss += loss * len(chunk)
            accuracy = self.task.accuracy(predictions, chunk.targets)
            if accuracy is None:
                has_accuracy = False
            else:
                total_correct += accuracy * len(chunk)
        return Evaluation(
            loss=total_loss / count, accuracy=total_correct / count if has_accuracy else None
        )
