"""The models a run trains: cells plus the task's linear readout and loss, for every topology.

- :class:`SequenceModel`: one cell; the readout sees the last step (many-to-one, one-to-one) or
  every step (many-to-many aligned, one-to-many). For tasks marked ``free_running`` (generation)
  training is teacher-forced and evaluation feeds the model's own outputs back, one
  :meth:`Cell.step` at a time.
- :class:`EncoderDecoderModel`: an encoder cell reads the input sequence, its final state starts
  a decoder cell, and gradients flow back through that hand-over (the initial-state gradient of
  the cell protocol) into the encoder.

Cells may run on a device; the readout and loss run on the host. Per training step exactly one
copy goes each way per cell (outputs to the host, their gradient back), never one per time step.
Free-running evaluation is the exception by nature: each step's input is the last step's output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rnnbench.boundary import (
    CellOrigin,
    check_backward_result,
    check_forward_result,
    check_infer_result,
    check_step_result,
)
from rnnbench.cell import Cell, CellConfig, has_infer
from rnnbench.device_ops import HOST_OPS, ArrayOps, choose_training_ops
from rnnbench.task import Split, Task, TaskData

READOUT_WEIGHT = "readout.weight"
READOUT_BIAS = "readout.bias"
ENCODER, DECODER = "encoder.", "decoder."
#: Sequences per forward pass when evaluating a whole split, to bound memory.
EVAL_CHUNK = 1024
#: Scalars one time chunk of an evaluation forward may hold per layer, counted as
#: ``steps x sequences x 4 x hidden_size`` (an LSTM's gates): about 16 MiB in float32. The
#: forward runs ``max(1, EVAL_CHUNK_SCALARS // (sequences * 4 * hidden_size))`` steps at a time.
EVAL_CHUNK_SCALARS = 1 << 22
#: Scalars of predictions one evaluation chunk may produce (``steps x sequences x
#: output_size``): about 8 MiB in float32; see :func:`evaluation_chunk`.
EVAL_PREDICTION_SCALARS = 1 << 21

Params = dict[str, np.ndarray]


@dataclass
class Evaluation:
    """A model's score on one split: the task's mean loss, its accuracy where the task defines
    one (``None`` otherwise), and the task's own :meth:`~rnnbench.Task.scores` (e.g.
    ``{"recall_accuracy": 0.97}``; empty for tasks that declare none)."""

    loss: float
    accuracy: float | None
    scores: dict[str, float] = field(default_factory=dict)


class Readout:
    """The linear map from hidden states to the task's outputs, on the host (a device's
    :class:`~rnnbench.ArrayOps` computes the same on the device while training)."""

    #: The names of its parameters in a model's flat parameter dict.
    WEIGHT, BIAS = READOUT_WEIGHT, READOUT_BIAS

    def __init__(self, hidden_size: int, output_size: int, dtype: np.dtype) -> None:
        self.hidden_size, self.output_size, self.dtype = hidden_size, output_size, dtype

    def init_params(self, rng: np.random.Generator) -> Params:
        bound = 1.0 / np.sqrt(self.hidden_size)  # PyTorch's nn.Linear default
        shape = (self.output_size, self.hidden_size)
        return {
            READOUT_WEIGHT: rng.uniform(-bound, bound, shape).astype(self.dtype),
            READOUT_BIAS: rng.uniform(-bound, bound, self.output_size).astype(self.dtype),
        }

    @staticmethod
    def apply(params: Params, hidden: np.ndarray) -> np.ndarray:
        return hidden @ params[READOUT_WEIGHT].T + params[READOUT_BIAS]

    def backward(
        self, params: Params, hidden: np.ndarray, d_predictions: np.ndarray, grads: Params
    ) -> np.ndarray:
        """Adds the readout's gradients to ``grads``; returns dLoss/d ``hidden``."""
        d = d_predictions.astype(self.dtype, copy=False)
        flat_d = d.reshape(-1, self.output_size)
        grads[READOUT_WEIGHT] = flat_d.T @ hidden.reshape(-1, self.hidden_size)
        grads[READOUT_BIAS] = flat_d.sum(axis=0)
        return self.d_hidden(params, d)

    def d_hidden(self, params: Params, d_predictions: np.ndarray) -> np.ndarray:
        """dLoss/d the hidden states the readout read, from dLoss/d its predictions: what a
        metric probing gradients through the cell feeds its ``backward``."""
        return d_predictions.astype(self.dtype, copy=False) @ params[READOUT_WEIGHT]


