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
    err = capsys.readouterr().err
    # "unknown backend" when nothing else registers numpy; "has no backend" when an installed
    # plugin (e.g. the example package) registers a numpy cell of its own.
    assert "unknown backend 'numpy'" in err or "has no backend 'numpy'" in err


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


# --- plugins: clashes, -p, -p no:, broken plugins, provenance ----------------------------------

ONE_CELL = """\
name: one_cell
cell: {cell}
task:
  - name: adding
    params: {{length: 4, train_size: 40, validation_size: 20, test_size: 20}}
hidden_size: 4
dtype: float64
training: {{optimizer: adam, lr: 0.01, batch_size: 20, steps: 2}}
metrics: [test_loss, steps]
"""


def one_cell_suite(tmp_path: Path, cell: str) -> Path:
    path = tmp_path / f"{cell}.yaml"
    path.write_text(ONE_CELL.format(cell=cell))
    return path


def test_clashing_plugin_fails_suites_using_the_name_only(tmp_path, data_dir, capsys):
    clashing = ["-p", str(data_dir / "clashing_plugin.py")]
    assert main(["validate", str(one_cell_suite(tmp_path, "lstm")), *clashing]) == 2
    err = capsys.readouterr().err
    assert "plugin 'reference_cells' (rnnbench " in err
    assert "plugin 'clashing_plugin' (local file " in err
    assert "cell 'lstm' on backend 'numpy'" in err
    assert "-p no:reference_cells or -p no:clashing_plugin" in err
    out = tmp_path / "out"
    assert main(["run", str(one_cell_suite(tmp_path, "gru")), "-o", str(out), "-q",
                 *clashing]) == 0
    assert main(["run", str(one_cell_suite(tmp_path, "clash_own")), "-o", str(tmp_path / "o2"),
                 "-q", "-p", str(data_dir / "clashing_plugin.py"), "-p", "no:reference_cells",
                 ]) == 1  # the plugin's own cell is still there (and fails: it is not a cell)
    record = json.loads((tmp_path / "o2" / "results.jsonl").read_text())
    assert "plugin 'clashing_plugin'" in record["error"]


def test_installed_plugin_clashing_with_a_builtin(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(data_dir / "site"))
    assert main(["validate", str(one_cell_suite(tmp_path, "gru"))]) == 2
    err = capsys.readouterr().err
    assert "plugin 'clash_cells' (clash-dist 1.2.3)" in err and "'reference_cells'" in err
    assert "-p no:clash_cells" in err
    assert main(["run", str(one_cell_suite(tmp_path, "lstm")), "-o", str(tmp_path / "out"),
                 "-q"]) == 0
    assert main(["validate", str(one_cell_suite(tmp_path, "gru")), "-p", "no:clash_cells"]) == 0


def test_conflicting_reporter_fails_before_any_run(tmp_path, capsys):
    plugin = tmp_path / "csv_again.py"
    plugin.write_text(
        "from rnnbench import hookimpl\n"
        "@hookimpl\n"
        "def rnnbench_register_reporters(register):\n"
        "    register('csv', lambda table, out_dir: [])\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(one_cell_suite(tmp_path, "gru")), "-o", str(out),
                 "-p", str(plugin)]) == 2
    assert "both register reporter 'csv'" in capsys.readouterr().err
    assert not (out / "results.jsonl").exists()


def test_p_of_an_entry_point_module_is_harmless(tmp_path, capsys):
    assert main(["validate", str(one_cell_suite(tmp_path, "lstm")),
                 "-p", "rnnbench.plugins.cells.reference"]) == 0
    err = capsys.readouterr().err
    assert "Error" not in err and "Traceback" not in err


def test_p_no_of_an_unknown_name_warns_with_a_suggestion(tmp_path, capsys):
    assert main(["list", "-p", "no:referenc_cells"]) == 0
    err = capsys.readouterr().err
    assert "warning: -p no:referenc_cells matches no plugin" in err
    assert "did you mean 'reference_cells'?" in err
    assert main(["validate", str(one_cell_suite(tmp_path, "lstm")), "-p", "no:tabel_reporters"]
                ) == 0
    assert "did you mean 'table_reporters'?" in capsys.readouterr().err
    assert main(["validate", str(one_cell_suite(tmp_path, "lstm")), "-p", "no:plot_reporters"]
                ) == 0
    assert "warning" not in capsys.readouterr().err


