"""``rnnbench run --dask``: a suite on a Dask cluster gives the serial run's records, a lost
worker is retried once and then recorded as failed, a worker lacking a plugin is refused up
front, and ``--resume`` after the client died submits only the missing runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason='the Dask executor needs pip install "rnnbench[dask]"')

import dask
from distributed import LocalCluster

import rnnbench
from rnnbench import dask_executor
from rnnbench.cli import main
from rnnbench.compare import compare_folders
from rnnbench.errors import RnnbenchError
from rnnbench.plugin_manager import build_host

SUITE = """\
name: tiny
cell: [rnn, lstm]
task:
  - name: adding
    params: {length: 4, train_size: 60, validation_size: 20, test_size: 20}
hidden_size: 4
dtype: float64
seed: [0, 1, 2]
training: {optimizer: adam, lr: 0.01, batch_size: 20, steps: 6, eval_every: 3}
metrics: [test_loss, loss_vs_baseline, steps, step_ms]
"""

# A metric that kills its own worker process on seed 1: always, or (with a marker file) only
# the first time, so the retry on another worker succeeds.
KILLER = """\
import os, signal
from pathlib import Path
from rnnbench import hookimpl

MARKER = Path({marker!r})

def killer(outcome):
    if outcome.spec.seed == 1 and outcome.spec.cell == "rnn":
        if {always!r} or not MARKER.exists():
            MARKER.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return 1.0

@hookimpl
def rnnbench_register_metrics(register):
    register("killer", killer, "kills its Dask worker on seed 1")
