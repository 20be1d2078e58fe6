"""One-to-one tasks: a single input step, a single answer (T = 1).

The recurrence is not exercised (there is no previous state but the zero one); these tasks check
that a cell works as a plain feed-forward layer and give the simplest point of comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnbench import (
    SolvedCriterion,
    Split,
    Task,
    TaskData,
    Topology,
    accuracy,
    check_sizes,
    cross_entropy,
    hookimpl,
    param,
    positional_cross_entropy,
)


@dataclass
class Blobs(Task):
    """Classify a point from one of K Gaussian clusters in D dimensions.

    For each seed, K cluster centres are drawn with independent coordinates ~ N(0,
    separation²); each point picks a class uniformly at random and is its centre plus N(0,
    spread²) noise per coordinate. Input: the point, as one step ``(1, N, D)``; target: the
    class ``(N,)``. Loss: cross-entropy; accuracy reported. It probes plain, single-step
    classification: nothing recurrent.

    Baseline (computed): the test cross-entropy of predicting the training split's class
    frequencies for every point (the best input-blind predictor), about ``ln K``.
    """

    name = "blobs"
    topology = Topology.ONE_TO_ONE
    readout = "last"
    standard_loss = "cross_entropy"
    description = "classify a point from K Gaussian clusters in D dimensions (one step)"
    online = True

    classes: int = param(4, "number of clusters K (classes)")
    dims: int = param(2, "dimension D of the points")
    spread: float = param(1.0, "standard deviation of each cluster around its centre")
    separation: float = param(3.0, "standard deviation of the cluster centres' coordinates")
    train_size: int = param(1000, "training points")
    validation_size: int = param(250, "validation points")
    test_size: int = param(500, "test points")

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ValueError(f"classes must be at least 2, got {self.classes}")
        if self.dims < 1:
            raise ValueError(f"dims must be at least 1, got {self.dims}")
        if not self.spread > 0:
            raise ValueError(f"spread must be positive, got {self.spread}")
        if not self.separation >= 0:
            raise ValueError(f"separation must be at least 0, got {self.separation}")
        check_sizes(self)

    def _split(self, rng: np.random.Generator, centres: np.ndarray, count: int) -> Split:
        labels = rng.integers(0, self.classes, size=count)
        points = centres[labels] + rng.normal(0.0, self.spread, size=(count, self.dims))
        return Split(points[None], labels)

    def make_data(self, seed: int) -> TaskData:
        rng = np.random.default_rng(seed)
        centres = rng.normal(0.0, self.separation, size=(self.classes, self.dims))
        return TaskData(
            train=self._split(rng, centres, self.train_size),
            validation=self._split(rng, centres, self.validation_size),
            test=self._split(rng, centres, self.test_size),
            input_size=self.dims,
            output_size=self.classes,
        )

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Split:
        """``n`` fresh points (``data: online``) around the clusters of ``seed``: the centres
        are ``make_data(seed)``'s first draw, redrawn here the same way."""
        centres = np.random.default_rng(seed).normal(
            0.0, self.separation, size=(self.classes, self.dims))
        return self._split(rng, centres, n)

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return cross_entropy(predictions, targets)

    def accuracy(self, predictions: np.ndarray, targets: np.ndarray) -> float:
        return accuracy(predictions, targets)

    def baseline_loss(self, data: TaskData) -> float:
        """Test cross-entropy of predicting the training class frequencies for every point."""
        return positional_cross_entropy(data.train, data.test, self.classes)

    #: How far below the nearest-class-mean classifier's test accuracy a solved run may be.
    SOLVED_MARGIN = 0.02

    def nearest_mean_accuracy(self, data: TaskData) -> float:
        """Test accuracy of assigning each point to the nearest class mean of the training
        split: near the Bayes-optimal accuracy, since the clusters are isotropic with one
        spread and classes are equally likely (overlapping clusters cap it below 1)."""
        train_points, test_points = data.train.inputs[0], data.test.inputs[0]
        means = np.stack([
            train_points[data.train.targets == k].mean(axis=0)
            if np.any(data.train.targets == k) else np.full(self.dims, np.inf)
            for k in range(self.classes)
        ])
        distances = np.linalg.norm(test_points[:, None, :] - means[None], axis=-1)
        return float(np.mean(np.argmin(distances, axis=1) == data.test.targets))

    def solved_criterion(self, data: TaskData) -> SolvedCriterion:
        threshold = self.nearest_mean_accuracy(data) - self.SOLVED_MARGIN
        return SolvedCriterion(
            "accuracy", ">=", threshold,
            "harness choice: test accuracy within 0.02 of the nearest-class-mean classifier "
            "fitted on the training split (near Bayes-optimal here; overlapping clusters make "
            "a fixed accuracy meaningless)",
        )


@hookimpl
def rnnbench_register_tasks(register):
    register(Blobs)
