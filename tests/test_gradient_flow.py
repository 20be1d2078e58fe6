"""Gradient flow, spectral radius, memory and time-to-target metrics (plugins/metrics/...)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from rnnbench import Split, Task, TaskData, Topology, mse, param
from rnnbench.cell import CellConfig
from rnnbench.initialisation import initialise
from rnnbench.model import READOUT_BIAS, READOUT_WEIGHT, EncoderDecoderModel, SequenceModel
from rnnbench.plugins.cells.reference import GRUCell, LSTMCell, RNNCell
from rnnbench.plugins.metrics import gradient_flow as gf
from rnnbench.plugins.metrics import memory
from rnnbench.plugins.tasks.many_to_many import CopyMemory
from rnnbench.plugins.tasks.many_to_one import AddingProblem
from rnnbench.records import RunSpec, TrainingConfig
from rnnbench.runner import execute_run


@dataclass
class RunningSum(Task):
    """Many-to-many regression (readout on every step): the running sum of the first input."""

    name = "running_sum"
    topology = Topology.MANY_TO_MANY
    readout = "all"
    description = "test task"

    length: int = param(5, "steps")

    def make_data(self, seed: int) -> TaskData:
        rng = np.random.default_rng(seed)
        splits = []
        for _ in range(3):
            inputs = rng.uniform(-1, 1, (self.length, 6, 2))
            splits.append(Split(inputs, np.cumsum(inputs[..., :1], axis=0), targets_axis=1))
        return TaskData(*splits, input_size=2, output_size=1)

    def loss(self, predictions, targets):
        return mse(predictions, targets)


def make_model(cell_class, task, data, hidden=4, layers=1, seed=0, dtype="float64"):
    cell = cell_class(CellConfig(data.input_size, hidden, num_layers=layers, dtype=dtype))
    model = SequenceModel(cell, task, data.output_size)
    params = model.init_params(np.random.default_rng(seed))
    return model, params


def finite_difference_gradients(model, params, batch, eps=1e-6, positions=None):
    """d(N * loss)/dh_t for every step t, by central differences: a hand-unrolled forward with
    ``cell.step`` that adds a perturbation to the top layer's h right after step t. With
    ``positions``, the loss is the task's at those steps only and the result is keyed by the lag
    from the first of them (steps up to it)."""
    cell, task = model.cell, model.task
    cell_params = {k: v for k, v in params.items() if not k.startswith("readout.")}
    steps, count = batch.inputs.shape[:2]
    hidden = cell.config.hidden_size

    def loss(t_star, delta):
        state = cell.initial_state(count)
        outputs = []
        for t in range(steps):
            out, state = cell.step(cell_params, batch.inputs[t], state)
            if t == t_star:
                h = state[0].copy()
                h[-1] += delta
                state = (h, *state[1:])
                out = h[-1]
            outputs.append(out)
        outputs = np.stack(outputs)
        seen = outputs[-1] if task.readout == "last" else outputs
        targets = batch.targets
        if positions is not None:
            seen, targets = seen[positions], targets[positions]
        value, _ = task.loss(seen @ params[READOUT_WEIGHT].T + params[READOUT_BIAS], targets)
        return value * count

    origin = steps - 1 if positions is None else positions[0]
    grads = {}
    for t in range(origin + 1):
        g = np.zeros((count, hidden))
        for n in range(count):
            for j in range(hidden):
                delta = np.zeros((count, hidden))
                delta[n, j] = eps
                g[n, j] = (loss(t, delta) - loss(t, -delta)) / (2 * eps)
        grads[origin - t] = g
    return grads


# --- The profile against a direct computation -----------------------------------------------------


@pytest.mark.parametrize(
    ("cell_class", "task", "layers"),
    [
        (RNNCell, AddingProblem(length=6, train_size=4, validation_size=3, test_size=4), 1),
        (LSTMCell, AddingProblem(length=6, train_size=4, validation_size=3, test_size=4), 2),
        (GRUCell, RunningSum(length=6), 1),
        (LSTMCell, RunningSum(length=6), 2),
    ],
    ids=["rnn-last", "lstm2-last", "gru-all", "lstm2-all"],
)
def test_state_gradients_match_finite_differences(cell_class, task, layers):
    data = task.make_data(0)
    model, params = make_model(cell_class, task, data, layers=layers)
    batch = data.validation.batch(np.arange(3))
    lags = list(range(6))
    ours = gf.state_gradients(model, params, batch, lags)
    theirs = finite_difference_gradients(model, params, batch)
    for lag in lags:
        scale = np.abs(theirs[lag]).max()
        assert scale > 0
        np.testing.assert_allclose(ours[lag], theirs[lag], rtol=1e-6, atol=1e-8 * scale,
                                   err_msg=f"lag {lag}")
    norms = gf.gradient_by_lag(model, params, batch, lags)
    expected = [float(np.mean(np.linalg.norm(theirs[lag], axis=1))) for lag in lags]
    np.testing.assert_allclose(norms, expected, rtol=1e-6)


@dataclass
class LateLoss(RunningSum):
    """RunningSum whose loss that matters sits at steps 3 and 5 (of 7): a task narrowing the
    gradient profile with ``gradient_positions``."""

    length: int = param(7, "steps")

    def gradient_positions(self, steps):
        return [5, 3]  # any order: the profile sorts them


@pytest.mark.parametrize(("cell_class", "layers"), [(RNNCell, 1), (LSTMCell, 2), (GRUCell, 1)])
def test_profile_from_the_tasks_positions_matches_finite_differences(cell_class, layers):
    """Only the loss at the declared steps is differentiated, lags count back from the first."""
    task = LateLoss()
    data = task.make_data(0)
    model, params = make_model(cell_class, task, data, layers=layers)
    batch = data.validation.batch(np.arange(3))
    assert gf.origin_step(task, 7) == 3
    lags = [0, 1, 2, 3]
    ours = gf.state_gradients(model, params, batch, lags)
    theirs = finite_difference_gradients(model, params, batch, positions=[3, 5])
    assert sorted(theirs) == lags
    for lag in lags:
        scale = np.abs(theirs[lag]).max()
        assert scale > 0
        np.testing.assert_allclose(ours[lag], theirs[lag], rtol=1e-6, atol=1e-8 * scale,
                                   err_msg=f"lag {lag}")
    with pytest.raises(ValueError, match="lags must lie in"):
        gf.state_gradients(model, params, batch, [4])


def test_gradient_positions_outside_the_sequence_are_an_error():
    class Outside(RunningSum):
        def gradient_positions(self, steps):
            return [steps]

    with pytest.raises(ValueError, match="gradient_positions"):
        gf.origin_step(Outside(), 5)
    # A "last" readout already has one loss position: its declaration is not consulted.
    assert gf.origin_step(AddingProblem(), 9) == 8


def copy_memory_profile(task, cell_class=RNNCell, hidden=32):
    data = task.make_data(0)
    model, params = make_model(cell_class, task, data, hidden=hidden)
    steps = data.validation.inputs.shape[0]
    lags = gf.probe_lags(gf.origin_step(task, steps) + 1)
    return lags, gf.gradient_by_lag(model, params, data.validation, lags)


def test_memoryless_copy_memory_profile_decays_from_the_recall_positions():
    """The literature's measurement: the recall's loss, by lag back from the first recall step.
    An untrained (memoryless) plain RNN's profile then vanishes, where the whole loss (each
    step's own blank term included) reads a flat profile, decay about 1."""
    task = CopyMemory(length=30, train_size=4, validation_size=32, test_size=4)
    lags, norms = copy_memory_profile(task)
    assert lags[-1] == 30 + 10  # back to the first symbol to remember
    assert gf.fit_decay(lags, norms) < 0.8
    assert gf.lag_ratio(norms) < 1e-4

    class WholeLoss(CopyMemory):
        def gradient_positions(self, steps):
            return None

    whole = WholeLoss(length=30, train_size=4, validation_size=32, test_size=4)
    whole_lags, whole_norms = copy_memory_profile(whole)
    assert whole_lags[-1] == 30 + 2 * 10 - 1
    assert gf.fit_decay(whole_lags, whole_norms) == pytest.approx(1.0, abs=0.05)


