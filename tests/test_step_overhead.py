"""Per-step harness overhead: the optimizers update in place (bit for bit the plain numpy
expressions they replaced), and every timed step records its time inside the cells, from which
the ``cell_ms``, ``overhead_ms`` and ``overhead_share`` metrics come."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from rnnbench.model import CellClock, build_model
from rnnbench.plugins.cells.reference import GRUCell, LSTMCell
from rnnbench.plugins.metrics.training import cell_ms, overhead_ms, overhead_share, step_ms
from rnnbench.plugins.tasks.encoder_decoder import Reverse
from rnnbench.plugins.tasks.many_to_many import CopyMemory
from rnnbench.records import TrainingConfig
from rnnbench.training import SGD, Adam, RMSprop, TrainingResult, global_norm, train

# --- the optimizers as they were written before they updated in place: the oracle -----------


def plain_sgd(state, params, grads, lr, momentum):
    for name, grad in grads.items():
        if momentum:
            v = state.get(name)
            v = grad.copy() if v is None else momentum * v + grad
            state[name] = v
            grad = v
        params[name] -= (lr * grad).astype(params[name].dtype, copy=False)


def plain_adam(state, params, grads, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    state["t"] = t = state.get("t", 0) + 1
    correction1, correction2 = 1.0 - beta1**t, 1.0 - beta2**t
    for name, grad in grads.items():
        m = beta1 * state.get(("m", name), np.zeros_like(grad)) + (1.0 - beta1) * grad
        v = beta2 * state.get(("v", name), np.zeros_like(grad)) + (1.0 - beta2) * grad * grad
        state[("m", name)], state[("v", name)] = m, v
        step = lr * (m / correction1) / (np.sqrt(v / correction2) + eps)
        params[name] -= step.astype(params[name].dtype, copy=False)


def plain_rmsprop(state, params, grads, lr, momentum=0.0, centered=False, alpha=0.99, eps=1e-8):
    for name, grad in grads.items():
        square_avg = alpha * state.get(("s", name), np.zeros_like(grad)) + (
            1.0 - alpha) * grad * grad
        state[("s", name)] = square_avg
        if centered:
            grad_avg = alpha * state.get(("g", name), np.zeros_like(grad)) + (1.0 - alpha) * grad
            state[("g", name)] = grad_avg
            avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            avg = np.sqrt(square_avg) + eps
        if momentum > 0:
            direction = momentum * state.get(("b", name), np.zeros_like(grad)) + grad / avg
            state[("b", name)] = direction
        else:
            direction = grad / avg
        params[name] -= (lr * direction).astype(params[name].dtype, copy=False)


OPTIMIZERS = {
    "sgd": (lambda: SGD(0.1), lambda s, p, g: plain_sgd(s, p, g, 0.1, 0.0)),
    "sgd-momentum": (lambda: SGD(0.1, 0.9), lambda s, p, g: plain_sgd(s, p, g, 0.1, 0.9)),
    "adam": (lambda: Adam(0.01), lambda s, p, g: plain_adam(s, p, g, 0.01)),
    "rmsprop": (lambda: RMSprop(0.01), lambda s, p, g: plain_rmsprop(s, p, g, 0.01)),
    "rmsprop-momentum": (lambda: RMSprop(0.01, momentum=0.9),
                         lambda s, p, g: plain_rmsprop(s, p, g, 0.01, momentum=0.9)),
    "rmsprop-centered": (lambda: RMSprop(0.01, momentum=0.5, centered=True),
                         lambda s, p, g: plain_rmsprop(s, p, g, 0.01, 0.5, centered=True)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_in_place_updates_are_bit_identical_to_the_plain_expressions(name, dtype):
    rng = np.random.default_rng(1)
    shapes = {"w": (7, 5), "b": (5,)}
    ours = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    theirs = {k: v.copy() for k, v in ours.items()}
    make, plain = OPTIMIZERS[name]
    optimizer, state = make(), {}
    for _ in range(25):
        grads = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
        untouched = {k: g.copy() for k, g in grads.items()}
        optimizer.update(ours, grads)
        plain(state, theirs, untouched)
        for k in grads:  # the optimizer leaves the gradients alone
            np.testing.assert_array_equal(grads[k], untouched[k])
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k])


def test_global_norm_with_scratch_is_the_same_sum():
    rng = np.random.default_rng(2)
    grads = {"a": rng.standard_normal((300, 70)).astype(np.float32),
             "b": rng.standard_normal(9).astype(np.float32)}
    plain = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))
    scratch: dict[str, np.ndarray] = {}
    assert global_norm(grads) == plain
    assert global_norm(grads, scratch) == plain
    assert global_norm(grads, scratch) == plain  # the reused buffers give it again
    assert set(scratch) == set(grads)


# --- the split of each step's time ------------------------------------------------------------


@pytest.mark.parametrize("task, factory", [
    (CopyMemory(length=5, recall=2, train_size=16, validation_size=4, test_size=4), LSTMCell),
    (Reverse(length=3, train_size=16, validation_size=4, test_size=4), GRUCell),
])
def test_every_step_records_its_time_in_the_cells(task, factory):
    data = task.make_data(0)
    model = build_model(task, data, factory, 4)
    rng = np.random.default_rng(0)
    config = TrainingConfig(batch_size=4, steps=6, clip=1.0)
    result = train(model, data, model.init_params(rng), config, rng)
    assert len(result.cell_seconds) == len(result.step_seconds) == 6
    for cell, step in zip(result.cell_seconds, result.step_seconds, strict=True):
        assert 0.0 < cell < step
    run = SimpleNamespace(training=result, spec=None)
    assert cell_ms(run) + overhead_ms(run) == pytest.approx(step_ms(run), rel=0.5)
    assert 0.0 < overhead_share(run) < 1.0


def test_a_model_without_a_clock_records_no_split():
    task = CopyMemory(length=3, train_size=8, validation_size=4, test_size=4)
    data = task.make_data(0)
    model = build_model(task, data, LSTMCell, 3)
    model.cell_clock = None
    rng = np.random.default_rng(0)
    result = train(model, data, model.init_params(rng), TrainingConfig(batch_size=4, steps=2),
                   rng)
    assert result.cell_seconds == [] and len(result.step_seconds) == 2
    run = SimpleNamespace(training=result)
    assert cell_ms(run) is None and overhead_ms(run) is None and overhead_share(run) is None


def test_the_cells_of_an_encoder_decoder_share_one_clock():
    task = Reverse(length=3, train_size=8, validation_size=4, test_size=4)
    model = build_model(task, task.make_data(0), GRUCell, 3)
    assert isinstance(model.cell_clock, CellClock)
    assert model.encoder.clock is model.decoder.clock is model.cell_clock


def test_old_records_without_the_split_give_blank_metrics():
    result = TrainingResult(params={}, steps_done=1, total_steps=1, train_seconds=0.1,
                            step_seconds=[0.1])
    run = SimpleNamespace(training=result)
    assert overhead_ms(run) is None
