"""``rnnbench run -j N``: runs in worker processes give the records a serial run gives; a
worker that dies costs its own run alone (a failed record naming the signal); a parent killed
mid-suite loses no finished run, and ``--resume`` runs only the missing ones."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rnnbench
from rnnbench.api import load_validated_suite
from rnnbench.cli import main
from rnnbench.compare import compare_folders
from rnnbench.errors import RnnbenchError
from rnnbench.execution import HostRecipe, ProcessExecutor, exit_reason, run_spec
from rnnbench.plugin_manager import build_host
from rnnbench.runner import execute_run

DATA = Path(__file__).parent / "data"
SUITE = """\
name: par
cell: [rnn, gru]
backend: [numpy, numba-cpu]
task:
  - name: adding
    params: {length: 5, train_size: 60, validation_size: 20, test_size: 20}
hidden_size: 4
dtype: float64
seed: [0, 1]
training: {optimizer: adam, lr: 0.01, batch_size: 20, steps: 6, eval_every: 3}
metrics: [test_loss, best_val_loss, train_loss, steps, param_count]
"""


def write(folder: Path, text: str, name: str = "suite.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def records(folder: Path) -> list[dict]:
    lines = (folder / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_parallel_records_are_the_serial_ones(tmp_path):
    suite = write(tmp_path, SUITE)
    # The same thread budget on both sides: the default divides the cores among the workers,
    # and the thread count changes the last bits of BLAS sums.
    assert main(["run", str(suite), "-o", str(tmp_path / "serial"), "-q", "--threads", "1"]) == 0
    assert main(["run", str(suite), "-o", str(tmp_path / "j2"), "-q", "-j", "2",
                 "--threads", "1"]) == 0
    comparison = compare_folders(tmp_path / "serial", tmp_path / "j2", mode="exact")
    assert comparison.ok, comparison.verdict
    serial, parallel = records(tmp_path / "serial"), records(tmp_path / "j2")
    assert len(parallel) == 8 and {r["status"] for r in parallel} == {"ok"}
    assert sorted(r["run_id"] for r in serial) == sorted(r["run_id"] for r in parallel)
    by_id = {r["run_id"]: r for r in serial}
    for record in parallel:  # same numbers, same curve, same provenance
        twin = by_id[record["run_id"]]
        assert record["metrics"] == twin["metrics"]
        assert [p["val_loss"] for p in record["curve"]] == [p["val_loss"] for p in twin["curve"]]
        assert record["provenance"] == twin["provenance"]


def test_run_suite_sets_workers_on_every_spec(tmp_path):
    run = rnnbench.run_suite(write(tmp_path, SUITE), output_dir=tmp_path / "out", jobs=2,
                             keyword="numpy")
    assert len(run.runs) == 4 and {spec.workers for spec in run.runs} == {2}
    assert run.finished == 4


def test_more_jobs_than_runs_records_the_runs_that_really_shared_the_machine(tmp_path):
    """-j 8 on 4 runs starts 4 workers: the records (and the thread budget) say 4, not 8."""
    run = rnnbench.run_suite(write(tmp_path, SUITE), output_dir=tmp_path / "out", jobs=8,
                             keyword="numpy")
    assert {spec.workers for spec in run.runs} == {4}
    assert {r["execution"]["workers"] for r in records(tmp_path / "out")} == {4}


def test_a_killed_worker_is_a_failed_run_and_the_suite_goes_on(tmp_path):
    suite = write(tmp_path, SUITE.replace("name: par", "name: par\nplugins: [killing.py]")
                  .replace("seed: [0, 1]", "seed: [0, 1, 2]")
                  .replace("metrics: [", "metrics: [doomed, "))
    (tmp_path / "killing.py").write_text((DATA / "killing_plugin.py").read_text())
    run = rnnbench.run_suite(suite, output_dir=tmp_path / "out", jobs=2, keyword="numpy")
    assert len(run.records) == 6  # every run has its record, the killed ones included
    for record in run.records:
        seed = record.config["seed"]
        if seed == 1:
            assert record.status == "failed"
            assert "worker process running it died" in record.error
            assert "SIGKILL" in record.error and "-9" in record.error
            assert record.provenance and record.provenance["cell"]["plugin"]
        else:
            assert record.status == "ok", record.error
            assert record.metrics["doomed"] == 1.0
    assert len(records(tmp_path / "out")) == 6


def test_resume_after_the_parent_is_killed_runs_only_the_missing(tmp_path):
    text = SUITE.replace("steps: 6, eval_every: 3", "steps: 150, eval_every: 50") \
        .replace("seed: [0, 1]", "seed: [0, 1, 2]")
    suite = write(tmp_path, text)
    out = tmp_path / "out"
    parent = subprocess.Popen(
        [sys.executable, "-m", "rnnbench.cli", "run", str(suite), "-o", str(out), "-q",
         "-j", "2", "-k", "numpy"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and parent.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    if parent.poll() is not None:
        pytest.fail(f"the suite ended before it could be killed: {parent.stderr.read()!r}")
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    done = [r["run_id"] for r in records(out)]
    assert 1 <= len(done) < 6
    run = rnnbench.run_suite(suite, output_dir=out, resume=True, keyword="numpy", jobs=2)
    assert {spec.run_id for spec in run.already_done} == set(done)
    assert sorted(r.run_id for r in run.records) == sorted(
        spec.run_id for spec in run.runs)
    assert not set(done) & {spec.run_id for spec in run.runs}
    final = [r["run_id"] for r in records(out)]
    assert len(final) == len(set(final)) == 6


def test_ctrl_c_stops_the_workers_and_keeps_finished_runs(tmp_path):
    text = SUITE.replace("steps: 6, eval_every: 3", "steps: 150, eval_every: 50") \
        .replace("seed: [0, 1]", "seed: [0, 1, 2]")
    suite = write(tmp_path, text)
    out = tmp_path / "out"
    parent = subprocess.Popen(
        [sys.executable, "-m", "rnnbench.cli", "run", str(suite), "-o", str(out), "-q",
         "-j", "2", "-k", "numpy"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and parent.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    os.killpg(parent.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
    assert parent.wait(timeout=60) == 130
    assert "interrupted: finished runs are saved" in parent.stderr.read().decode()
    assert len(records(out)) >= 1
    deadline = time.monotonic() + 20  # no worker outlives it (nor multiprocessing's helper)
    while time.monotonic() < deadline and group_alive(parent.pid):
        time.sleep(0.1)
    assert not group_alive(parent.pid)


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_jobs_must_be_a_positive_number(tmp_path, capsys):
    suite = write(tmp_path, SUITE)
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(suite), "-j", "0"])
    assert exit_.value.code == 2
    assert "-j/--jobs: expected a positive integer, got '0'" in capsys.readouterr().err
    with pytest.raises(RnnbenchError, match="positive"):
        rnnbench.run_suite(suite, output_dir=tmp_path / "out", jobs=0)
    with pytest.raises(RnnbenchError, match="positive"):
        ProcessExecutor(-1)


def test_the_recipe_rebuilds_the_host_with_its_local_plugins(tmp_path, monkeypatch):
    plugin = tmp_path / "killing.py"
    plugin.write_text((DATA / "killing_plugin.py").read_text())
    monkeypatch.chdir(tmp_path)
    host = build_host(plugins=["killing.py"], blocked=["nosuchplugin"])
    recipe = host.recipe()
    assert recipe == HostRecipe((str(plugin.resolve()),), ("nosuchplugin",), True)
    assert pickle.loads(pickle.dumps(recipe)) == recipe
    monkeypatch.chdir(DATA)  # an absolute path: rebuilt from anywhere
    rebuilt = recipe.build()
    assert rebuilt is recipe.build()  # once per process
    assert "doomed" in rebuilt.registry.metrics.resolved()


def test_run_spec_runs_one_spec_as_the_serial_path_does(tmp_path):
    host = build_host()
    spec = load_validated_suite(write(tmp_path, SUITE), host).runs[0]
    steps = []
    record = run_spec(spec, HostRecipe(), on_step=lambda step, total: steps.append(step))
    serial, _ = execute_run(spec, host)
    assert record.status == "ok" and record.metrics == serial.metrics
    assert steps[-1] == 6


def test_exit_reasons_name_the_signal():
    assert exit_reason(-9) == "killed by SIGKILL (exit code -9)"
    assert exit_reason(-11) == "killed by SIGSEGV (exit code -11)"
    assert exit_reason(3) == "exited with code 3"


def test_the_terminal_display_shows_every_workers_run(tmp_path):
    import io
    from dataclasses import replace

    from rich.console import Console

    from rnnbench.cli import RichObserver
    from rnnbench.records import RunRecord

    suite = load_validated_suite(write(tmp_path, SUITE), build_host())
    specs = [replace(spec, workers=2) for spec in suite.runs[:3]]
    observer = RichObserver(Console(file=io.StringIO(), force_terminal=True, width=200))
    observer.suite_started(suite, specs, [], tmp_path)
    observer.run_started(specs[0], 1, 3)
    observer.run_started(specs[1], 2, 3)
    observer.run_step(specs[1], 3, 6)
    shown = {task.description: task for task in observer.progress.tasks}
    assert specs[0].label in shown and specs[1].label in shown
    assert shown[specs[1].label].completed == 3
    observer.run_finished(RunRecord(specs[0].run_id, specs[0].label, "par", {}, "ok"), 1, 3)
    assert [t.description for t in observer.progress.tasks] == ["suite par", specs[1].label]
