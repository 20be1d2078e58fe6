"""The task protocol: data, readout, loss and trivial baseline of one benchmark problem.

A task is a dataclass whose fields are its parameters (each with a default, and a ``help`` in its
field metadata, see :func:`param`), so ``rnnbench list`` can show them and a suite can set them
by name. The harness builds the model around the cell from what the task declares: a linear
readout from the hidden state to ``output_size`` values, applied to the last step (``many``-to-one
tasks, ``readout = "last"``) or to every step (``readout = "all"``).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np


class Topology(enum.StrEnum):
    """The input/output shape of a recurrent problem."""

    ONE_TO_ONE = "one-to-one"
    ONE_TO_MANY = "one-to-many"
    MANY_TO_ONE = "many-to-one"
    MANY_TO_MANY = "many-to-many"


def param(default: Any, help: str, path: bool = False) -> Any:
    """Declare a task parameter (or a cell option, in the dataclass a cell plugin passes as
    ``register(..., options=...)``): a dataclass field with a default and a one-line help text.

    ``path=True``: the parameter may name a data file. A suite's value that looks like a path is
    then resolved against the suite file's folder (and must exist), and the run id covers the
    file's content rather than its path (see :mod:`rnnbench.data_files`).
    """
    metadata: dict[str, Any] = {"help": help}
    if path:
        metadata["path"] = True
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Split:
    """One split of a task's data: ``inputs`` ``(T, N, I)`` and ``targets``.

    ``targets`` is ``(N, O)`` for ``readout = "last"`` and ``(T, N, O)`` for ``"all"``; class
    labels are integer arrays without the ``O`` axis (``(N,)`` or ``(T, N)``). ``targets_axis``
    says which axis of ``targets`` runs over sequences (0 or 1).
    """

    inputs: np.ndarray
    targets: np.ndarray
    targets_axis: int = 0
    #: Encoder-decoder tasks only: the decoder's teacher-forced inputs ``(T_out, N, I_dec)``,
    #: whose first step (the start symbol) is all that free-running decoding is given.
    decoder_inputs: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[1])

    def batch(self, index: np.ndarray) -> Split:
        """The sequences at ``index``."""
        return Split(
            self.inputs[:, index],
            np.take(self.targets, index, axis=self.targets_axis),
            self.targets_axis,
            None if self.decoder_inputs is None else self.decoder_inputs[:, index],
        )


@dataclass
class TaskData:
    """A task's data for one seed: three splits and the sizes the model must match."""

    train: Split
    validation: Split
    test: Split
    input_size: int
    output_size: int
    #: Encoder-decoder tasks only: the size of one decoder input step.
    decoder_input_size: int | None = None


#: The comparisons a :class:`SolvedCriterion` may use.
COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class SolvedCriterion:
    """When a run has *solved* its task: ``quantity comparison threshold`` on the test split.

    ``quantity`` is ``"loss"`` (the task's test loss), ``"loss_vs_baseline"`` (test loss / the
    task's baseline loss), ``"accuracy"`` (:meth:`Task.accuracy`) or the name of one of the
    task's own :meth:`Task.scores` (e.g. copy memory's ``"recall_accuracy"``). ``source`` says
    where the threshold comes from (a paper and what it reports) or, where the literature has
    none, why it was chosen: the ``solved`` metric's verdict is only as good as this sentence.
    """

    quantity: str
    comparison: Literal["<", "<=", ">", ">="]
    threshold: float
    source: str = ""

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(
                f"comparison must be one of {', '.join(COMPARISONS)}, got {self.comparison!r}"
            )
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold!r}")

    def value(self, loss: float, accuracy: float | None, scores: Mapping[str, float],
              baseline_loss: float) -> float | None:
        """The quantity compared, from one evaluation; ``None`` where it is not available (a
        baseline of 0 for ``loss_vs_baseline``, a task without accuracy, a missing score)."""
        if self.quantity == "loss":
            return loss
        if self.quantity == "loss_vs_baseline":
            return loss / baseline_loss if baseline_loss > 0 else None
        if self.quantity == "accuracy":
            return accuracy
        return scores.get(self.quantity)

    def holds(self, value: float | None) -> bool | None:
        """The verdict for ``value``: ``None`` when there is no value, ``False`` for NaN (a
        diverged run has solved nothing)."""
        if value is None:
            return None
        if math.isnan(value):
            return False
        return bool(COMPARISONS[self.comparison](value, self.threshold))

    def __str__(self) -> str:
        return f"{self.quantity} {self.comparison} {self.threshold:.4g}"


