"""The generalisation_gap metric: rnnbench's metric checks (``rnnbench.testing``), then small real
runs through ``rnnbench.run_suite``, with the opt-in leaderboard reporter on the same results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rnnbench
from rnnbench.testing import metric_checks, small_outcome

from rnnbench_mingru import __version__
from rnnbench_mingru.metrics import generalisation_gap

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
#: A few training steps of minGRU on a short parity task: what the metric checks read.
PARITY_OUTCOME = {"task_params": {"length": 4, "train_size": 32, **SIZES}, "steps": 4}


@pytest.mark.parametrize(
    "check",
    [
        *metric_checks(generalisation_gap),  # on rnnbench's small run: an RNN on the adding task
        *metric_checks(generalisation_gap, small_outcome(("mingru", "numpy"), "parity",
                                                         **PARITY_OUTCOME)),
    ],
)
def test_follows_the_metric_contract(check):
    check()


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory) -> rnnbench.SuiteRun:
    """SUITE, run with the test plugin and the leaderboard reporter."""
    folder = tmp_path_factory.mktemp("gap")
    path = folder / "gap.yaml"
    path.write_text(json.dumps(SUITE, indent=2), encoding="utf-8")  # JSON is YAML
    return rnnbench.run_suite(
        path,
        output_dir=folder / "results",
        plugins=[str(SAME_SPLIT_PLUGIN), "rnnbench_mingru.leaderboard"],
    )


@pytest.fixture(scope="module")
def runs(suite_run) -> dict[tuple[str, str], rnnbench.RunRecord]:
    """The records of SUITE by (cell, task)."""
    return {(r.config["cell"], r.config["task"]): r for r in suite_run.records}


def test_every_run_of_the_suite_ran(suite_run, runs):
    assert len(runs) == len(suite_run.records) == 5
    assert (suite_run.finished, suite_run.diverged, suite_run.failed) == (4, 1, 0)


def test_gap_is_zero_when_the_test_split_is_the_training_split(runs):
    for cell in ("mingru", "gru"):
        record = runs[(cell, "parity_test_on_train")]
        assert record.status == "ok", record.error
        assert record.metrics["generalisation_gap"] == 0.0


def test_gap_of_a_memorising_run_is_large_and_at_most_the_test_loss(runs):
    metrics = runs[("gru", "parity")].metrics
    # The GRU fits its 16 training sequences and is wrong with confidence on new ones.
    assert metrics["generalisation_gap"] > 0.5
    # The training-split loss (test loss - gap) is a cross-entropy: at least 0.
    assert metrics["generalisation_gap"] <= metrics["test_loss"]


def test_gap_is_none_for_a_diverged_run(runs):
    record = runs[("mingru", "adding")]
    assert record.status == "diverged"
    assert record.metrics["generalisation_gap"] is None


def test_records_name_the_distribution_that_provided_cell_task_and_metric(runs):
    ours = {"distribution": "rnnbench-mingru", "version": __version__}
    provenance = runs[("mingru", "parity")].provenance
    assert provenance["cell"] == {"plugin": "mingru_cells", **ours}
    assert provenance["task"] == {"plugin": "mingru_tasks", **ours}
    by_plugin = {p["plugin"]: p for p in provenance["metrics"]}
    assert by_plugin["mingru_metrics"] == {"plugin": "mingru_metrics", **ours,
                                           "names": ["generalisation_gap"]}
    assert by_plugin["training_metrics"]["distribution"] == "rnnbench"
    gru = runs[("gru", "parity")].provenance["cell"]
    assert (gru["plugin"], gru["distribution"]) == ("reference_cells", "rnnbench")


def test_environment_names_the_plugins_and_their_versions(suite_run):
    environment = json.loads((suite_run.output_dir / "environment.json").read_text("utf-8"))
    plugins = {p["plugin"]: p for p in environment["plugins"]}
    for name in ("mingru_cells", "mingru_tasks", "mingru_metrics"):
        assert plugins[name]["distribution"] == "rnnbench-mingru", plugins[name]
        assert plugins[name]["version"] == __version__
        assert plugins[name]["status"] == "loaded"


def test_leaderboard_ranks_each_task_by_test_loss(suite_run, runs):
    text = (suite_run.output_dir / "leaderboard.md").read_text(encoding="utf-8")
    section = text.split("## parity[")[1].split("##")[0]
    ranked = [line.split("|")[2].strip() for line in section.splitlines()
              if line.startswith("| 1 ") or line.startswith("| 2 ")]
    losses = {cell: runs[(cell, "parity")].metrics["test_loss"] for cell in ("mingru", "gru")}
    assert ranked == sorted(losses, key=losses.get)
