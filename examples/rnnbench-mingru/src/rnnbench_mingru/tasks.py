"""The parity task: read T random bits, answer whether the number of ones is odd."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rnnbench import (
    Split,
    Task,
    TaskData,
    TaskRegistrar,
    Topology,
    accuracy,
    check_sizes,
    cross_entropy,
    hookimpl,
    param,
    positional_cross_entropy,
)

#: The version of rnnbench's plugin contract this module was written for.
RNNBENCH_CONTRACT = 2


@dataclass
class Parity(Task):
    """Is the number of ones among T random bits odd? (Many-to-one classification.)

    Each sequence is T independent fair bits, given as one input channel of 0.0 and 1.0
    ``(T, N, 1)``; the target is their sum modulo 2, a class label ``(N,)`` (1: odd). Loss:
    cross-entropy over the two classes; accuracy reported. Every bit matters to the answer until
    the very last step, and flipping any one of them flips it, so the task probes whether a cell
    can keep one bit of state exactly over the whole sequence and toggle it; a cell whose state
    update cannot change the sign of its state (such as a diagonal linear recurrence with
    positive coefficients, which minGRU is per layer) is expected to struggle as T grows.

    Baseline (computed): the test cross-entropy of predicting the training split's class
    frequencies for every sequence (the best input-blind predictor), about ``ln 2``.
    """

    name = "parity"
    topology = Topology.MANY_TO_ONE
    readout = "last"
    description = "is the number of ones among T random bits odd? (many-to-one classification)"
    online = True

    length: int = param(10, "sequence length T (bits per sequence)")
    train_size: int = param(2000, "training sequences")
    validation_size: int = param(500, "validation sequences")
    test_size: int = param(1000, "test sequences")

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be at least 1, got {self.length}")
        check_sizes(self)

    def _split(self, rng: np.random.Generator, count: int) -> Split:
        bits = rng.integers(0, 2, size=(self.length, count))
        labels = bits.sum(axis=0) % 2
        return Split(bits[..., None].astype(np.float64), labels)

    def make_data(self, seed: int) -> TaskData:
        rng = np.random.default_rng(seed)
        return TaskData(
            train=self._split(rng, self.train_size),
            validation=self._split(rng, self.validation_size),
            test=self._split(rng, self.test_size),
            input_size=1,
            output_size=2,
        )

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Split:
        """``n`` fresh training sequences, for ``training: {data: online}``."""
        return self._split(rng, n)

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return cross_entropy(predictions, targets)

    def accuracy(self, predictions: np.ndarray, targets: np.ndarray) -> float:
        return accuracy(predictions, targets)

    def baseline_loss(self, data: TaskData) -> float:
        """Test cross-entropy of predicting the training class frequencies for every sequence."""
        return positional_cross_entropy(data.train, data.test, 2)


@hookimpl
def rnnbench_register_tasks(register: TaskRegistrar) -> None:
    register(Parity)
