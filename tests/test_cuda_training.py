"""Training resident on the device (numba-cuda): parameters, optimizer state, readout, loss and
clipping stay on the GPU; the host sees the batch go over and two small arrays come back per
step (the loss, the gradient norms). See rnnbench.device_ops and plugins/cells/cuda_training.

The GPU tests need ``numba.cuda``: a GPU, or the simulator (``NUMBA_ENABLE_CUDASIM=1``, as
``tox -e cuda-sim`` sets it); the simulator is slow, so every model here is tiny. The choice of
ops (host fallback for non-standard losses) is tested everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from rnnbench import cross_entropy, mse
from rnnbench.device_ops import HOST_OPS, ArrayOps, choose_training_ops
from rnnbench.model import build_model
from rnnbench.plugin_manager import build_host
from rnnbench.plugins.cells import numba_cuda
from rnnbench.plugins.tasks.encoder_decoder import Reverse
from rnnbench.plugins.tasks.many_to_many import CopyMemory
from rnnbench.plugins.tasks.many_to_one import AddingProblem
from rnnbench.records import TrainingConfig
from rnnbench.training import train

HOST = build_host()
REASON = numba_cuda.unavailable_reason()
needs_cuda = pytest.mark.skipif(
    REASON is not None, reason=f"numba-cuda cells cannot run here: {REASON}"
)
#: float32 agreement with the host path: the simulator computes each step in numpy, a GPU with
#: its own float32 exp/tanh (a few ulps apart, compounded over three steps).
TOLERANCE = 2e-5 if REASON is None and numba_cuda.on_simulator() else 1e-4


pytestmark = pytest.mark.usefixtures("fast_simulator_threads")


@dataclass
class HuberAdding(AddingProblem):
    """The adding problem with a loss no device implements: must train on the host."""

    name = "huber_adding"
    standard_loss = None

    def loss(self, predictions, targets):
        diff = predictions - targets.astype(predictions.dtype)
        small = np.abs(diff) <= 1.0
        value = np.where(small, 0.5 * diff**2, np.abs(diff) - 0.5)
        return float(np.mean(value)), np.where(small, diff, np.sign(diff)) / diff.size


@dataclass
class ForgetfulHuber(AddingProblem):
    """Overrides loss() but forgets to restate standard_loss (inherits 'mse')."""

    name = "forgetful_huber"
    loss = HuberAdding.loss


def tiny(task_name: str):
    if task_name == "adding":
        return AddingProblem(length=4, train_size=8, validation_size=3, test_size=2)
    if task_name == "huber":
        return HuberAdding(length=3, train_size=4, validation_size=2, test_size=2)
    if task_name == "copy_memory":
        return CopyMemory(length=2, recall=2, symbols=3, train_size=8, validation_size=2,
                          test_size=2)
    return Reverse(length=2, symbols=3, train_size=8, validation_size=2, test_size=2)


def train_tiny(backend: str, task, kind: str, config: TrainingConfig,
               ops: ArrayOps | None = None, layers: int = 1, dtype: str = "float32",
               batches=None):
    data = task.make_data(0)
    model = build_model(task, data, HOST.registry.cells[(kind, backend)].factory, 5,
                        num_layers=layers, dtype=dtype)
    if ops is not None:
        model.training_ops = lambda: (ops, "forced")
    rng = np.random.default_rng(1)
    params = model.init_params(rng)
    return train(model, data, params, config, rng, batches=batches), model


# --- everywhere ------------------------------------------------------------------------------


class FakeOps(ArrayOps):
    name = "fake device"


class OfferingCell:
    def training_ops(self):
        return FakeOps()


class OtherOps(ArrayOps):
    name = "other"


class OtherCell:
    def training_ops(self):
        return OtherOps()


def test_ops_are_chosen_from_the_cells_and_the_tasks_loss():
    adding, huber = tiny("adding"), tiny("huber")
    assert choose_training_ops(adding, [object()]) == (HOST_OPS, "host")
    ops, placement = choose_training_ops(adding, [OfferingCell(), OfferingCell()])
    assert isinstance(ops, FakeOps) and placement == "fake device"
    ops, placement = choose_training_ops(huber, [OfferingCell()])
    assert ops is HOST_OPS
    assert "fallback" in placement and "huber_adding" in placement and "standard_loss" in placement
    # A subclass that overrides loss() but only inherits standard_loss may compute another loss.
    forgetful = ForgetfulHuber(length=3, train_size=4, validation_size=2, test_size=2)
    ops, placement = choose_training_ops(forgetful, [OfferingCell()])
    assert ops is HOST_OPS
    assert "ForgetfulHuber overrides loss() but inherits standard_loss = 'mse'" in placement
    ops, placement = choose_training_ops(adding, [OfferingCell(), OtherCell()])
    assert ops is HOST_OPS and "different" in placement
    assert choose_training_ops(adding, [OfferingCell(), object()])[0] is HOST_OPS


def test_built_in_tasks_declare_the_loss_they_compute():
    """standard_loss must say what loss() computes, or a device would train on another loss."""
    rng = np.random.default_rng(0)
    for entry in HOST.registry.tasks.values():
        task_class = entry.task_class
        kind = getattr(task_class, "standard_loss", None)
        if kind is None:
            continue
        task = task_class()
        if kind == "mse":
            p, t = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
            expected = mse(p, t)
        else:
            p, t = rng.normal(size=(3, 4)), rng.integers(0, 4, size=3)
            expected = cross_entropy(p, t)
        found = task.loss(p, t)
        assert found[0] == expected[0], task_class.name
        np.testing.assert_array_equal(found[1], expected[1], err_msg=task_class.name)


@dataclass
class MislabelledAdding(HuberAdding):
    """Declares mse, computes Huber: the kit must catch it."""

    name = "mislabelled_adding"
    standard_loss = "mse"


def test_the_task_kit_holds_a_declared_standard_loss_to_its_word():
    from rnnbench.testing import check_task

    params = dict(length=3, train_size=4, validation_size=2, test_size=40)
    check_task(AddingProblem, params=params, checks=["loss"]).raise_on_failure()
    check_task(HuberAdding, params=params, checks=["loss"]).raise_on_failure()  # declares none
    report = check_task(MislabelledAdding, params=params, checks=["loss"])
    with pytest.raises(AssertionError, match="standard_loss is 'mse' but loss"):
        report.raise_on_failure()


def test_host_training_records_host_placement():
    config = TrainingConfig(optimizer="adam", lr=0.01, batch_size=4, steps=2)
    result, _ = train_tiny("numpy", tiny("adding"), "rnn", config)
    assert result.placement == "host"


# --- on a GPU or the simulator -----------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize(
    "task_name, kind, config, layers",
    [
        ("adding", "lstm", TrainingConfig(optimizer="adam", lr=0.05, batch_size=4, steps=3,
                                          clip=0.5), 1),
        ("copy_memory", "rnn", TrainingConfig(optimizer="rmsprop", lr=0.02, momentum=0.9,
                                              batch_size=4, steps=3, clip=0.3), 2),
        ("reverse", "gru", TrainingConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=4,
                                          steps=3), 1),
        ("adding", "gru", TrainingConfig(optimizer="sgd", lr=0.1, batch_size=4, steps=2,
                                         clip=0.1), 1),
    ],
    ids=["adding-lstm-adam-clip", "copy_memory-rnn2-rmsprop", "reverse-gru-sgd-momentum",
         "adding-gru-sgd-clip"],
)
def test_resident_training_matches_the_host_path(task_name, kind, config, layers):
    """MSE (last step) and cross-entropy (every step, and an encoder-decoder), each optimizer,
    with and without clipping and momentum, one and two layers: losses, gradient norms and
    parameters as the numpy cells' training on the host, within float32 rounding."""
    task = tiny(task_name)
    host, _ = train_tiny("numpy", task, kind, config, layers=layers)
    device, _ = train_tiny("numba-cuda", task, kind, config, layers=layers)
    assert host.placement == "host"
    assert device.placement.startswith("device (numba-cuda")
    assert device.steps_done == host.steps_done == config.steps
    for key in ("train_loss", "val_loss", "grad_norm"):
        np.testing.assert_allclose([c[key] for c in device.curve], [c[key] for c in host.curve],
                                   rtol=TOLERANCE, err_msg=key)
    np.testing.assert_allclose(device.grad_norms, host.grad_norms, rtol=TOLERANCE)
    assert device.params.keys() == host.params.keys()
    for name, value in host.params.items():
        assert isinstance(device.params[name], np.ndarray)  # copied back at the end
        np.testing.assert_allclose(device.params[name], value, atol=TOLERANCE, err_msg=name)


