"""Optimizers, gradient clipping and the training loop, for any backend and topology.

The loop knows nothing of YAML or of plugins: it receives a model, data, a TrainingConfig, a
random generator and an ``on_evaluation`` callback (the runner turns that into the
``rnnbench_evaluation`` hook and progress display). What it measures at each evaluation is an
:class:`~rnnbench.hookspecs.EvaluationLogs`, part of the plugin contract.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rnnbench.device_ops import HOST_OPS, ArrayOps
from rnnbench.hookspecs import EvaluationLogs
from rnnbench.model import Evaluation, Model
from rnnbench.records import SCHEDULES, TrainingConfig
from rnnbench.task import Split, TaskData

Params = dict[str, np.ndarray]


class _Scratch:
    """Per-parameter work arrays an optimizer reuses every step, so an update allocates
    nothing (a fresh temporary per operation cost page faults and copies on every step: the
    harness's share of a step's time). Results are bit for bit those of the plain numpy
    expressions they replace: the same operations in the same order, only written ``out=``."""

    def __init__(self) -> None:
        self._arrays: dict[tuple[str, int], np.ndarray] = {}

    def get(self, name: str, like: np.ndarray, slot: int = 0) -> np.ndarray:
        array = self._arrays.get((name, slot))
        if array is None or array.shape != like.shape or array.dtype != like.dtype:
            array = self._arrays[(name, slot)] = np.empty_like(like)
        return array


def _apply_step(params: Params, name: str, step: np.ndarray) -> None:
    """``params[name] -= step`` rounded to the parameter's dtype first, as before."""
    params[name] -= step.astype(params[name].dtype, copy=False)


class SGD:
    """Stochastic gradient descent with (heavy-ball, PyTorch-style) momentum."""

    def __init__(self, lr: float, momentum: float = 0.0) -> None:
        self.lr = lr
        self.momentum = momentum
        self.velocity: Params = {}
        self._scratch = _Scratch()

    def update(self, params: Params, grads: Params) -> None:
        for name, grad in grads.items():
            if self.momentum:
                v = self.velocity.get(name)
                if v is None:
                    v = self.velocity[name] = grad.copy()
                else:  # v = momentum * v + grad
                    v *= self.momentum
                    v += grad
                grad = v
            step = self._scratch.get(name, grad)
            np.multiply(grad, self.lr, out=step)  # lr * grad
            _apply_step(params, name, step)


class Adam:
    """Adam (Kingma & Ba, 2015) with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8."""

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m: Params = {}
        self.v: Params = {}
        self.t = 0
        self._scratch = _Scratch()

    def update(self, params: Params, grads: Params) -> None:
        self.t += 1
        correction1 = 1.0 - self.beta1**self.t
        correction2 = 1.0 - self.beta2**self.t
        for name, grad in grads.items():
            if name not in self.m:
                self.m[name], self.v[name] = np.zeros_like(grad), np.zeros_like(grad)
            m, v = self.m[name], self.v[name]
            work = self._scratch.get(name, grad)
            # m = beta1 * m + (1 - beta1) * grad
            m *= self.beta1
            np.multiply(grad, 1.0 - self.beta1, out=work)
            m += work
            # v = beta2 * v + (1 - beta2) * grad * grad
            v *= self.beta2
            np.multiply(grad, 1.0 - self.beta2, out=work)
            work *= grad
            v += work
            # step = lr * (m / correction1) / (sqrt(v / correction2) + eps)
            np.divide(v, correction2, out=work)
            np.sqrt(work, out=work)
            work += self.eps
            step = self._scratch.get(name, grad, 1)
            np.divide(m, correction1, out=step)
            step *= self.lr
            step /= work
            _apply_step(params, name, step)


