"""A test-only plugin: parity whose test split *is* its training split.

The generalisation gap of any run on it must be exactly 0: the test loss and the training-split
loss are then the same computation on the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rnnbench import TaskData, TaskRegistrar, hookimpl

from rnnbench_mingru.tasks import Parity

RNNBENCH_CONTRACT = 1


@dataclass
class ParityTestOnTrain(Parity):
    """Parity, tested on its own training split."""

    name = "parity_test_on_train"
    description = "parity whose test split is its training split (tests only)"

    def make_data(self, seed: int) -> TaskData:
        return replace(super().make_data(seed), test=super().make_data(seed).train)


@hookimpl
def rnnbench_register_tasks(register: TaskRegistrar) -> None:
    register(ParityTestOnTrain)
