"""Kernels suites (``kind: kernels``): validation, measurement and the tables they write.

Not timing tests: on tiny grids, only that every number is there, finite and self-consistent
(FLOPs, ratios, % peak, agreement), that problems in a suite name file, line and field, and that
an unavailable backend is a note, not a crash.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnbench.cli import main
from rnnbench.errors import RnnbenchError, SuiteError
from rnnbench.kernel_bench import flops, time_calls
from rnnbench.kernel_suite import check_targets, load_kernel_suite, run_kernel_suite
from rnnbench.plugin_manager import PluginHost

TINY = Path(__file__).resolve().parent.parent / "benchmarks" / "kernels" / "tiny.yaml"
GATES = {"rnn": 1, "lstm": 4, "gru": 3}

SUITE = """\
kind: kernels
name: k
cells: [rnn, gru]
backends: [numpy, numba-cpu]
baseline: numpy
points: [[6, 3, 4, 5], {T: 4, B: 1, I: 2, H: 3}]
budget: 0.001
warmup: 1
min_reps: 2
max_reps: 3
threads: 1
gemm_sizes: [32]
first_call: [numba-cpu]
targets:
  - id: numba-runs
    backend: numba-cpu
    measurement: train_step
    metric: gflops
    where: {cell: gru, H: ">= 3"}
    expect: "> 0"
  - id: impossible
    backend: numba-cpu
    measurement: forward
    metric: ratio
    expect: ">= 1000000"
  - id: no-such-point
    backend: numba-cpu
    measurement: forward
    metric: ratio
    where: {H: 4096}
    expect: ">= 1"