@needs_cuda
def test_a_task_with_its_own_loss_falls_back_to_the_host_and_says_so():
    config = TrainingConfig(optimizer="sgd", lr=0.1, batch_size=2, steps=1)
    result, _ = train_tiny("numba-cuda", tiny("huber"), "rnn", config)
    assert result.placement.startswith("host (fallback")
    assert result.steps_done == 1


class CopyCounter:
    """Every host<->device copy through numba.cuda: ``(direction, elements)`` in order."""

    def __init__(self, monkeypatch) -> None:
        from numba import cuda

        self.calls: list[tuple[str, int]] = []
        device_type = type(cuda.to_device(np.zeros(1)))
        to_device, to_host = cuda.to_device, device_type.copy_to_host
        copy_to_device = device_type.copy_to_device

        def counted_to_device(array, *args, **kwargs):
            self.calls.append(("to_device", int(np.size(array))))
            return to_device(array, *args, **kwargs)

        def counted_to_host(self_, *args, **kwargs):
            self.calls.append(("to_host", int(np.prod(self_.shape))))
            return to_host(self_, *args, **kwargs)

        def counted_copy_to_device(self_, array, *args, **kwargs):
            self.calls.append(("to_device", int(np.size(array))))
            return copy_to_device(self_, array, *args, **kwargs)

        monkeypatch.setattr(cuda, "to_device", counted_to_device)
        monkeypatch.setattr(device_type, "copy_to_host", counted_to_host)
        monkeypatch.setattr(device_type, "copy_to_device", counted_copy_to_device)

    def take(self) -> list[tuple[str, int]]:
        calls, self.calls = self.calls, []
        return calls


