"""rnnbench.testing, the test kit for plugin authors: every check can fail, and says why.

Each broken cell here wraps a correct one (the registered numpy ``rnn``, through the Cell
protocol only) and makes one mistake; the check made for that mistake must fail, naming what
differed, and the checks it has nothing to do with must still pass.
"""

from __future__ import annotations

import numpy as np
import pytest

from rnnbench import CellConfig, CellSupport, SolvedCriterion, Split, Task, TaskData, mse
from rnnbench.cell import ForwardResult
from rnnbench.cli import main
from rnnbench.errors import RnnbenchError
from rnnbench.plugin_manager import build_host
from rnnbench.plugins.tasks.many_to_many import CopyMemory
from rnnbench.plugins.tasks.many_to_one import AddingProblem
from rnnbench.plugins.tasks.one_to_one import Blobs
from rnnbench.runner import RunOutcome
from rnnbench.testing import (
    CELL_CHECK_NAMES,
    FD_TOL,
    CheckFailed,
    cell_checks,
    check_cell,
    check_metric,
    check_task,
    make_case,
    max_relative_error,
    metric_value_problem,
    small_outcome,
    task_checks,
)
from rnnbench.testing.cells import _shares_memory

HOST = build_host()
RNN = HOST.registry.cells[("rnn", "numpy")].factory
OWN = [n for n in CELL_CHECK_NAMES if n not in ("same_init_as_reference", "matches_reference")]


class Wrapped:
    """A cell that forwards every protocol call to a correct numpy rnn."""

    def __init__(self, config: CellConfig) -> None:
        self.inner = RNN(config)
        self.config = config
        self.state_size = self.inner.state_size

    def init_params(self, rng):
        return self.inner.init_params(rng)

    def to_backend(self, array):
        return self.inner.to_backend(array)

    def to_host(self, array):
        return self.inner.to_host(array)

    def initial_state(self, batch_size):
        return self.inner.initial_state(batch_size)

    def forward(self, params, x, initial_state):
        return self.inner.forward(params, x, initial_state)

    def backward(self, params, cache, d_outputs, d_final_state=None):
        return self.inner.backward(params, cache, d_outputs, d_final_state)

    def step(self, params, x_t, state):
        return self.inner.step(params, x_t, state)


class ScaledGradient(Wrapped):
    def backward(self, params, cache, d_outputs, d_final_state=None):
        back = super().backward(params, cache, d_outputs, d_final_state)
        back.param_grads["weight_hh_l0"] = back.param_grads["weight_hh_l0"] * 1.001
        return back


class ForgetsFirstOutputGradient(Wrapped):
    """A plausible off-by-one: the first step's output gradient never enters."""

    def backward(self, params, cache, d_outputs, d_final_state=None):
        d_outputs = d_outputs.copy()
        d_outputs[0] = 0.0
        return super().backward(params, cache, d_outputs, d_final_state)


class StepDrifts(Wrapped):
    def step(self, params, x_t, state):
        output, new_state = super().step(params, x_t, state)
        return output * (1 + 1e-6), new_state


class ZeroesItsArgument(Wrapped):
    def backward(self, params, cache, d_outputs, d_final_state=None):
        back = super().backward(params, cache, d_outputs, d_final_state)
        d_outputs[...] = 0.0
        return back


class ConsumesItsCache(Wrapped):
    """Backward scales a cached array in place: a second backward gives other gradients."""

    def forward(self, params, x, initial_state):
        result = super().forward(params, x, initial_state)
        return ForwardResult(result.outputs, result.final_state, [result.cache, 1.0])

    def backward(self, params, cache, d_outputs, d_final_state=None):
        back = super().backward(params, cache[0], d_outputs, d_final_state)
        back.d_inputs = back.d_inputs * cache[1]
        cache[1] *= 2.0
        return back


class SharedBiasGradient(Wrapped):
    def backward(self, params, cache, d_outputs, d_final_state=None):
        back = super().backward(params, cache, d_outputs, d_final_state)
        if "bias_ih_l0" in back.param_grads:
            back.param_grads["bias_hh_l0"] = back.param_grads["bias_ih_l0"]
        return back