"""


def write(tmp_path: Path, text: str, name: str = "kernels.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    from rnnbench.plugin_manager import build_host

    tmp = tmp_path_factory.mktemp("kernels")
    suite = write(tmp, SUITE)
    return run_kernel_suite(suite, build_host(), output_dir=tmp / "out")


def test_rows_cover_the_grid_with_consistent_numbers(tiny_run) -> None:
    timed = [r for r in tiny_run.rows if r["measurement"] != "first_call"]
    points = {(6, 3, 4, 5), (4, 1, 2, 3)}
    assert {(r["cell"], (r["T"], r["B"], r["I"], r["H"]), r["backend"], r["measurement"])
            for r in timed} == {(c, p, b, m) for c in ("rnn", "gru") for p in points
                                for b in ("numpy", "numba-cpu")
                                for m in ("forward", "backward", "train_step")}
    for row in timed:
        t, b, i, h = row["T"], row["B"], row["I"], row["H"]
        factor = {"forward": 1, "backward": 2, "train_step": 3}[row["measurement"]]
        assert row["flops"] == factor * 2 * t * b * GATES[row["cell"]] * h * (i + h)
        assert 2 <= row["reps"] <= 3
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        assert math.isclose(row["gflops"], row["flops"] / row["median_s"] / 1e9)
        assert math.isclose(row["pct_peak"], 100 * row["gflops"] / tiny_run.gemm["peak_gflops"])
        assert row["rel_diff"] is not None and row["rel_diff"] < 1e-4, row
    assert tiny_run.errors == []


def test_ratios_are_against_the_baseline_in_the_same_run(tiny_run) -> None:
    rows = {(r["cell"], r["T"], r["measurement"], r["backend"]): r for r in tiny_run.rows}
    assert tiny_run.ratios
    for ratio in tiny_run.ratios:
        assert ratio["baseline"] == "numpy" and ratio["backend"] == "numba-cpu"
        key = (ratio["cell"], ratio["T"], ratio["measurement"])
        assert math.isclose(ratio["ratio"], rows[(*key, "numpy")]["median_s"]
                            / rows[(*key, "numba-cpu")]["median_s"])
    assert all(rows[k]["ratio"] == 1.0 for k in rows if k[3] == "numpy")


def test_peak_threads_first_call_and_notes(tiny_run) -> None:
    assert tiny_run.gemm["peak_gflops"] > 0 and set(tiny_run.gemm["sizes"]) == {"32"}
    assert tiny_run.threads["budget"] == 1 and tiny_run.threads["usable_cores"] >= 1
    assert tiny_run.threads["load_average_before"] is None or \
        len(tiny_run.threads["load_average_before"]) == 3
    first = [r for r in tiny_run.rows if r["measurement"] == "first_call"]
    assert {(r["cell"], r["backend"]) for r in first} == {("rnn", "numba-cpu"),
                                                            ("gru", "numba-cpu")}
    for row in first:
        assert row["error"] is None, row
        assert row["first_call_s"] > 0 and row["process_s"] > row["first_call_s"]


def test_targets_met_not_met_and_na(tiny_run) -> None:
    status = {t["id"]: t["status"] for t in tiny_run.targets}
    assert status == {"numba-runs": "met", "impossible": "not met", "no-such-point": "n/a"}
    detail = {t["id"]: t["detail"] for t in tiny_run.targets}
    assert detail["numba-runs"].startswith("2 of 2 rows")  # gru at both points


def test_results_folder(tiny_run) -> None:
    out = tiny_run.output_dir
    for name in ("results.md", "kernels.csv", "ratios.csv", "results.json", "environment.json",
                 "suite.yaml"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".*.tmp")), "atomic writes leave no temporary files"
    with open(out / "kernels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(tiny_run.rows)
    assert {(row["device"], row["threads"]) for row in rows} == {("cpu", "1")}
    with open(out / "ratios.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(tiny_run.ratios)
    document = json.loads((out / "results.json").read_text())
    assert document["kind"] == "kernels" and document["environment"]["packages"]["numpy"]
    assert json.loads((out / "environment.json").read_text())["execution"]["budget"] == 1
    markdown = (out / "results.md").read_text()
    for heading in ("## Targets", "## Forward", "## Backward", "## Training step",
                    "## Agreement with numpy", "## First call in a fresh process",
                    "## Machine and threads", "## Skipped and failed"):
        assert heading in markdown, heading
    assert "numba-cpu vs numpy" in markdown and "% peak" in markdown


def test_cli_runs_the_tiny_suite_and_refuses_training_options(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture
                                                               ) -> None:
    suite = write(tmp_path, SUITE.replace("first_call: [numba-cpu]", "first_call: false")
                  .replace("cells: [rnn, gru]", "cells: [lstm, gru]"))
    assert main(["run", str(suite), "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "# Kernels: k" in printed and "| lstm | 6 | 3 | 4 | 5 |" in printed
    assert main(["run", str(suite), "-o", str(tmp_path / "out2"), "-j", "2"]) == 2
    assert "-j apply to training suites only" in capsys.readouterr().err.replace("\n", " ")
    assert main(["validate", str(suite)]) == 0
    assert "valid kernels suite" in capsys.readouterr().out


def test_the_shipped_suites_validate(host: PluginHost) -> None:
    for name in ("tiny", "cpu", "gpu"):
        suite = load_kernel_suite(TINY.parent / f"{name}.yaml", host)
        assert suite.targets and suite.points
    cpu = load_kernel_suite(TINY.parent / "cpu.yaml", host)
    assert {(100, 64, 32, 128), (100, 64, 128, 256), (100, 64, 256, 512), (50, 16, 64, 1024),
            (1000, 1, 16, 64), (25, 256, 128, 256)} <= set(cpu.points)
    assert any(h > 1024 and b < 8 for _, b, _, h in cpu.points)
    gpu = load_kernel_suite(TINY.parent / "gpu.yaml", host)
    assert any(b * h >= 64 * 512 for _, b, _, h in gpu.points)
    assert any(b == 1 and t >= 1000 for t, b, _, _ in gpu.points)


@pytest.mark.parametrize(("change", "field", "message"), [
    (("cells: [rnn, gru]", "cells: [rnn, lstn]"), "cells[1]", "did you mean 'lstm'?"),
    (("budget: 0.001", "budgte: 0.001"), "budgte", "did you mean 'budget'?"),
    (("baseline: numpy", "baseline: numpyy"), "baseline", "did you mean 'numpy'?"),
    (("[6, 3, 4, 5]", "[6, 3, 4]"), "points[0]", "four sizes"),
    (("{T: 4, B: 1, I: 2, H: 3}", "{T: 4, B: 1, I: 2}"), "points[1].H", "missing required key 'H'"),
    (("metric: gflops", "metric: gflop"), "targets[0].metric", "did you mean 'gflops'?"),
    (('expect: "> 0"', 'expect: "about 0"'), "targets[0].expect", "cannot read"),
    (("where: {cell: gru", "where: {cel: gru"), "targets[0].where", "did you mean 'cell'?"),
    (("backend: numba-cpu\n    measurement: train_step",
      "backend: numba-cpux\n    measurement: train_step"), "targets[0].backend",
     "did you mean 'numba-cpu'?"),
    (("kind: kernels", "kind: kernel"), "kind", "did you mean 'kernels'?"),
    (("backends: [numpy, numba-cpu]", "backends: [numpy, numba-cup]"), "backends[1]",
     "did you mean 'numba-cpu'?"),
    (("baseline: numpy\n", "reference: numpyy\nbaseline: numpy\n"), "reference",
     "did you mean 'numpy'?"),
    (("where: {cell: gru", "where: {cell: gruu"), "targets[0].where.cell",
     "did you mean 'gru'?"),
    (("where: {cell: gru, H", "where: {dtype: flot32, cell: gru, H"), "targets[0].where.dtype",
     "did you mean 'float32'?"),
    (("min_reps: 2", "min_reps: 9"), "min_reps", "above max_reps"),
])
def test_problems_name_file_line_and_field(tmp_path: Path, host: PluginHost,
                                           change: tuple[str, str], field: str,
                                           message: str) -> None:
    text = SUITE.replace(*change)
    assert text != SUITE
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as caught:
        from rnnbench.kernel_suite import is_kernel_suite
        from rnnbench.suite_yaml import read_suite

        is_kernel_suite(read_suite(path))
        load_kernel_suite(path, host)
    problems = caught.value.problems
    found = [p for p in problems if p.field == field]
    assert found, [str(p) for p in problems]
    line = next(n for n, text_line in enumerate(text.splitlines(), 1)
                if change[1].split("\n")[0] in text_line)
    assert found[0].line == line and found[0].file == str(path)
    assert message in str(found[0]), str(found[0])


def test_a_training_loader_refuses_a_kernels_suite(host: PluginHost) -> None:
    from rnnbench.api import load_validated_suite

    with pytest.raises(RnnbenchError, match="is a kernels suite"):
        load_validated_suite(TINY, host)


def test_time_calls_and_flops() -> None:
    calls: list[int] = []
    timing = time_calls(lambda: calls.append(1) or len(calls), budget=0.0, warmup=2, min_reps=3)
    assert timing.last == 2 and len(timing.times) == 3 and len(calls) == 5
    assert len(time_calls(lambda: None, budget=60.0, max_reps=7).times) == 7
    synced: list[str] = []
    time_calls(lambda: synced.append("call"), 0.0, warmup=0, min_reps=1,
               sync=lambda: synced.append("sync"))
    assert synced == ["sync", "sync", "call", "sync"]
    order: list[str] = []
    time_calls(lambda: order.append("call"), 0.0, warmup=1, min_reps=2,
               prepare=lambda: order.append("prepare"))
    assert order == ["prepare", "call"] * 3  # before the warm-up call and each timed one
    assert flops("lstm", (10, 2, 3, 4), "train_step") == 3 * 2 * 10 * 2 * 4 * 4 * 7


def test_targets_over_rows() -> None:
    from rnnbench.claims import parse_expect
    from rnnbench.kernel_suite import Target

    rows = [{"cell": "lstm", "T": 1000, "B": 1, "I": 16, "H": 64, "dtype": "float32",
             "backend": "numba-cpu", "measurement": "train_step", "ratio": 2.5},
            {"cell": "rnn", "T": 1000, "B": 1, "I": 16, "H": 64, "dtype": "float32",
             "backend": "numba-cpu", "measurement": "train_step", "ratio": 12.0}]
    lstm = Target("l", "numba-cpu", "ratio", parse_expect(">= 3"), "train_step",
                  {"cell": ["lstm"], "T": [parse_expect(">= 1000")]})
    rnn = Target("r", "numba-cpu", "ratio", parse_expect(">= 10"), "train_step",
                 {"cell": ["rnn", "gru"], "BH": [64]})
    results = check_targets([lstm, rnn], rows)
    assert [r["status"] for r in results] == ["not met", "met"]
    assert "worst: 2.5" in results[0]["detail"]


def test_cuda_path_on_the_simulator(tmp_path: Path) -> None:
    """numba-cuda timed on Numba's CUDA simulator (a fresh process: the simulator is chosen
    when Numba loads); torch-cuda absent here is a note, and there is no peak without it."""
    suite = write(tmp_path, """\