def copies_per_step(monkeypatch, ops_for_host: bool, data: str = "fixed"
                    ) -> tuple[list, int, int]:
    """The copies of steps 2 and 3 of a run (between evaluations: ``eval_every`` is far), by
    wrapping ``train_tiny``'s step; returns them with the parameter count and tensor count."""
    counter = CopyCounter(monkeypatch)
    task = tiny("adding")
    config = TrainingConfig(optimizer="adam", lr=0.01, batch_size=4, steps=4, clip=0.5,
                            eval_every=4, data=data)
    per_step: list[list[tuple[str, int]]] = []
    from rnnbench import training

    real = training.learning_rate

    def marking(config_, step, total):  # called once at the start of every step
        if step >= 2:
            per_step.append(counter.take())
        return real(config_, step, total)

    monkeypatch.setattr(training, "learning_rate", marking)
    batches = None
    if data == "online":
        from rnnbench.runner import online_batches

        batches = online_batches(task, task.make_data(0), 0, 1)
    result, _ = train_tiny("numba-cuda", task, "lstm", config,
                           ops=HOST_OPS if ops_for_host else None, batches=batches)
    n_params = sum(v.size for v in result.params.values())
    return per_step[1:3], n_params, len(result.params)  # the copies of steps 2 and 3


@needs_cuda
def test_a_resident_step_copies_the_batch_index_over_and_two_scalars_back(monkeypatch):
    steps, n_params, tensors = copies_per_step(monkeypatch, ops_for_host=False)
    for calls in steps:
        to_device = [n for way, n in calls if way == "to_device"]
        to_host = [n for way, n in calls if way == "to_host"]
        # The batch's 4 indices (the split went over once); no parameter goes over.
        assert to_device == [4], calls
        # The loss, and one squared norm per parameter tensor.
        assert to_host == [1, tensors], calls
        assert sum(to_host) < n_params / 10


