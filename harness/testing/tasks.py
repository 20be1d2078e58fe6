"""The task checks: any task class against the Task contract (:mod:`rnnbench.task`).

- ``declaration``: a dataclass subclass of ``rnnbench.Task`` with a name, topology, readout,
  model and description, implementing ``make_data``, ``loss``, ``baseline_loss`` (and
  ``feedback`` when ``free_running``);
- ``parameters``: every parameter has a default and a help text, and the defaults build a task;
- ``deterministic_by_seed``: the same seed gives the same arrays, another seed other arrays;
- ``split_shapes``: split sizes match the task's parameters; inputs, targets and decoder
  inputs have the shapes the readout and model need, finite values, labels in range;
- ``baseline``: ``baseline_loss`` is finite, positive, and computed from the data (other data,
  another number);
- ``loss``: ``loss(predictions, targets)`` returns a finite float and a gradient of the
  predictions' shape that matches finite differences, and leaves its arguments alone;
- ``accuracy``: ``None`` or a fraction in [0, 1]; 1 for predictions that are the targets;
- ``task_aware``: the optional methods: ``scores`` gives the same names of finite floats for
  any predictions, ``gradient_positions`` names steps of the sequence, ``solved_criterion`` is
  ``None`` or a :class:`~rnnbench.SolvedCriterion` whose quantity the task provides and whose
  threshold the right answers meet;
- ``feedback``: a free-running task's next input has the model's input shape;
- ``sample``: a task that sets ``online`` draws fresh training sequences laid out as its training
  split, the same for the same generator state and others for another.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnbench.plugin_manager import MODELS, READOUTS, PluginHost, is_name
from rnnbench.task import SolvedCriterion, Split, Task, TaskData, Topology
from rnnbench.testing.lookup import find_task, load_host
from rnnbench.testing.report import (
    Check,
    CheckReport,
    Failed,
    NamedCheck,
    Skipped,
    run_checks,
    select_checks,
)

#: Finite differences of a loss with respect to its predictions: elements checked, step,
#: tolerance on the relative error, and its floor.
LOSS_FD_ELEMENTS = 12
LOSS_FD_EPS = 1e-4
LOSS_FD_TOL = 1e-5
LOSS_FD_FLOOR = 1e-8
#: Sequences of the test split the loss and accuracy checks use.
LOSS_BATCH = 4

SPLITS = ("train", "validation", "test")


@dataclass
class TaskSubject:
    """A task class under test, the parameters to build it with and the seeds to try."""

    task_class: type[Task]
    params: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, int] = (0, 1)
    data_depend_on_seed: bool = True
    _data: dict[int, TaskData] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"task {getattr(self.task_class, 'name', self.task_class.__name__)}"

    def task(self) -> Task:
        return self.task_class(**self.params)

    def data(self, seed: int | None = None) -> TaskData:
        seed = self.seeds[0] if seed is None else seed
        if seed not in self._data:
            self._data[seed] = self.task().make_data(seed)
        return self._data[seed]


def _splits(data: TaskData) -> dict[str, Split]:
    return {name: getattr(data, name) for name in SPLITS}


def _arrays(data: TaskData) -> dict[str, np.ndarray]:
    found = {}
    for name, split in _splits(data).items():
        found[f"{name}.inputs"] = split.inputs
        found[f"{name}.targets"] = split.targets
        if split.decoder_inputs is not None:
            found[f"{name}.decoder_inputs"] = split.decoder_inputs
    return found


# --- the checks -----------------------------------------------------------------------------


def check_declaration(subject: TaskSubject) -> str:
    cls = subject.task_class
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise Failed(f"{cls!r} is not a subclass of rnnbench.Task")
    if not dataclasses.is_dataclass(cls):
        raise Failed(f"{cls.__name__} is not a dataclass (decorate it with @dataclass)")
    if not is_name(getattr(cls, "name", None)):
        raise Failed(f"{cls.__name__}.name is {getattr(cls, 'name', None)!r}; set a name")
    if not isinstance(getattr(cls, "topology", None), Topology):
        raise Failed(f"topology is {getattr(cls, 'topology', None)!r}; set rnnbench.Topology.X")
    if cls.readout not in READOUTS:
        raise Failed(f"readout is {cls.readout!r}; use one of {READOUTS}")
    if cls.model not in MODELS:
        raise Failed(f"model is {cls.model!r}; use one of {MODELS}")
    if not cls.description:
        raise Failed("description is empty; one line for rnnbench list")
    for method in ("make_data", "loss", "baseline_loss"):
        if getattr(cls, method) is getattr(Task, method):
            raise Failed(f"{cls.__name__} does not implement {method}()")
    if cls.free_running and cls.feedback is Task.feedback:
        raise Failed("free_running is set but feedback() is not implemented")
    return f"{cls.topology}, readout {cls.readout!r}, model {cls.model!r}"


def check_parameters(subject: TaskSubject) -> str:
    fields = subject.task_class.parameters()
    for f in fields:
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise Failed(f"parameter {f.name!r} has no default (use rnnbench.param(default, "
                         "help))")
        if not f.metadata.get("help"):
            raise Failed(f"parameter {f.name!r} has no help text (use rnnbench.param(default, "
                         "help)); rnnbench list shows it")
    subject.task_class()
    return f"{len(fields)} parameters, each with a default and help"


def check_deterministic_by_seed(subject: TaskSubject) -> str:
    first_seed, other_seed = subject.seeds
    first = _arrays(subject.data(first_seed))
    again = _arrays(subject.task().make_data(first_seed))
    if first.keys() != again.keys():
        raise Failed(f"seed {first_seed} gave {sorted(first)} once and {sorted(again)} again")
    for name, value in first.items():
        if value.shape != again[name].shape or not np.array_equal(value, again[name],
                                                                  equal_nan=True):
            raise Failed(f"seed {first_seed} gave another {name} the second time; make_data "
                         "must draw from np.random.default_rng(seed) only")
    if not subject.data_depend_on_seed:
        return f"seed {first_seed} twice: identical arrays"
    other = _arrays(subject.data(other_seed))
    if all(other.get(n) is not None and other[n].shape == v.shape and np.array_equal(other[n], v)
           for n, v in first.items()):
        raise Failed(f"seeds {first_seed} and {other_seed} gave the same data (if the data do "
                     "not depend on the seed, say so: check_task(..., data_depend_on_seed=False))")
    return f"seed {first_seed} twice: identical arrays; seed {other_seed}: other arrays"


def check_split_shapes(subject: TaskSubject) -> str:
    task, data = subject.task(), subject.data()
    sizes = []
    for name, split in _splits(data).items():
        inputs = np.asarray(split.inputs)
        if inputs.ndim != 3 or inputs.shape[2] != data.input_size:
            raise Failed(f"{name}.inputs has shape {inputs.shape}; expected (T, N, "
                         f"input_size={data.input_size})")
        steps, count = inputs.shape[:2]
        expected_count = getattr(task, f"{name}_size", None)
        if expected_count is not None and count != expected_count:
            raise Failed(f"{name} has {count} sequences; the parameter {name}_size is "
                         f"{expected_count}")
        if count < 1 or not np.all(np.isfinite(inputs)):
            raise Failed(f"{name}.inputs is empty or not finite")
        _check_targets(task, data, name, split, steps, count)
        _check_decoder_inputs(task, data, name, split, count)
        if task.topology is Topology.ONE_TO_ONE and steps != 1:
            raise Failed(f"{name}.inputs has {steps} steps; a one-to-one task has 1")
        sizes.append(f"{name} {count}")
    return f"{', '.join(sizes)} sequences; input_size {data.input_size}, output_size " \
           f"{data.output_size}"


def _check_targets(task: Task, data: TaskData, name: str, split: Split, steps: int,
                   count: int) -> None:
    targets = np.asarray(split.targets)
    axis = 0 if task.readout == "last" else 1
    if split.targets_axis != axis:
        raise Failed(f"{name}.targets_axis is {split.targets_axis}; readout {task.readout!r} "
                     f"needs {axis}")
    if targets.ndim <= axis or targets.shape[axis] != count:
        raise Failed(f"{name}.targets has shape {targets.shape}; its axis {axis} must count "
                     f"the {count} sequences")
    if task.readout == "all":
        out_steps = steps if task.model == "sequence" else _decoder_steps(split)
        if targets.shape[0] != out_steps:
            raise Failed(f"{name}.targets has {targets.shape[0]} steps; expected {out_steps}")
    if np.issubdtype(targets.dtype, np.integer):
        if targets.ndim != axis + 1:
            raise Failed(f"{name}.targets holds class labels of shape {targets.shape}; labels "
                         f"have no output axis")
        if targets.min() < 0 or targets.max() >= data.output_size:
            raise Failed(f"{name}.targets has labels outside [0, output_size={data.output_size})")
    elif targets.shape[-1] != data.output_size or not np.all(np.isfinite(targets)):
        raise Failed(f"{name}.targets has shape {targets.shape}; its last axis must be "
                     f"output_size={data.output_size}, its values finite")


def _decoder_steps(split: Split) -> int:
    return 0 if split.decoder_inputs is None else int(np.shape(split.decoder_inputs)[0])


def _check_decoder_inputs(task: Task, data: TaskData, name: str, split: Split,
                          count: int) -> None:
    if task.model == "encoder-decoder":
        decoder = split.decoder_inputs
        expected = (count, data.decoder_input_size)
        if decoder is None or np.shape(decoder)[1:] != expected:
            raise Failed(f"{name}.decoder_inputs has shape {np.shape(decoder)}; expected "
                         f"(T_out, {count}, decoder_input_size={data.decoder_input_size})")
    elif split.decoder_inputs is not None or data.decoder_input_size is not None:
        raise Failed(f"{name} has decoder inputs, but the task's model is 'sequence'")


def check_baseline(subject: TaskSubject) -> str:
    task, data = subject.task(), subject.data()
    baseline = task.baseline_loss(data)
    if not isinstance(baseline, (int, float, np.floating)) or not math.isfinite(baseline) \
            or baseline <= 0:
        raise Failed(f"baseline_loss is {baseline!r}; expected a finite positive number")
    others = {"half of every split": _half(data)}
    if subject.data_depend_on_seed:
        others[f"seed {subject.seeds[1]}'s data"] = subject.data(subject.seeds[1])
    values = {what: float(task.baseline_loss(other)) for what, other in others.items()}
    if all(value == float(baseline) for value in values.values()):
        raise Failed(f"baseline_loss is {float(baseline)!r} on this data and on "
                     f"{' and '.join(values)}; compute it from the data, do not type it in")
    return f"{float(baseline):.4g} (other data: " + ", ".join(
        f"{v:.4g}" for v in values.values()) + ")"


def _half(data: TaskData) -> TaskData:
    def half(split: Split) -> Split:
        return split.batch(np.arange(max(1, len(split) // 2)))

    return dataclasses.replace(data, train=half(data.train), validation=half(data.validation),
                               test=half(data.test))


def _prediction_shape(task: Task, data: TaskData, split: Split) -> tuple[int, ...]:
    if task.readout == "last":
        return (len(split), data.output_size)
    steps = split.inputs.shape[0] if task.model == "sequence" else _decoder_steps(split)
    return (steps, len(split), data.output_size)


def _batch(subject: TaskSubject) -> tuple[Task, TaskData, Split]:
    data = subject.data()
    test = data.test
    return subject.task(), data, test.batch(np.arange(min(LOSS_BATCH, len(test))))


def check_loss(subject: TaskSubject) -> str:
    task, data, batch = _batch(subject)
    shape = _prediction_shape(task, data, batch)
    predictions = np.random.default_rng(subject.seeds[0]).standard_normal(shape)
    saved = (predictions.copy(), np.array(batch.targets, copy=True))
    answer = task.loss(predictions, batch.targets)
    if not (isinstance(answer, tuple) and len(answer) == 2):
        raise Failed(f"loss returned {type(answer).__name__}; expected (loss, gradient)")
    value, gradient = answer
    if not isinstance(value, (float, np.floating)) or not math.isfinite(value):
        raise Failed(f"loss value is {value!r}; expected a finite float")
    if np.shape(gradient) != shape or not np.all(np.isfinite(gradient)):
        raise Failed(f"loss gradient has shape {np.shape(gradient)}; expected the predictions' "
                     f"{shape}, finite")
    if not (np.array_equal(predictions, saved[0]) and np.array_equal(batch.targets, saved[1])):
        raise Failed("loss modified its arguments")
    worst = _loss_gradient_error(task, predictions, batch.targets, np.asarray(gradient),
                                 subject.seeds[0])
    standard = _check_standard_loss(task, predictions, batch.targets, value, gradient)
    return f"value {float(value):.4g}; gradient {shape}, relative error {worst:.1e} against " \
           f"finite differences{standard}"


def _check_standard_loss(task: Task, predictions: np.ndarray, targets: np.ndarray, value: float,
                         gradient: Any) -> str:
    """A task declaring ``standard_loss`` must compute exactly that loss: a device that trains
    resident computes the declared one instead of calling :meth:`Task.loss`."""
    from rnnbench.device_ops import STANDARD_LOSSES
    from rnnbench.losses import cross_entropy, mse

    declared = getattr(task, "standard_loss", None)
    if declared is None:
        return ""
    if declared not in STANDARD_LOSSES:
        raise Failed(f"standard_loss is {declared!r}; use one of {', '.join(STANDARD_LOSSES)} "
                     "or None")
    expected_value, expected_gradient = (mse if declared == "mse" else cross_entropy)(
        predictions, targets)
    if not (np.isclose(value, expected_value, rtol=1e-12, atol=0.0)
            and np.allclose(gradient, expected_gradient, rtol=1e-12, atol=1e-15)):
        raise Failed(f"standard_loss is {declared!r} but loss() computes something else (value "
                     f"{float(value)!r}, {declared} gives {expected_value!r}): a device would "
                     "train on the wrong loss")
    return f"; equals the declared standard_loss {declared!r}"


def _loss_gradient_error(task: Task, predictions: np.ndarray, targets: np.ndarray,
                         gradient: np.ndarray, seed: int) -> float:
    rng = np.random.default_rng(seed)
    flat = rng.choice(predictions.size, size=min(LOSS_FD_ELEMENTS, predictions.size),
                      replace=False)
    worst = 0.0
    for position in flat:
        index = np.unravel_index(position, predictions.shape)

        def at(delta: float, index: tuple[int, ...] = index) -> float:
            moved = predictions.copy()
            moved[index] += delta
            return float(task.loss(moved, targets)[0])

        h = LOSS_FD_EPS
        numeric = (at(-2 * h) - 8 * at(-h) + 8 * at(h) - at(2 * h)) / (12 * h)
        analytic = float(gradient[index])
        error = abs(analytic - numeric) / max(abs(analytic) + abs(numeric), LOSS_FD_FLOOR)
        if not error < LOSS_FD_TOL:
            raise Failed(f"loss gradient at predictions{list(map(int, index))} is {analytic!r}; "
                         f"finite differences give {numeric!r} (relative error {error:.3g})")
        worst = max(worst, error)
    return worst


def check_accuracy(subject: TaskSubject) -> str:
    task, data, batch = _batch(subject)
    shape = _prediction_shape(task, data, batch)
    predictions = np.random.default_rng(subject.seeds[0]).standard_normal(shape)
    value = task.accuracy(predictions, batch.targets)
    if value is None:
        return "not implemented (None): the task has no accuracy"
    if not isinstance(value, (float, int, np.floating, np.integer)) or isinstance(value, bool) \
            or not 0.0 <= float(value) <= 1.0:
        raise Failed(f"accuracy is {value!r}; expected None or a fraction in [0, 1]")
    targets = np.asarray(batch.targets)
    if not np.issubdtype(targets.dtype, np.integer):
        return f"{float(value):.3g} on random predictions"
    perfect = 10.0 * np.eye(data.output_size)[targets]  # the target class scores highest
    right = task.accuracy(perfect, batch.targets)
    if right is None or float(right) != 1.0:
        raise Failed(f"accuracy of predictions whose largest value is the target class is "
                     f"{right!r}, not 1")
    return f"{float(value):.3g} on random predictions, 1 on the targets"


def check_feedback(subject: TaskSubject) -> str:
    task, data, batch = _batch(subject)
    if not task.free_running:
        raise Skipped("the task is not free-running")
    size = data.input_size if task.model == "sequence" else data.decoder_input_size
    predictions = np.random.default_rng(subject.seeds[0]).standard_normal(
        (len(batch), data.output_size))
    produced = task.feedback(predictions, 1)
    expected = (len(batch), size)
    if np.shape(produced) != expected or not np.all(np.isfinite(produced)):
        raise Failed(f"feedback(predictions, 1) has shape {np.shape(produced)}; expected "
                     f"{expected}, finite")
    return f"next input {expected}"


def _scores(task: Task, predictions: np.ndarray, targets: np.ndarray, what: str) -> dict:
    scores = task.scores(predictions, targets)
    if not isinstance(scores, dict) or not all(
        isinstance(name, str) and isinstance(value, (float, int, np.floating, np.integer))
        and not isinstance(value, bool) and math.isfinite(value)
        for name, value in scores.items()
    ):
        raise Failed(f"scores({what}) is {scores!r}; expected a dict of names to finite floats")
    return scores


def check_task_aware(subject: TaskSubject) -> str:
    task, data, batch = _batch(subject)
    shape = _prediction_shape(task, data, batch)
    targets = np.asarray(batch.targets)
    random = np.random.default_rng(subject.seeds[0]).standard_normal(shape)
    if np.issubdtype(targets.dtype, np.integer):
        right = 10.0 * np.eye(data.output_size)[targets]
    else:
        right = targets.astype(np.float64).reshape(shape)
    scores = _scores(task, random, batch.targets, "random predictions")
    right_scores = _scores(task, right, batch.targets, "the right predictions")
    if set(scores) != set(right_scores):
        raise Failed(f"scores names differ between calls: {sorted(scores)} and "
                     f"{sorted(right_scores)}; a score must be given on every call")
    said = [f"scores: {', '.join(sorted(scores)) or 'none'}"]
    if task.readout == "all" and task.model == "sequence":
        steps = batch.inputs.shape[0]
        positions = task.gradient_positions(steps)
        if positions is not None:
            found = list(positions)
            if not found or not all(isinstance(p, (int, np.integer)) and 0 <= p < steps
                                    for p in found):
                raise Failed(f"gradient_positions({steps}) is {found!r}; expected steps in "
                             f"[0, {steps - 1}] (or None)")
            said.append(f"gradient from {len(found)} position(s)")
    criterion = task.solved_criterion(data)
    if criterion is None:
        return "; ".join([*said, "no solved criterion"])
    if not isinstance(criterion, SolvedCriterion):
        raise Failed(f"solved_criterion returned {type(criterion).__name__}; expected "
                     "rnnbench.SolvedCriterion or None")
    loss, _ = task.loss(right, batch.targets)
    value = criterion.value(float(loss), task.accuracy(right, batch.targets), right_scores,
                            task.baseline_loss(data))
    if value is None:
        raise Failed(f"solved criterion {criterion} compares {criterion.quantity!r}, which the "
                     "task does not provide (loss, loss_vs_baseline, accuracy or a score)")
    if not criterion.holds(value):
        raise Failed(f"the right answers do not solve the task: {criterion.quantity} = "
                     f"{value:.4g}, criterion {criterion}")
    return "; ".join([*said, f"solved when {criterion}"])


def check_sample(subject: TaskSubject) -> str:
    cls = subject.task_class
    if not getattr(cls, "online", False):
        raise Skipped("the task does not draw online data (online = False)")
    if cls.sample is Task.sample:
        raise Failed("online is set but sample() is not implemented")
    task, train, seed = subject.task(), subject.data().train, subject.seeds[0]
    count = 5

    def draw(stream: int) -> Split:
        return task.sample(count, np.random.default_rng(stream), seed)

    first = draw(seed)
    if not isinstance(first, Split):
        raise Failed(f"sample(n, rng, seed) returned {type(first).__name__}; expected a Split")
    expected: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
        "inputs": (np.shape(first.inputs), _with_count(train.inputs, 1, count))}
    expected["targets"] = (np.shape(first.targets),
                           _with_count(train.targets, train.targets_axis, count))
    if train.decoder_inputs is not None:
        expected["decoder_inputs"] = (np.shape(first.decoder_inputs),
                                      _with_count(train.decoder_inputs, 1, count))
    for name, (got, want) in expected.items():
        if got != want:
            raise Failed(f"sample({count}, rng, seed).{name} has shape {got}; the training "
                         f"split's layout gives {want}")
    if first.targets_axis != train.targets_axis:
        raise Failed(f"sample's targets_axis is {first.targets_axis}; the training split's is "
                     f"{train.targets_axis}")
    if np.asarray(first.targets).dtype.kind != np.asarray(train.targets).dtype.kind:
        raise Failed("sample's targets are not of the training split's kind (labels or values)")
    if not np.all(np.isfinite(first.inputs)):
        raise Failed("sample's inputs are not finite")
    if not np.array_equal(first.inputs, draw(seed).inputs):
        raise Failed("the same generator state gave other sequences; draw from rng only")
    if np.array_equal(first.inputs, draw(seed + 1).inputs):
        raise Failed("another generator gave the same sequences; draw them from rng")
    return f"{count} sequences laid out as the training split; reproducible from rng"


def _with_count(array: np.ndarray, axis: int, count: int) -> tuple[int, ...]:
    shape = list(np.shape(array))
    shape[axis] = count
    return tuple(shape)


#: Every task check, in the order they run.
TASK_CHECKS: tuple[Check[TaskSubject], ...] = (
    Check("declaration", check_declaration,
          "a Task dataclass with name, topology, readout, model, description and its methods"),
    Check("parameters", check_parameters, "every parameter has a default and help"),
    Check("deterministic_by_seed", check_deterministic_by_seed,
          "the same seed gives the same data, another seed other data"),
    Check("split_shapes", check_split_shapes,
          "split sizes, input/target/decoder shapes, finite values, labels in range"),
    Check("baseline", check_baseline, "finite, positive, computed from the data"),
    Check("loss", check_loss,
          "(value, gradient) of the right shapes; gradient is right; = standard_loss if declared"),
    Check("accuracy", check_accuracy, "None, or a fraction in [0, 1]; 1 on the targets"),
    Check("task_aware", check_task_aware,
          "scores, gradient_positions and solved_criterion keep their contract"),
    Check("feedback", check_feedback, "free-running tasks: the next input's shape"),
    Check("sample", check_sample,
          "online tasks: fresh sequences laid out as the training split, reproducible"),
)
TASK_CHECK_NAMES = tuple(check.name for check in TASK_CHECKS)


def _task_subject(task: type[Task] | str, params: dict[str, Any] | None, seeds: Sequence[int],
                  data_depend_on_seed: bool, host: PluginHost | None,
                  plugins: Sequence[str]) -> TaskSubject:
    if isinstance(task, str):
        task = find_task(load_host(host, plugins), task).task_class
    first, other = seeds
    if first == other:
        raise ValueError("seeds must be two different seeds")
    return TaskSubject(task, dict(params or {}), (first, other), data_depend_on_seed)


def check_task(
    task: type[Task] | str,
    *,
    params: dict[str, Any] | None = None,
    seeds: Sequence[int] = (0, 1),
    data_depend_on_seed: bool = True,
    checks: Sequence[str] | None = None,
    host: PluginHost | None = None,
    plugins: Sequence[str] = (),
) -> CheckReport:
    """Run the task checks (all, or those named in ``checks``; see :data:`TASK_CHECKS`) on a
    task class, or a registered task's name, built with ``params`` (default: its defaults), with
    two different ``seeds``. A task whose data are fixed (a shipped data set) passes
    ``data_depend_on_seed=False``."""
    subject = _task_subject(task, params, seeds, data_depend_on_seed, host, plugins)
    return run_checks(subject.label, select_checks(TASK_CHECKS, checks, "task"), subject)


def task_checks(
    task: type[Task] | str,
    *,
    params: dict[str, Any] | None = None,
    seeds: Sequence[int] = (0, 1),
    data_depend_on_seed: bool = True,
    checks: Sequence[str] | None = None,
    host: PluginHost | None = None,
    plugins: Sequence[str] = (),
) -> list[NamedCheck]:
    """The checks :func:`check_task` runs, one callable each, for ``pytest.mark.parametrize``
    (as :func:`rnnbench.testing.cell_checks`)."""
    subject = _task_subject(task, params, seeds, data_depend_on_seed, host, plugins)
    return [NamedCheck(subject.label, check, subject)
            for check in select_checks(TASK_CHECKS, checks, "task")]