kind: kernels
name: sim
device: cuda
cells: [rnn]
backends: [numba-cuda, torch-cuda]
baseline: torch-cuda
points: [[2, 1, 2, 3]]
budget: 0.001
min_reps: 1
max_reps: 1
gemm_sizes: [8]
first_call: false
measurements: [forward, train_step]
""")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-c", "import sys; from rnnbench.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", "run", str(suite), "-o",
                           str(tmp_path / "out"), "-q"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = document["rows"]
    assert {(r["backend"], r["measurement"]) for r in rows} == {("numba-cuda", "forward"),
                                                                ("numba-cuda", "train_step")}
    assert all(r["rel_diff"] < 1e-4 for r in rows)
    assert any("simulator" in n for n in document["notes"])
    assert document["environment"]["gpu"]["simulator"] is True
    if document["gemm"]["peak_gflops"] is None:
        assert "torch" in document["gemm"]["absent"]


FAKE_DEVICE_PLUGIN = """\
from rnnbench import hookimpl
from rnnbench.plugins.cells.reference import RNNCell


class SyncedRNN(RNNCell):
    syncs = 0

    def synchronize(self):
        type(self).syncs += 1


@hookimpl
def rnnbench_register_cells(register):
    register("rnn", "fake-device", SyncedRNN, description="numpy rnn with a synchronize hook")
    register("rnn", "fake-absent", SyncedRNN, description="never available",
             available=lambda: "no fake device on this machine")
