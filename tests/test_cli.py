"""The rnnbench command end to end: run, validate, list, show, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rnnbench.cli import main
from rnnbench.results import ResultStore

SUITE = """\
name: tiny
cell: [rnn, lstm]
task:
  - name: adding
    params: {{length: 4, train_size: 60, validation_size: 20, test_size: 20}}
hidden_size: {hidden}
dtype: float64
seed: [0, 1]
training: {{optimizer: adam, lr: 0.01, batch_size: 20, steps: 6, eval_every: 3}}
metrics: [test_loss, loss_vs_baseline, steps, step_ms]
"""


def write_suite(tmp_path: Path, hidden="4", extra="") -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SUITE.format(hidden=hidden) + extra)
    return path


def test_run_writes_every_table(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(write_suite(tmp_path)), "-o", str(out)]) == 0
    for name in ("results.jsonl", "environment.json", "suite.yaml", "results.md", "runs.csv",
                 "summary.csv", "results.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["status"] for r in records} == {"ok"}
    assert set(records[0]["metrics"]) == {"test_loss", "loss_vs_baseline", "steps", "step_ms"}
    printed = capsys.readouterr().out
    assert "tiny: mean ± std over seeds" in printed and "lstm" in printed
    markdown = (out / "results.md").read_text()
    assert "## Summary" in markdown and "Fixed settings:" in markdown


def test_quiet_prints_nothing(tmp_path, capsys):
    assert main(["run", str(write_suite(tmp_path)), "-o", str(tmp_path / "o"), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_filter_and_resume(tmp_path, capsys):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-k", "lstm and seed0"]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 1
    assert main(["run", str(suite), "-o", str(out), "--resume"]) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert len({json.loads(line)["run_id"] for line in lines}) == 4
    assert "resume: 1 runs already finished" in capsys.readouterr().err


def test_filtered_rerun_keeps_the_other_records(tmp_path):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    assert main(["run", str(suite), "-o", str(out), "-q", "-k", "rnn"]) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6
    assert len(ResultStore(out).records()) == 4
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 4


def test_failed_run_exits_1_and_keeps_the_others(tmp_path, data_dir, capsys):
    suite = write_suite(tmp_path, hidden="[8, 13]").read_text().replace(
        "cell: [rnn, lstm]", "cell: toy_boom")
    path = tmp_path / "boom.yaml"
    path.write_text(suite + f"plugins: [{data_dir / 'toy_plugin.py'}]\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "-o", str(out)]) == 1
    statuses = [json.loads(line)["status"] for line in (out / "results.jsonl").read_text()
                .splitlines()]
    assert sorted(statuses) == ["failed", "failed", "ok", "ok"]
    assert "boom: this cell refuses hidden_size 13" in capsys.readouterr().err
    assert "failed" in (out / "results.md").read_text()


def test_bad_suite_exits_2_with_location_and_hint(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(SUITE.format(hidden="4").replace("cell: [rnn, lstm]", "cell: [rnn, lstmm]"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2" in err and "did you mean 'lstm'?" in err


def test_validate_counts_runs(tmp_path, capsys):
    assert main(["validate", str(write_suite(tmp_path))]) == 0
    assert "valid; 4 runs" in capsys.readouterr().out


def test_local_plugin_on_the_command_line(tmp_path, data_dir):
    suite = write_suite(tmp_path).read_text().replace("cell: [rnn, lstm]", "cell: toy")
    path = tmp_path / "toy.yaml"
    path.write_text(suite)
    assert main(["validate", str(path)]) == 2
    assert main(["validate", str(path), "-p", str(data_dir / "toy_plugin.py")]) == 0


def test_blocking_a_builtin_makes_its_cells_unknown(tmp_path, capsys):
    assert main(["validate", str(write_suite(tmp_path)), "-p", "no:reference_cells"]) == 2
    assert "unknown backend 'numpy'" in capsys.readouterr().err


def test_broken_suite_plugin_names_the_line(tmp_path, data_dir, capsys):
    path = write_suite(tmp_path, extra=f"plugins: [{data_dir / 'import_error_plugin.py'}]\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:11" in err and "import_error_plugin" in err


def test_list_shows_plugins_and_parameters(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for text in ("lstm", "numpy", "reference_cells", "adding", "many-to-one", "length=50",
                 "test_loss", "markdown", "timing"):
        assert text in out, text


def test_show_rewrites_tables(tmp_path, capsys):
    out = tmp_path / "out"
    main(["run", str(write_suite(tmp_path)), "-o", str(out), "-q"])
    (out / "results.md").unlink()
    assert main(["show", str(out)]) == 0
    assert (out / "results.md").is_file()
    assert "lstm" in capsys.readouterr().out


def test_show_on_a_folder_without_results(tmp_path):
    assert main(["show", str(tmp_path)]) == 2


def test_console_script_is_installed(tmp_path):
    script = Path(sys.executable).parent / "rnnbench"
    result = subprocess.run([str(script), "validate", str(write_suite(tmp_path))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "valid; 4 runs" in result.stdout


@pytest.mark.parametrize("argv", [["run"], ["nonsense"], []])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