class NoneIsNotZero(Wrapped):
    def backward(self, params, cache, d_outputs, d_final_state=None):
        if d_final_state is None:  # ones, not zeros
            d_final_state = (np.ones((self.config.num_layers, *d_outputs.shape[1:]),
                                     self.config.dtype),)
        return super().backward(params, cache, d_outputs, d_final_state)


class SqueezesOneSequence(Wrapped):
    """A ``squeeze()`` bug: with one sequence, the batch axis of the outputs disappears."""

    def forward(self, params, x, initial_state):
        result = super().forward(params, x, initial_state)
        if x.shape[1] == 1:
            result.outputs = result.outputs.squeeze(1)
        return result


class Float32Drifts(Wrapped):
    """Computes float32 outputs with a 1e-3 error (say, a float16 accumulation)."""

    def _drift(self, array):
        return array * np.float32(1.001) if self.config.dtype == "float32" else array

    def forward(self, params, x, initial_state):
        result = super().forward(params, x, initial_state)
        result.outputs = self._drift(result.outputs)
        return result

    def step(self, params, x_t, state):
        output, new_state = super().step(params, x_t, state)
        return self._drift(output), new_state


class OtherInit(Wrapped):
    def init_params(self, rng):
        rng.standard_normal(3)  # draws something else first
        return super().init_params(rng)


class IgnoresTheGenerator(Wrapped):
    def init_params(self, rng):
        return super().init_params(np.random.default_rng(0))


class BoolStateSize(Wrapped):
    def __init__(self, config):
        super().__init__(config)
        self.state_size = True


class Drifts(Wrapped):
    """A reference that differs in the last digits that float64 checks see."""

    def forward(self, params, x, initial_state):
        result = super().forward(params, x, initial_state)
        result.outputs = result.outputs * (1 + 1e-7)
        return result


def failed(report) -> set[str]:
    return {result.name for result in report.failures}


# --- every cell check can fail -----------------------------------------------------------------


def test_a_correct_cell_passes_every_check():
    report = check_cell(Wrapped, reference=RNN)
    assert report.passed, report
    assert [r.name for r in report.results] == list(CELL_CHECK_NAMES)
    assert all(r.status == "passed" and r.message for r in report.results)


