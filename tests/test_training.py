"""Model (readout + loss) gradients, losses, optimizers, clipping and the training loop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from rnnbench import CellConfig, Split, Task, TaskData, Topology, cross_entropy, mse, param
from rnnbench.model import SequenceModel
from rnnbench.plugins.tasks.many_to_one import AddingProblem
from rnnbench.records import TrainingConfig
from rnnbench.training import SGD, Adam, clip_by_global_norm, global_norm, resolve_schedule, train


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
    assert "non-finite loss at step 0 (the initial model" in result.divergence
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
