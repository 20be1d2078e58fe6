"""Model (readout + loss) gradients, losses, optimizers, clipping and the training loop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from rnnbench import CellConfig, Split, Task, TaskData, Topology, cross_entropy, mse, param
from rnnbench.model import SequenceModel
from rnnbench.plugins.tasks.many_to_one import AddingProblem
from rnnbench.records import TrainingConfig
from rnnbench.training import (
    SGD,
    Adam,
    RMSprop,
    check_schedule,
    clip_by_global_norm,
    global_norm,
    learning_rate,
    make_optimizer,
    resolve_schedule,
    train,
)


@dataclass
class ToyLabels(Task):
    """Aligned classification: the class of each step is the sign pattern of the input."""

    name = "toy_labels"
    topology = Topology.MANY_TO_MANY
    readout = "all"
    length: int = param(4, "steps")

    def make_data(self, seed):
        rng = np.random.default_rng(seed)

        def split(n):
            x = rng.normal(size=(self.length, n, 2))
            labels = (x[..., 0] > 0).astype(int) + 2 * (x[..., 1] > 0)
            return Split(x, labels, targets_axis=1)

        return TaskData(split(64), split(16), split(16), input_size=2, output_size=4)

    def loss(self, predictions, targets):
        return cross_entropy(predictions, targets)

    def baseline_loss(self, data):
        return float(np.log(4))


def numeric_grads(model, params, batch, eps=1e-6):
    grads = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            saved = value[index]
            value[index] = saved + eps
            plus, _ = model.loss_and_grads(params, batch)
            value[index] = saved - eps
            minus, _ = model.loss_and_grads(params, batch)
            value[index] = saved
            grad[index] = (plus - minus) / (2 * eps)
        grads[name] = grad
    return grads


def relative_error(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-8)))


@pytest.mark.parametrize("cell_name", ["toy", "rnn", "lstm", "gru"])
@pytest.mark.parametrize("task", [AddingProblem(length=5, train_size=8), ToyLabels()])
def test_model_gradients_match_finite_differences(host, cell_name, task):
    data = task.make_data(0)
    factory = host.registry.cells[(cell_name, "numpy")].factory
    cell = factory(CellConfig(data.input_size, 3, dtype="float64"))
    model = SequenceModel(cell, task, data.output_size)
    params = model.init_params(np.random.default_rng(1))
    batch = data.train.batch(np.arange(4))
    _, analytic = model.loss_and_grads(params, batch)
    numeric = numeric_grads(model, params, batch)
    assert set(analytic) == set(params)
    for name in params:
        assert analytic[name].shape == params[name].shape
        assert relative_error(analytic[name], numeric[name]) < 1e-6, name


def test_mse_and_cross_entropy_gradients():
    rng = np.random.default_rng(0)
    predictions, targets = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    loss, grad = mse(predictions, targets)
    assert loss == pytest.approx(np.mean((predictions - targets) ** 2))
    np.testing.assert_allclose(grad, 2 * (predictions - targets) / 15)
    logits, labels = rng.normal(size=(4, 6, 5)), rng.integers(0, 5, size=(4, 6))
    loss, grad = cross_entropy(logits, labels)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = -np.mean(np.log(np.take_along_axis(probs, labels[..., None], -1)))
    assert loss == pytest.approx(expected)
    eps = 1e-6
    bumped = logits.copy()
    bumped[1, 2, 3] += eps
    assert grad[1, 2, 3] == pytest.approx((cross_entropy(bumped, labels)[0] - loss) / eps, rel=1e-4)


def test_adam_first_step_moves_each_weight_by_lr():
    params = {"w": np.array([1.0, -2.0, 3.0])}
    Adam(lr=0.1).update(params, {"w": np.array([0.5, -4.0, 1e-3])})
    # Bias-corrected first Adam step is lr * sign(grad) (up to eps).
    np.testing.assert_allclose(params["w"], [0.9, -1.9, 2.9], rtol=1e-6)


def test_sgd_momentum_accumulates():
    params = {"w": np.array([0.0])}
    sgd = SGD(lr=1.0, momentum=0.5)
    sgd.update(params, {"w": np.array([1.0])})
    sgd.update(params, {"w": np.array([1.0])})
    np.testing.assert_allclose(params["w"], [-(1.0 + 1.5)])


def test_clip_by_global_norm():
    grads = {"a": np.array([3.0]), "b": np.array([4.0])}
    assert clip_by_global_norm(grads, 1.0) == pytest.approx(5.0)
    assert global_norm(grads) == pytest.approx(1.0)
    np.testing.assert_allclose(grads["a"], [0.6])
    unclipped = {"a": np.array([0.3])}
    clip_by_global_norm(unclipped, 1.0)
    np.testing.assert_allclose(unclipped["a"], [0.3])


def test_schedule_from_steps_or_epochs():
    assert resolve_schedule(TrainingConfig(batch_size=10, steps=35), 100) == (35, 10)
    assert resolve_schedule(TrainingConfig(batch_size=30, epochs=2), 100) == (8, 4)
    assert resolve_schedule(TrainingConfig(batch_size=10, steps=5, eval_every=50), 100) == (5, 5)


def test_training_learns_the_short_adding_problem(host):
    task = AddingProblem(length=6, train_size=1000, validation_size=200, test_size=200)
    data = task.make_data(0)
    cell = host.registry.cells[("lstm", "numpy")].factory(CellConfig(2, 16, dtype="float64"))
    model = SequenceModel(cell, task, 1)
    rng = np.random.default_rng(0)
    params = model.init_params(rng)
    config = TrainingConfig(optimizer="adam", lr=0.01, batch_size=50, steps=300, eval_every=100)
    result = train(model, data, params, config, rng)
    assert result.steps_done == 300 and not result.diverged
    assert [point["step"] for point in result.curve] == [0, 100, 200, 300]  # step 0: initial
    baseline = task.baseline_loss(data)
    assert 0.1 < baseline < 0.25  # the best constant's MSE is about 1/6
    assert model.evaluate(params, data.test).loss < 0.2 * baseline


def test_non_finite_loss_is_divergence_not_crash(host):
    task = AddingProblem(length=4, train_size=20)
    data = task.make_data(0)
    cell = host.registry.cells[("toy_nan", "numpy")].factory(CellConfig(2, 4, dtype="float64"))
    model = SequenceModel(cell, task, 1)
    rng = np.random.default_rng(0)
    result = train(model, data, model.init_params(rng), TrainingConfig(steps=10), rng)
    assert result.diverged and result.steps_done == 0
    assert "at step 0 (the initial model, before any update)" in result.divergence
    assert [point["step"] for point in result.curve] == [0]  # the initial point, recorded


def test_evaluation_callback_can_stop_early(host):
    task = AddingProblem(length=4, train_size=100)
    data = task.make_data(0)
    cell = host.registry.cells[("toy", "numpy")].factory(CellConfig(2, 4, dtype="float64"))
    model = SequenceModel(cell, task, 1)
    rng = np.random.default_rng(0)
    config = TrainingConfig(steps=50, batch_size=10, eval_every=5)
    result = train(model, data, model.init_params(rng), config, rng,
                   on_evaluation=lambda step, logs: step >= 10)
    assert result.stopped_early and result.steps_done == 10


# --- RMSprop, against torch.optim.RMSprop's update written out by hand ------------------------


def torch_rmsprop(param, grads, lr, alpha=0.99, eps=1e-8, momentum=0.0, centered=False):
    """torch.optim.RMSprop's single-tensor step (torch/optim/rmsprop.py), step by step."""
    param = np.array(param, dtype=np.float64)
    square_avg = np.zeros_like(param)
    grad_avg = np.zeros_like(param)
    buf = np.zeros_like(param)
    for grad in grads:
        square_avg = square_avg * alpha + (1 - alpha) * grad * grad  # mul_(alpha).addcmul_
        if centered:
            grad_avg = grad_avg + (1 - alpha) * (grad - grad_avg)  # lerp_(grad, 1 - alpha)
            avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps  # addcmul(-1).sqrt_().add_
        else:
            avg = np.sqrt(square_avg) + eps
        if momentum > 0:
            buf = buf * momentum + grad / avg  # mul_(momentum).addcdiv_(grad, avg)
            param = param - lr * buf  # add_(buf, alpha=-lr)
        else:
            param = param - lr * grad / avg  # addcdiv_(grad, avg, value=-lr)
    return param


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop_matches_pytorch_formulas(momentum, centered):
    rng = np.random.default_rng(3)
    start = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) * scale for scale in (1.0, 0.1, 5.0, 1e-3, 2.0)]
    params = {"w": start.copy()}
    optimizer = RMSprop(lr=0.01, momentum=momentum, centered=centered)
    for grad in grads:
        optimizer.update(params, {"w": grad.copy()})
    np.testing.assert_allclose(params["w"], torch_rmsprop(start, grads, 0.01, momentum=momentum,
                                                          centered=centered), rtol=1e-12)
    # The first step by hand: s = 0.01 g^2, so each weight moves by lr * g / (0.1 |g| + eps).
    first = {"w": start.copy()}
    RMSprop(lr=0.01).update(first, {"w": grads[0].copy()})
    expected = start - 0.01 * grads[0] / (np.sqrt(0.01 * grads[0] ** 2) + 1e-8)
    np.testing.assert_allclose(first["w"], expected, rtol=1e-12)
    np.testing.assert_allclose(np.abs(first["w"] - start), 0.1, atol=1e-6)  # lr/sqrt(1-alpha)


