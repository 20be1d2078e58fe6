"""Encoder-decoder many-to-many tasks: the output sequence has its own length.

An encoder cell reads the input symbols; its final state starts a decoder cell that emits the
output symbols one at a time, then an end symbol. Training is teacher-forced (the decoder reads
the start symbol, then the *true* previous output symbols); evaluation is free-running greedy
decoding (the decoder reads the one-hot of its own previous argmax, see :meth:`feedback`).

Token ids, shared by both tasks:

- ``0``: the end symbol (a target class);
- ``1..symbols``: data symbols (target classes);
- ``symbols + 1``: the start symbol (decoder input only).

Encoder inputs are one-hot over the ``symbols`` data symbols (symbol s at index s - 1); decoder
inputs are one-hot over all ``symbols + 2`` token ids; the readout has ``symbols + 1`` classes
(end + data symbols).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnbench import (
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

END = 0


@dataclass
class _SymbolTransduction(GeneratedTask):
    """Shared machinery: a symbol sequence in, a transformed sequence plus an end symbol out.

    Subclasses define :meth:`transform` (the ``(L, N)`` output symbols from the ``(L, N)``
    input symbols).
    """

    topology = Topology.MANY_TO_MANY
    readout = "all"
    standard_loss = "cross_entropy"
    model = "encoder-decoder"
    free_running = True

    length: int = param(5, "input length L (the output has L symbols plus the end symbol)")
    symbols: int = param(8, "number of distinct data symbols")
    train_size: int = param(2000, "training sequences")
    validation_size: int = param(500, "validation sequences")
    test_size: int = param(1000, "test sequences")

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be at least 1, got {self.length}")
        if self.symbols < 1:
            raise ValueError(f"symbols must be at least 1, got {self.symbols}")
        check_sizes(self)

    @property
    def start(self) -> int:
        return self.symbols + 1

    @property
    def vocabulary(self) -> int:
        """Decoder input size: end, the data symbols and start."""
        return self.symbols + 2

    def transform(self, tokens: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _split(self, rng: np.random.Generator, count: int) -> Split:
        tokens = rng.integers(1, self.symbols + 1, size=(self.length, count))
        targets = np.concatenate([self.transform(tokens), np.full((1, count), END)])
        previous = np.concatenate([np.full((1, count), self.start), targets[:-1]])
        return Split(
            inputs=one_hot(tokens - 1, self.symbols),
            targets=targets,
            targets_axis=1,
            decoder_inputs=one_hot(previous, self.vocabulary),
        )

    def sizes(self) -> dict[str, int]:
        return dict(
            input_size=self.symbols,
            output_size=self.symbols + 1,
            decoder_input_size=self.vocabulary,
        )

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return cross_entropy(predictions, targets)

    def accuracy(self, predictions: np.ndarray, targets: np.ndarray) -> float:
        """Fraction of output symbols (the end symbol included) decoded right."""
        return accuracy(predictions, targets)

    def feedback(self, predictions: np.ndarray, step: int) -> np.ndarray:
        """Greedy decoding: the one-hot (over the decoder vocabulary) of the previous step's
        most likely class."""
        return one_hot(np.argmax(predictions, axis=-1), self.vocabulary)

    def baseline_loss(self, data: TaskData) -> float:
        """Test cross-entropy of the best memoryless predictor: at each output position, the
        class frequencies of the training targets there (it ignores the input)."""
        return positional_cross_entropy(data.train, data.test, self.symbols + 1)

    def solved_criterion(self, data: TaskData) -> SolvedCriterion:
        return SolvedCriterion(
            "accuracy", ">=", 0.99,
            "harness choice (sequence-to-sequence papers report exact-match rates, not a "
            "threshold): at most 1 free-running decoded symbol in 100 wrong",
        )


@dataclass
class Reverse(_SymbolTransduction):
    """Reverse a symbol sequence (the classic sequence-to-sequence probe, Sutskever et al.
    2014): the encoder must store the whole input in its final state, and the decoder must
    read it out in the opposite order and then stop.

    Input: L symbols from ``1..symbols``; output: the same symbols reversed, then the end symbol
    (L + 1 outputs). Baseline (computed): the memoryless per-position class frequencies of the
    training targets, about ``L ln(symbols) / (L + 1)``.
    """

    name = "reverse"
    description = "encoder-decoder: output the input symbols reversed, then an end symbol"

    def transform(self, tokens: np.ndarray) -> np.ndarray:
        return tokens[::-1]


@dataclass
class Sort(_SymbolTransduction):
    """Sort a symbol sequence (ascending), then emit the end symbol: the encoder must count
    the symbols it saw, the decoder must emit them in order.

    Baseline (computed): the memoryless per-position class frequencies of the training targets,
    which is below ``ln(symbols)`` per position because sorted positions are skewed (the first
    tends to be small, the last large).
    """

    name = "sort"
    description = "encoder-decoder: output the input symbols sorted ascending, then an end symbol"

    def transform(self, tokens: np.ndarray) -> np.ndarray:
        return np.sort(tokens, axis=0)


@hookimpl
def rnnbench_register_tasks(register):
    register(Reverse)
    register(Sort)