def test_chunked_backward_equals_separate_suffix_runs():
    """The chained chunks give what running each suffix on its own from the true state gives."""
    task = AddingProblem(length=20, train_size=4, validation_size=5, test_size=4)
    data = task.make_data(1)
    model, params = make_model(LSTMCell, task, data, hidden=6, layers=2)
    batch = data.validation
    cell = model.cell
    cell_params = {k: v for k, v in params.items() if not k.startswith("readout.")}
    lags = gf.probe_lags(20)
    ours = gf.state_gradients(model, params, batch, lags)
    whole = cell.forward(cell_params, batch.inputs, cell.initial_state(5))
    d_seen = 2.0 * (whole.outputs[-1] @ params[READOUT_WEIGHT].T + params[READOUT_BIAS]
                    - batch.targets) @ params[READOUT_WEIGHT]
    for lag in lags[1:]:
        t = 19 - lag
        prefix = cell.forward(cell_params, batch.inputs[: t + 1], cell.initial_state(5))
        suffix = cell.forward(cell_params, batch.inputs[t + 1 :], prefix.final_state)
        d_outputs = np.zeros_like(suffix.outputs)
        d_outputs[-1] = d_seen
        back = cell.backward(cell_params, suffix.cache, d_outputs)
        np.testing.assert_allclose(ours[lag], back.d_initial_state[0][-1], rtol=1e-10,
                                   atol=1e-14)