"""


def test_any_registered_backend_is_timed_and_its_synchronize_brackets_each_call(
        tmp_path: Path) -> None:
    from rnnbench.plugin_manager import build_host

    (tmp_path / "fake_device.py").write_text(FAKE_DEVICE_PLUGIN)
    suite = write(tmp_path, """\
kind: kernels
name: fake
plugins: [fake_device.py]
cells: [rnn]
backends: [numpy, fake-device, fake-absent]
baseline: numpy
points: [[3, 2, 2, 3]]
budget: 0.001
warmup: 1
min_reps: 2
max_reps: 4
gemm_sizes: [16]
first_call: [fake-device]
""")
    host = build_host()
    run = run_kernel_suite(suite, host, output_dir=tmp_path / "out")
    timed = [r for r in run.rows if r["backend"] == "fake-device"
             and r["measurement"] != "first_call"]
    assert {r["measurement"] for r in timed} == {"forward", "backward", "train_step"}
    synced = host.registry.cells[("rnn", "fake-device")].factory
    # after the warm-up, and before and after every timed call
    assert synced.syncs == sum(1 + 2 * r["reps"] for r in timed)
    assert all(r["rel_diff"] == 0 for r in timed)  # the same numpy code as the reference
    assert "rnn/fake-absent skipped: no fake device on this machine" in run.notes
    assert not any(r["backend"] == "fake-absent" for r in run.rows)
    first = next(r for r in run.rows if r["measurement"] == "first_call")
    assert first["error"] is None and first["first_call_s"] > 0  # the plugin loads there too


def test_a_training_suite_may_say_its_kind(tmp_path: Path, host: PluginHost) -> None:
    from rnnbench.api import load_validated_suite

    quickstart = Path(__file__).resolve().parent.parent / "benchmarks" / "quickstart.yaml"
    path = write(tmp_path, "kind: training\n" + quickstart.read_text(), "training.yaml")
    assert load_validated_suite(path, host).runs
    write(tmp_path, "kind: kernel\n" + quickstart.read_text(), "typo.yaml")
    with pytest.raises(SuiteError, match="did you mean 'kernels'"):
        load_validated_suite(tmp_path / "typo.yaml", host)


SMALL = """\
kind: kernels
name: small
cells: [rnn]
backends: [numpy]
points: [[3, 2, 2, 3]]
budget: 0.001
warmup: 1
min_reps: 2
max_reps: 2
threads: 1
gemm_sizes: [16]
first_call: false
"""


def test_a_misspelt_backend_fails_validate_and_run(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    suite = write(tmp_path, SMALL.replace("[numpy]", "[numpy, numba-cup]"))
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"{suite}:4: backends[1]" in err and "did you mean 'numba-cpu'?" in err
    assert main(["run", str(suite), "-o", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("target", "field", "message"), [
    ("    measurement: forward\n", "targets[0].measurement", "names no measurement"),
    ("    where: {H: 3}\n", "targets[0].where.H", "cannot select on H"),
])
def test_a_first_call_target_names_no_measurement_nor_sizes(
        tmp_path: Path, host: PluginHost, target: str, field: str, message: str) -> None:
    text = SMALL.replace("first_call: false", "first_call: true") + (
        "targets:\n  - id: fc\n    backend: numpy\n    metric: first_call_s\n"
        f'{target}    expect: "< 100"\n')
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as caught:
        load_kernel_suite(path, host)
    found = [p for p in caught.value.problems if p.field == field]
    assert found and message in str(found[0]), [str(p) for p in caught.value.problems]
    assert found[0].line == text.splitlines().index(target.rstrip("\n")) + 1


def test_a_quoted_number_selects_that_size(tmp_path: Path, host: PluginHost) -> None:
    text = SMALL + ('targets:\n  - id: b\n    backend: numpy\n    measurement: forward\n'
                    '    metric: gflops\n    where: {B: "2", H: ["3"]}\n    expect: "> 0"\n')
    suite = load_kernel_suite(write(tmp_path, text), host)
    row = {"backend": "numpy", "measurement": "forward", "B": 2, "H": 3}
    assert suite.targets[0].selects(row)
    assert not suite.targets[0].selects({**row, "B": 3})


FAKE_ABSENT = """\
from rnnbench import hookimpl
from rnnbench.plugins.cells.reference import RNNCell


