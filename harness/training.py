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

from rnnbench.hookspecs import EvaluationLogs
from rnnbench.model import Model
from rnnbench.records import TrainingConfig
from rnnbench.task import TaskData

Params = dict[str, np.ndarray]


class SGD:
    """Stochastic gradient descent with (heavy-ball, PyTorch-style) momentum."""

    def __init__(self, lr: float, momentum: float = 0.0) -> None:
        self.lr = lr
        self.momentum = momentum
        self.velocity: Params = {}

    def update(self, params: Params, grads: Params) -> None:
        for name, grad in grads.items():
            if self.momentum:
                v = self.velocity.get(name)
                v = grad.copy() if v is None else self.momentum * v + grad
                self.velocity[name] = v
                grad = v
            params[name] -= (self.lr * grad).astype(params[name].dtype, copy=False)


class Adam:
    """Adam (Kingma & Ba, 2015) with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8."""

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m: Params = {}
        self.v: Params = {}
        self.t = 0

    def update(self, params: Params, grads: Params) -> None:
        self.t += 1
        correction1 = 1.0 - self.beta1**self.t
        correction2 = 1.0 - self.beta2**self.t
        for name, grad in grads.items():
            if name not in self.m:
                self.m[name], self.v[name] = np.zeros_like(grad), np.zeros_like(grad)
            m = self.beta1 * self.m[name] + (1.0 - self.beta1) * grad
            v = self.beta2 * self.v[name] + (1.0 - self.beta2) * grad * grad
            self.m[name], self.v[name] = m, v
            step = self.lr * (m / correction1) / (np.sqrt(v / correction2) + self.eps)
            params[name] -= step.astype(params[name].dtype, copy=False)


def make_optimizer(config: TrainingConfig) -> SGD | Adam:
    if config.optimizer == "sgd":
        return SGD(config.lr, config.momentum)
    if config.optimizer == "adam":
        return Adam(config.lr)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; use 'sgd' or 'adam'")


def global_norm(grads: Params) -> float:
    """The L2 norm of all gradients together, computed in float64."""
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))


def clip_by_global_norm(grads: Params, max_norm: float, norm: float | None = None) -> float:
    """Scale all gradients in place so their global norm is at most ``max_norm``.

    Returns the norm *before* clipping (what a researcher wants to see for explosions).
    """
    norm = global_norm(grads) if norm is None else norm
    if norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for name in grads:
            grads[name] *= grads[name].dtype.type(scale)
    return norm


@dataclass
class TrainingResult:
    """What the loop produced. ``curve`` has one entry per evaluation (the ``logs`` the
    ``rnnbench_evaluation`` hook received there)."""

    params: Params
    steps_done: int
    total_steps: int
    train_seconds: float
    curve: list[EvaluationLogs] = field(default_factory=list)
    diverged: bool = False
    divergence: str | None = None
    stopped_early: bool = False
    #: (optimizer steps, training seconds) when the validation loss first reached
    #: ``target_loss``; None when there is no target or it was not reached.
    reached_target_at: tuple[int, float] | None = None


def resolve_schedule(config: TrainingConfig, n_train: int) -> tuple[int, int]:
    """(total optimizer steps, evaluate every N steps); one epoch is one pass over the data."""
    steps_per_epoch = max(1, math.ceil(n_train / config.batch_size))
    if config.steps is not None:
        total = config.steps
    elif config.epochs is not None:
        total = config.epochs * steps_per_epoch
    else:
        raise ValueError("TrainingConfig needs steps or epochs")
    every = config.eval_every or steps_per_epoch
    return total, max(1, min(every, total))


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
) -> TrainingResult:
    """Train ``params`` in place with minibatches reshuffled every epoch.

    Evaluates on the validation split every ``eval_every`` steps and at the end; reaching
    ``target_loss`` there, or ``on_evaluation`` returning ``True``, stops early. A non-finite
    loss or gradient stops the run as *diverged* (a result, not a crash). ``train_seconds``
    counts optimizer steps only: not evaluation, and not a warm-up step taken before the first.
    """
    # Overflow and NaN are detected below and recorded as divergence; numpy's warnings about
    # them would only repeat that, once per array, into the user's terminal.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _train(model, data, params, config, rng, on_evaluation, on_step)


def _train(
    model: Model,
    data: TaskData,
    params: Params,
    config: TrainingConfig,
    rng: np.random.Generator,
    on_evaluation: Callable[[int, EvaluationLogs], bool] | None,
    on_step: Callable[[int, int], None] | None,
) -> TrainingResult:
    total, eval_every = resolve_schedule(config, len(data.train))
    optimizer = make_optimizer(config)
    # One untimed forward+backward first, so one-off costs (JIT compilation or loading its
    # cache, first-touch allocation) stay out of train_seconds. It draws no random numbers and
    # updates nothing, so the run's numbers are the same with or without it.
    model.loss_and_grads(params, data.train.batch(np.arange(min(config.batch_size,
                                                                len(data.train)))))
    result = TrainingResult(params=params, steps_done=0, total_steps=total, train_seconds=0.0)
    order = np.empty(0, dtype=np.intp)
    losses: list[float] = []
    norms: list[float] = []
    for step in range(1, total + 1):
        if order.size < config.batch_size:
            order = np.concatenate([order, rng.permutation(len(data.train))])
        index, order = order[: config.batch_size], order[config.batch_size :]
        batch = data.train.batch(index)

        started = time.perf_counter()
        loss, grads = model.loss_and_grads(params, batch)
        norm = global_norm(grads)
        if not (_finite(loss) and _finite(norm)):
            result.train_seconds += time.perf_counter() - started
            result.diverged = True
            what = "loss" if not _finite(loss) else "gradient"
            result.divergence = f"non-finite {what} at step {step}"
            break
        if config.clip is not None:
            clip_by_global_norm(grads, config.clip, norm)
        optimizer.update(params, grads)
        result.train_seconds += time.perf_counter() - started
        result.steps_done = step
        losses.append(loss)
        norms.append(norm)
        if on_step is not None:
            on_step(step, total)

        if step % eval_every == 0 or step == total:
            evaluation = model.evaluate(params, data.validation)
            logs: EvaluationLogs = {
                "step": float(step),
                "seconds": result.train_seconds,
                "train_loss": float(np.mean(losses)),
                "grad_norm": float(np.mean(norms)),
                "val_loss": evaluation.loss,
            }
            if evaluation.accuracy is not None:
                logs["val_accuracy"] = evaluation.accuracy
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
    return result