def test_numba_cpu_gives_the_reference_profile():
    numba_cpu = pytest.importorskip("rnnbench.plugins.cells.numba_cpu")
    task = AddingProblem(length=12, train_size=4, validation_size=4, test_size=4)
    data = task.make_data(0)
    model, params = make_model(LSTMCell, task, data, hidden=5)
    fast = SequenceModel(numba_cpu.NumbaLSTMCell(model.cell.config), task, 1)
    lags = gf.probe_lags(12)
    np.testing.assert_allclose(gf.gradient_by_lag(fast, params, data.validation, lags),
                               gf.gradient_by_lag(model, params, data.validation, lags),
                               rtol=1e-10)


def test_profile_only_for_the_plain_one_cell_model():
    """``single_cell`` (public) decides: a subclass may wire the cell differently, and an
    encoder-decoder has two cells; neither gets a profile."""

    class Rewired(SequenceModel):
        pass

    task = AddingProblem(length=6, train_size=4, validation_size=4, test_size=4)
    data = task.make_data(0)
    model, _ = make_model(GRUCell, task, data)
    cell = model.cell
    decoder = EncoderDecoderModel(cell, GRUCell(cell.config), task, data.output_size)
    for candidate, expected in [
        (model, True),
        (Rewired(cell, task, data.output_size), False),
        (decoder, False),
    ]:
        assert candidate.single_cell is expected
        run = SimpleNamespace(model=candidate, task=task, data=data)
        assert gf.applies(run) is expected


def test_cell_params_are_the_cells_own():
    task = AddingProblem(length=6, train_size=4, validation_size=4, test_size=4)
    data = task.make_data(0)
    model, params = make_model(LSTMCell, task, data, layers=2)
    cell_params = model.cell_params(params)
    assert list(cell_params) == list(model.cell.param_shapes)
    for name, value in cell_params.items():
        np.testing.assert_array_equal(value, params[name])


# --- Lags and the fitted decay ------------------------------------------------------------------


def test_probe_lags():
    assert gf.probe_lags(1) == [0]
    assert gf.probe_lags(6) == [0, 1, 2, 3, 4, 5]
    assert gf.probe_lags(9) == list(range(9))
    assert gf.probe_lags(50) == [*range(9), 16, 32, 49]
    assert gf.probe_lags(65) == [*range(9), 16, 32, 64]
    many = gf.probe_lags(10**9)
    assert len(many) == gf.MAX_LAGS and many[-1] == 10**9 - 1
    assert many == sorted(set(many))


@pytest.mark.parametrize("rate", [0.3, 0.97, 1.0, 1.8])
def test_fit_decay_recovers_a_geometric_rate(rate):
    lags = gf.probe_lags(60)
    norms = [2.5 * rate**lag for lag in lags]
    assert gf.fit_decay(lags, norms) == pytest.approx(rate, rel=1e-12)
    assert gf.lag_ratio(norms) == pytest.approx(rate ** lags[-1], rel=1e-9)