"""


def records(folder: Path) -> list[dict]:
    lines = (folder / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def scheduler() -> str:
    """One two-worker cluster for the module (starting one costs seconds); a worker lost twice
    with a task makes it fail, as ``--dask local:N`` sets."""
    with dask.config.set(dask_executor.SCHEDULER_CONFIG), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def test_local_cluster_gives_the_serial_records(tmp_path: Path) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    # The same thread budget on both sides (a Dask run's is 1; a serial run's default depends
    # on the cores and the load): the thread count changes the last bits of BLAS sums.
    serial = rnnbench.run_suite(suite, output_dir=tmp_path / "serial", threads=1)
    on_dask = rnnbench.run_suite(suite, output_dir=tmp_path / "dask", dask="local:2")
    assert len(on_dask.records) == len(serial.records) == 6
    assert {r.run_id for r in on_dask.records} == {r.run_id for r in serial.records}
    assert all(r.status == "ok" for r in on_dask.records)
    comparison = compare_folders(tmp_path / "serial", tmp_path / "dask",
                                 registry=build_host().registry)
    assert comparison.mode == "exact", comparison.reason  # the same environment: exact
    assert comparison.ok and comparison.matched == 6, comparison.differences
    serial_metrics = {r.run_id: r.metrics["test_loss"] for r in serial.records}
    assert {r.run_id: r.metrics["test_loss"] for r in on_dask.records} == serial_metrics


@pytest.mark.parametrize("always", [False, True], ids=["retried", "failed"])
def test_a_killed_worker_is_retried_once_then_failed(
    tmp_path: Path, scheduler: str, always: bool
) -> None:
    plugin = tmp_path / "killer.py"
    plugin.write_text(KILLER.format(marker=str(tmp_path / "killed-once"), always=always))
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE.replace("metrics: [", "metrics: [killer, ")
                     + f"plugins: [{plugin}]\n")
    run = rnnbench.run_suite(suite, output_dir=tmp_path / "out", dask=scheduler)
    assert len(run.records) == 6  # the suite completes
    victim = [r for r in run.records if r.label.startswith("rnn") and r.config["seed"] == 1]
    others = [r for r in run.records if r not in victim]
    assert len(victim) == 1 and all(r.status == "ok" for r in others)
    if always:
        assert victim[0].status == "failed"
        assert "KilledWorker" in victim[0].error and "retried once" in victim[0].error
    else:
        assert victim[0].status == "ok"  # the retry on a fresh worker finished it
    assert len(records(tmp_path / "out")) == 6


def test_a_worker_lacking_a_plugin_is_refused(tmp_path: Path, scheduler: str) -> None:
    plugin = tmp_path / "only_here.py"
    plugin.write_text(KILLER.format(marker=str(tmp_path / "m"), always=False))
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE + f"plugins: [{plugin}]\n")
    needed = dask_executor.requirements(build_host(plugins=[str(plugin)]))
    assert str(plugin) in needed["files"] and needed["rnnbench"] == rnnbench.__version__
    # What the workers see: the file changed (another version), and a distribution they lack.
    plugin_copy = dict(needed, files={str(plugin): "0" * 64},
                       distributions={**needed["distributions"], "rnnbench-nowhere": "1.0"})
    problems = dask_executor.worker_problems(plugin_copy)
    assert any("differs from the client's" in p for p in problems)
    assert any("rnnbench-nowhere is not installed" in p for p in problems)

    # On the cluster: the workers do not have the file at that path (it is moved away after the
    # client loaded it), so nothing runs and the message names the workers and the file.
    original = dask_executor.requirements

    def moved(host):
        needed = original(host)
        needed["files"] = {str(tmp_path / "elsewhere.py"): digest
                           for digest in needed["files"].values()}
        return needed

    dask_executor.requirements = moved
    try:
        with pytest.raises(RnnbenchError, match=r"2 of 2 Dask workers.*elsewhere.py is missing"):
            rnnbench.run_suite(suite, output_dir=tmp_path / "out", dask=scheduler)
    finally:
        dask_executor.requirements = original
    assert records(tmp_path / "out") == []


def test_dask_and_jobs_or_bad_addresses_are_refused(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    assert main(["run", str(suite), "-o", str(tmp_path / "o"), "--dask", "local:0"]) == 2
    assert "local:N takes a number of workers" in capsys.readouterr().err
    assert main(["run", str(suite), "-o", str(tmp_path / "o"), "--dask", "local:abc"]) == 2
    assert "local:N takes a number of workers" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before any results folder is made
    assert main(["run", str(suite), "-o", str(tmp_path / "o"), "--dask", "local:2",
                 "-j", "2"]) == 2
    assert "-j and --dask are mutually exclusive" in capsys.readouterr().err
    with pytest.raises(RnnbenchError, match="mutually exclusive"):
        rnnbench.run_suite(suite, output_dir=tmp_path / "o", jobs=2, dask="local:2")


def test_resume_after_the_client_is_killed_submits_only_the_missing(tmp_path: Path) -> None:
    suite = tmp_path / "tiny.yaml"
    # Slow enough that the client is killed with some runs done and some not.
    suite.write_text(SUITE.replace("seed: [0, 1, 2]", "seed: [0, 1, 2, 3]")
                     .replace("steps: 6, eval_every: 3", "steps: 300, eval_every: 100"))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "rnnbench.cli", "run", str(suite), "-o", str(out),
               "--dask", "local:2", "-q"]
    client = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and client.poll() is None:
            if (out / "results.jsonl").exists() and len(records(out)) >= 2:
                break
            time.sleep(0.2)
    finally:
        # The client and its cluster's processes (its session): a crash, not a clean exit.
        os.killpg(client.pid, signal.SIGKILL)
        client.wait()
    done = {record["run_id"] for record in records(out)}
    assert 2 <= len(done) < 8, "the client was killed with some runs finished, others not"
    resumed = rnnbench.run_suite(suite, output_dir=out, resume=True, dask="local:2")
    assert {spec.run_id for spec in resumed.already_done} == done
    assert {record.run_id for record in resumed.records}.isdisjoint(done)
    assert len(resumed.records) == 8 - len(done)
    assert len({record["run_id"] for record in records(out)}) == 8


def test_the_terminal_display_shows_the_cluster(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from rnnbench.cli import RichObserver

    stream = io.StringIO()
    observer = RichObserver(Console(file=stream, force_terminal=True, width=200))
    with observer:
        observer.cluster_progress({"tcp://127.0.0.1:4242": "lstm/numpy/adding/seed1"}, 6, 2)
    shown = stream.getvalue()
    assert "6 submitted, 1 running, 2 finished" in shown
    assert "127.0.0.1:4242 lstm/numpy/adding/seed1" in shown