@pytest.mark.parametrize(
    ("cell", "expected", "message"),
    [
        (ScaledGradient, {"gradients", "edge_shapes"}, "weight_hh_l0"),
        (ForgetsFirstOutputGradient, {"gradients", "edge_shapes"}, "relative error"),
        (StepDrifts, {"step_matches_forward", "edge_shapes"}, "step after step differs from "
                                                              "forward in outputs"),
        (ZeroesItsArgument, {"arguments_unchanged", "zero_final_state_gradient"},
         "backward modified its argument d_outputs"),
        (ConsumesItsCache, {"arguments_unchanged"}, "a second backward from the same cache"),
        (SharedBiasGradient, {"no_aliasing"}, "gradient 'bias_ih_l0' and gradient 'bias_hh_l0' "
                                              "share memory"),
        (NoneIsNotZero, {"zero_final_state_gradient"}, "with d_final_state=None differs"),
        (SqueezesOneSequence, {"edge_shapes"}, "forward's outputs has shape (1, 1), expected "
                                                "(1, 1, 1)"),
        (Float32Drifts, {"float32_matches_float64"}, "outputs in float32 differs from float64"),
        (IgnoresTheGenerator, {"protocol"}, "the same parameters for different generator"),
        (BoolStateSize, {"protocol"}, "state_size is True; it must be a positive integer"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_each_mistake_fails_its_check_and_says_what_differed(cell, expected, message):
    report = check_cell(cell, checks=OWN, layers=[1, 2])
    assert failed(report) == expected, report
    assert message in report[sorted(expected)[0]].message, report


def test_the_reference_checks_fail_for_another_init_and_other_numbers():
    report = check_cell(OtherInit, reference=RNN)
    assert failed(report) == {"same_init_as_reference"}, report
    assert "init_params()['weight_ih_l0'] differs" in report["same_init_as_reference"].message
    report = check_cell(Wrapped, reference=Drifts, dtypes=["float64"])
    assert failed(report) == {"matches_reference"}, report
    assert "outputs differs from the reference Drifts by 1e-07" in \
        report["matches_reference"].message


def test_the_gradient_check_catches_one_wrong_element():
    case = make_case(HOST.registry.cells[("lstm", "numpy")].factory, (3, 2, 2, 2), num_layers=2,
                     seed=7)
    analytic, numeric = case.analytic(), case.numeric()
    assert max_relative_error(analytic, numeric)[0] < FD_TOL

    def scaled(grads):
        grads["weight_hh_l1"] = grads["weight_hh_l1"].copy()
        grads["weight_hh_l1"][3, 1] *= 1 + 1e-4

    def flipped(grads):
        grads["x"] = grads["x"].copy()
        grads["x"][2, 0, 1] *= -1

    def dropped(grads):
        grads["state[1]"] = np.zeros_like(grads["state[1]"])

    for corrupt, where in ((scaled, "weight_hh_l1[3, 1]"), (flipped, "x[2, 0, 1]"),
                           (dropped, "state[1]")):
        corrupted = dict(analytic)
        corrupt(corrupted)
        error, found = max_relative_error(corrupted, numeric)
        assert error >= FD_TOL and found.startswith(where), (corrupt, found)


def test_finite_differences_on_some_elements_only():
    case = make_case(RNN, (3, 2, 2, 3), num_layers=2)
    numeric = case.numeric(elements=2, seed=1)
    assert all(np.count_nonzero(~np.isnan(g)) == min(2, g.size) for g in numeric.values())
    assert max_relative_error(case.analytic(), numeric)[0] < FD_TOL


# --- what is tried, and the report --------------------------------------------------------------


def test_declared_support_bounds_what_is_tried(data_dir):
    host = build_host(plugins=[str(data_dir / "broken_cells.py")])
    report = check_cell(("lin", "numpy"), host=host)  # registered with max_layers=1
    assert report.passed, report
    assert "layers 1; bias on, off" in report["shapes_and_dtypes"].message
    assert report["matches_reference"].status == "skipped"
    with pytest.raises(RnnbenchError, match="supports 1 to 1 layers; asked for"):
        check_cell(("lin", "numpy"), layers=[2], host=host)


def test_an_undeclared_limit_is_explained():
    class OneLayer(Wrapped):
        def __init__(self, config):
            if config.num_layers > 1:
                raise ValueError("one layer only")
            super().__init__(config)

    report = check_cell(OneLayer, checks=["protocol"])
    assert "raised ValueError: one layer only" in report["protocol"].message
    assert "supports=rnnbench.CellSupport(" in report["protocol"].message
    assert check_cell(OneLayer, supports=CellSupport(max_layers=1)).passed


def test_a_float32_only_cell_skips_finite_differences():
    report = check_cell(Wrapped, supports=CellSupport(dtypes=("float32",)))
    assert report.passed, report
    assert report["gradients"].status == "skipped"
    assert "finite differences need float64" in report["gradients"].message
    assert report["float32_matches_float64"].status == "skipped"


def test_unknown_names_are_explained():
    with pytest.raises(RnnbenchError, match="no cell 'lsmt' is registered; did you mean 'lstm'"):
        check_cell(("lsmt", "numpy"), host=HOST)
    with pytest.raises(RnnbenchError, match=r"no backend 'numpyy'; did you mean 'numpy'\?"):
        check_cell(("lstm", "numpyy"), host=HOST)
    with pytest.raises(ValueError, match="no cell check 'gradient'; did you mean 'gradients'"):
        check_cell(RNN, checks=["gradient"])
    with pytest.raises(RnnbenchError, match="reference='numpy' names a backend"):
        check_cell(RNN, reference="numpy")
    with pytest.raises(RnnbenchError, match="unknown dtype 'float16'; use one of float32"):
        check_cell(RNN, dtypes=["float16"])


def test_report_raises_naming_every_failure():
    report = check_cell(ScaledGradient, checks=["protocol", "gradients", "edge_shapes"])
    assert not report.passed and report["protocol"].passed
    with pytest.raises(CheckFailed) as error:
        report.raise_on_failure()
    lines = str(error.value).splitlines()
    assert lines[0] == "ScaledGradient: 2 check(s) failed"
    assert lines[1].startswith("  gradients: ") and lines[2].startswith("  edge_shapes: ")
    with pytest.raises(KeyError, match="did you mean 'gradients'"):
        report["gradient"]
    assert "gradients                  failed" not in str(report)  # only the checks run
    assert "gradients    failed   " in str(report)


def test_cell_checks_are_named_for_pytest_and_skip_what_does_not_apply():
    checks = cell_checks(("rnn", "numpy"), reference=None, host=HOST)
    assert [c.__name__ for c in checks] == [f"rnn/numpy::{n}" for n in CELL_CHECK_NAMES]
    assert checks[0]().passed
    with pytest.raises(pytest.skip.Exception, match="no reference"):
        checks[-1]()
    broken = {c.name: c for c in cell_checks(ScaledGradient, checks=["gradients"])}
    with pytest.raises(CheckFailed, match=r"ScaledGradient::gradients: .*weight_hh_l0"):
        broken["gradients"]()


def test_aliasing_is_seen_through_the_array_interfaces():
    """Device arrays expose ``__cuda_array_interface__``; the kit compares their memory spans."""

    class Device:
        def __init__(self, array):
            self.array = array
            self.__cuda_array_interface__ = array.__array_interface__

    buffer = np.zeros(10)
    assert _shares_memory(Device(buffer[:6]), Device(buffer[4:]))
    assert not _shares_memory(Device(buffer[:5]), Device(buffer[5:]))
    assert _shares_memory(Device(buffer[::-1]), Device(buffer[9:]))
    assert not _shares_memory(Device(buffer), buffer.copy())  # device against host memory
    assert _shares_memory(buffer[::2], buffer[2:3]) and not _shares_memory(buffer[::2],
                                                                            buffer[1:2])


# --- tasks ---------------------------------------------------------------------------------------

SMALL = {"length": 6, "train_size": 40, "validation_size": 20, "test_size": 20}
COPY = {"length": 5, "recall": 2, "train_size": 40, "validation_size": 20, "test_size": 20}


class TypedInBaseline(AddingProblem):
    def baseline_loss(self, data):
        return 1 / 6


class UnseededData(AddingProblem):
    def make_data(self, seed):
        return super().make_data(int(np.random.default_rng().integers(1 << 30)))


class HalfGradient(AddingProblem):
    def loss(self, predictions, targets):
        value, gradient = mse(predictions, targets)
        return value, gradient / 2


class ShortTraining(AddingProblem):
    def make_data(self, seed):
        data = super().make_data(seed)
        data.train = data.train.batch(np.arange(len(data.train) - 1))
        return data


class OverOneAccuracy(Blobs):
    def accuracy(self, predictions, targets):
        return 2.0


class UnmeetableCriterion(AddingProblem):
    def solved_criterion(self, data):
        return SolvedCriterion("loss", "<", -1.0, "a threshold no loss reaches")


class UnknownQuantity(AddingProblem):
    def solved_criterion(self, data):
        return SolvedCriterion("recall_accuracy", ">=", 0.9, "a score the task does not give")


class NamesVaryScores(CopyMemory):
    def scores(self, predictions, targets):
        right = super().scores(predictions, targets)
        return right if right["recall_accuracy"] < 1 else {"other": 1.0}


class PositionsOutside(CopyMemory):
    def gradient_positions(self, steps):
        return [steps]


class WrongTargetAxis(AddingProblem):
    def make_data(self, seed):
        data = super().make_data(seed)
        data.test = Split(data.test.inputs, data.test.targets[None], 1)
        return data


def test_the_built_in_tasks_pass():
    report = check_task(AddingProblem, params=SMALL)
    assert report.passed, report
    assert report["feedback"].status == "skipped"


@pytest.mark.parametrize(
    ("task_class", "params", "check", "message"),
    [
        (TypedInBaseline, SMALL, "baseline", "compute it from the data"),
        (UnseededData, SMALL, "deterministic_by_seed", "gave another train.inputs"),
        (HalfGradient, SMALL, "loss", "finite differences give"),
        (ShortTraining, SMALL, "split_shapes", "train has 39 sequences; the parameter "
                                               "train_size is 40"),
        (OverOneAccuracy, {"train_size": 40, "validation_size": 20, "test_size": 20}, "accuracy",
         "accuracy is 2.0"),
        (WrongTargetAxis, SMALL, "split_shapes", "test.targets_axis is 1"),  # and loss
        (UnmeetableCriterion, SMALL, "task_aware", "the right answers do not solve"),
        (UnknownQuantity, SMALL, "task_aware", "which the task does not provide"),
        (NamesVaryScores, COPY, "task_aware", "scores names differ between calls"),
        (PositionsOutside, COPY, "task_aware", "gradient_positions(9)"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_each_task_mistake_fails_its_check(task_class, params, check, message):
    report = check_task(task_class, params=params)
    assert check in failed(report) and failed(report) <= {check, "loss"}, report
    assert message in report[check].message


def test_task_parameters_need_defaults_and_help():
    from dataclasses import dataclass, field

    @dataclass
    class Undocumented(AddingProblem):
        name = "undocumented"
        noise: float = field(default=0.0)

    report = check_task(Undocumented, params=SMALL, checks=["parameters"])
    assert "parameter 'noise' has no help text" in report["parameters"].message


def test_task_checks_by_name_for_pytest():
    checks = task_checks("adding", params=SMALL, host=HOST)
    assert checks[0].__name__ == "task adding::declaration"
    assert all(check().status in ("passed", "skipped") for check in checks[:-1])
    with pytest.raises(pytest.skip.Exception, match="not free-running"):
        checks[-1]()


def test_task_data_of_the_wrong_kind_is_explained():
    class NoData(AddingProblem):
        def make_data(self, seed):
            data = super().make_data(seed)
            return TaskData(data.train, data.validation, data.test, input_size=3, output_size=1)
    report = check_task(NoData, params=SMALL, checks=["split_shapes"])
    assert "expected (T, N, input_size=3)" in report["split_shapes"].message


# --- metrics -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outcome() -> RunOutcome:
    return small_outcome(host=HOST)


def test_small_outcome_is_a_finished_run(outcome):
    assert isinstance(outcome, RunOutcome)
    assert outcome.training.steps_done == 4 and outcome.training.curve
    assert outcome.spec.cell == "rnn" and outcome.spec.task == "adding"


def test_the_built_in_metrics_pass(outcome):
    for name, entry in HOST.registry.metrics.items():
        report = check_metric(entry.function, outcome, timing=entry.timing)
        assert report.passed, (name, report)


@pytest.mark.parametrize(
    ("function", "check", "message"),
    [
        (lambda run: "fine", "returns_metric_value", "str 'fine' is not a metric value"),
        (lambda run: [1.0, "x"], "returns_metric_value",
         "a list-valued metric holds numbers or None"),
        (lambda run: {"a": 1.0}, "returns_metric_value", "dict"),
        (lambda run: run.params["readout.bias"].__imul__(2.0).sum(), "leaves_outcome_unchanged",
         "modified the run's params"),
        (lambda run: run.training.curve.pop() and 1.0, "leaves_outcome_unchanged",
         "modified the run's curve"),
        (lambda run: float(np.random.default_rng().random()), "deterministic",
         "two calls on the same run gave"),
    ],
)
def test_each_metric_mistake_fails_its_check(function, check, message):
    report = check_metric(function, small_outcome(host=HOST))
    assert check in failed(report), report
    assert message in report[check].message


def test_metric_values():
    # Exactly what the runner stores: numpy values as numbers and lists, [lag, value] pairs too.
    for good in (None, True, 3, 0.5, np.float32(0.5), np.int64(2), [0.1, None, 2], (1.0,), [],
                 [[1.0, 2.0]], np.zeros(3)):
        assert metric_value_problem(good) is None, good
    for bad in ("x", {"a": 1}, [True], [[1.0, "x"]], ["x"]):
        assert metric_value_problem(bad) is not None, bad


def test_a_timing_metric_need_not_repeat(outcome):
    report = check_metric(lambda run: float(np.random.default_rng().random()), outcome,
                          timing=True)
    assert report.passed and report["deterministic"].status == "skipped"


# --- the command ---------------------------------------------------------------------------------


def test_check_cell_command_prints_every_check_and_exits_0(capsys):
    assert main(["check", "cell", "gru", "--backend", "numpy", "--reference", "numba-cpu",
                 "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    for name in CELL_CHECK_NAMES:
        assert name in out
    assert "gru/numpy" in out and "reference gru/numba-cpu" in out
    assert "all checks passed: 11 passed, 1 skipped, on gru/numpy" in out


def test_check_cell_command_names_failed_checks_and_exits_1(capsys, data_dir):
    plugin = str(data_dir / "broken_cells.py")
    assert main(["check", "cell", "lin_transposed_grad", "-p", plugin]) == 1
    captured = capsys.readouterr()
    # (at T = B = I = H = 1 a transposed gradient has the right shape)
    assert "failed lin_transposed_grad/numpy: shapes_and_dtypes, gradients\n" in captured.err
    assert "weight_ih_l0" in captured.out


def test_check_cell_command_every_backend(capsys):
    assert main(["check", "cell", "rnn", "--check", "protocol"]) == 0
    out = capsys.readouterr().out
    assert "rnn/numpy" in out and "rnn/numba-cpu" in out
    assert "rnn/numba-cuda: not checked, it cannot run here" in out or "rnn/numba-cuda\n" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "cell", "lsmt"], "no cell 'lsmt' is registered; did you mean 'lstm'?"),
        (["check", "cell", "lstm", "--backend", "numpyy"],
         "has no backend 'numpyy'; did you mean 'numpy'? (backends of 'lstm': numba-cpu, "
         "numba-cuda, numpy, torch, torch-cuda)"),
        (["check", "cell", "lstm", "--reference", "jax"], "has no backend 'jax'"),
        (["check", "task", "addng"], "no task 'addng' is registered; did you mean 'adding'?"),
    ],
)
def test_check_command_unknown_names_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_check_task_command(capsys):
    assert main(["check", "task", "echo"]) == 0
    out = capsys.readouterr().out
    assert "task echo" in out and "deterministic_by_seed" in out


def test_check_cell_command_when_no_backend_can_run(capsys, tmp_path):
    plugin = tmp_path / "gpu_only_cells.py"
    plugin.write_text(
        "from rnnbench import hookimpl\n"
        "from rnnbench.plugins.cells.reference import RNNCell\n\n\n"
        "@hookimpl\n"
        "def rnnbench_register_cells(register):\n"
        "    register('gpu_rnn', 'cuda', RNNCell, available=lambda: 'no GPU in this test')\n"
    )
    assert main(["check", "cell", "gpu_rnn", "-p", str(plugin)]) == 2
    assert "no backend of cell 'gpu_rnn' can run here (cuda: no GPU in this test)" in \
        capsys.readouterr().err


class UnseededSample(AddingProblem):
    def sample(self, n, rng, seed):
        return self._split(np.random.default_rng(), n)


class ShortSample(AddingProblem):
    def sample(self, n, rng, seed):
        return self._split(rng, n - 1)


class OnlineWithoutSample(TypedInBaseline):
    online = True
    sample = Task.sample


@pytest.mark.parametrize(
    ("task_class", "message"),
    [
        (UnseededSample, "the same generator state gave other sequences"),
        (ShortSample, "sample(5, rng, seed).inputs has shape (6, 4, 2); the training split's "
                      "layout gives (6, 5, 2)"),
        (OnlineWithoutSample, "online is set but sample() is not implemented"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_each_sample_mistake_fails_the_sample_check(task_class, message):
    report = check_task(task_class, params=SMALL, checks=["sample"])
    assert failed(report) == {"sample"}, report
    assert message in report["sample"].message


def test_sample_check_skips_tasks_without_online_data():
    report = check_task("forecast", params={"series_length": 200}, checks=["sample"])
    assert report["sample"].status == "skipped"
