"""The built-in tasks: the test kit's task checks (declaration, parameters, determinism by seed,
split shapes, baselines, loss and accuracy), content, learnability, and the encoder-decoder
model's gradients and free-running evaluation."""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
from types import SimpleNamespace

import numpy as np
import pytest

from rnnbench import Evaluation, SolvedCriterion, Split, TaskData
from rnnbench.cli import main
from rnnbench.model import EncoderDecoderModel, SequenceModel, build_model
from rnnbench.plugin_manager import build_host
from rnnbench.plugins.metrics import training as training_metrics
from rnnbench.plugins.tasks.encoder_decoder import END, Reverse, Sort
from rnnbench.plugins.tasks.many_to_many import CopyMemory, Echo, recall_accuracy
from rnnbench.plugins.tasks.many_to_one import AddingProblem, Forecast
from rnnbench.plugins.tasks.one_to_many import Sine
from rnnbench.plugins.tasks.one_to_one import Blobs
from rnnbench.records import TrainingConfig
from rnnbench.testing import check_task, task_checks
from rnnbench.training import train

HOST = build_host()
REGISTRY = HOST.registry
TASK_NAMES = sorted(REGISTRY.tasks)
BUILT_IN = {"adding", "blobs", "sine", "forecast", "copy_memory", "echo", "reverse", "sort"}


def splits(data: TaskData) -> dict[str, Split]:
    return {"train": data.train, "validation": data.validation, "test": data.test}


def tokens_of(one_hot: np.ndarray) -> np.ndarray:
    """Indices of one-hot rows, after checking they are one-hot."""
    assert np.all((one_hot == 0) | (one_hot == 1)) and np.all(one_hot.sum(-1) == 1)
    return one_hot.argmax(-1)


