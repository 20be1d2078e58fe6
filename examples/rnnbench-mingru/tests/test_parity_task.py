"""The parity task: rnnbench's task checks (``rnnbench.testing``), then parity's own data, labels,
baseline, loss and accuracy."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from rnnbench import Split
from rnnbench.testing import TASK_CHECK_NAMES, task_checks

from rnnbench_mingru.tasks import Parity

SMALL = {"train_size": 300, "validation_size": 50, "test_size": 200}
#: Every task check but ``feedback``, which applies to free-running tasks only (parity is not).
CHECKS = [name for name in TASK_CHECK_NAMES if name != "feedback"]
CONTRACT_CASES = [
    pytest.param(check, id=f"T{length}-{check.name}")
    for length in (1, 2, 9)
    for check in task_checks(Parity, params={"length": length, **SMALL}, checks=CHECKS)
]


@pytest.mark.parametrize("check", CONTRACT_CASES)
def test_follows_the_task_contract(check):
    check()


def test_labels_are_the_parity_of_the_bits():
    data = Parity(length=7, **SMALL).make_data(3)
    for split in (data.train, data.validation, data.test):
        assert split.inputs.shape[::2] == (7, 1)
        assert set(np.unique(split.inputs)) <= {0.0, 1.0}
        assert np.issubdtype(split.targets.dtype, np.integer)
        for n in range(len(split)):
            ones = sum(int(bit) for bit in split.inputs[:, n, 0])
            assert split.targets[n] == ones % 2
    assert (data.input_size, data.output_size) == (1, 2)
    assert 0.4 < data.train.targets.mean() < 0.6  # both classes, about equally often


def test_baseline_is_the_training_class_frequencies_on_the_test_split():
    task = Parity(length=5, train_size=2000, validation_size=10, test_size=1000)
    data = task.make_data(0)
    p_odd = data.train.targets.mean()
    p_label = np.where(data.test.targets == 1, p_odd, 1 - p_odd)
    assert task.baseline_loss(data) == pytest.approx(-np.mean(np.log(p_label)), abs=1e-3)
    assert task.baseline_loss(data) == pytest.approx(math.log(2), abs=0.01)


def test_baseline_is_computed_from_the_data():
    task = Parity(length=3, **SMALL)
    data = task.make_data(0)
    odd_train = Split(data.train.inputs, np.ones_like(data.train.targets))
    even_test = Split(data.test.inputs, np.zeros_like(data.test.targets))
    skewed = replace(data, train=odd_train, test=even_test)
    # Training data that are all odd make "odd" the baseline's sure answer, wrong on every test
    # sequence: its loss is far above ln 2.
    assert task.baseline_loss(skewed) > 3.0


def test_loss_and_accuracy_of_sure_predictions():
    task = Parity(length=4, **SMALL)
    labels = task.make_data(0).test.targets
    right = np.where(labels[:, None] == np.arange(2), 20.0, -20.0)
    loss, gradient = task.loss(right, labels)
    assert loss < 1e-12 and np.abs(gradient).max() < 1e-12
    assert task.accuracy(right, labels) == 1.0
    assert task.accuracy(-right, labels) == 0.0


@pytest.mark.parametrize(
    ("field", "value"), [("length", 0), ("train_size", 0), ("validation_size", 0),
                         ("test_size", -1)]
)
def test_bad_parameters_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        Parity(**{field: value})