@needs_cuda
def test_online_batches_go_over_whole_each_step(monkeypatch):
    """data: online draws new sequences on the host every step: they go over, inputs
    (T=4, B=4, I=2) and targets (B=4, 1); still no parameter."""
    steps, _, tensors = copies_per_step(monkeypatch, ops_for_host=False, data="online")
    for calls in steps:
        assert [n for way, n in calls if way == "to_device"] == [4 * 4 * 2, 4], calls
        assert [n for way, n in calls if way == "to_host"] == [1, tensors], calls


@needs_cuda
def test_the_host_path_copies_every_parameter_each_way(monkeypatch):
    """What the resident path removes: the same step with the host's ops moves the model."""
    steps, n_params, _ = copies_per_step(monkeypatch, ops_for_host=True)
    cell_params = n_params - 5 - 1  # the readout (1 x 5 weights, 1 bias) lives on the host
    for calls in steps:
        assert sum(n for way, n in calls if way == "to_device") >= cell_params
        assert sum(n for way, n in calls if way == "to_host") >= cell_params


@needs_cuda
def test_device_losses_and_norm_match_numpy():
    """The kernels alone, on odd sizes, against the host's functions."""
    from numba import cuda

    from rnnbench.cell import CellConfig
    from rnnbench.device_ops import HOST_OPS as host
    from rnnbench.plugins.cells.numba_cuda import CudaRNNCell

    ops = CudaRNNCell(CellConfig(2, 3, dtype="float64")).training_ops()
    rng = np.random.default_rng(5)
    predictions, targets = rng.normal(size=(3, 5, 2)), rng.normal(size=(3, 5, 2))
    loss, grad = ops._mse(cuda.to_device(predictions), cuda.to_device(targets))
    expected = mse(predictions, targets)
    assert loss == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(grad.copy_to_host(), expected[1], rtol=1e-12)
    logits, labels = rng.normal(size=(3, 5, 7)) * 5, rng.integers(0, 7, size=(3, 5))
    loss, grad = ops._cross_entropy(cuda.to_device(logits), cuda.to_device(labels))
    expected = cross_entropy(logits, labels)
    assert loss == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(grad.copy_to_host(), expected[1], rtol=1e-10, atol=1e-15)
    bad = labels.copy()
    bad[0, 0] = 7
    assert np.isnan(ops._cross_entropy(cuda.to_device(logits), cuda.to_device(bad))[0])
    grads = {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=11)}
    on_device = {k: cuda.to_device(v) for k, v in grads.items()}
    assert ops.global_norm(on_device) == pytest.approx(host.global_norm(grads), rel=1e-12)
    ops.scale(on_device, 0.25)
    host.scale(grads, 0.25)
    for name, value in grads.items():
        np.testing.assert_allclose(on_device[name].copy_to_host(), value, rtol=1e-15)


