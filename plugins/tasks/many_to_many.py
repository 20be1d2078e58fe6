"""Aligned many-to-many tasks: one output per input step, read from every step.

Both tasks here are symbol problems scored by the mean cross-entropy over *all* steps. Their
trivial baseline is the best *memoryless* predictor: one that knows the position in the sequence
but nothing about the inputs, i.e. the per-position class distribution of the training targets
(see :func:`positional_cross_entropy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnbench import (
    RunOutcome,
    SolvedCriterion,
    Split,
    TaskData,
    Topology,
    accuracy,
    check_sizes,
    cross_entropy,
    hookimpl,
    one_hot,
    param,
    positional_cross_entropy,
)
from rnnbench.plugins.tasks.generated import GeneratedTask

#: Class 0 of every symbol task: "no symbol here".
BLANK = 0


@dataclass
class CopyMemory(GeneratedTask):
    """The copy-memory problem exactly as Arjovsky, Shah & Bengio (2016), "Unitary evolution
    recurrent neural networks", section 4.1; it probes long-term memory over a span of T steps.

    The input has ``T + 2 * recall`` steps, one-hot over ``symbols + 2`` categories (0 = blank,
    ``1..symbols`` = data symbols, ``symbols + 1`` = delimiter): ``recall`` symbols drawn
    uniformly from ``1..symbols``, then ``T - 1`` blanks, the delimiter (at index
    ``recall + T - 1``), then ``recall`` more blanks. The target (``symbols + 1`` classes, 0 =
    blank) is blank for the first ``T + recall`` steps and the ``recall`` symbols, in order, for
    the last ``recall``. Loss: mean cross-entropy over all ``T + 2 * recall`` steps. With the
    paper's settings (8 symbols, recall 10) the memoryless strategy (blanks, then uniform
    guesses) scores ``10 ln 8 / (T + 20)``.

    Baseline: the test cross-entropy of the per-position class frequencies of the *training*
    targets, computed from the data; it approximates ``recall ln(symbols) / (T + 2 recall)``.
    """

    name = "copy_memory"
    topology = Topology.MANY_TO_MANY
    readout = "all"
    standard_loss = "cross_entropy"
    description = (
        "recall 10 symbols after T blanks (Arjovsky et al. 2016); memoryless: loss 10ln8/(T+20), "
        "recall_accuracy 1/8"
    )

    length: int = param(10, "delay T: blanks plus delimiter between the symbols and their recall")
    symbols: int = param(8, "number of distinct data symbols (the paper: 8)")
    recall: int = param(10, "symbols to remember and reproduce (the paper: 10)")
    train_size: int = param(2000, "training sequences")
    validation_size: int = param(500, "validation sequences")
    test_size: int = param(1000, "test sequences")

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length (T) must be at least 1, got {self.length}")
        if self.symbols < 1:
            raise ValueError(f"symbols must be at least 1, got {self.symbols}")
        if self.recall < 1:
            raise ValueError(f"recall must be at least 1, got {self.recall}")
        check_sizes(self)

    @property
    def steps(self) -> int:
        return self.length + 2 * self.recall

    @property
    def delimiter(self) -> int:
        return self.symbols + 1

    def _split(self, rng: np.random.Generator, count: int) -> Split:
        recall, steps = self.recall, self.steps
        data = rng.integers(1, self.symbols + 1, size=(recall, count))
        tokens = np.full((steps, count), BLANK)
        tokens[:recall] = data
        tokens[recall + self.length - 1] = self.delimiter
        targets = np.full((steps, count), BLANK)
        targets[-recall:] = data
        return Split(one_hot(tokens, self.symbols + 2), targets, targets_axis=1)

    def sizes(self) -> dict[str, int]:
        return dict(input_size=self.symbols + 2, output_size=self.symbols + 1)

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return cross_entropy(predictions, targets)

    def accuracy(self, predictions: np.ndarray, targets: np.ndarray) -> float:
        return accuracy(predictions, targets)

    def baseline_loss(self, data: TaskData) -> float:
        """Test cross-entropy of the per-position target frequencies of the training split
        (the memoryless predictor), about ``recall ln(symbols) / (T + 2 recall)``."""
        return positional_cross_entropy(data.train, data.test, self.symbols + 1)

    # --- task-aware evaluation: the recall positions are what the task is about ------------

    def recall_positions(self) -> range:
        """The last ``recall`` steps: where the symbols must be reproduced."""
        return range(self.steps - self.recall, self.steps)

    def scores(self, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """``recall_accuracy``: the fraction of the recalled symbols right (argmax at the recall
        positions). ``accuracy`` counts the blanks too and reads ``(T + recall +
        recall/symbols) / (T + 2 recall)`` (0.93 at T = 100) for a memoryless model;
        ``recall_accuracy`` reads ``1 / symbols`` (0.125 with the paper's 8) for it."""
        recall = slice(self.steps - self.recall, self.steps)
        return {"recall_accuracy": accuracy(predictions[recall], targets[recall])}

    def gradient_positions(self, steps: int) -> range:
        """The recall positions: the gradient-flow profile is that of the recall's loss, by lag
        back from the first recall step (index ``T + recall``), where the literature measures
        how much of it reaches the inputs: the last symbol to remember sits at lag ``T + 1``,
        the first at lag ``T + recall``."""
        return range(steps - self.recall, steps)

    def solved_criterion(self, data: TaskData) -> SolvedCriterion:
        return SolvedCriterion(
            "recall_accuracy", ">=", 0.99,
            "Arjovsky et al. 2016 count the task solved when the cross-entropy falls to about "
            "0, i.e. every symbol recalled; 0.99 allows 1 wrong symbol in 100 (memoryless: "
            "1/symbols)",
        )


@dataclass
class Echo(GeneratedTask):
    """A fixed-delay echo: the output at step t is the input symbol at step t - delay. It probes
    a short, exact memory (a delay line) that must be kept up at every step.

    Inputs: ``length`` symbols drawn uniformly from ``1..symbols``, one-hot over ``symbols``
    (symbol s at index s - 1). Targets: ``symbols + 1`` classes; class 0 (blank) for the first
    ``delay`` steps, where there is nothing to echo yet, then the input symbol from ``delay``
    steps earlier (class s for symbol s). Loss: mean cross-entropy over all steps.

    Baseline: the test cross-entropy of the per-position class frequencies of the training
    targets (the memoryless predictor), computed; about ``(length - delay) ln(symbols) /
    length``.
    """

    name = "echo"
    topology = Topology.MANY_TO_MANY
    readout = "all"
    standard_loss = "cross_entropy"
    description = "output the input symbol from `delay` steps earlier; blank before that"

    delay: int = param(3, "echo delay k: the output at step t is the input at step t - k")
    symbols: int = param(8, "number of distinct symbols")
    length: int = param(20, "sequence length")
    train_size: int = param(2000, "training sequences")
    validation_size: int = param(500, "validation sequences")
    test_size: int = param(1000, "test sequences")

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError(f"delay must be at least 0, got {self.delay}")
        if self.length <= self.delay:
            raise ValueError(
                f"length must exceed delay (else nothing is echoed), got length={self.length}, "
                f"delay={self.delay}"
            )
        if self.symbols < 1:
            raise ValueError(f"symbols must be at least 1, got {self.symbols}")
        check_sizes(self)

    def _split(self, rng: np.random.Generator, count: int) -> Split:
        tokens = rng.integers(1, self.symbols + 1, size=(self.length, count))
        targets = np.full((self.length, count), BLANK)
        targets[self.delay:] = tokens[: self.length - self.delay]
        return Split(one_hot(tokens - 1, self.symbols), targets, targets_axis=1)

    def sizes(self) -> dict[str, int]:
        return dict(input_size=self.symbols, output_size=self.symbols + 1)

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return cross_entropy(predictions, targets)

    def accuracy(self, predictions: np.ndarray, targets: np.ndarray) -> float:
        return accuracy(predictions, targets)

    def baseline_loss(self, data: TaskData) -> float:
        """Test cross-entropy of the per-position target frequencies of the training split
        (the memoryless predictor), about ``(length - delay) ln(symbols) / length``."""
        return positional_cross_entropy(data.train, data.test, self.symbols + 1)

    def solved_criterion(self, data: TaskData) -> SolvedCriterion:
        return SolvedCriterion(
            "accuracy", ">=", 0.99,
            "harness choice (no literature threshold): a delay line is exact, so solved means "
            "at most 1 output in 100 wrong",
        )


@hookimpl
def rnnbench_register_tasks(register):
    register(CopyMemory)
    register(Echo)


def recall_accuracy(run: RunOutcome) -> float | None:
    """Copy memory's ``recall_accuracy`` on the test split (:meth:`CopyMemory.scores`); blank
    for other tasks and for a diverged run."""
    if run.training.diverged:
        return None
    return run.test.scores.get("recall_accuracy")


@hookimpl
def rnnbench_register_metrics(register):
    # A task's own score becomes a table column through a metric that reads run.test.scores.
    register("recall_accuracy", recall_accuracy,
             "copy memory: fraction of the recalled symbols right (recall positions only; "
             "test_accuracy counts the blanks too); memoryless baseline 1/symbols = 0.125",
             better="higher")