class RMSprop:
    """RMSprop (Tieleman & Hinton, 2012) exactly as ``torch.optim.RMSprop``, with its defaults
    alpha 0.99 and eps 1e-8, ``centered=False`` and no weight decay. Per parameter, with
    ``s``, ``g_avg`` and ``b`` starting at zero::

        s = alpha * s + (1 - alpha) * grad**2
        avg = sqrt(s) + eps                       # centered: sqrt(s - g_avg**2) + eps,
                                                  #   g_avg = alpha * g_avg + (1 - alpha) * grad
        momentum > 0:  b = momentum * b + grad / avg;  param -= lr * b
        otherwise:     param -= lr * grad / avg

    eps is added *outside* the square root, as PyTorch does (Keras adds it inside).
    """

    def __init__(self, lr: float, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, centered: bool = False) -> None:
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.momentum, self.centered = momentum, centered
        self.square_avg: Params = {}
        self.grad_avg: Params = {}
        self.buffer: Params = {}
        self._scratch = _Scratch()

    def update(self, params: Params, grads: Params) -> None:
        alpha = self.alpha
        for name, grad in grads.items():
            if name not in self.square_avg:
                self.square_avg[name] = np.zeros_like(grad)
                self.grad_avg[name] = np.zeros_like(grad)
                self.buffer[name] = np.zeros_like(grad)
            square_avg = self.square_avg[name]
            work = self._scratch.get(name, grad)
            avg = self._scratch.get(name, grad, 1)
            # square_avg = alpha * square_avg + (1 - alpha) * grad * grad
            square_avg *= alpha
            np.multiply(grad, 1.0 - alpha, out=work)
            work *= grad
            square_avg += work
            if self.centered:
                grad_avg = self.grad_avg[name]
                # grad_avg = alpha * grad_avg + (1 - alpha) * grad
                grad_avg *= alpha
                np.multiply(grad, 1.0 - alpha, out=work)
                grad_avg += work
                # avg = sqrt(square_avg - grad_avg * grad_avg) + eps
                np.multiply(grad_avg, grad_avg, out=work)
                np.subtract(square_avg, work, out=avg)
                np.sqrt(avg, out=avg)
            else:
                np.sqrt(square_avg, out=avg)  # avg = sqrt(square_avg) + eps
            avg += self.eps
            direction = work
            np.divide(grad, avg, out=direction)  # grad / avg
            if self.momentum > 0:  # buffer = momentum * buffer + grad / avg
                buffer = self.buffer[name]
                buffer *= self.momentum
                buffer += direction
                direction = buffer
            np.multiply(direction, self.lr, out=avg)  # lr * direction
            _apply_step(params, name, avg)


Optimizer = SGD | Adam | RMSprop


def make_optimizer(config: TrainingConfig) -> Optimizer:
    """The optimizer ``config`` names, at its base learning rate (the loop sets ``lr`` before
    every step, following :func:`learning_rate`). ``momentum`` is honoured by SGD and RMSprop
    (as PyTorch's); Adam has none."""
    if config.optimizer == "sgd":
        return SGD(config.lr, config.momentum)
    if config.optimizer == "adam":
        return Adam(config.lr)
    if config.optimizer == "rmsprop":
        return RMSprop(config.lr, momentum=config.momentum)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; use 'sgd', 'adam' or 'rmsprop'")


def check_schedule(config: TrainingConfig, total: int) -> None:
    """Refuse a learning-rate schedule that cannot run for ``total`` steps (the suite's
    validation says the same at file:line; this guards direct callers and ``epochs`` runs,
    whose total is known only with the data)."""
    if config.schedule not in SCHEDULES:
        raise ValueError(
            f"unknown schedule {config.schedule!r}; use one of {', '.join(SCHEDULES)}")
    if config.schedule == "step" and config.decay_every is None:
        raise ValueError("schedule 'step' needs decay_every (steps between decays)")
    if config.warmup_steps and config.warmup_steps >= total:
        raise ValueError(
            f"warmup_steps ({config.warmup_steps}) must be below the run's {total} optimizer "
            "steps")