@dataclass
class Task:
    """Base class of every task. Subclasses are dataclasses; their fields are the parameters.

    Class attributes a subclass sets:

    - ``name``: the name a suite uses;
    - ``topology``: a :class:`Topology`;
    - ``readout``: ``"last"`` or ``"all"`` (which outputs the readout sees);
    - ``description``: one line for ``rnnbench list``;
    - ``model``: ``"sequence"`` (one cell, the default) or ``"encoder-decoder"`` (an encoder
      cell whose final state starts a decoder cell; the splits carry ``decoder_inputs``);
    - ``free_running``: ``True`` when evaluation must feed the model's own outputs back as its
      next inputs (generation, decoding); such a task implements :meth:`feedback`;
    - ``online``: ``True`` when the task can draw fresh training sequences, implementing
      :meth:`sample`, so suites may train it with ``training: {data: online}``;
    - ``standard_loss``: ``"mse"`` or ``"cross_entropy"`` when :meth:`loss` is exactly that
      standard loss (lets a device backend keep training on the device).

    Optional methods a task may override to make the harness *task-aware* (each defaults to
    "nothing special"): :meth:`scores` (extra quantities on a split, e.g. accuracy on the
    positions that matter), :meth:`gradient_positions` (the steps whose loss the gradient-flow
    profile differentiates) and :meth:`solved_criterion` (when a run has solved the task).
    """

    name: ClassVar[str]
    topology: ClassVar[Topology]
    readout: ClassVar[str] = "last"
    description: ClassVar[str] = ""
    model: ClassVar[str] = "sequence"
    free_running: ClassVar[bool] = False
    online: ClassVar[bool] = False
    #: ``"mse"`` or ``"cross_entropy"`` when :meth:`loss` is exactly :func:`rnnbench.mse` or
    #: :func:`rnnbench.cross_entropy` of the predictions and targets: a backend may then compute
    #: the loss itself and train resident on its device (:mod:`rnnbench.device_ops`). ``None``
    #: (the default): training calls :meth:`loss` on the host.
    standard_loss: ClassVar[str | None] = None

    def make_data(self, seed: int) -> TaskData:
        """Generate (or load) the data for ``seed``; the same seed must give the same arrays."""
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Split:
        """``n`` fresh training sequences (``training: {data: online}``), for tasks that set
        ``online = True``.

        The contract: draw from the same distribution as the training split of
        ``make_data(seed)`` (``seed`` is that data seed: a task whose distribution depends on
        it, such as cluster centres drawn from the seed, rebuilds it from there), with random
        numbers from ``rng`` only, so the same generator state gives the same sequences; return
        a :class:`Split` laid out as that training split (same steps and input size, same
        ``targets_axis``, ``decoder_inputs`` when the model is an encoder-decoder). The harness
        calls it once per batch with one generator per run; the validation and test splits
        stay those of ``make_data``. A task whose data cannot be drawn afresh (a fixed series, a
        data file) leaves ``online`` False.
        """
        raise NotImplementedError(f"task {self.name!r} cannot sample fresh training sequences")

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        """The mean loss over the batch and dLoss/d predictions (same shape as ``predictions``).

        ``predictions`` is the readout's output: ``(N, O)`` or ``(T, N, O)``.
        """
        raise NotImplementedError

    def baseline_loss(self, data: TaskData) -> float:
        """The test loss of the trivial predictor (best constant or naive forecast), *computed*
        from the data, so a result reads as "learned something" or not."""
        raise NotImplementedError

    def accuracy(self, predictions: np.ndarray, targets: np.ndarray) -> float | None:
        """Fraction correct, for classification tasks; ``None`` where accuracy does not apply."""
        return None

    def scores(self, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Extra quantities of one batch beyond loss and accuracy, by name: e.g. copy memory's
        ``recall_accuracy``, the accuracy at the recall positions only, where ``accuracy`` also
        counts the trivially predicted blanks. Default: none.

        Contract: every value is a *mean over the batch's sequences* (so the harness can average
        chunks of a split weighted by their size) and a float; the same names on every call.
        The harness computes them on every evaluated split (``Evaluation.scores``: the test
        split's are ``run.test.scores``, what a metric reads; they are also a
        :class:`SolvedCriterion`'s ``quantity``). A plugin exposes one as a table column by
        registering a metric that returns ``run.test.scores.get(name)``.
        """
        return {}

    def gradient_positions(self, steps: int) -> Sequence[int] | None:
        """The steps (of a ``steps``-long sequence) whose loss the gradient-flow metrics
        differentiate (``grad_norm_by_lag``, ``grad_decay``, ``grad_ratio``), for tasks where
        the loss that needs memory sits at known positions (``readout = "all"`` tasks only).

        ``None`` (the default): the whole loss, every step's own term included, with lags
        counted back from the last step. A sequence of step indices: only the task's loss at
        those steps (:meth:`loss` applied to the predictions and targets there), with lags
        counted back from the *first* of them, so lag k is the hidden state k steps before the
        first position whose loss is measured, reached only through the recurrence. Copy
        memory returns its recall positions (the literature's measurement, Arjovsky et al.
        2016): the profile then shows how much of the recall's gradient reaches the symbols to
        remember, instead of each step's own (blank) loss.
        """
        return None

    def solved_criterion(self, data: TaskData) -> SolvedCriterion | None:
        """When a run has solved this task (the ``solved`` metric), or ``None`` (the default)
        when the task defines no such point. ``data`` is the run's data, so a threshold may be
        computed from it like :meth:`baseline_loss` (e.g. the accuracy a classifier fitted on
        the training split reaches). State the literature source, or the reason for the
        choice, in the criterion's ``source``."""
        return None

    def feedback(self, predictions: np.ndarray, step: int) -> np.ndarray:
        """Free-running tasks: the input ``(N, I)`` for ``step`` made from the readout's
        predictions ``(N, O)`` at ``step - 1`` (e.g. the sample just generated, or the one-hot
        of the symbol just decoded)."""
        raise NotImplementedError(f"task {self.name!r} is free-running but has no feedback()")

    @classmethod
    def parameters(cls) -> list[dataclasses.Field]:
        """The task's parameters, in declaration order."""
        return [f for f in dataclasses.fields(cls) if f.init]


# --- helpers for task authors ---------------------------------------------------------------


def check_sizes(task: Task) -> None:
    """The three split sizes of ``task`` must be at least 1."""
    for name in ("train_size", "validation_size", "test_size"):
        if getattr(task, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(task, name)}")


def one_hot(indices: np.ndarray, size: int) -> np.ndarray:
    """``indices`` (any shape, integers in ``[0, size)``) as float64 one-hot vectors on a new
    last axis."""
    return np.eye(size)[indices]


def positional_distribution(labels: np.ndarray, classes: int, axis: int = 1) -> np.ndarray:
    """The per-position class distribution of integer ``labels`` (sequences along ``axis``),
    ``(positions, classes)``; one pseudo-observation is spread evenly over the classes, so a
    class never seen at a position costs a finite amount rather than infinity."""
    labels = np.moveaxis(np.asarray(labels), axis, -1)  # (positions, N)
    labels = labels.reshape(-1, labels.shape[-1])
    counts = np.zeros((labels.shape[0], classes))
    for position, row in enumerate(labels):
        counts[position] = np.bincount(row, minlength=classes)[:classes]
    return (counts + 1.0 / classes) / (labels.shape[1] + 1.0)


def positional_cross_entropy(train: Split, test: Split, classes: int) -> float:
    """Test cross-entropy of the best memoryless predictor: at each position, the class
    frequencies of the training targets there (:func:`positional_distribution`)."""
    probs = positional_distribution(train.targets, classes, train.targets_axis)
    labels = np.moveaxis(np.asarray(test.targets), test.targets_axis, -1)
    labels = labels.reshape(-1, labels.shape[-1])  # (positions, N)
    picked = np.take_along_axis(probs, labels, axis=1)
    return float(-np.mean(np.log(picked)))