def test_make_optimizer_honours_momentum_for_rmsprop():
    optimizer = make_optimizer(TrainingConfig(optimizer="rmsprop", lr=0.5, momentum=0.3))
    assert isinstance(optimizer, RMSprop)
    assert (optimizer.lr, optimizer.alpha, optimizer.eps) == (0.5, 0.99, 1e-8)
    assert optimizer.momentum == 0.3 and optimizer.centered is False


def test_rmsprop_keeps_float32_parameters_float32():
    params = {"w": np.ones(3, dtype=np.float32)}
    RMSprop(lr=0.1).update(params, {"w": np.array([1.0, -2.0, 0.5], dtype=np.float32)})
    assert params["w"].dtype == np.float32


# --- learning-rate schedules -------------------------------------------------------------------


def rates(total, **settings):
    config = TrainingConfig(lr=1.0, steps=total, **settings)
    check_schedule(config, total)
    return [learning_rate(config, step, total) for step in range(1, total + 1)]


def test_constant_schedule_is_exactly_lr():
    config = TrainingConfig(lr=0.003, steps=5)
    assert [learning_rate(config, s, 5) for s in range(1, 6)] == [0.003] * 5


def test_warmup_rises_linearly_to_lr():
    assert rates(6, warmup_steps=4) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_step_schedule_decays_every_n_steps_after_warmup():
    got = rates(9, warmup_steps=2, schedule="step", decay_every=3, decay_rate=0.5)
    assert got == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25])


