"""Result tables: aggregation over seeds, reporters' files, environment, atomic writes."""

from __future__ import annotations

import csv
import json

import pytest

from rnnbench.plugins.reporters.tables import write_csv, write_json, write_markdown
from rnnbench.records import RunRecord
from rnnbench.results import (
    ResultStore,
    ResultTable,
    atomic_write_text,
    capture_environment,
    format_mean_std,
    load_table,
    summary_cell,
)


def record(cell, seed, loss, status="ok", error=None):
    config = {"cell": cell, "backend": "numpy", "task": "adding", "task_params": {"length": 5},
              "hidden_size": 8, "num_layers": 1, "bias": True, "dtype": "float64", "seed": seed,
              "training": {"optimizer": "adam", "lr": 0.01}}
    return RunRecord(run_id=f"{cell}{seed}", label=f"{cell}/{seed}", suite="demo", config=config,
                     status=status, metrics={"test_loss": loss}, error=error)


def table():
    records = [record("lstm", 0, 1.0), record("lstm", 1, 3.0), record("gru", 0, 2.0),
               record("gru", 1, None, status="failed", error="ValueError: bad\ntrace")]
    return ResultTable("demo", records, ["test_loss"])


def test_summary_is_mean_and_std_over_seeds():
    summary = {row["cell"]: row for row in table().summary()}
    assert summary["lstm"]["test_loss_mean"] == pytest.approx(2.0)
    assert summary["lstm"]["test_loss_std"] == pytest.approx(2 ** 0.5)
    assert summary["lstm"]["runs"] == 2 and summary["lstm"]["ok"] == 2
    assert summary["gru"]["test_loss_mean"] == pytest.approx(2.0)
    assert summary["gru"]["test_loss_std"] is None
    assert summary["gru"]["failed"] == 1
    assert "seed" not in summary["gru"]


def test_varying_and_constant_columns():
    t = table()
    assert t.varying == ["cell", "seed"]
    assert t.constant["task.length"] == 5 and t.constant["lr"] == 0.01


