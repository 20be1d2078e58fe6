"""rnnbench.run_suite: running a suite from Python gives what ``rnnbench run`` gives, and bad
input comes back as exceptions, not printed messages and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rnnbench
from rnnbench.cli import main
from rnnbench.compare import compare_folders
from rnnbench.errors import PluginError, RnnbenchError, SuiteError
from rnnbench.plugin_manager import build_host
from rnnbench.runner import SilentObserver

SUITE = """\
name: tiny
cell: [rnn, lstm]
task:
  - name: adding
    params: {length: 4, train_size: 60, validation_size: 20, test_size: 20}
hidden_size: 4
dtype: float64
seed: [0, 1]
training: {optimizer: adam, lr: 0.01, batch_size: 20, steps: 6, eval_every: 3}
metrics: [test_loss, loss_vs_baseline, steps, step_ms]
"""
TABLES = ("results.jsonl", "environment.json", "suite.yaml", "results.md", "runs.csv",
          "summary.csv", "results.json")


def write_suite(folder: Path, text: str = SUITE, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def run_ids(folder: Path) -> list[str]:
    lines = (folder / "results.jsonl").read_text().splitlines()
    return [json.loads(line)["run_id"] for line in lines]


def test_run_suite_writes_what_the_cli_writes(tmp_path, capsys):
    suite = write_suite(tmp_path)
    assert main(["run", str(suite), "-o", str(tmp_path / "cli"), "-q"]) == 0
    run = rnnbench.run_suite(suite, output_dir=tmp_path / "api")
    assert capsys.readouterr().out == ""  # the API prints nothing
    for name in TABLES:
        assert (tmp_path / "api" / name).is_file(), name
    assert run_ids(tmp_path / "api") == run_ids(tmp_path / "cli")
    comparison = compare_folders(tmp_path / "cli", tmp_path / "api", mode="exact")
    assert comparison.ok, comparison.verdict
    assert (tmp_path / "api" / "suite.yaml").read_text() == SUITE

    assert isinstance(run, rnnbench.SuiteRun)
    assert run.suite.name == "tiny" and run.output_dir == tmp_path / "api"
    assert [r.run_id for r in run.records] == [spec.run_id for spec in run.runs]
    assert len(run.runs) == 4 and run.already_done == []
    assert (run.finished, run.failed, run.diverged) == (4, 0, 0)
    assert len(run.table.records) == 4 and run.table.suite == "tiny"


def test_output_defaults_to_results_slash_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = rnnbench.run_suite(write_suite(tmp_path), keyword="rnn and seed0")
    assert run.output_dir == Path("results") / "tiny"
    assert run_ids(tmp_path / "results" / "tiny") == [run.runs[0].run_id]


def test_keyword_and_resume_keep_and_skip_earlier_records(tmp_path):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    first = rnnbench.run_suite(suite, output_dir=out, keyword="lstm")
    assert [spec.cell for spec in first.runs] == ["lstm", "lstm"]
    second = rnnbench.run_suite(suite, output_dir=out, resume=True)
    assert second.already_done == first.runs
    assert [spec.cell for spec in second.runs] == ["rnn", "rnn"]
    assert len(second.records) == 2 and len(second.table.records) == 4
    assert sorted(run_ids(out)) == sorted(spec.run_id for spec in second.suite.runs)


def test_a_failed_run_is_a_record_not_an_exception(tmp_path, data_dir):
    text = SUITE.replace("cell: [rnn, lstm]", "cell: toy_boom").replace(
        "hidden_size: 4", "hidden_size: [8, 13]")
    run = rnnbench.run_suite(write_suite(tmp_path, text), output_dir=tmp_path / "out",
                             plugins=[str(data_dir / "toy_plugin.py")])
    assert (run.finished, run.failed, run.diverged) == (2, 2, 0)
    assert all("boom: this cell refuses hidden_size 13" in r.error for r in run.failures)


def test_invalid_suite_raises_suite_error_before_writing(tmp_path, capsys):
    path = write_suite(tmp_path, SUITE.replace("[rnn, lstm]", "[rnn, lstmm]"))
    with pytest.raises(SuiteError) as info:
        rnnbench.run_suite(path, output_dir=tmp_path / "out")
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.field) == (str(path), 2, "cell[1]")
    assert problem.hint == "did you mean 'lstm'?"
    assert not (tmp_path / "out").exists()
    assert capsys.readouterr() == ("", "")


def test_unsupported_cell_values_raise_suite_error(tmp_path, data_dir):
    path = write_suite(tmp_path, SUITE.replace("[rnn, lstm]", "narrow_lstm")
                       .replace("dtype: float64", "dtype: [float64, float32]"))
    with pytest.raises(SuiteError, match="does not support dtype float32"):
        rnnbench.run_suite(path, output_dir=tmp_path / "out",
                           plugins=[str(data_dir / "narrow_plugin.py")])
    # Within what narrow_lstm declares (float64, one layer, biases), the same suite runs.
    path.write_text(SUITE.replace("[rnn, lstm]", "narrow_lstm"))
    run = rnnbench.run_suite(path, output_dir=tmp_path / "out",
                             plugins=[str(data_dir / "narrow_plugin.py")])
    assert (run.finished, run.failed) == (2, 0)


def test_plugin_and_selection_errors_are_exceptions(tmp_path, data_dir):
    suite = write_suite(tmp_path)
    with pytest.raises(PluginError, match="import_error_plugin"):
        rnnbench.run_suite(suite, plugins=[str(data_dir / "import_error_plugin.py")])
    with pytest.raises(RnnbenchError, match="selects none of the suite's 4 runs"):
        rnnbench.run_suite(suite, output_dir=tmp_path / "out", keyword="gru")
    with pytest.raises(ValueError, match="not both"):
        rnnbench.run_suite(suite, host=build_host(), plugins=["x.py"])


def test_observer_hears_the_suite_start_and_is_entered_around_the_runs(tmp_path):
    events: list[tuple] = []

    class Recorder(SilentObserver):
        def __enter__(self):
            events.append(("enter",))
            return self

        def __exit__(self, *exc):
            events.append(("exit",))

        def suite_started(self, suite, runs, already_done, output_dir):
            events.append(("suite", suite.name, len(runs), len(already_done), output_dir))

        def run_finished(self, record, index, total):
            events.append(("run", index, total))

    suite, out = write_suite(tmp_path), tmp_path / "out"
    rnnbench.run_suite(suite, output_dir=out, keyword="seed0")
    events.clear()
    rnnbench.run_suite(suite, output_dir=out, resume=True, observer=Recorder())
    assert events == [("suite", "tiny", 2, 2, out), ("enter",), ("run", 1, 2), ("run", 2, 2),
                      ("exit",)]