def test_cosine_schedule_anneals_from_lr_towards_zero():
    got = rates(6, warmup_steps=2, schedule="cosine")
    # after warm-up t = 0..3 of T = 4: (1 + cos(pi t / 4)) / 2
    expected = [0.5, 1.0] + [(1 + np.cos(np.pi * t / 4)) / 2 for t in range(4)]
    assert got == pytest.approx(expected)
    assert got[2] == 1.0 and 0 < got[-1] < got[-2]


def test_impossible_schedules_are_refused():
    with pytest.raises(ValueError, match="needs decay_every"):
        check_schedule(TrainingConfig(schedule="step", steps=5), 5)
    with pytest.raises(ValueError, match="warmup_steps \\(5\\) must be below the run's 5"):
        check_schedule(TrainingConfig(warmup_steps=5, steps=5), 5)


def test_learning_rate_in_use_is_logged_at_each_evaluation(host):
    task = AddingProblem(length=4, train_size=100)
    data = task.make_data(0)
    cell = host.registry.cells[("toy", "numpy")].factory(CellConfig(2, 4, dtype="float64"))
    model = SequenceModel(cell, task, 1)
    rng = np.random.default_rng(0)
    config = TrainingConfig(lr=0.1, steps=12, batch_size=10, eval_every=4, warmup_steps=4,
                            schedule="step", decay_every=4, decay_rate=0.5)
    result = train(model, data, model.init_params(rng), config, rng)
    assert [(p["step"], p["lr"]) for p in result.curve] == [
        (0, pytest.approx(0.025)), (4, 0.1), (8, 0.1), (12, 0.05)]


