"""Many-to-one tasks: read a whole sequence, answer once at the end."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness import Split, Task, TaskData, Topology, hookimpl, mse, param


@dataclass
class AddingProblem(Task):
    """The adding problem in its modern form (Le et al. 2015; Arjovsky et al. 2016).

    Two input channels of length T: values uniform on [0, 1], and a marker channel with exactly
    two ones, the first in the first half of the sequence and the second in the second half.
    The target is the sum of the two marked values; the loss is MSE. Predicting the constant 1
    scores MSE 1/6 (about 0.167), so a model that has learned nothing sits near there.
    """

    name = "adding"
    topology = Topology.MANY_TO_ONE
    readout = "last"
    description = "sum of the two marked values in a length-T sequence (Le et al. 2015)"

    length: int = param(50, "sequence length T (the distance the memory must span)")
    train_size: int = param(2000, "training sequences")
    validation_size: int = param(500, "validation sequences")
    test_size: int = param(1000, "test sequences")

    def __post_init__(self) -> None:
        if self.length < 2:
            raise ValueError(f"length must be at least 2 (two markers), got {self.length}")
        for name in ("train_size", "validation_size", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def _split(self, rng: np.random.Generator, count: int) -> Split:
        length = self.length
        half = length // 2
        values = rng.uniform(0.0, 1.0, size=(length, count))
        first = rng.integers(0, half, size=count)
        second = rng.integers(half, length, size=count)
        markers = np.zeros((length, count))
        columns = np.arange(count)
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        inputs = np.stack([values, markers], axis=-1)
        targets = (values[first, columns] + values[second, columns])[:, None]
        return Split(inputs, targets)

    def make_data(self, seed: int) -> TaskData:
        rng = np.random.default_rng(seed)
        return TaskData(
            train=self._split(rng, self.train_size),
            validation=self._split(rng, self.validation_size),
            test=self._split(rng, self.test_size),
            input_size=2,
            output_size=1,
        )

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return mse(predictions, targets)

    def baseline_loss(self, data: TaskData) -> float:
        """Test MSE of the best constant predictor fitted on the training targets."""
        constant = float(np.mean(data.train.targets))
        return float(np.mean((data.test.targets - constant) ** 2))


@hookimpl
def rnnbench_register_tasks(register):
    register(AddingProblem)