def test_broken_plugin_error_names_file_and_line_and_offers_the_traceback(
    tmp_path, data_dir, capsys, monkeypatch
):
    suite = str(one_cell_suite(tmp_path, "lstm"))
    broken = ["-p", str(data_dir / "raising_plugin.py")]
    assert main(["validate", suite, *broken]) == 2
    err = capsys.readouterr().err
    assert "raising_plugin.py:7)" in err and "KeyError" in err
    assert "--traceback" in err and "Traceback (most recent call last)" not in err
    assert main(["validate", suite, *broken, "--traceback"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("RNNBENCH_TRACEBACK", "1")
    assert main(["validate", suite, *broken]) == 2
    assert "in _settings" in capsys.readouterr().err


def test_list_and_plugins_keep_working_with_broken_plugins(data_dir, capsys):
    broken = ["-p", str(data_dir / "import_error_plugin.py")]
    assert main(["list", *broken]) == 0
    out = capsys.readouterr().out
    assert "lstm" in out
    assert "plugin 'import_error_plugin' failed to load" in out
    assert "import_error_plugin.py:3)" in out
    assert main(["plugins", "--json", *broken]) == 0
    report = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert report["import_error_plugin"]["status"] == "broken"
    assert "ModuleNotFoundError" in report["import_error_plugin"]["reason"]


def test_plugins_table(data_dir, capsys):
    assert main(["plugins", "-p", str(data_dir / "clashing_plugin.py")]) == 0
    out = capsys.readouterr().out
    for text in ("reference_cells", "rnnbench", "register_cells", "rnn/numpy", "loaded",
                 "clashing_plugin", "(local)", "in conflict", "clash_metric",
                 "training_metrics", "register_metrics"):
        assert text in out, text
    assert "2 in conflict" in out


def test_plugins_json(capsys):
    import rnnbench

    assert main(["plugins", "--json", "-p", "no:numba_cuda_cells"]) == 0
    report = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    reference = report["reference_cells"]
    assert reference["distribution"] == "rnnbench"
    assert reference["version"] == rnnbench.__version__
    assert reference["origin"] == "entry point"
    assert reference["module"] == "rnnbench.plugins.cells.reference"
    assert reference["file"].endswith("reference.py")
    assert reference["hooks"] == ["rnnbench_register_cells"]
    assert reference["registered"] == {"cell": ["rnn/numpy", "lstm/numpy", "gru/numpy"]}
    assert reference["status"] == "loaded" and reference["reason"] is None
    assert report["numba_cuda_cells"]["status"] == "disabled"
    assert report["numba_cuda_cells"]["registered"] == {}


def test_records_and_environment_name_their_providers(tmp_path, data_dir):
    import rnnbench

    out = tmp_path / "out"
    toy = str(data_dir / "toy_plugin.py")
    assert main(["run", str(one_cell_suite(tmp_path, "toy")), "-o", str(out), "-q",
                 "-p", toy]) == 0
    (record,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    builtin = {"distribution": "rnnbench", "version": rnnbench.__version__}
    assert record["provenance"] == {
        "cell": {"plugin": "toy_plugin", "distribution": None, "version": None, "file": toy},
        "task": {"plugin": "many_to_one_tasks", **builtin},
        "metrics": [{"plugin": "training_metrics", **builtin, "names": ["test_loss", "steps"]}],
    }
    environment = json.loads((out / "environment.json").read_text())
    plugins = {p["plugin"]: p for p in environment["plugins"]}
    assert plugins["reference_cells"] == {"plugin": "reference_cells", **builtin,
                                          "status": "loaded",
                                          "module": "rnnbench.plugins.cells.reference"}
    assert plugins["toy_plugin"]["file"] == toy


def test_records_without_provenance_still_read_and_compare(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(one_cell_suite(tmp_path, "gru")), "-o", str(out), "-q"]) == 0
    old = tmp_path / "old"
    old.mkdir()
    (old / "environment.json").write_text((out / "environment.json").read_text())
    record = json.loads((out / "results.jsonl").read_text())
    run_id = record["run_id"]
    del record["provenance"]
    (old / "results.jsonl").write_text(json.dumps(record) + "\n")
    (only,) = ResultStore(old).records()
    assert only.provenance is None and only.run_id == run_id
    assert main(["show", str(old)]) == 0
    assert main(["compare", str(old), str(out), "--exact"]) == 0
    assert "is provided by" not in capsys.readouterr().out


def test_compare_mentions_a_cell_from_another_distribution(tmp_path, capsys):
    a = tmp_path / "a"
    assert main(["run", str(one_cell_suite(tmp_path, "gru")), "-o", str(a), "-q"]) == 0
    b = tmp_path / "b"
    b.mkdir()
    (b / "environment.json").write_text((a / "environment.json").read_text())
    record = json.loads((a / "results.jsonl").read_text())
    record["provenance"]["cell"] = {"plugin": "fast_gru", "distribution": "fast-cells",
                                    "version": "2.0"}
    (b / "results.jsonl").write_text(json.dumps(record) + "\n")
    assert main(["compare", str(a), str(b)]) == 0  # same numbers: still a match
    out = capsys.readouterr().out
    assert "note: cell gru/numpy is provided by reference_cells (rnnbench " in out
    assert "by fast_gru (fast-cells 2.0) in B" in out


@pytest.mark.parametrize("packages", [["numpy", "2.0"], "numpy 2.0", 3])
def test_case6_environment_packages_of_the_wrong_type(packages, tmp_path, capsys):
    """Issue 9, case 6 (the environment part): ``packages`` that is not an object of versions
    does not crash ``show`` (left out, with a warning) or ``compare`` (tolerant mode, saying
    why)."""
    suite = write_suite(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    environment = json.loads((b / "environment.json").read_text())
    environment["packages"], environment["git"] = packages, ["not", "an", "object"]
    (b / "environment.json").write_text(json.dumps(environment))

    capsys.readouterr()
    assert main(["show", str(b)]) == 0
    err = capsys.readouterr().err  # the CLI prints each store warning once, as one line
    assert "'git' is not an object with a string 'commit'; left out" in err
    assert f"'packages' is a {type(packages).__name__}, not an object of versions; left out" in err
    assert "Traceback" not in err
    assert "Ran " in (b / "results.md").read_text()  # the rest of the environment is shown

    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "tolerant" in out and "B's environment.json: 'packages' is a" in out


@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_case_9_run_prints_a_raising_hook_as_a_warning_and_finishes(
    tmp_path, data_dir, capsys, quiet
):
    """Issue 9, case 9: a plugin whose event hooks raise (one with sys.exit(3)) used to abort
    ``run`` with a traceback or exit 3; now each is a literal warning line and the run is 0."""
    suite = str(one_cell_suite(tmp_path, "lstm"))
    plugin = ["-p", str(data_dir / "raising_hooks_plugin.py")]
    assert main(["run", suite, "-o", str(tmp_path / "out"), *plugin, *quiet]) == 0
    err = capsys.readouterr().err
    assert "warning: plugin 'raising_hooks_plugin' raised in rnnbench_run_end" in err
    assert "SystemExit: 3" in err and "Traceback" not in err
    assert len(ResultStore(tmp_path / "out").records()) > 0


def test_case_9_a_reporter_that_raises_loses_no_other_table(tmp_path, data_dir, capsys):
    """Issue 9, case 9 (reporters): a plugin's reporter that raises is one warning line naming
    it; the records and every other reporter's tables are written, nothing of the broken one."""
    suite = str(one_cell_suite(tmp_path, "lstm"))
    out = tmp_path / "out"
    plugin = ["-p", str(data_dir / "raising_reporter_plugin.py")]
    assert main(["run", suite, "-o", str(out), "-q", *plugin]) == 0
    err = capsys.readouterr().err
    assert "warning: reporter 'half' of plugin 'raising_reporter_plugin' raised" in err
    assert "RuntimeError: reporter broke" in err and "Traceback" not in err
    assert (out / "results.md").is_file() and (out / "runs.csv").is_file()
    assert not (out / "half.md").exists()
    assert main(["show", str(out), *plugin]) == 0
    assert "reporter 'half'" in capsys.readouterr().err
