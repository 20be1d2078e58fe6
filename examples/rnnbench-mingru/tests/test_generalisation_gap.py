"""The generalisation_gap metric on small real runs (through the ``rnnbench`` command), and the
opt-in leaderboard reporter on the same results."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_checks import read_records, run_suite

SAME_SPLIT_PLUGIN = Path(__file__).parent / "plugins" / "same_split.py"
SIZES = {"validation_size": 50, "test_size": 200}
SUITE = {
    "name": "gap",
    "cell": ["mingru", "gru"],
    "backend": "numpy",
    "task": [
        # A training split of 16 sequences that the GRU memorises: a large gap.
        {"name": "parity", "params": {"length": 8, "train_size": 16, **SIZES}},
        # The test split is the training split: a gap of exactly 0.
        {"name": "parity_test_on_train", "params": {"length": 5, "train_size": 100, **SIZES}},
    ],
    "hidden_size": 32,
    "dtype": "float64",
    "seed": 0,
    "training": {"optimizer": "adam", "lr": 0.02, "batch_size": 16, "steps": 300, "clip": 1.0,
                 "eval_every": 100},
    "include": [
        # A learning rate of 1e6 without clipping: diverges within a few steps.
        {"cell": "mingru", "task": {"name": "adding", "params": {"length": 5, "train_size": 100,
                                                                 **SIZES}},
         "optimizer": "sgd", "lr": 1.0e6, "clip": None},
    ],
    "metrics": ["test_loss", "train_loss", "generalisation_gap", "diverged"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """The results folder of SUITE, run with the test plugin and the leaderboard reporter."""
    folder = tmp_path_factory.mktemp("gap")
    run_suite(SUITE, folder, plugins=[str(SAME_SPLIT_PLUGIN), "rnnbench_mingru.leaderboard"])
    return folder / "results"


@pytest.fixture(scope="module")
def runs(results) -> dict[tuple[str, str], dict]:
    """The records of SUITE by (cell, task)."""
    return {(r["config"]["cell"], r["config"]["task"]): r for r in read_records(results)}


def test_gap_is_zero_when_the_test_split_is_the_training_split(runs):
    for cell in ("mingru", "gru"):
        record = runs[(cell, "parity_test_on_train")]
        assert record["status"] == "ok", record["error"]
        assert record["metrics"]["generalisation_gap"] == 0.0


def test_gap_of_a_memorising_run_is_large_and_at_most_the_test_loss(runs):
    metrics = runs[("gru", "parity")]["metrics"]
    # The GRU fits its 16 training sequences and is wrong with confidence on new ones.
    assert metrics["generalisation_gap"] > 0.5
    # The training-split loss (test loss - gap) is a cross-entropy: at least 0.
    assert metrics["generalisation_gap"] <= metrics["test_loss"]


def test_gap_is_none_for_a_diverged_run(runs):
    record = runs[("mingru", "adding")]
    assert record["status"] == "diverged"
    assert record["metrics"]["generalisation_gap"] is None


def test_leaderboard_ranks_each_task_by_test_loss(results, runs):
    text = (results / "leaderboard.md").read_text(encoding="utf-8")
    section = text.split("## parity[")[1].split("##")[0]
    ranked = [line.split("|")[2].strip() for line in section.splitlines()
              if line.startswith("| 1 ") or line.startswith("| 2 ")]
    losses = {cell: runs[(cell, "parity")]["metrics"]["test_loss"] for cell in ("mingru", "gru")}
    assert ranked == sorted(losses, key=losses.get)
