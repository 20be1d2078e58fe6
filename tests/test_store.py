"""Issue 9: the results store never loses a finished run (one test per case of the issue)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnbench.cli import main
from rnnbench.json_numbers import decode_nonfinite, dumps
from rnnbench.record_file import TORN_FILE, BadRecord, StoreWarning, parse_record, repair_torn_tail
from rnnbench.results import ResultStore, atomic_write_text, load_table
from rnnbench.store_lock import LOCK_FILE, FolderLocked, results_folder_lock

SUITE = """\
name: store
cell: rnn
task:
  - name: adding
    params: {length: 4, train_size: 40, validation_size: 20, test_size: 20}
hidden_size: 4
dtype: float64
seed: [0, 1]
training: {optimizer: adam, lr: 0.01, batch_size: 20, steps: 4, eval_every: 2}
metrics: [test_loss, steps]
"""

INF_PLUGIN = """\
from rnnbench import hookimpl


@hookimpl
def rnnbench_register_metrics(register):
    register("explodes", lambda run: float("inf"), "always inf")
    register("sinks", lambda run: [1.0, float("-inf")], "a curve ending in -inf")
"""


def write_suite(tmp_path: Path, text: str = SUITE, name: str = "store.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def lines_of(out: Path) -> list[str]:
    return (out / "results.jsonl").read_text().splitlines()


def test_case1_nonfinite_numbers_are_recorded_and_read_back(tmp_path, capsys):
    (tmp_path / "inf_plugin.py").write_text(INF_PLUGIN)
    suite = write_suite(tmp_path, SUITE.replace(
        "metrics: [test_loss, steps]", "metrics: [test_loss, explodes, sinks]"
    ) + f"plugins: [{tmp_path / 'inf_plugin.py'}]\n")
    out = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    raw = [json.loads(line) for line in lines_of(out)]  # standard JSON: no Infinity literal
    assert raw[0]["metrics"]["explodes"] == {"$float": "inf"}
    assert raw[0]["metrics"]["sinks"] == [1.0, {"$float": "-inf"}]
    [record, _] = ResultStore(out).records()
    assert record.metrics["explodes"] == math.inf and record.metrics["sinks"][1] == -math.inf
    summary = load_table(out).summary()[0]
    assert summary["explodes_mean"] == math.inf
    assert "| inf |" in (out / "results.md").read_text()
    assert main(["run", str(suite), "-o", str(out), "-q", "--resume"]) == 0
    assert main(["compare", str(out), str(out)]) == 0
    assert "identical: 2 runs" in capsys.readouterr().out
    # A curve value too, and the inverse of every encoding; old records read unchanged.
    nested = {"curve": [{"val_loss": math.nan, "train_loss": math.inf}], "x": [-math.inf, 1.5]}
    back = decode_nonfinite(json.loads(dumps(nested)))
    assert math.isnan(back["curve"][0]["val_loss"]) and back["x"] == [-math.inf, 1.5]
    assert decode_nonfinite({"a": {"b": 1.0}}) == {"a": {"b": 1.0}}


def test_case1_exploding_training_is_recorded_and_resumable(tmp_path, capsys):
    """The issue's reproduction: sgd, lr 10, no clipping, spectral radius 5 on rnn float64
    reaches an infinite loss in the learning curve (was: ValueError, exit 1, every --resume)."""
    suite = write_suite(tmp_path, SUITE.replace("length: 4, train_size: 40", "length: 30, "
                                                "train_size: 40").replace("seed: [0, 1]", "seed: 0")
                        .replace("training: {optimizer: adam, lr: 0.01, batch_size: 20, steps: 4, "
                                 "eval_every: 2}",
                                 "training: {optimizer: sgd, lr: 10, clip: null, spectral_radius: "
                                 "5, batch_size: 20, steps: 100, eval_every: 1}"))
    out = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q"]) in (0, 1)  # 1: the run diverged
    assert '{"$float": "inf"}' in (out / "results.jsonl").read_text()
    [record] = ResultStore(out).records()
    assert any(math.isinf(v) for point in record.curve for v in point.values())
    assert main(["run", str(suite), "-o", str(out), "-q", "--resume"]) in (0, 1)
    assert main(["show", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_case1_committed_results_still_read_and_compare_identical(tmp_path, capsys):
    committed = Path(__file__).resolve().parent.parent / "results" / "quickstart"
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)  # not one record skipped
        records = ResultStore(committed).records()
    assert records and all(r.status in ("ok", "diverged", "failed") for r in records)
    assert main(["compare", str(committed), str(committed)]) == 0
    assert "identical:" in capsys.readouterr().out


def test_case2_torn_tail_is_moved_aside_never_merged(tmp_path, capsys):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q", "-k", "seed0"]) == 0
    with open(out / "results.jsonl", "a") as handle:
        handle.write('{"run_id": "abc", "lab')  # what a crash or a full disk leaves
    assert main(["run", str(suite), "-o", str(out), "-q", "--resume"]) == 0
    err = capsys.readouterr().err
    assert err.count("line 2 was a partial record") == 1 and TORN_FILE in err
    records = [json.loads(line) for line in lines_of(out)]  # every line whole again
    assert len(records) == 2 and len({r["run_id"] for r in records}) == 2
    [moved] = [json.loads(line) for line in (out / TORN_FILE).read_text().splitlines()]
    assert moved["text"] == '{"run_id": "abc", "lab' and moved["line"] == 2
    assert "partial last line" in moved["note"]
    # A whole record that only lacks its newline gets one; a sound file is left alone.
    sound = (out / "results.jsonl").read_bytes()
    (out / "results.jsonl").write_bytes(sound.rstrip(b"\n"))
    assert repair_torn_tail(out / "results.jsonl") is None
    assert (out / "results.jsonl").read_bytes() == sound
    assert repair_torn_tail(out / "results.jsonl") is None


@pytest.mark.parametrize(("line", "reason"), [
    ("not json at all", "not JSON"),
    ("[1]", "a JSON list, not an object"),
    ('{"run_id": ["x"], "label": "l", "suite": "s", "config": {}, "status": "ok"}',
     "'run_id' is a list"),
    ('{"run_id": "x", "label": "l", "suite": "s", "config": {}, "status": "ok", "seconds": '
     + "9" * 5000 + "}", "not JSON"),
    ('{"run_id": "x", "label": "l", "suite": "s", "config": {}, "status": "ok", '
     '"metrics": {"m": 1' + "0" * 400 + "}}", "an integer beyond the float range"),
    ('{"run_id": "x", "label": "l"}', "no 'suite'"),
    ('{"run_id": "x", "label": "l", "suite": "s", "config": {}, "status": "ok", '
     '"metrics": {"$float": "inf"}}', "'metrics' is a float"),
    ('{"run_id": "x", "label": "l", "suite": "s", "config": {}, "status": "ok", '
     '"metrics": [1]}', "'metrics' is a list"),
])
def test_case6_corrupt_records_are_skipped_with_a_count(tmp_path, capsys, line, reason):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q", "-k", "seed0"]) == 0
    good = lines_of(out)
    (out / "results.jsonl").write_text("\n".join([line, *good, line]) + "\n")
    with pytest.raises(Exception, match=reason):
        parse_record(line)
    assert main(["show", str(out)]) == 0
    assert main(["compare", str(out), str(out)]) == 0
    assert main(["run", str(suite), "-o", str(out), "-q", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warning = f"results.jsonl: skipped 2 unreadable records: line 1: {reason}"
    assert warning in err and "(and 1 more)" in err
    assert len(ResultStore(out).records()) == 2


def test_case6_packages_as_a_list_in_environment(tmp_path, capsys):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    environment = json.loads((out / "environment.json").read_text())
    environment["packages"] = ["numpy"]
    (out / "environment.json").write_text(json.dumps(environment))
    assert main(["show", str(out)]) == 0
    assert main(["compare", str(out), str(out)]) == 0
    err = capsys.readouterr().err
    assert "'packages' is a list, not an object of versions" in err and "Traceback" not in err


def test_case3_second_writer_exits_2_naming_the_holder(tmp_path, capsys):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from rnnbench.store_lock import results_folder_lock\n"
         f"with results_folder_lock({str(out)!r}):\n"
         "    print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["run", str(suite), "-o", str(out), "-q"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid} on " in err and "another rnnbench run is writing" in err
        assert not (out / "results.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone (killed): its lock does not block.
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    assert (out / LOCK_FILE).is_file()


def test_case3_lock_is_released_after_the_run(tmp_path):
    with results_folder_lock(tmp_path), pytest.raises(FolderLocked, match="pid"):
        with results_folder_lock(tmp_path):
            pass
    with results_folder_lock(tmp_path):  # free again
        pass


def test_case3_store_lock_imports_and_runs_without_fcntl(monkeypatch, tmp_path):
    """Windows has no fcntl: not a target, but importing must not fail (the folder is then
    not locked)."""
    import importlib.util

    import rnnbench.store_lock

    monkeypatch.setitem(sys.modules, "fcntl", None)  # "import fcntl" raises ImportError
    spec = importlib.util.spec_from_file_location("store_lock_copy",
                                                  rnnbench.store_lock.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.fcntl is None
    with module.results_folder_lock(tmp_path), module.results_folder_lock(tmp_path):
        pass


def test_case4_every_previous_results_file_is_kept(tmp_path):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    contents = []
    for _ in range(3):  # three full runs: the first two results files are both kept
        assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
        contents.append((out / "results.jsonl").read_text())
    kept = sorted(out.glob("results.previous-*.jsonl"))
    assert len(kept) == 2
    assert sorted(p.read_text() for p in kept) == sorted(contents[:2])


def test_resume_against_a_different_suite_or_environment_says_so(tmp_path, capsys):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q", "-k", "seed0"]) == 0
    earlier = json.loads((out / "environment.json").read_text())
    earlier["packages"]["numpy"] = "0.0.1"
    (out / "environment.json").write_text(json.dumps(earlier))
    changed = write_suite(tmp_path, SUITE.replace("steps: 4", "steps: 5"))
    assert main(["run", str(changed), "-o", str(out), "-q", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "--resume with a different suite: the suite file differs from the folder's " \
           "suite.yaml; 1 of the folder's 1 records are not runs of this suite" in err
    assert "--resume in a different environment (numpy 0.0.1 vs " in err
    assert json.loads((out / "environment.json").read_text())["packages"]["numpy"] == "0.0.1"
    [resumed] = out.glob("environment.resumed-*.json")
    assert json.loads(resumed.read_text())["resumed"] is True
    # The folder's suite.yaml still describes its earlier runs; this suite is kept beside it.
    assert "steps: 4" in (out / "suite.yaml").read_text()
    [resumed_suite] = out.glob("suite.resumed-*.yaml")
    assert "steps: 5" in resumed_suite.read_text()


def test_case10_tables_respect_the_umask(tmp_path):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    previous = os.umask(0o022)
    try:
        assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
        os.umask(0o027)
        atomic_write_text(tmp_path / "other.md", "x")
    finally:
        os.umask(previous)
    for name in ("results.md", "runs.csv", "summary.csv", "results.json", "results.jsonl"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name
    assert (tmp_path / "other.md").stat().st_mode & 0o777 == 0o640


def test_case11_tables_are_rewritten_on_interrupt(tmp_path, monkeypatch, capsys):
    suite, out = write_suite(tmp_path), tmp_path / "out"
    other = write_suite(tmp_path, SUITE.replace("name: store", "name: earlier")
                        .replace("cell: rnn", "cell: gru"), "earlier.yaml")
    assert main(["run", str(other), "-o", str(out), "-q"]) == 0
    assert "gru" in (out / "runs.csv").read_text()

    original = ResultStore.append

    def append_then_interrupt(store, record):
        original(store, record)
        raise KeyboardInterrupt

    monkeypatch.setattr(ResultStore, "append", append_then_interrupt)
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 130
    runs = (out / "runs.csv").read_text()
    assert "gru" not in runs and runs.count("\n") == 2  # header and the one finished run
    assert len(lines_of(out)) == 1


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["run_id", "label", "suite", "config", "status",
                                           "metrics", "curve", "seconds", "$float"]), inner,
                          max_size=6),
        max_leaves=20,
    ).map(lambda value: json.dumps(value).encode()),
))
def test_case6_any_line_is_a_record_or_a_bad_record(line):
    try:
        record = parse_record(line)
    except BadRecord:
        return
    assert isinstance(record.run_id, str) and isinstance(record.metrics, dict)


def test_case11_tables_never_show_the_previous_files_runs(tmp_path):
    """A full run moves the previous results.jsonl aside and rewrites the tables at once, so a
    run killed by SIGTERM or kill -9 before its first record leaves no stale table behind."""
    from rnnbench.api import run_suite
    from rnnbench.runner import SilentObserver

    suite, out = write_suite(tmp_path), tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    assert len((out / "runs.csv").read_text().splitlines()) == 3  # header and two runs
    seen = []

    class LooksAtTheTables(SilentObserver):
        def run_started(self, spec, index, total):
            seen.append((out / "runs.csv").read_text())

    run_suite(suite, output_dir=out, observer=LooksAtTheTables())
    assert seen and len(seen[0].splitlines()) <= 1  # before the first run: no old run


def test_case11_sigterm_is_handled_as_ctrl_c():
    """A batch system's time limit (SIGTERM) interrupts a run as Ctrl-C does: the tables are
    rewritten and rnnbench exits 130 with one line."""
    import signal

    from rnnbench import cli

    with pytest.raises(KeyboardInterrupt):
        cli._terminated(signal.SIGTERM, None)
