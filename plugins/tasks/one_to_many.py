"""One-to-many tasks: one conditioning input, then a generated sequence.

The model is given a description at step 0 and must then *generate*: training is teacher-forced
(each later input is the true previous sample), evaluation is free-running (each later input is
the model's own previous output, through :meth:`Task.feedback`), so errors compound as they do
in real generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnbench import (
    SolvedCriterion,
    Split,
    TaskData,
    Topology,
    check_sizes,
    hookimpl,
    mse,
    param,
)
from rnnbench.plugins.tasks.generated import GeneratedTask


@dataclass
class Sine(GeneratedTask):
    """Generate a sine wave from its frequency and phase.

    Each sequence draws a frequency f (cycles per sequence) uniformly from
    ``[min_frequency, max_frequency]`` and a phase p (in turns) uniformly from
    ``[min_phase, max_phase]``, and its targets are, for t = 0 .. T-1::

        y_t = sin(2π (f t / T + p))

    Inputs have 4 channels: step 0 is ``[f, sin 2πp, cos 2πp, 0]`` (the phase as a point on the
    circle, so it is continuous across whole turns); every step t >= 1 is ``[0, 0, 0,
    y_{t-1}]``, the *true* previous sample (teacher forcing). Evaluation is free-running:
    :meth:`feedback` puts the model's own previous prediction in that last channel. Targets
    ``(T, N, 1)``, loss MSE. It probes generation: holding an oscillation's frequency and phase
    in the state while its own errors are fed back.

    Baseline (computed): the test MSE of the best constant, the mean of the training targets
    (about 0.5, the variance of a sine over random phases).
    """

    name = "sine"
    topology = Topology.ONE_TO_MANY
    readout = "all"
    standard_loss = "mse"
    free_running = True
    description = "generate sin(2π(f t/T + p)) from f and p given at step 0; free-running eval"

    length: int = param(20, "samples T to generate")
    min_frequency: float = param(1.0, "lowest frequency f, in cycles per sequence")
    max_frequency: float = param(3.0, "highest frequency f, in cycles per sequence")
    min_phase: float = param(0.0, "lowest phase p, in turns (1 = 2π)")
    max_phase: float = param(1.0, "highest phase p, in turns (1 = 2π)")
    train_size: int = param(2000, "training sequences")
    validation_size: int = param(500, "validation sequences")
    test_size: int = param(1000, "test sequences")

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be at least 1, got {self.length}")
        if self.min_frequency > self.max_frequency:
            raise ValueError(
                f"min_frequency ({self.min_frequency}) is above max_frequency "
                f"({self.max_frequency})"
            )
        if self.min_phase > self.max_phase:
            raise ValueError(
                f"min_phase ({self.min_phase}) is above max_phase ({self.max_phase})"
            )
        check_sizes(self)

    def curve(self, frequency: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """The targets ``(T, N)`` for per-sequence ``frequency`` and ``phase`` ``(N,)``."""
        t = np.arange(self.length)[:, None]
        return np.sin(2.0 * np.pi * (frequency * t / self.length + phase))

    def _split(self, rng: np.random.Generator, count: int) -> Split:
        frequency = rng.uniform(self.min_frequency, self.max_frequency, size=count)
        phase = rng.uniform(self.min_phase, self.max_phase, size=count)
        y = self.curve(frequency, phase)
        inputs = np.zeros((self.length, count, 4))
        inputs[0, :, 0] = frequency
        inputs[0, :, 1] = np.sin(2.0 * np.pi * phase)
        inputs[0, :, 2] = np.cos(2.0 * np.pi * phase)
        inputs[1:, :, 3] = y[:-1]
        return Split(inputs, y[..., None], targets_axis=1)

    def sizes(self) -> dict[str, int]:
        return dict(input_size=4, output_size=1)

    def feedback(self, predictions: np.ndarray, step: int) -> np.ndarray:
        """``[0, 0, 0, prediction]``: the sample the model just generated."""
        inputs = np.zeros((predictions.shape[0], 4), dtype=predictions.dtype)
        inputs[:, 3] = predictions[:, 0]
        return inputs

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return mse(predictions, targets)

    def baseline_loss(self, data: TaskData) -> float:
        """Test MSE of the best constant: the mean of the training targets."""
        constant = float(np.mean(data.train.targets))
        return float(np.mean((data.test.targets - constant) ** 2))

    def solved_criterion(self, data: TaskData) -> SolvedCriterion:
        return SolvedCriterion(
            "loss_vs_baseline", "<", 0.1,
            "harness choice (no literature threshold): free-running MSE below a tenth of the "
            "best constant's, i.e. 90% of the wave's variance generated",
        )


@hookimpl
def rnnbench_register_tasks(register):
    register(Sine)