class CellClock:
    """Wall-clock seconds spent in the cells during training: their ``forward`` and
    ``backward``, with the copies of those calls' arguments, results and parameters between
    host and backend. The training loop reads it around each step, so a step's time splits
    into the cells' and the harness's own (readout, loss, optimizer, clipping, batching): the
    ``cell_ms`` and ``overhead_ms`` metrics. Two ``perf_counter`` calls per cell call."""

    def __init__(self) -> None:
        self.seconds = 0.0


class CellRunner:
    """One cell and the parameters under a prefix: host <-> backend, forward, backward, step.

    The first forward, step and backward results are checked against the Cell protocol
    (:mod:`rnnbench.boundary`), naming ``origin`` (plugin, cell, backend) when one is at fault;
    later calls are not checked, so the checks cost nothing per training step.
    """

    def __init__(
        self, cell: Cell, prefix: str = "", origin: CellOrigin | None = None,
        clock: CellClock | None = None,
    ) -> None:
        self.cell, self.prefix, self.origin = cell, prefix, origin
        #: Time in this cell's training calls (:class:`CellClock`; shared by a model's cells).
        self.clock = clock if clock is not None else CellClock()
        self.dtype = cell.config.np_dtype
        self._unchecked = {"forward", "step", "backward", "infer"}

    def init_params(self, rng: np.random.Generator) -> Params:
        return {self.prefix + name: value for name, value in self.cell.init_params(rng).items()}

    def backend_params(self, params: Params) -> dict[str, Any]:
        """The cell's parameters as backend arrays; the copies count as the cell's time."""
        started = time.perf_counter()
        prefix = self.prefix
        converted = {
            name[len(prefix):]: self.cell.to_backend(value)
            for name, value in params.items()
            if name.startswith(prefix) and not name.startswith("readout.")
            and (prefix or not name.startswith((ENCODER, DECODER)))
        }
        self.clock.seconds += time.perf_counter() - started
        return converted

    def to_backend_state(self, state: tuple[np.ndarray, ...] | None, batch: int):
        if state is None:
            return self.cell.initial_state(batch)
        return tuple(self.cell.to_backend(s) for s in state)

    def forward(self, cell_params: dict, inputs: np.ndarray, state=None,
                ops: ArrayOps = HOST_OPS):
        """Forward over ``inputs`` (host, or a training array of ``ops``); returns the result
        and the outputs as ``ops`` keeps them (on the host by default)."""
        started = time.perf_counter()
        if isinstance(inputs, np.ndarray):
            inputs = inputs.astype(self.dtype, copy=False)
        x = self.cell.to_backend(inputs)
        initial_state = self.to_backend_state(state, inputs.shape[1])
        result = self.cell.forward(cell_params, x, initial_state)
        if "forward" in self._unchecked:
            check_forward_result(self.cell, result, x, initial_state, self.origin)
            self._unchecked.discard("forward")
        outputs = ops.from_cell(self.cell, result.outputs)
        self._stop_clock(started, ops)
        return result, outputs

    def _stop_clock(self, started: float, ops: ArrayOps) -> None:
        """Adds the call's time to the clock. Where training stays on a device, the cell's
        kernels may still be running when the call returns: the cell's ``synchronize()`` (when
        it has one) waits for them first, or their time would count as harness overhead."""
        if ops is not HOST_OPS:
            synchronize = getattr(self.cell, "synchronize", None)
            if callable(synchronize):
                synchronize()
        self.clock.seconds += time.perf_counter() - started

    def time_chunk(self, batch: int) -> int:
        """Time steps per chunk of an evaluation forward over ``batch`` sequences."""
        return max(1, EVAL_CHUNK_SCALARS // (batch * 4 * self.cell.config.hidden_size))

    def _infer(self, cell_params: dict, x, state):
        """One cache-free forward: the cell's ``infer`` where it has one, else ``forward``
        with the cache dropped here. Returns backend ``(outputs, final_state)``."""
        if has_infer(self.cell):
            result = self.cell.infer(cell_params, x, state)
            if "infer" in self._unchecked:
                check_infer_result(self.cell, result, x, state, self.origin)
                self._unchecked.discard("infer")
            return result[0], result[1]
        forward = self.cell.forward(cell_params, x, state)
        if "forward" in self._unchecked:
            check_forward_result(self.cell, forward, x, state, self.origin)
            self._unchecked.discard("forward")
        return forward.outputs, forward.final_state

    def infer(
        self,
        cell_params: dict,
        inputs: np.ndarray,
        state=None,
        apply: Callable[[np.ndarray], np.ndarray] | None = None,
        last_only: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Forward for evaluation over ``inputs`` ``(T, N, I)`` (host) in bounded memory: time
        chunks of :meth:`time_chunk` steps, each chunk's final state starting the next, no
        backward cache kept. ``apply`` maps each chunk's host outputs ``(steps, N, H)`` (the
        readout) as soon as they arrive, so only its results are kept for the whole sequence;
        ``last_only`` keeps only the last step's ``(N, ...)``. Returns those results and the
        final state (backend arrays)."""
        steps, batch = inputs.shape[:2]
        state = self.to_backend_state(state, batch)
        chunk = self.time_chunk(batch)
        kept: np.ndarray | None = None
        for start in range(0, steps, chunk):
            stop = min(start + chunk, steps)
            x = self.cell.to_backend(np.ascontiguousarray(inputs[start:stop], dtype=self.dtype))
            outputs, state = self._infer(cell_params, x, state)
            del x
            if last_only and stop < steps:
                continue
            host = self.cell.to_host(outputs[-1] if last_only else outputs)
            del outputs
            mapped = host if apply is None else apply(host)
            if last_only:
                return mapped, state
            if kept is None:
                kept = np.empty((steps, *mapped.shape[1:]), mapped.dtype)
            kept[start:stop] = mapped
        assert kept is not None  # steps >= 1: the cell refuses an empty sequence first
        return kept, state

    def host_state(self, state) -> tuple[np.ndarray, ...]:
        return tuple(self.cell.to_host(s) for s in state)

    def backward(self, cell_params: dict, result, d_outputs: np.ndarray, grads: Params,
                 d_final_state: tuple[np.ndarray, ...] | None = None,
                 ops: ArrayOps = HOST_OPS) -> tuple[np.ndarray, ...]:
        """Adds the cell's parameter gradients to ``grads``; returns dLoss/d initial state
        (host, or as ``ops`` keeps training arrays)."""
        started = time.perf_counter()
        d_final = None if d_final_state is None else tuple(
            self.cell.to_backend(
                d.astype(self.dtype, copy=False) if isinstance(d, np.ndarray) else d
            )
            for d in d_final_state
        )
        d_outputs = self.cell.to_backend(d_outputs)
        back = self.cell.backward(cell_params, result.cache, d_outputs, d_final)
        if "backward" in self._unchecked:
            check_backward_result(self.cell, back, cell_params, d_outputs, result.final_state,
                                  self.origin)
            self._unchecked.discard("backward")
        for name, grad in back.param_grads.items():
            grads[self.prefix + name] = ops.from_cell(self.cell, grad)
        d_initial = tuple(ops.from_cell(self.cell, d) for d in back.d_initial_state)
        self._stop_clock(started, ops)
        return d_initial

    def generate(
        self,
        cell_params: dict,
        readout_params: Params,
        first_input: np.ndarray,
        steps: int,
        feedback: Callable[[np.ndarray, int], np.ndarray],
        state=None,
    ) -> np.ndarray:
        """Free-running: ``steps`` readout predictions, each step's input made by ``feedback``
        from the previous step's prediction. Returns ``(steps, N, O)``."""
        state = self.to_backend_state(state, first_input.shape[0])
        x_t = first_input
        predictions = []
        for t in range(steps):
            x_backend = self.cell.to_backend(x_t.astype(self.dtype, copy=False))
            output, new_state = self.cell.step(cell_params, x_backend, state)
            if "step" in self._unchecked:
                check_step_result(self.cell, output, new_state, x_backend, state, self.origin)
                self._unchecked.discard("step")
            state = new_state
            prediction = Readout.apply(readout_params, self.cell.to_host(output))
            predictions.append(prediction)
            if t + 1 < steps:
                x_t = feedback(prediction, t + 1)
        return np.stack(predictions)


class SequenceModel:
    """``cell`` -> linear readout (``output_size`` values) -> the task's loss.

    Parameters are one flat dict of host arrays: the cell's (PyTorch names) plus
    ``readout.weight`` ``(O, H)`` and ``readout.bias`` ``(O,)``.
    """

    def __init__(
        self, cell: Cell, task: Task, output_size: int, origin: CellOrigin | None = None
    ) -> None:
        self.cell = cell
        self.task = task
        self.output_size = output_size
        self.dtype = cell.config.np_dtype
        self.runner = CellRunner(cell, origin=origin)
        #: Seconds in the cell's training calls (:class:`CellClock`), read by the training loop.
        self.cell_clock = self.runner.clock
        self.readout = Readout(cell.config.hidden_size, output_size, self.dtype)

    @property
    def single_cell(self) -> bool:
        """True when the readout reads this one cell's outputs directly and the cell starts from
        a zero state: what a metric that reasons about that wiring (the gradient-flow profiles)
        relies on. True for exactly this class; a subclass may wire the cell differently, so it
        says False unless it overrides this."""
        return type(self) is SequenceModel

    def cell_params(self, params: Params) -> dict[str, Any]:
        """The cell's parameters out of the model's flat ``params`` (the readout's left out),
        under the cell's own names, as backend arrays: what ``model.cell.forward`` takes."""
        return self.runner.backend_params(params)

    def init_params(self, rng: np.random.Generator) -> Params:
        params = self.runner.init_params(rng)
        params.update(self.readout.init_params(rng))
        return params

    def _seen(self, outputs: np.ndarray) -> np.ndarray:
        return outputs[-1] if self.task.readout == "last" else outputs

    def predict(self, params: Params, inputs: np.ndarray) -> np.ndarray:
        """Teacher-forced predictions for ``inputs`` ``(T, N, I)``, by the cache-free forward in
        time chunks (:meth:`CellRunner.infer`), the readout applied chunk by chunk."""
        predictions, _ = self.runner.infer(
            self.runner.backend_params(params), inputs,
            apply=lambda hidden: Readout.apply(params, hidden),
            last_only=self.task.readout == "last",
        )
        return predictions

    def training_ops(self) -> tuple[ArrayOps, str]:
        """Where training's readout, loss and optimizer run, and the placement to record
        (:func:`rnnbench.device_ops.choose_training_ops`)."""
        return choose_training_ops(self.task, [self.cell])

    def loss_and_grads(self, params: Params, batch: Split,
                       ops: ArrayOps = HOST_OPS) -> tuple[float, Params]:
        """The batch's mean loss and its gradient for every parameter (host arrays; with
        device ``ops``, ``params``, ``batch`` and the gradients are its training arrays)."""
        cell_params = self.runner.backend_params(params)
        result, outputs = self.runner.forward(cell_params, batch.inputs, ops=ops)
        seen = self._seen(outputs)
        loss, d_predictions = ops.loss(
            self.task, ops.readout_apply(params, seen), batch.targets)
        grads: Params = {}
        d_seen = ops.readout_backward(self.readout, params, seen, d_predictions, grads)
        if self.task.readout == "last":
            d_outputs = ops.last_step_gradient(outputs, d_seen)
        else:
            d_outputs = d_seen
        self.runner.backward(cell_params, result, d_outputs, grads, ops=ops)
        return loss, grads

    def evaluation_predictions(self, params: Params, split: Split) -> np.ndarray:
        """What evaluation scores: free-running generation for ``free_running`` tasks (the
        first input given, every later one made from the model's last output), else
        teacher-forced predictions."""
        if not self.task.free_running:
            return self.predict(params, split.inputs)
        return self.runner.generate(
            self.runner.backend_params(params), params, split.inputs[0],
            split.inputs.shape[0], self.task.feedback,
        )

    def evaluate(self, params: Params, split: Split) -> Evaluation:
        return evaluate_in_chunks(self, params, split)


class EncoderDecoderModel:
    """Encoder cell -> its final state starts the decoder cell -> readout on every decoder
    step -> the task's loss. Training is teacher-forced (``split.decoder_inputs``); evaluation
    decodes free-running from the first decoder input, through ``task.feedback``.

    Parameters: ``encoder.<PyTorch name>``, ``decoder.<PyTorch name>``, ``readout.*``.
    """

    #: Two cells: see :attr:`SequenceModel.single_cell`.
    single_cell = False

    def __init__(
        self, encoder: Cell, decoder: Cell, task: Task, output_size: int,
        origin: CellOrigin | None = None,
    ) -> None:
        if encoder.config.hidden_size != decoder.config.hidden_size:
            raise ValueError("encoder and decoder must have the same hidden size")
        self.task = task
        self.output_size = output_size
        self.dtype = encoder.config.np_dtype
        #: Seconds in both cells' training calls (:class:`CellClock`), read by the training loop.
        self.cell_clock = CellClock()
        self.encoder = CellRunner(encoder, ENCODER, origin, self.cell_clock)
        self.decoder = CellRunner(decoder, DECODER, origin, self.cell_clock)
        self.cell = encoder  # what metrics that look at "the cell" see
        self.readout = Readout(decoder.config.hidden_size, output_size, self.dtype)

    def init_params(self, rng: np.random.Generator) -> Params:
        params = self.encoder.init_params(rng)
        params.update(self.decoder.init_params(rng))
        params.update(self.readout.init_params(rng))
        return params

    def _encode(self, params: Params, inputs: np.ndarray):
        enc_params = self.encoder.backend_params(params)
        result, outputs = self.encoder.forward(enc_params, inputs)
        return enc_params, result, outputs

    def _encoded_state(self, params: Params, inputs: np.ndarray):
        """The encoder's final state over ``inputs``, by the cache-free forward (evaluation)."""
        _, state = self.encoder.infer(self.encoder.backend_params(params), inputs, last_only=True)
        return state

    def predict(self, params: Params, split: Split) -> np.ndarray:
        """Teacher-forced decoder predictions ``(T_out, N, O)`` (cache-free forwards)."""
        predictions, _ = self.decoder.infer(
            self.decoder.backend_params(params), split.decoder_inputs,
            self._encoded_state(params, split.inputs),
            apply=lambda hidden: Readout.apply(params, hidden),
        )
        return predictions

    def training_ops(self) -> tuple[ArrayOps, str]:
        """See :meth:`SequenceModel.training_ops`; both cells must offer the same ops."""
        return choose_training_ops(self.task, [self.encoder.cell, self.decoder.cell])

    def loss_and_grads(self, params: Params, batch: Split,
                       ops: ArrayOps = HOST_OPS) -> tuple[float, Params]:
        enc_params = self.encoder.backend_params(params)
        encoded, enc_outputs = self.encoder.forward(enc_params, batch.inputs, ops=ops)
        dec_params = self.decoder.backend_params(params)
        decoded, outputs = self.decoder.forward(
            dec_params, batch.decoder_inputs, encoded.final_state, ops=ops
        )
        loss, d_predictions = ops.loss(
            self.task, ops.readout_apply(params, outputs), batch.targets)
        grads: Params = {}
        d_outputs = ops.readout_backward(self.readout, params, outputs, d_predictions, grads)
        d_handover = self.decoder.backward(dec_params, decoded, d_outputs, grads, ops=ops)
        self.encoder.backward(enc_params, encoded, ops.zeros_like(enc_outputs), grads,
                              d_handover, ops=ops)
        return loss, grads

    def evaluation_predictions(self, params: Params, split: Split) -> np.ndarray:
        """Free-running decoding: only the first decoder input (the start symbol) is given."""
        return self.decoder.generate(
            self.decoder.backend_params(params), params, split.decoder_inputs[0],
            split.decoder_inputs.shape[0], self.task.feedback,
            self._encoded_state(params, split.inputs),
        )

    def evaluate(self, params: Params, split: Split) -> Evaluation:
        return evaluate_in_chunks(self, params, split)


class Model(Protocol):
    """What a metric may use of ``RunOutcome.model``: the trained model of a run, built by the
    harness around the run's cell(s) from what its task declares. Both built-in models,
    :class:`SequenceModel` and :class:`EncoderDecoderModel`, have exactly these members.

    ``params`` is always the model's flat dict of host arrays (``run.params`` or
    ``run.initial_params``): the cell's parameters under PyTorch's names (``encoder.`` /
    ``decoder.`` prefixed for encoder-decoder tasks) plus ``readout.weight`` and ``readout.bias``.
    """

    #: The run's task.
    task: Task
    #: The (first) cell: the only one of a sequence model, the encoder of an encoder-decoder.
    cell: Cell
    #: The linear readout from hidden states to the task's outputs (``readout.weight``
    #: ``(O, H)``, ``readout.bias`` ``(O,)``).
    readout: Readout
    #: Number of values the readout produces per step.
    output_size: int
    #: True when the readout reads ``cell``'s outputs directly and the cell starts from a zero
    #: state (a plain sequence model), which metrics reasoning about that wiring rely on.
    single_cell: bool

    def init_params(self, rng: np.random.Generator) -> Params:
        """Fresh parameters (cells' initialisation, then the readout's)."""
        ...

    def loss_and_grads(self, params: Params, batch: Split,
                       ops: ArrayOps = HOST_OPS) -> tuple[float, Params]:
        """The batch's mean loss and the gradient of every parameter (host arrays); one
        training step's worth of computation. The training loop passes the ``ops`` of
        ``training_ops()``, with ``params`` and ``batch`` as its training arrays."""
        ...

    def evaluation_predictions(self, params: Params, split: Split) -> np.ndarray:
        """What evaluation scores on ``split``: teacher-forced predictions, or free-running
        generation for generation and encoder-decoder tasks."""
        ...

    def evaluate(self, params: Params, split: Split) -> Evaluation:
        """The task's loss (and accuracy, where the task has one) on a whole split, e.g.
        ``run.model.evaluate(run.params, run.data.train)``."""
        ...


def evaluation_chunk(model: Model, split: Split) -> int:
    """Sequences per evaluation chunk: :data:`EVAL_CHUNK`, fewer when one chunk's predictions
    (``steps x sequences x output_size``, and the task's loss makes a few temporaries of that
    size) would pass :data:`EVAL_PREDICTION_SCALARS`. Short sequences keep the whole
    :data:`EVAL_CHUNK`, so their chunks, and so their evaluation's float sums, are as before."""
    if split.decoder_inputs is not None:
        steps = split.decoder_inputs.shape[0]
    else:
        steps = 1 if model.task.readout == "last" else split.inputs.shape[0]
    per_sequence = max(1, steps * model.output_size)
    return max(1, min(EVAL_CHUNK, EVAL_PREDICTION_SCALARS // per_sequence))


def split_range(split: Split, start: int, stop: int) -> Split:
    """Sequences ``start:stop`` of ``split`` as views (``Split.batch`` copies: an index array)."""
    if start == 0 and stop >= len(split):
        return split
    along = slice(start, stop)
    targets = split.targets[(slice(None),) * split.targets_axis + (along,)]
    decoder = None if split.decoder_inputs is None else split.decoder_inputs[:, along]
    return Split(split.inputs[:, along], targets, split.targets_axis, decoder)


def evaluate_in_chunks(model: Model, params: Params, split: Split) -> Evaluation:
    """Loss, accuracy and the task's scores over a whole split, in chunks of
    :func:`evaluation_chunk` sequences; weighted by chunk size (each is a mean over a chunk's
    sequences)."""
    total_loss, total_correct, count = 0.0, 0.0, len(split)
    has_accuracy = True
    score_totals: dict[str, float] = {}
    size = evaluation_chunk(model, split)
    for start in range(0, count, size):
        chunk = split_range(split, start, min(start + size, count))
        predictions = model.evaluation_predictions(params, chunk)
        loss, _ = model.task.loss(predictions, chunk.targets)
        total_loss += loss * len(chunk)
        accuracy = model.task.accuracy(predictions, chunk.targets)
        if accuracy is None:
            has_accuracy = False
        else:
            total_correct += accuracy * len(chunk)
        for name, value in model.task.scores(predictions, chunk.targets).items():
            score_totals[name] = score_totals.get(name, 0.0) + float(value) * len(chunk)
    return Evaluation(
        loss=total_loss / count, accuracy=total_correct / count if has_accuracy else None,
        scores={name: total / count for name, total in score_totals.items()},
    )


def build_model(
    task: Task,
    data: TaskData,
    factory: Callable[[CellConfig], Cell],
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    dtype: str = "float32",
    origin: CellOrigin | None = None,
    options: tuple[tuple[str, Any], ...] = (),
) -> Model:
    """The model the task's topology asks for, with cells made by ``factory`` (registered as
    ``origin``, named when a cell breaks the protocol) with the cell ``options``."""

    def cell(input_size: int) -> Cell:
        return factory(CellConfig(input_size, hidden_size, num_layers, bias, dtype, options))

    if task.model == "encoder-decoder":
        if data.decoder_input_size is None:
            raise ValueError(f"task {task.name!r} is encoder-decoder but has no decoder inputs")
        return EncoderDecoderModel(
            cell(data.input_size), cell(data.decoder_input_size), task, data.output_size, origin
        )
    return SequenceModel(cell(data.input_size), task, data.output_size, origin)