def default_of(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def arrays_of(data: TaskData) -> list[np.ndarray]:
    out = []
    for split in splits(data).values():
        out += [split.inputs, split.targets]
        if split.decoder_inputs is not None:
            out.append(split.decoder_inputs)
    return out


# -- every registered task ----------------------------------------------------------------------


def test_every_built_in_task_is_registered():
    assert BUILT_IN <= set(TASK_NAMES)
    assert not {name for name in REGISTRY.broken if name.endswith("_tasks")}


@pytest.mark.parametrize(
    "check", [check for name in TASK_NAMES for check in task_checks(name, host=HOST)]
)
def test_task_checks(check):
    check()


def test_task_checks_see_the_sunspots_as_fixed_data():
    """The shipped series does not depend on the seed; the kit is told so, and still checks
    that the baseline is computed from the data."""
    params = {"source": "sunspots"}
    assert not check_task("forecast", params=params, host=HOST).passed
    report = check_task("forecast", params=params, data_depend_on_seed=False, host=HOST)
    assert report.passed, report
    assert "other data" in report["baseline"].message


@pytest.mark.parametrize("name", TASK_NAMES)
def test_untrained_model_evaluates_to_a_finite_loss(name):
    task = REGISTRY.tasks[name].task_class()
    data = task.make_data(0)
    model = build_model(task, data, REGISTRY.cells[("rnn", "numpy")].factory, 4, dtype="float64")
    params = model.init_params(np.random.default_rng(0))
    evaluation = model.evaluate(params, data.validation)
    assert math.isfinite(evaluation.loss)
    classification = np.issubdtype(data.validation.targets.dtype, np.integer)
    assert (evaluation.accuracy is not None) == classification


def test_list_shows_every_task_with_topology_and_parameters(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in TASK_NAMES:
        entry = REGISTRY.tasks[name]
        assert name in out and str(entry.topology) in out
        for f in entry.task_class.parameters():
            assert f"{f.name}={default_of(f)!r}" in out, (name, f.name)


# -- content of each task ------------------------------------------------------------------------


def test_adding_target_is_the_marked_sum():
    task = AddingProblem(length=12)
    for split in splits(task.make_data(0)).values():
        values, markers = split.inputs[..., 0], split.inputs[..., 1]
        assert np.all(markers.sum(axis=0) == 2) and set(np.unique(markers)) == {0.0, 1.0}
        half = task.length // 2
        assert np.all(markers[:half].sum(axis=0) == 1) and np.all(markers[half:].sum(axis=0) == 1)
        np.testing.assert_array_equal(split.targets[:, 0], (values * markers).sum(axis=0))
        assert np.all((values >= 0) & (values < 1))


def test_blobs_points_cluster_by_class_and_baseline_is_about_ln_k():
    task = Blobs(classes=3, dims=4, spread=0.1, separation=5.0)
    data = task.make_data(0)
    points, labels = data.train.inputs[0], data.train.targets
    centres = np.stack([points[labels == k].mean(axis=0) for k in range(3)])
    assert np.all(np.abs(points - centres[labels]) < 0.6)  # within 6 spreads of the centre
    assert task.baseline_loss(data) == pytest.approx(math.log(3), rel=0.02)


@pytest.mark.parametrize("length", [1, 5, 30])
def test_copy_memory_follows_arjovsky_et_al(length):
    task = CopyMemory(length=length)
    data = task.make_data(0)
    assert data.input_size == 10 and data.output_size == 9
    for split in splits(data).values():
        steps = length + 20
        tokens = tokens_of(split.inputs)
        assert tokens.shape == split.targets.shape == (steps, len(split))
        symbols = tokens[:10]
        assert symbols.min() >= 1 and symbols.max() <= 8
        assert np.all(tokens[10 : 10 + length - 1] == 0)  # T - 1 blanks
        assert np.all(tokens[10 + length - 1] == 9)  # the delimiter
        assert np.all(tokens[length + 10 :] == 0)  # 10 more blanks
        assert np.all(split.targets[: length + 10] == 0)
        np.testing.assert_array_equal(split.targets[length + 10 :], symbols)
    formula = 10 * math.log(8) / (length + 20)
    assert task.baseline_loss(data) == pytest.approx(formula, rel=0.02)


def test_echo_targets_are_the_delayed_inputs():
    task = Echo(delay=4, symbols=5, length=11)
    data = task.make_data(0)
    for split in splits(data).values():
        symbols = tokens_of(split.inputs) + 1
        assert np.all(split.targets[:4] == 0)
        np.testing.assert_array_equal(split.targets[4:], symbols[:-4])
    assert task.baseline_loss(data) == pytest.approx(7 / 11 * math.log(5), rel=0.02)


@pytest.mark.parametrize("task_class", [Reverse, Sort])
def test_encoder_decoder_targets_and_teacher_forced_decoder_inputs(task_class):
    task = task_class(length=6, symbols=4)
    data = task.make_data(0)
    assert (data.input_size, data.output_size, data.decoder_input_size) == (4, 5, 6)
    for split in splits(data).values():
        symbols = tokens_of(split.inputs) + 1
        expected = symbols[::-1] if task_class is Reverse else np.sort(symbols, axis=0)
        assert split.targets.shape == (7, len(split)) and split.targets_axis == 1
        np.testing.assert_array_equal(split.targets[:6], expected)
        assert np.all(split.targets[6] == END)
        decoded = tokens_of(split.decoder_inputs)
        assert np.all(decoded[0] == task.start)
        np.testing.assert_array_equal(decoded[1:], split.targets[:-1])
    # Greedy feedback: the one-hot of the argmax.
    logits = np.array([[0.1, 2.0, 0.0, -1.0, 0.5], [3.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(task.feedback(logits, 1), np.eye(6)[[1, 0]])
    if task_class is Reverse:
        assert task.baseline_loss(data) == pytest.approx(6 / 7 * math.log(4), rel=0.02)


def test_sine_targets_follow_the_formula_and_inputs_hold_the_previous_true_sample():
    task = Sine(length=9, min_frequency=0.5, max_frequency=2.5, min_phase=0.1, max_phase=0.4)
    data = task.make_data(0)
    for split in splits(data).values():
        x, y = split.inputs, split.targets[..., 0]
        frequency = x[0, :, 0]
        phase = np.arctan2(x[0, :, 1], x[0, :, 2]) / (2 * np.pi)
        assert np.all((frequency >= 0.5) & (frequency <= 2.5))
        assert np.all((phase >= 0.1 - 1e-12) & (phase <= 0.4 + 1e-12))
        t = np.arange(9)[:, None]
        np.testing.assert_allclose(y, np.sin(2 * np.pi * (frequency * t / 9 + phase)), atol=1e-12)
        assert np.all(x[0, :, 3] == 0) and np.all(x[1:, :, :3] == 0)
        np.testing.assert_array_equal(x[1:, :, 3], y[:-1])
    predictions = np.array([[0.25], [-0.5]])
    np.testing.assert_array_equal(task.feedback(predictions, 3), [[0, 0, 0, 0.25], [0, 0, 0, -0.5]])
    constant = data.train.targets.mean()
    assert task.baseline_loss(data) == pytest.approx(np.mean((data.test.targets - constant) ** 2))


def expected_windows(series: np.ndarray, start: int, stop: int, window: int) -> np.ndarray:
    return np.stack([series[i - window : i + 1] for i in range(start + window, stop)], axis=1)


def test_forecast_windows_are_chronological_relative_changes():
    task = Forecast(series_length=300, window=7)
    data = task.make_data(5)
    series = task.series(5)
    segments = task.segments(series.size)
    assert segments[0][0] == 0 and segments[-1][1] == 300
    assert [s[1] for s in segments[:-1]] == [s[0] for s in segments[1:]]  # back to back
    for (start, stop), split in zip(segments, splits(data).values(), strict=True):
        points = expected_windows(series, start, stop, 7)  # (8, windows), in time order
        assert len(split) == stop - start - 7
        relative = points / points[6] - 1.0
        np.testing.assert_allclose(split.inputs[..., 0], relative[:7], rtol=0, atol=1e-14)
        np.testing.assert_allclose(split.targets[:, 0], relative[7], rtol=0, atol=1e-14)
        assert np.all(split.inputs[-1] == 0)  # the last value, relative to itself
    # No leakage: every point a test window reads comes after every training target.
    (_, train_stop), _, (test_start, _) = segments
    assert test_start >= train_stop
    # The naive last-value forecast predicts a relative change of 0.
    naive, _ = task.loss(np.zeros_like(data.test.targets), data.test.targets)
    assert task.baseline_loss(data) == pytest.approx(naive)
    assert task.baseline_loss(data) == pytest.approx(np.mean(data.test.targets**2))


def test_forecast_sunspots_load_from_the_shipped_csv():
    text = (
        importlib.resources.files("rnnbench.plugins.tasks")
        .joinpath("data", "sunspots.csv")
        .read_text()
    )
    assert text.splitlines()[0] == '"YEAR","SUNACTIVITY"'
    task = Forecast(source="sunspots")
    series = task.series(0)
    assert series.size == 309 and series[0] == 5.0 and series[-1] == 2.9
    assert series.min() == 0.0  # counts: some years have none
    data = task.make_data(0)
    for a, b in zip(arrays_of(data), arrays_of(task.make_data(1)), strict=True):
        np.testing.assert_array_equal(a, b)  # a fixed series: the seed does not change it
    # Zeros rule out ratios: differences from the last value, in training-difference units.
    (start, stop), _, (test_start, test_stop) = task.segments(309)
    scale = np.std(np.diff(series[start:stop]))
    points = expected_windows(series, test_start, test_stop, task.window)
    np.testing.assert_allclose(data.test.targets[:, 0], (points[-1] - points[-2]) / scale)
    assert task.baseline_loss(data) == pytest.approx(np.mean(data.test.targets**2))
    with pytest.raises(ValueError, match="strictly positive"):
        Forecast(source="sunspots", normalisation="ratio").make_data(0)


def test_forecast_from_a_csv_path(tmp_path):
    path = tmp_path / "prices.csv"
    closes = 50 + np.arange(120) % 7
    path.write_text("# a comment line\ndate,close,volume\n" + "".join(
        f"2024-01-{i:03d},{c},{1000 + i}\n" for i, c in enumerate(closes)
    ))
    task = Forecast(source=str(path), column="close", window=5)
    data = task.make_data(0)
    np.testing.assert_array_equal(task.series(0), closes)
    first = closes[:6]
    np.testing.assert_allclose(data.train.targets[0, 0], first[5] / first[4] - 1)
    assert Forecast(source=str(path), window=5).series(0)[0] == 1000  # '' = last column
    with pytest.raises(ValueError) as error:
        Forecast(source=str(path), column="price")
    message = str(error.value)
    assert str(path) in message and "'price'" in message and "date, close, volume" in message
    with pytest.raises(ValueError, match=r"missing\.csv"):
        Forecast(source=str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="fewer than window"):
        Forecast(source=str(path), column="close", window=30)


@pytest.mark.parametrize(
    ("task_class", "params", "message"),
    [
        (CopyMemory, {"length": 0}, "length"),
        (Echo, {"delay": 5, "length": 5}, "length must exceed delay"),
        (Reverse, {"symbols": 0}, "symbols"),
        (Sine, {"min_frequency": 3.0, "max_frequency": 1.0}, "min_frequency"),
        (Blobs, {"classes": 1}, "classes"),
        (Forecast, {"normalisation": "log"}, "normalisation"),
        (Forecast, {"test_fraction": 0.5, "validation_fraction": 0.5}, "leave something"),
        (Blobs, {"test_size": 0}, "test_size"),
    ],
)
def test_invalid_parameters_are_rejected_clearly(task_class, params, message):
    with pytest.raises(ValueError, match=message):
        task_class(**params)


# -- learning -------------------------------------------------------------------------------------

#: An easy setting of every built-in task: (task, cell, hidden size, training steps, lr).
EASY = {
    "adding": (AddingProblem(length=6, train_size=1000, validation_size=100, test_size=300),
               "lstm", 16, 300, 0.01),
    "blobs": (Blobs(separation=5.0, train_size=500, validation_size=100, test_size=300),
              "rnn", 8, 150, 0.02),
    "sine": (Sine(length=8, max_frequency=2.0, train_size=500, validation_size=100,
                  test_size=200), "lstm", 16, 300, 0.01),
    "forecast": (Forecast(series_length=800, window=8, volatility=0.002, seasonal_amplitude=0.3,
                          seasonal_period=10), "lstm", 16, 300, 0.01),
    "copy_memory": (CopyMemory(length=3, symbols=3, recall=3, train_size=1000,
                               validation_size=100, test_size=300), "lstm", 24, 400, 0.02),
    "echo": (Echo(delay=2, symbols=3, length=8, train_size=1000, validation_size=100,
                  test_size=300), "lstm", 16, 300, 0.02),
    "reverse": (Reverse(length=3, symbols=3, train_size=1000, validation_size=100,
                        test_size=300), "lstm", 24, 400, 0.02),
    "sort": (Sort(length=3, symbols=3, train_size=1000, validation_size=100, test_size=300),
             "lstm", 24, 400, 0.02),
}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_training_beats_the_baseline_on_an_easy_setting(name):
    task, cell, hidden, steps, lr = EASY[name]
    data = task.make_data(0)
    factory = REGISTRY.cells[(cell, "numpy")].factory
    model = build_model(task, data, factory, hidden, dtype="float64")
    rng = np.random.default_rng(0)
    params = model.init_params(rng)
    config = TrainingConfig(optimizer="adam", lr=lr, batch_size=32, steps=steps, eval_every=steps)
    result = train(model, data, params, config, rng)
    assert not result.diverged
    baseline = task.baseline_loss(data)
    test_loss = model.evaluate(params, data.test).loss
    assert test_loss < 0.5 * baseline, (test_loss, baseline)


# -- the encoder-decoder model -------------------------------------------------------------------


def numeric_grads(model, params, batch, eps=1e-3):
    """Central differences with the 4-point stencil: truncation error O(eps^4), so a large eps
    keeps the rounding error (about 1e-16 / eps) small too."""

    def loss_at(name, index, value):
        saved = params[name][index]
        params[name][index] = value
        loss, _ = model.loss_and_grads(params, batch)
        params[name][index] = saved
        return loss

    grads = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            x = value[index]
            grad[index] = (
                -loss_at(name, index, x + 2 * eps) + 8 * loss_at(name, index, x + eps)
                - 8 * loss_at(name, index, x - eps) + loss_at(name, index, x - 2 * eps)
            ) / (12 * eps)
        grads[name] = grad
    return grads


def relative_error(a, b):
    """Worst element-wise relative error; below 1e-6 in size an entry is compared absolutely
    (an exactly-zero gradient, e.g. the end token's decoder-input column, never fed in training,
    has finite differences of about 1e-13)."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-6)))


@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
def test_encoder_decoder_gradients_match_finite_differences(cell_name):
    task = Reverse(length=3, symbols=2, train_size=4)
    data = task.make_data(0)
    factory = REGISTRY.cells[(cell_name, "numpy")].factory
    model = build_model(task, data, factory, 3, dtype="float64")
    assert isinstance(model, EncoderDecoderModel)
    params = model.init_params(np.random.default_rng(1))
    batch = data.train
    _, analytic = model.loss_and_grads(params, batch)
    numeric = numeric_grads(model, params, batch)
    assert set(analytic) == set(params)
    assert {name.split(".")[0] for name in params} == {"encoder", "decoder", "readout"}
    for name in params:
        assert analytic[name].shape == params[name].shape
        assert relative_error(analytic[name], numeric[name]) < 1e-6, name
    # The hand-over carries gradient into the encoder.
    assert max(np.abs(g).max() for n, g in analytic.items() if n.startswith("encoder.")) > 1e-6


@pytest.mark.parametrize("task", [Sine(length=6, train_size=8), Reverse(length=4, train_size=8)])
def test_free_running_evaluation_feeds_back_the_models_own_outputs(task, monkeypatch):
    data = task.make_data(0)
    model = build_model(task, data, REGISTRY.cells[("lstm", "numpy")].factory, 5,
                        dtype="float64")
    params = model.init_params(np.random.default_rng(0))
    split = data.train
    if isinstance(model, SequenceModel):
        teacher_forced = model.predict(params, split.inputs)
        teacher_inputs = split.inputs
    else:
        teacher_forced = model.predict(params, split)
        teacher_inputs = split.decoder_inputs
    free = model.evaluation_predictions(params, split)
    assert free.shape == teacher_forced.shape
    np.testing.assert_allclose(free[0], teacher_forced[0], rtol=1e-12, atol=1e-12)
    assert not np.allclose(free[1:], teacher_forced[1:])
    # The evaluated loss is the free-running one.
    expected, _ = task.loss(free, split.targets)
    assert model.evaluate(params, split).loss == pytest.approx(expected, rel=1e-12)
    # Feeding back the true previous outputs instead turns it into the teacher-forced pass.
    monkeypatch.setattr(task, "feedback", lambda predictions, step: teacher_inputs[step])
    np.testing.assert_allclose(
        model.evaluation_predictions(params, split), teacher_forced, rtol=1e-10, atol=1e-12
    )



# -- task-aware evaluation: scores, solved criteria -----------------------------------------------


def test_copy_memory_recall_accuracy_counts_the_recall_positions_only():
    """The memoryless strategy (blanks, then one guess) scores about 1/symbols on the recall
    positions while the all-positions accuracy, counting the blanks, reads about 0.93 at T=100."""
    task = CopyMemory(length=100, train_size=10, validation_size=10, test_size=1000)
    test = task.make_data(0).test
    steps = task.steps
    memoryless = np.zeros((steps, len(test), task.symbols + 1))
    memoryless[: steps - task.recall, :, 0] = 1.0  # blank where the target is always blank
    memoryless[steps - task.recall :, :, 1] = 1.0  # the same symbol at every recall position
    scores = task.scores(memoryless, test.targets)
    assert set(scores) == {"recall_accuracy"}
    assert scores["recall_accuracy"] == pytest.approx(1 / task.symbols, abs=0.01)
    assert task.accuracy(memoryless, test.targets) == pytest.approx(
        (100 + 10 + 10 / 8) / 120, abs=0.01)
    perfect = np.eye(task.symbols + 1)[test.targets] * 10.0
    assert task.scores(perfect, test.targets) == {"recall_accuracy": 1.0}


def test_evaluation_carries_the_tasks_scores_over_chunks(monkeypatch):
    """A split evaluated in several chunks gets each score weighted by the chunk's size."""
    monkeypatch.setattr("rnnbench.model.EVAL_CHUNK", 7)
    task = CopyMemory(length=4, train_size=10, validation_size=10, test_size=30)
    data = task.make_data(0)
    model = build_model(task, data, REGISTRY.cells[("rnn", "numpy")].factory, 8,
                        dtype="float64")
    params = model.init_params(np.random.default_rng(0))
    evaluation = model.evaluate(params, data.test)
    whole = task.scores(model.evaluation_predictions(params, data.test), data.test.targets)
    assert evaluation.scores == pytest.approx(whole)
    assert Blobs().scores(np.zeros((4, 3)), np.zeros(4, dtype=int)) == {}  # the default


def oracle_and_constant(task, data):
    """Test-split predictions that are right everywhere, and all-zero ones (no information)."""
    targets = data.test.targets
    if np.issubdtype(targets.dtype, np.integer):
        right = np.eye(data.output_size)[targets] * 30.0
    else:
        right = targets.astype(np.float64)
    return right, np.zeros_like(right)


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_task_says_when_it_is_solved(name):
    """A documented criterion (with its source) that right answers meet and predictions that
    carry no information do not."""
    task = REGISTRY.tasks[name].task_class()
    data = task.make_data(0)
    criterion = task.solved_criterion(data)
    assert criterion is not None and len(criterion.source) > 20
    baseline = task.baseline_loss(data)
    verdicts = []
    for predictions in oracle_and_constant(task, data):
        loss, _ = task.loss(predictions, data.test.targets)
        value = criterion.value(loss, task.accuracy(predictions, data.test.targets),
                                task.scores(predictions, data.test.targets), baseline)
        assert value is not None
        verdicts.append(criterion.holds(value))
    assert verdicts == [True, False], (criterion, verdicts)


def test_solved_criterion_thresholds_and_verdicts():
    adding = AddingProblem().solved_criterion(AddingProblem(train_size=5, validation_size=5,
                                                            test_size=5).make_data(0))
    assert (adding.quantity, adding.comparison, adding.threshold) == ("loss", "<", 0.01)
    assert "Hochreiter" in adding.source and str(adding) == "loss < 0.01"
    assert adding.holds(0.009) is True and adding.holds(0.01) is False
    assert adding.holds(math.nan) is False  # a NaN loss has solved nothing
    assert adding.holds(None) is None
    copy = CopyMemory().solved_criterion(None)
    assert (copy.quantity, copy.comparison, copy.threshold) == ("recall_accuracy", ">=", 0.99)
    assert copy.value(0.1, 0.9, {}, 1.0) is None  # no score: no verdict
    forecast = Forecast().solved_criterion(None)
    assert forecast.value(0.5, None, {}, 2.0) == 0.25 and forecast.holds(0.999)
    assert forecast.value(0.5, None, {}, 0.0) is None
    blobs = Blobs()
    data = blobs.make_data(0)
    assert 0.5 < blobs.nearest_mean_accuracy(data) <= 1.0
    assert blobs.solved_criterion(data).threshold == pytest.approx(
        blobs.nearest_mean_accuracy(data) - 0.02)
    with pytest.raises(ValueError, match="comparison"):
        SolvedCriterion("loss", "=", 0.1)
    with pytest.raises(ValueError, match="finite"):
        SolvedCriterion("loss", "<", math.inf)


def fake_run(task, data, loss, accuracy=None, scores=None, diverged=False):
    return SimpleNamespace(
        task=task, data=data, baseline_loss=task.baseline_loss(data),
        training=SimpleNamespace(diverged=diverged),
        test=Evaluation(loss=loss, accuracy=accuracy, scores=scores or {}),
    )


def test_solved_and_recall_accuracy_metrics():
    copy = CopyMemory(length=5, train_size=20, validation_size=5, test_size=20)
    data = copy.make_data(0)
    run = fake_run(copy, data, 0.01, 0.999, {"recall_accuracy": 0.995})
    assert training_metrics.solved(run) is True and recall_accuracy(run) == 0.995
    run = fake_run(copy, data, 0.3, 0.93, {"recall_accuracy": 0.125})
    assert training_metrics.solved(run) is False and recall_accuracy(run) == 0.125
    diverged = fake_run(copy, data, math.nan, None, {"recall_accuracy": 1.0}, diverged=True)
    assert training_metrics.solved(diverged) is False and recall_accuracy(diverged) is None
    adding = AddingProblem(length=5, train_size=20, validation_size=5, test_size=20)
    assert recall_accuracy(fake_run(adding, adding.make_data(0), 0.001)) is None

    class Undefined(AddingProblem):
        def solved_criterion(self, data):
            return super(AddingProblem, self).solved_criterion(data)  # Task's: None

    undefined = Undefined(length=5, train_size=20, validation_size=5, test_size=20)
    assert training_metrics.solved(fake_run(undefined, undefined.make_data(0), 0.0)) is None
    entries = REGISTRY.metrics
    assert entries["solved"].better == "higher" and entries["recall_accuracy"].better == "higher"
    assert "1/symbols" in entries["recall_accuracy"].description