def test_fit_decay_needs_two_finite_positive_points():
    assert gf.fit_decay([], []) is None
    assert gf.fit_decay([0], [1.0]) is None
    assert gf.fit_decay([0, 1, 2], [1.0, None, 0.0]) is None
    assert gf.fit_decay([0, 1, 2], [1.0, math.inf, 0.5]) == pytest.approx(math.sqrt(0.5))
    assert gf.lag_ratio([1.0]) is None
    assert gf.lag_ratio([0.0, 1.0]) is None
    assert gf.lag_ratio([1.0, None]) is None


@pytest.mark.parametrize(("radius", "vanishes"), [(0.5, True), (3.0, False)])
def test_spectral_radius_decides_vanishing_or_exploding(radius, vanishes):
    task = AddingProblem(length=30, train_size=4, validation_size=32, test_size=4)
    data = task.make_data(0)
    model, params = make_model(RNNCell, task, data, hidden=16)
    initialise(params, "orthogonal", radius, np.random.default_rng(1))
    lags = gf.probe_lags(30)
    decay = gf.fit_decay(lags, gf.gradient_by_lag(model, params, data.validation, lags))
    assert (decay < 1) if vanishes else (decay > 1)
    assert decay < 0.6 if vanishes else decay > 1.2


def test_exploding_profile_records_none_not_inf():
    task = AddingProblem(length=400, train_size=4, validation_size=4, test_size=4)
    data = task.make_data(0)
    model, params = make_model(RNNCell, task, data, hidden=16, dtype="float32")
    initialise(params, "orthogonal", 6.0, np.random.default_rng(1))
    lags = gf.probe_lags(400)
    norms = gf.gradient_by_lag(model, params, data.validation, lags)
    assert norms[0] is not None and norms[-1] is None
    assert all(n is None or math.isfinite(n) for n in norms)
    assert gf.lag_ratio(norms) is None
    assert gf.fit_decay(lags, norms) > 1


# --- Spectral radius ----------------------------------------------------------------------------


@pytest.mark.parametrize("cell_class", [RNNCell, LSTMCell, GRUCell])
def test_spectral_radius_metric(cell_class):
    task = AddingProblem(length=5)
    data = TaskData(None, None, None, input_size=2, output_size=1)
    _, params = make_model(cell_class, task, data, hidden=8, layers=2)
    initialise(params, "orthogonal", None, np.random.default_rng(0))
    run = SimpleNamespace(initial_params=params, training=SimpleNamespace(params=params))
    assert gf.spectral_radius_init(run) == pytest.approx(1.0, abs=1e-9)
    initialise(params, "pytorch", 1.7, np.random.default_rng(0))
    assert gf.spectral_radius_trained(run) == pytest.approx(1.7, abs=1e-9)
    params["weight_hh_l1"][0, 0] = np.nan
    assert gf.spectral_radius_trained(run) is None
    assert gf.max_spectral_radius({"readout.weight": np.eye(2)}) is None
    prefixed = {"encoder.weight_hh_l0": 2 * np.eye(3), "decoder.weight_hh_l0": np.eye(3)}
    assert gf.max_spectral_radius(prefixed) == pytest.approx(2.0)


# --- Peak memory --------------------------------------------------------------------------------


def test_peak_memory_is_positive_and_grows_with_batch_size():
    task = AddingProblem(length=20, train_size=64, validation_size=4, test_size=4)
    data = task.make_data(0)
    model, params = make_model(LSTMCell, task, data, hidden=16)

    def peak(batch_size):
        run = SimpleNamespace(spec=SimpleNamespace(training=SimpleNamespace(batch_size=batch_size)),
                              data=data, model=model, initial_params=params)
        return memory.peak_memory_mb(run)

    small, large = peak(8), peak(64)
    assert 0 < small < large
    assert large > 4 * small  # the forward cache and temporaries scale with the batch


# --- Through the real runner ----------------------------------------------------------------------


def make_spec(host, cell="lstm", length=6, target_loss=None, steps=20):
    return RunSpec(
        cell=cell, backend="numpy", task="adding",
        task_params=(("length", length), ("test_size", 40), ("train_size", 80),
                     ("validation_size", 40)),
        hidden_size=8, num_layers=1, bias=True, dtype="float64", seed=0,
        training=TrainingConfig(optimizer="adam", lr=0.01, batch_size=20, steps=steps,
                                eval_every=10, target_loss=target_loss),
        metrics=tuple(sorted(host.registry.metrics)), suite="test",
    )