@needs_cuda
def test_the_runs_record_says_where_training_ran():
    from rnnbench.records import RunSpec
    from rnnbench.runner import execute_run

    def spec(backend):
        return RunSpec(
            cell="rnn", backend=backend, task="adding",
            task_params=(("length", 3), ("test_size", 2), ("train_size", 4),
                         ("validation_size", 2)),
            hidden_size=3, num_layers=1, bias=True, dtype="float32", seed=0,
            training=TrainingConfig(optimizer="adam", lr=0.01, batch_size=2, steps=2),
            metrics=("test_loss",), suite="test",
        )

    host_record, _ = execute_run(spec("numpy"), HOST)
    device_record, _ = execute_run(spec("numba-cuda"), HOST)
    assert device_record.status == host_record.status == "ok", device_record.error
    assert "training" not in host_record.execution  # CPU records as they always were
    assert device_record.execution["training"].startswith("device (numba-cuda")
    assert device_record.metrics["test_loss"] == pytest.approx(
        host_record.metrics["test_loss"], rel=TOLERANCE)


@needs_cuda
def test_device_batches_are_the_host_batches():
    """batch_source gathers on the device what Split.batch takes on the host: sequences on
    axis 1 (inputs, labels (T, N), decoder inputs) and on axis 0 (targets (N, O))."""
    from rnnbench import Split
    from rnnbench.cell import CellConfig
    from rnnbench.plugins.cells.numba_cuda import CudaRNNCell

    ops = CudaRNNCell(CellConfig(2, 3, dtype="float32")).training_ops()
    rng = np.random.default_rng(2)
    index = np.array([4, 0, 4, 2])
    splits = [
        Split(rng.normal(size=(3, 5, 2)), rng.integers(0, 9, size=(3, 5)), 1,
              rng.normal(size=(2, 5, 3))),
        Split(rng.normal(size=(3, 5, 2)), rng.normal(size=(5, 1)), 0),
    ]
    for split in splits:
        expected = ops.batch_to_backend(split.batch(index))
        found = ops.batch_source(split)(index)
        for name in ("inputs", "targets", "decoder_inputs"):
            want, got = getattr(expected, name), getattr(found, name)
            if want is None:
                assert got is None
                continue
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got.copy_to_host(), want.copy_to_host(), err_msg=name)
        assert found.targets_axis == split.targets_axis
    with pytest.raises(IndexError, match="out of range"):
        ops.batch_source(splits[1])(np.array([5]))


@needs_cuda
@pytest.mark.parametrize("task_name", ["adding", "copy_memory"])
def test_float64_resident_training_matches_the_host_path_to_rounding(task_name):
    """In float64 the device's readout, loss, clipping and Adam agree with the host's to
    rounding: the same operations in the same order, not merely the same maths."""
    config = TrainingConfig(optimizer="adam", lr=0.05, batch_size=4, steps=3, clip=0.5)
    host, _ = train_tiny("numpy", tiny(task_name), "lstm", config, dtype="float64")
    device, _ = train_tiny("numba-cuda", tiny(task_name), "lstm", config, dtype="float64")
    np.testing.assert_allclose([c["train_loss"] for c in device.curve],
                               [c["train_loss"] for c in host.curve], rtol=1e-10)
    for name, value in host.params.items():
        np.testing.assert_allclose(device.params[name], value, rtol=1e-10, atol=1e-12,
                                   err_msg=name)


@needs_cuda
@pytest.mark.parametrize("resident", [True, False])
def test_the_cell_clock_waits_for_the_kernels_only_when_training_stays_on_the_device(
        monkeypatch, resident):
    """cell_ms must include the cells' GPU time: resident steps return before the kernels end,
    so the clock synchronises after each cell call; the host path's copies already wait."""
    from rnnbench.plugins.cells.numba_cuda import CudaCell

    calls = []
    monkeypatch.setattr(CudaCell, "synchronize", lambda self: calls.append(1))
    config = TrainingConfig(optimizer="sgd", lr=0.01, batch_size=4, steps=3, eval_every=3)
    train_tiny("numba-cuda", tiny("adding"), "rnn", config, ops=None if resident else HOST_OPS)
    # at least one forward and one backward per step (a probe may add calls)
    if resident:
        assert len(calls) >= 2 * 3
    else:
        assert calls == []