def learning_rate(config: TrainingConfig, step: int, total: int) -> float:
    """The learning rate of optimizer step ``step`` (1-based) of a run of ``total`` steps.

    With W = ``warmup_steps`` and t = step - W - 1 (0 for the first step after warm-up):

    - warm-up, step <= W: ``lr * step / W`` (a linear rise; step W uses ``lr``);
    - ``constant``: ``lr``;
    - ``step``: ``lr * decay_rate ** (t // decay_every)`` (PyTorch's StepLR, counted from
      the end of warm-up: the first ``decay_every`` steps after it use ``lr``);
    - ``cosine``: ``lr * (1 + cos(pi * t / (total - W))) / 2`` (PyTorch's CosineAnnealingLR
      with eta_min 0 and T_max = total - W: ``lr`` at the first step after warm-up, reaching 0
      just after the last step, so no step is wasted at a rate of 0).

    ``total`` is the planned number of steps; stopping early does not stretch the schedule.
    """
    lr, warmup = config.lr, config.warmup_steps
    if step <= warmup:
        return lr * step / warmup
    t = step - warmup - 1
    if config.schedule == "step":
        assert config.decay_every is not None  # check_schedule
        return lr * config.decay_rate ** (t // config.decay_every)
    if config.schedule == "cosine":
        return lr * (1.0 + math.cos(math.pi * t / (total - warmup))) / 2.0
    return lr


def global_norm(grads: Params, scratch: dict[str, np.ndarray] | None = None) -> float:
    """The L2 norm of all gradients together, computed in float64.

    ``scratch`` (a dict the caller keeps between calls) holds the float64 squares, reused
    every step rather than allocated: the same sums, without a fresh array per parameter."""
    total = 0.0
    for name, g in grads.items():
        if scratch is None:
            squares = np.square(g, dtype=np.float64)
        else:
            squares = scratch.get(name)
            if squares is None or squares.shape != np.shape(g):
                squares = scratch[name] = np.empty(np.shape(g), np.float64)
            np.square(g, out=squares, dtype=np.float64)
        total += float(np.sum(squares))
    return math.sqrt(total)


def clip_by_global_norm(grads: Params, max_norm: float, norm: float | None = None,
                        ops: ArrayOps = HOST_OPS) -> float:
    """Scale all gradients in place so their global norm is at most ``max_norm``.

    Returns the norm *before* clipping (what a researcher wants to see for explosions).
    ``ops``: where the gradients live (:mod:`rnnbench.device_ops`).
    """
    norm = ops.global_norm(grads) if norm is None else norm
    if norm > max_norm:
        ops.scale(grads, max_norm / (norm + 1e-12))
    return norm


@dataclass
class TrainingResult:
    """What the loop produced. ``curve`` has one entry per evaluation (the ``logs`` the
    ``rnnbench_evaluation`` hook received there), the first at step 0, before any update."""

    params: Params
    steps_done: int
    total_steps: int
    train_seconds: float
    curve: list[EvaluationLogs] = field(default_factory=list)
    diverged: bool = False
    divergence: str | None = None
    stopped_early: bool = False
    #: (optimizer steps, training seconds) when the validation loss first reached
    #: ``target_loss`` (``(0, 0.0)`` when the initial model already does); None when there is
    #: no target or it was not reached.
    reached_target_at: tuple[int, float] | None = None
    #: The global L2 norm of the gradients before clipping, at every optimizer step taken (a
    #: step whose loss or gradient is not finite is not taken: it ends the run as diverged).
    grad_norms: list[float] = field(default_factory=list)
    #: Optimizer steps whose gradient norm exceeded ``clip`` and was scaled down to it.
    clipped_steps: int = 0
    #: Wall-clock seconds of each timed optimizer step (``train_seconds`` is their sum); the
    #: ``step_ms`` metric is their median, ``step_ms_spread`` their interquartile range.
    step_seconds: list[float] = field(default_factory=list)
    #: Where the readout, loss, clipping and optimizer ran: ``"host"``, a device's ops name
    #: (parameters and optimizer state resident there), or ``"host (fallback: why)"``
    #: (:func:`rnnbench.device_ops.choose_training_ops`).
    placement: str = "host"
    #: Of each timed step, the seconds inside the cells' forward and backward (with their
    #: host-backend copies; the model's :class:`~rnnbench.model.CellClock`); the rest of the
    #: step is the harness's overhead (readout, loss, optimizer, clipping). Empty for a model
    #: without a ``cell_clock``. Metrics ``cell_ms``, ``overhead_ms``, ``overhead_share``.
    cell_seconds: list[float] = field(default_factory=list)


def resolve_schedule(config: TrainingConfig, n_train: int) -> tuple[int, int]:
    """(total optimizer steps, evaluate every N steps); one epoch is one pass over the data.

    With ``data: online`` an epoch is the same number of steps, ``ceil(n_train /
    batch_size)``: as many fresh sequences as the fixed training set holds."""
    steps_per_epoch = max(1, math.ceil(n_train / config.batch_size))
    if config.steps is not None:
        total = config.steps
    elif config.epochs is not None:
        total = config.epochs * steps_per_epoch
    else:
        raise ValueError("TrainingConfig needs steps or epochs")
    every = config.eval_every or steps_per_epoch
    return total, max(1, min(every, total))


def _cell_seconds(model: Model) -> float:
    """The model's running total of seconds in its cells (0 without a ``cell_clock``)."""
    clock = getattr(model, "cell_clock", None)
    return 0.0 if clock is None else clock.seconds


def _record_cell_seconds(result: TrainingResult, model: Model, before: float) -> None:
    """Append the step's seconds in the cells, for a model that keeps a ``cell_clock``."""
    if getattr(model, "cell_clock", None) is not None:
        result.cell_seconds.append(_cell_seconds(model) - before)


def _finite(value: float) -> bool:
    return math.isfinite(value)


def train(
    model: Model,
    data: TaskData,
    params: Params,
    config: TrainingConfig,
    rng: np.random.Generator,
    on_evaluation: Callable[[int, EvaluationLogs], bool] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    batches: Callable[[int], Split] | None = None,
) -> TrainingResult:
    """Train ``params`` in place with minibatches reshuffled every epoch (``data: fixed``) or,
    with ``data: online``, fresh sequences for every batch from ``batches(n)``.

    Evaluates on the validation split once before any update (step 0: the initial loss), every
    ``eval_every`` steps and at the end; reaching ``target_loss`` there, or ``on_evaluation``
    returning ``True``, stops early (never at step 0: a run takes at least one step). A
    non-finite loss or gradient stops the run as *diverged* (a result, not a crash).
    ``train_seconds`` counts optimizer steps only: not evaluation, and not a warm-up
    forward+backward taken before the first (which gives step 0's training loss). The learning
    rate of each step follows :func:`learning_rate`.
    """
    # Overflow and NaN are detected below and recorded as divergence; numpy's warnings about
    # them would only repeat that, once per array, into the user's terminal.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _train(model, data, params, config, rng, on_evaluation, on_step, batches)


def _train(
    model: Model,
    data: TaskData,
    params: Params,
    config: TrainingConfig,
    rng: np.random.Generator,
    on_evaluation: Callable[[int, EvaluationLogs], bool] | None,
    on_step: Callable[[int, int], None] | None,
    batches: Callable[[int], Split] | None,
) -> TrainingResult:
    total, eval_every = resolve_schedule(config, len(data.train))
    check_schedule(config, total)
    online = config.data == "online"
    if online and batches is None:
        raise ValueError("data 'online' needs a source of fresh batches (the task's sample())")
    optimizer = make_optimizer(config)
    result = TrainingResult(params=params, steps_done=0, total_steps=total, train_seconds=0.0)
    # Where the step's arithmetic runs. With a device's ops the parameters (``state``) and the
    # optimizer's state stay there; ``params`` (host) is refreshed only for evaluations and at
    # the end. With the host's, ``state`` is ``params`` itself.
    choose = getattr(model, "training_ops", None)
    ops, result.placement = choose() if callable(choose) else (HOST_OPS, "host")
    state = ops.params_to_backend(params)
    order = np.empty(0, dtype=np.intp)
    take = None if online else ops.batch_source(data.train)  # a device's: split copied once

    def next_batch() -> Split:
        nonlocal order
        if online:
            assert batches is not None
            return batches(config.batch_size)
        if order.size < config.batch_size:
            order = np.concatenate([order, rng.permutation(len(data.train))])
        index, order = order[: config.batch_size], order[config.batch_size :]
        assert take is not None
        return take(index)

    # One untimed forward+backward on the first batch, so one-off costs (JIT compilation or
    # loading its cache, first-touch allocation) stay out of train_seconds; its loss and
    # gradient norm are step 0's. It updates nothing, and drawing the first batch before it
    # rather than at step 1 keeps the random numbers (and so the run's numbers) as they were.
    batch = next_batch()
    first_loss, first_grads = model.loss_and_grads(state, ops.batch_to_backend(batch), ops)
    first_norm = ops.global_norm(first_grads)
    evaluation = model.evaluate(params, data.validation)
    logs = _logs(0, 0.0, float(first_loss), first_norm, evaluation,
                 learning_rate(config, 1, total))
    del first_grads
    result.curve.append(logs)
    initial = "at step 0 (the initial model, before any update)"
    if not _finite(evaluation.loss):
        result.diverged = True
        result.divergence = f"non-finite validation loss {initial}"
        return result  # nothing updated: ``params`` is still ``state``
    if config.target_loss is not None and evaluation.loss <= config.target_loss:
        result.reached_target_at = (0, 0.0)
    if on_evaluation is not None:
        on_evaluation(0, logs)  # a request to stop is not honoured before the first step
    for what, value in (("loss", logs["train_loss"]), ("gradient", logs["grad_norm"])):
        if not _finite(value):
            result.diverged = True
            result.divergence = f"non-finite {what} {initial}"
            return result

    losses: list[float] = []
    norms: list[float] = []
    for step in range(1, total + 1):
        if step > 1:
            batch = next_batch()
        lr = learning_rate(config, step, total)
        optimizer.lr = lr

        started = time.perf_counter()
        cell_before = _cell_seconds(model)
        loss, grads = model.loss_and_grads(state, ops.batch_to_backend(batch), ops)
        norm = ops.global_norm(grads)
        if not (_finite(loss) and _finite(norm)):
            elapsed = time.perf_counter() - started
            result.train_seconds += elapsed
            result.step_seconds.append(elapsed)
            _record_cell_seconds(result, model, cell_before)
            result.diverged = True
            what = "loss" if not _finite(loss) else "gradient"
            result.divergence = f"non-finite {what} at step {step}"
            break
        if config.clip is not None:
            clip_by_global_norm(grads, config.clip, norm, ops)
        ops.optimizer_update(optimizer, state, grads)
        elapsed = time.perf_counter() - started
        result.train_seconds += elapsed
        result.step_seconds.append(elapsed)
        _record_cell_seconds(result, model, cell_before)
        result.steps_done = step
        losses.append(loss)
        norms.append(norm)
        result.grad_norms.append(norm)
        if config.clip is not None and norm > config.clip:
            result.clipped_steps += 1
        if on_step is not None:
            on_step(step, total)

        if step % eval_every == 0 or step == total:
            ops.params_to_host(state, params)
            evaluation = model.evaluate(params, data.validation)
            logs = _logs(step, result.train_seconds, float(np.mean(losses)),
                         float(np.mean(norms)), evaluation, lr)
            losses.clear()
            norms.clear()
            result.curve.append(logs)
            if not _finite(evaluation.loss):
                result.diverged = True
                result.divergence = f"non-finite validation loss at step {step}"
                break
            reached = config.target_loss is not None and evaluation.loss <= config.target_loss
            if reached and result.reached_target_at is None:
                result.reached_target_at = (step, result.train_seconds)
            asked = on_evaluation is not None and on_evaluation(step, logs)
            if (reached or asked) and step < total:
                result.stopped_early = True
                break
    ops.params_to_host(state, params)  # the trained parameters, for the test and the metrics
    return result


def _logs(step: int, seconds: float, train_loss: float, grad_norm: float,
          evaluation: Evaluation, lr: float) -> EvaluationLogs:
    logs: EvaluationLogs = {
        "step": float(step),
        "seconds": seconds,
        "train_loss": train_loss,
        "grad_norm": grad_norm,
        "val_loss": evaluation.loss,
    }
    if evaluation.accuracy is not None:
        logs["val_accuracy"] = evaluation.accuracy
    logs["lr"] = lr
    return logs