def test_reporters_write_all_formats(tmp_path):
    t = table()
    paths = write_markdown(t, tmp_path) + write_csv(t, tmp_path) + write_json(t, tmp_path)
    assert sorted(p.name for p in paths) == ["results.json", "results.md", "runs.csv",
                                            "summary.csv"]
    markdown = (tmp_path / "results.md").read_text()
    assert "| lstm | 2/2 | 2 ± 1.4 |" in markdown
    assert "ValueError: bad" in markdown and "trace" not in markdown
    with open(tmp_path / "runs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["cell"] for r in rows] == ["lstm", "lstm", "gru", "gru"]
    assert rows[0]["test_loss"] == "1.0"
    document = json.loads((tmp_path / "results.json").read_text())
    assert len(document["runs"]) == 4 and len(document["summary"]) == 2


def test_load_table_reads_the_store(tmp_path):
    store = ResultStore(tmp_path)
    for r in table().records:
        store.append(r)
    loaded = load_table(tmp_path)
    assert loaded.metrics == ["test_loss"]
    assert [r.run_id for r in loaded.records] == ["lstm0", "lstm1", "gru0", "gru1"]


def test_latest_record_of_a_run_wins(tmp_path):
    store = ResultStore(tmp_path)
    store.append(record("gru", 1, None, status="failed"))
    store.append(record("gru", 1, 0.5))
    [only] = store.records()
    assert only.status == "ok" and only.metrics["test_loss"] == 0.5


def test_environment_has_what_a_reviewer_needs():
    env = capture_environment()
    for key in ("date", "python", "platform", "cpu", "cpu_count", "packages", "git"):
        assert key in env
    assert "numpy" in env["packages"]


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "table.md"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["table.md"]


def test_format_mean_std():
    assert format_mean_std(0.123456, 0.01) == "0.1235 ± 0.01"
    assert format_mean_std(None, None) == ""
    assert format_mean_std(2.0, None) == "2"
    assert format_mean_std(400.0, 0.0) == "400"


def test_list_metrics_are_profiles_not_columns(tmp_path):
    records = [record("lstm", 0, 1.0), record("gru", 0, 2.0)]
    records[0].metrics["grad_by_lag"] = [[0, 1.0], [1, 0.5]]
    t = ResultTable("demo", records, ["test_loss", "grad_by_lag"])
    assert t.metrics == ["test_loss"] and t.profiles == ["grad_by_lag"]
    assert "grad_by_lag" not in t.rows()[0]
    write_json(t, tmp_path)
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["profiles"]["lstm0"]["grad_by_lag"] == [[0, 1.0], [1, 0.5]]


def verdict_record(cell, seed, metrics, status="ok", target_loss=0.05):
    config = {"cell": cell, "backend": "numpy", "task": "adding", "task_params": {"length": 5},
              "hidden_size": 8, "num_layers": 1, "bias": True, "dtype": "float64", "seed": seed,
              "training": {"optimizer": "adam", "lr": 0.01, "target_loss": target_loss}}
    return RunRecord(run_id=f"{cell}{seed}", label=f"{cell}/{seed}", suite="demo", config=config,
                     status=status, metrics=metrics)


def test_solved_fraction_counts_verdicts_over_seeds(tmp_path):
    """2 of 3 solved reads "2/3" in Markdown and 0.667 in CSV/JSON; a diverged run (False) counts,
    a failed one (no metrics) does not; a task without a criterion (None) has no fraction."""
    records = [
        verdict_record("lstm", 0, {"solved": True}), verdict_record("lstm", 1, {"solved": True}),
        verdict_record("lstm", 2, {"solved": False}, status="diverged"),
        verdict_record("lstm", 3, {}, status="failed"),
        verdict_record("rnn", 0, {"solved": None}), verdict_record("rnn", 1, {"solved": None}),
    ]
    t = ResultTable("demo", records, ["solved"])
    summary = {row["cell"]: row for row in t.summary()}
    assert summary["lstm"]["solved_count"] == 2 and summary["lstm"]["solved_n"] == 3
    assert summary["lstm"]["solved_fraction"] == pytest.approx(2 / 3)
    assert summary["rnn"]["solved_count"] == 0 and summary["rnn"]["solved_fraction"] is None
    assert summary_cell(summary["lstm"], "solved") == "2/3"
    assert summary_cell(summary["rnn"], "solved") == ""
    write_markdown(t, tmp_path)
    write_csv(t, tmp_path)
    markdown = (tmp_path / "results.md").read_text()
    assert "| solved_fraction |" in markdown and "| 2/3 |" in markdown
    with open(tmp_path / "summary.csv") as handle:
        rows = {row["cell"]: row for row in csv.DictReader(handle)}
    assert float(rows["lstm"]["solved_fraction"]) == pytest.approx(2 / 3)
    assert rows["lstm"]["solved_count"] == "2" and rows["rnn"]["solved_fraction"] == ""
    plain = ResultTable("demo", [record("lstm", 0, 1.0)], ["test_loss"]).summary()[0]
    assert "solved_fraction" not in plain  # only when `solved` is among the metrics


def test_steps_to_target_summary_counts_the_seeds_that_never_reached_it(tmp_path):
    records = [
        verdict_record("lstm", 0, {"steps_to_target": 400}),
        verdict_record("lstm", 1, {"steps_to_target": 200}),
        verdict_record("lstm", 2, {"steps_to_target": None}),
        verdict_record("rnn", 0, {"steps_to_target": 300}),
        verdict_record("rnn", 1, {"steps_to_target": None}),
        verdict_record("rnn", 2, {"steps_to_target": None}, status="diverged"),
        verdict_record("gru", 0, {"steps_to_target": None}, target_loss=None),
    ]
    t = ResultTable("demo", records, ["steps_to_target"])
    summary = {row["cell"]: row for row in t.summary()}
    lstm, rnn, gru = summary["lstm"], summary["rnn"], summary["gru"]
    # The median counts an unreached seed as never: 200, 400, never -> 400.
    assert (lstm["steps_to_target_median"], lstm["steps_to_target_reached"],
            lstm["steps_to_target_targeted"]) == (400, 2, 3)
    assert lstm["steps_to_target_mean"] == pytest.approx(300)  # over the seeds that reached it
    assert summary_cell(lstm, "steps_to_target") == "400 (2/3 reached)"
    assert rnn["steps_to_target_median"] is None and rnn["steps_to_target_reached"] == 1
    assert summary_cell(rnn, "steps_to_target") == "not reached (1/3 reached)"
    assert gru["steps_to_target_targeted"] == 0 and summary_cell(gru, "steps_to_target") == ""
    write_markdown(t, tmp_path)
    assert "| 400 (2/3 reached) |" in (tmp_path / "results.md").read_text()
    write_json(t, tmp_path)
    document = json.loads((tmp_path / "results.json").read_text())
    row = next(r for r in document["summary"] if r["cell"] == "lstm")
    assert row["steps_to_target_reached"] == 2 and row["steps_to_target_median"] == 400