# --- the step-0 point, the gradient record ------------------------------------------------------


def toy_run(host, cell="toy", steps=20, **settings):
    task = AddingProblem(length=4, train_size=100, validation_size=30)
    data = task.make_data(0)
    built = host.registry.cells[(cell, "numpy")].factory(CellConfig(2, 4, dtype="float64"))
    model = SequenceModel(built, task, 1)
    rng = np.random.default_rng(0)
    params = model.init_params(rng)
    initial = {name: value.copy() for name, value in params.items()}
    config = TrainingConfig(steps=steps, batch_size=10, eval_every=5, **settings)
    return model, data, initial, config, rng, params


def test_step_zero_is_the_initial_model_and_changes_no_numbers(host):
    model, data, initial, config, rng, params = toy_run(host)
    first_batch_rng = np.random.default_rng(0)
    model.init_params(first_batch_rng)  # the same draws as toy_run's
    first = data.train.batch(first_batch_rng.permutation(100)[:10])
    seen = []
    result = train(model, data, params, config, rng,
                   on_evaluation=lambda step, logs: seen.append(step) or True)
    point = result.curve[0]
    assert point["step"] == 0 and point["seconds"] == 0.0
    assert point["val_loss"] == model.evaluate(initial, data.validation).loss
    loss, grads = model.loss_and_grads(initial, first)
    assert point["train_loss"] == loss and point["grad_norm"] == global_norm(grads)
    # A stop asked at step 0 is not honoured: the run takes at least one step.
    assert seen == [0, 5] and result.steps_done == 5 and result.stopped_early


def test_target_met_at_step_zero_is_recorded_but_does_not_stop(host):
    model, data, _, config, rng, params = toy_run(host, target_loss=1e6)
    result = train(model, data, params, config, rng)
    assert result.reached_target_at == (0, 0.0)
    assert result.steps_done == 5 and result.stopped_early  # at the first evaluation after it


def test_per_step_gradient_norms_and_clipped_steps(host):
    model, data, _, config, rng, params = toy_run(host, clip=0.05, lr=0.01)
    result = train(model, data, params, config, rng)
    assert len(result.grad_norms) == result.steps_done == 20
    assert result.clipped_steps == sum(norm > 0.05 for norm in result.grad_norms) > 0
    # The curve's grad_norm is the mean of the record over each interval.
    assert result.curve[1]["grad_norm"] == pytest.approx(np.mean(result.grad_norms[:5]))
    assert result.curve[0]["grad_norm"] == pytest.approx(result.grad_norms[0])


# --- online data -------------------------------------------------------------------------------


def test_online_training_draws_fresh_batches_from_their_own_stream(host):
    model, data, _, config, rng, params = toy_run(host, data="online", steps=6)
    task = AddingProblem(length=4, train_size=100, validation_size=30)
    drawn = []
    stream = np.random.default_rng(7)

    def batches(n):
        drawn.append(task.sample(n, stream, 0))
        return drawn[-1]

    state = rng.bit_generator.state
    result = train(model, data, params, config, rng, batches=batches)
    assert result.steps_done == 6 and len(drawn) == 6  # one fresh batch per step
    assert rng.bit_generator.state == state  # no permutation drawn from the model's stream
    assert all(len(batch) == 10 for batch in drawn)
    assert not np.array_equal(drawn[0].inputs, drawn[1].inputs)
    again = np.random.default_rng(7)
    np.testing.assert_array_equal(task.sample(10, again, 0).inputs, drawn[0].inputs)
    with pytest.raises(ValueError, match="online' needs a source of fresh batches"):
        train(model, data, params, config, rng)