NEW = ("grad_lags", "grad_norm_by_lag_init", "grad_norm_by_lag_trained", "grad_decay_init",
       "grad_decay_trained", "grad_ratio_init", "grad_ratio_trained", "spectral_radius_init",
       "spectral_radius_trained", "peak_memory_mb", "steps_to_target", "seconds_to_target")


def test_metrics_through_the_runner(host):
    entries = host.registry.metrics
    assert set(NEW) <= set(entries)
    assert entries["seconds_to_target"].timing and entries["peak_memory_mb"].timing
    assert not any(entries[name].timing for name in (*NEW[:-3], "steps_to_target"))

    record, outcome = execute_run(make_spec(host, length=12, target_loss=10.0), host)
    assert record.status == "ok", record.error
    metrics = record.metrics
    assert not [m for m in NEW if isinstance(metrics[m], str)], metrics
    assert metrics["grad_lags"] == [*range(9), 11]
    for which in ("init", "trained"):
        norms = metrics[f"grad_norm_by_lag_{which}"]
        assert isinstance(norms, list) and len(norms) == 10
        assert all(isinstance(n, float) and n > 0 for n in norms)
        assert 0 < metrics[f"grad_decay_{which}"] < 10
        assert metrics[f"grad_ratio_{which}"] == pytest.approx(norms[-1] / norms[0])
    assert metrics["spectral_radius_init"] > 0 and metrics["spectral_radius_trained"] > 0
    assert metrics["spectral_radius_init"] != metrics["spectral_radius_trained"]
    assert metrics["peak_memory_mb"] > 0
    # The initial model (step 0) already has a loss below 10: reached at step 0, and training
    # goes on to the first evaluation after an update, where it stops.
    assert metrics["steps_to_target"] == 0 and metrics["seconds_to_target"] == 0.0
    assert metrics["steps"] == 10 and metrics["stopped_early"] is True
    initial, first = record.curve[0]["val_loss"], record.curve[1]["val_loss"]
    assert first < initial
    between, _ = execute_run(make_spec(host, length=12, target_loss=(initial + first) / 2), host)
    assert between.metrics["steps_to_target"] == 10  # the first evaluation after step 0
    assert between.metrics["seconds_to_target"] > 0

    # Sequences of one step have no profile.
    one_step = dataclasses.replace(outcome.data, validation=Split(
        outcome.data.validation.inputs[:1], outcome.data.validation.targets))
    short = dataclasses.replace(outcome, data=one_step, extras={})
    assert gf.grad_lags(short) is None and gf.grad_decay_init(short) is None


def test_no_target_and_diverged_runs(host):
    record, _ = execute_run(make_spec(host, steps=10), host)
    assert record.metrics["steps_to_target"] is None
    assert record.metrics["seconds_to_target"] is None

    record, _ = execute_run(make_spec(host, cell="toy_nan"), host)
    assert record.status == "diverged"
    metrics = record.metrics
    assert not [m for m in NEW if isinstance(metrics[m], str)], metrics
    assert metrics["grad_norm_by_lag_trained"] is None
    assert metrics["grad_decay_trained"] is None and metrics["grad_ratio_trained"] is None
    assert metrics["grad_lags"] == [0, 1, 2, 3, 4, 5]
    assert metrics["grad_norm_by_lag_init"] == [None] * 6
    assert metrics["grad_decay_init"] is None


def test_copy_memory_metrics_through_the_runner(host):
    spec = dataclasses.replace(
        make_spec(host, cell="rnn", steps=10), task="copy_memory",
        task_params=(("length", 12), ("recall", 3), ("symbols", 4), ("test_size", 40),
                     ("train_size", 40), ("validation_size", 40)),
    )
    record, _ = execute_run(spec, host)
    assert record.status == "ok", record.error
    metrics = record.metrics
    assert metrics["grad_lags"] == [*range(9), 15]  # the first recall step is at 12 + 3
    assert metrics["grad_decay_init"] < 1
    assert 0 <= metrics["recall_accuracy"] <= 1
    assert metrics["recall_accuracy"] < metrics["test_accuracy"]  # blanks are easy
    assert metrics["solved"] is False