@hookimpl
def rnnbench_register_cells(register):
    register("rnn", "fake-absent", RNNCell, description="never available",
             available=lambda: "no fake device on this machine")
"""


def test_an_unavailable_reference_is_one_note_and_the_run_goes_on(tmp_path: Path) -> None:
    from rnnbench.plugin_manager import build_host

    (tmp_path / "fake_absent.py").write_text(FAKE_ABSENT)
    suite = write(tmp_path, SMALL.replace("name: small", "name: small\nplugins: "
                                          "[fake_absent.py]\nreference: fake-absent"))
    run = run_kernel_suite(suite, build_host(), output_dir=tmp_path / "out")
    assert run.errors == [] and run.rows
    assert all(r["rel_diff"] is None for r in run.rows)
    notes = [n for n in run.notes if n.startswith("reference")]
    assert notes == ["reference fake-absent unavailable (no fake device on this machine): no "
                     "agreement check"]


def test_output_folder_kinds_suites_and_previous_tables(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from rnnbench.output_dir import MANIFEST

    suite = write(tmp_path, SMALL)
    out = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["kind"] == "kernels" and manifest["suite"] == "small"
    first_csv = (out / "kernels.csv").read_text()
    assert main(["run", str(suite), "-o", str(out), "-q"]) == 0  # the same suite again
    for stem, ext in (("kernels", "csv"), ("results", "json"), ("results", "md"),
                      ("ratios", "csv")):
        kept = list(out.glob(f"{stem}.previous-*.{ext}"))
        assert len(kept) == 1, (stem, ext, sorted(p.name for p in out.iterdir()))
        assert kept[0].name in json.loads((out / MANIFEST).read_text())["files"]
    assert next(out.glob("kernels.previous-*.csv")).read_text() == first_csv
    assert not (out / "kernels.partial.csv").exists()
    # another kernels suite's folder: refused, unless --force
    other = write(tmp_path, SMALL.replace("name: small", "name: other"), "other.yaml")
    assert main(["run", str(other), "-o", str(out), "-q"]) == 2
    assert "kernels suite 'small', not 'other'" in capsys.readouterr().err.replace("\n", " ")
    assert main(["run", str(other), "-o", str(out), "-q", "--force"]) == 0
    # a training suite into a kernels folder, a kernels suite into a training folder: refused
    training = Path(__file__).resolve().parent.parent / "benchmarks" / "quickstart.yaml"
    assert main(["run", str(training), "-o", str(out), "-q"]) == 2
    assert "results of a kernels suite" in capsys.readouterr().err.replace("\n", " ")
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "results.jsonl").write_text("")
    (trained / "environment.json").write_text("{}")
    assert main(["run", str(suite), "-o", str(trained), "-q"]) == 2
    assert "results of a training suite" in capsys.readouterr().err.replace("\n", " ")
    assert not (trained / "kernels.csv").exists()


def test_show_verify_and_compare_on_a_kernels_folder(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    text = SMALL + ('targets:\n  - id: runs\n    backend: numpy\n    measurement: forward\n'
                    '    metric: gflops\n    expect: "> 0"\n')
    out = tmp_path / "out"
    assert main(["run", str(write(tmp_path, text)), "-o", str(out), "-q"]) == 0
    assert main(["verify", str(out)]) == 0
    assert "0 of 1 targets not met" in capsys.readouterr().out
    missed = tmp_path / "missed"
    impossible = text.replace('expect: "> 0"', 'expect: "> 1e12"').replace("small", "missed")
    assert main(["run", str(write(tmp_path, impossible, "m.yaml")), "-o", str(missed),
                 "-q"]) == 0  # a target not met is a finding, not a failed run
    assert main(["verify", str(missed)]) == 1
    assert "1 of 1 targets not met: runs" in capsys.readouterr().out
    assert main(["verify", str(missed), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    assert main(["show", str(out)]) == 0
    assert capsys.readouterr().out.startswith("# Kernels: small")
    assert main(["compare", str(out), str(missed)]) == 2
    assert "is a kernels results folder" in capsys.readouterr().err.replace("\n", " ")


def test_an_interrupted_run_keeps_its_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    import rnnbench.kernel_suite as kernel_suite
    from rnnbench.plugin_manager import build_host

    calls = {"n": 0}
    real = kernel_suite.time_calls

    def stop_at_the_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(kernel_suite, "time_calls", stop_at_the_second)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_kernel_suite(write(tmp_path, SMALL), build_host(), output_dir=out)
    with open(out / "kernels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["measurement"] for r in rows] == ["forward"]
    assert "interrupted (Ctrl-C)" in (out / "results.md").read_text()
    assert json.loads((out / "results.json").read_text())["interrupted"] == "interrupted (Ctrl-C)"


def test_rows_are_appended_as_they_are_measured(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import rnnbench.kernel_suite as kernel_suite
    from rnnbench.plugin_manager import build_host

    out = tmp_path / "out"
    seen: list[int] = []
    real = kernel_suite.time_calls

    def look(*args, **kwargs):
        partial = out / kernel_suite.ROWS_FILE
        seen.append(len(partial.read_text().splitlines()) - 1)  # rows before this one
        return real(*args, **kwargs)

    monkeypatch.setattr(kernel_suite, "time_calls", look)
    run_kernel_suite(write(tmp_path, SMALL), build_host(), output_dir=out)
    assert seen == [0, 1, 2]


def test_float64_rows_get_a_float64_peak(tmp_path: Path) -> None:
    from rnnbench.plugin_manager import build_host

    suite = write(tmp_path, SMALL.replace("threads: 1", "threads: 1\ndtype: [float32, float64]"))
    run = run_kernel_suite(suite, build_host(), output_dir=tmp_path / "out")
    peaks = run.gemm["by_dtype"]
    assert peaks["float64"] > 0 and peaks["float32"] == run.gemm["peak_gflops"]
    assert "float64" in run.gemm["other_dtypes"]["float64"]["source"]
    for row in run.rows:
        assert math.isclose(row["pct_peak"], 100 * row["gflops"] / peaks[row["dtype"]])
    assert "float64 GEMM peak (numpy a @ b, float64)" in (tmp_path / "out" /
                                                           "results.md").read_text()
