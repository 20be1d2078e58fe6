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
