"""benchmarks/cell_speed.py: runs on the quick grid and writes consistent reports.

Not a timing test: only that every number is there, positive, finite and self-consistent. The
GPU mode (``--device cuda``) runs where the numba-cuda backend is available: on a GPU, or on
Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), where it uses the tiny grid.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "cell_speed.py"
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
QUICK_POINTS = {(10, 4, 8, 16), (20, 1, 4, 8)}
TINY_POINTS = {(2, 1, 2, 3), (3, 2, 3, 4)}


@pytest.fixture(scope="module")
def cell_speed() -> ModuleType:
    """The script, imported by path (benchmarks/ is not a package)."""
    name = "rnnbench_cell_speed_script"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def quick_run(cell_speed: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cell_speed")
    rc = cell_speed.main(
        ["--grid", "quick", "--budget", "0.01", "--no-torch", "--no-first-call", "-o", str(out)]
    )
    assert rc == 0
    return out


def expected_flops(row: dict) -> int:
    t, b, i, h = (int(row[k]) for k in ("T", "B", "I", "H"))
    forward = 2 * t * b * GATES[row["cell"]] * h * (i + h)
    return forward if row["measurement"] == "forward" else 3 * forward


def test_writes_the_three_files(quick_run: Path) -> None:
    for name in ("cell_speed.json", "cell_speed.csv", "cell_speed.md"):
        assert (quick_run / name).is_file(), name
    assert not list(quick_run.glob(".*.tmp")), "atomic writes leave no temporary files"


def test_json_rows_are_complete_and_consistent(quick_run: Path) -> None:
    report = json.loads((quick_run / "cell_speed.json").read_text())
    peak = report["gemm"]["peak_gflops"]
    assert math.isfinite(peak) and peak > 0
    assert report["environment"]["python"]
    assert report["threads"]["ours"] >= 1
    assert report["errors"] == []
    assert report["first_call"] == []  # --no-first-call
    rows = report["measurements"]
    numpy_rows = [r for r in rows if r["implementation"] == "numpy"]
    # numpy: every cell x quick point x measurement
    assert {(r["cell"], (r["T"], r["B"], r["I"], r["H"]), r["measurement"]) for r in numpy_rows} \
        == {(c, p, m) for c in GATES for p in QUICK_POINTS for m in ("forward", "train_step")}
    assert not [r for r in rows if r["implementation"] == "torch"]  # --no-torch
    for row in rows:
        assert 3 <= row["reps"] <= 200
        for key in ("median_s", "min_s", "max_s", "gflops", "pct_peak"):
            assert math.isfinite(row[key]) and row[key] > 0, (key, row)
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["flops"] == expected_flops(row)
        assert row["gflops"] == pytest.approx(row["flops"] / row["median_s"] / 1e9, rel=1e-9)
        assert row["pct_peak"] == pytest.approx(100 * row["gflops"] / peak, rel=1e-9)
        assert row["speedup_vs_torch"] is None
        assert row["speedup_vs_numpy"] > 0
    for row in numpy_rows:
        assert row["speedup_vs_numpy"] == 1
    for row in rows:
        if row["implementation"] != "numpy":  # e.g. numba-cpu, once registered
            assert row["rel_diff_vs_numpy"] is not None and row["rel_diff_vs_numpy"] < 1e-3


def test_csv_matches_json(quick_run: Path) -> None:
    report = json.loads((quick_run / "cell_speed.json").read_text())
    with open(quick_run / "cell_speed.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report["measurements"])
    for row in rows:
        median, gflops = float(row["median_s"]), float(row["gflops"])
        assert math.isfinite(median) and median > 0
        assert int(row["flops"]) == expected_flops(row)
        assert gflops == pytest.approx(int(row["flops"]) / median / 1e9, rel=1e-6)
        if row["implementation"] == "numpy":
            assert float(row["speedup_vs_numpy"]) == 1


def test_markdown_has_tables_machine_and_targets(quick_run: Path) -> None:
    text = (quick_run / "cell_speed.md").read_text()
    for heading in ("## Forward", "## Train step", "## Machine", "## Targets"):
        assert heading in text
    assert "GFLOP/s" in text and "numpy ms" in text
    assert "torch not measured" in text  # the torch targets say n/a, not a made-up result


def _row(impl: str, point: tuple, measurement: str, median: float, **extra: float) -> dict:
    t, b, i, h = point
    row = {"cell": "lstm", "T": t, "B": b, "I": i, "H": h, "implementation": impl,
           "measurement": measurement, "median_s": median,
           "gflops": 2 * t * b * 4 * h * (i + h) / median / 1e9}
    row.update(extra)
    return row


def test_targets_are_computed_from_the_numbers(cell_speed: ModuleType) -> None:
    long, big = (1000, 1, 16, 64), (50, 16, 64, 1024)
    rows = [
        _row("numba-cpu", long, "train_step", 0.01),
        _row("torch", long, "train_step", 0.2),
        _row("numba-cpu", big, "train_step", 0.02),
        _row("torch", big, "train_step", 0.01),
        _row("numba-cpu", big, "forward", 0.001),
    ]
    cell_speed.add_derived(rows, peak_gflops=100.0)
    first = [{"cell": "lstm", "implementation": "numba-cpu", "first_call_s": 0.2,
              "setup_s": 0.5}]
    targets = {t["target"]: t for t in cell_speed.compute_targets(rows, first, True)}
    status = {name.split(" ", 1)[1]: t["status"] for name, t in targets.items()}
    assert status["train step >= torch at every point"] == "not met"  # 0.5x at the big point
    assert status[f"train step >= 10x torch at (T,B,I,H) = {long}"] == "met"  # 20x
    forward_pct = rows[4]["pct_peak"]
    assert status["forward >= 70% of GEMM peak at H >= 512"] == (
        "met" if forward_pct >= 70 else "not met")
    assert status["first forward+backward in a fresh process < 1 s"] == "met"
    # without torch or numba-cpu: n/a, never met
    none = cell_speed.compute_targets([r for r in rows if r["implementation"] == "torch"], [],
                                      True)
    assert {t["status"] for t in none} == {"n/a"}


def test_time_calls_respects_rep_limits(cell_speed: ModuleType) -> None:
    calls = []
    times, last = cell_speed.time_calls(lambda: calls.append(1) or len(calls), budget=0.0)
    assert len(times) == 3 and last == 2 and len(calls) == 5  # 2 warm-up calls, 3 timed
    times, _ = cell_speed.time_calls(lambda: None, budget=60.0, max_reps=7)
    assert len(times) == 7


# --- --device cuda ---------------------------------------------------------------------------


def numba_cuda_unavailable() -> str | None:
    from rnnbench.plugins.cells import numba_cuda

    return numba_cuda.unavailable_reason()


@pytest.fixture(scope="module")
def gpu_run(cell_speed: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = numba_cuda_unavailable()
    if reason is not None:
        pytest.skip(f"numba-cuda unavailable: {reason}")
    out = tmp_path_factory.mktemp("cell_speed_gpu")
    rc = cell_speed.main(["--device", "cuda", "--grid", "tiny", "--budget", "0.01", "--no-torch",
                          "--no-first-call", "-o", str(out)])
    assert rc == 0
    return out


def test_gpu_mode_writes_consistent_reports(gpu_run: Path) -> None:
    for name in ("cell_speed.json", "cell_speed.csv", "cell_speed.md"):
        assert (gpu_run / name).is_file(), name
    report = json.loads((gpu_run / "cell_speed.json").read_text())
    device = report["device"]
    assert device["type"] == "cuda" and device["name"]
    assert report["settings"]["device"] == "cuda" and report["settings"]["grid"] == "tiny"
    assert report["settings"]["warmup"] == (1 if device["simulator"] else 2)
    assert report["errors"] == [] and report["first_call"] == []
    assert report["gemm"]["peak_gflops"] is None  # --no-torch: no torch.matmul peak
    assert "torch" in report["gemm"]["absent"]
    rows = report["measurements"]
    # only the CUDA backend is timed (the numpy reference runs untimed), at every point
    assert {r["implementation"] for r in rows} == {"numba-cuda"}
    assert {(r["cell"], (r["T"], r["B"], r["I"], r["H"]), r["measurement"]) for r in rows} \
        == {(c, p, m) for c in GATES for p in TINY_POINTS for m in ("forward", "train_step")}
    for row in rows:
        assert 3 <= row["reps"] <= 200
        for key in ("median_s", "min_s", "max_s", "gflops"):
            assert math.isfinite(row[key]) and row[key] > 0, (key, row)
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["flops"] == expected_flops(row)
        assert row["gflops"] == pytest.approx(row["flops"] / row["median_s"] / 1e9, rel=1e-9)
        assert row["pct_peak"] is None
        assert row["speedup_vs_numpy"] is None and row["speedup_vs_torch"] is None
        assert row["rel_diff_vs_numpy"] is not None and row["rel_diff_vs_numpy"] < 1e-4, row
    assert {t["status"] for t in report["targets"]} == {"n/a"}  # no torch: nothing to compare
    assert len(report["targets"]) == 4

    with open(gpu_run / "cell_speed.csv", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == len(rows)
    assert {r["device"] for r in csv_rows} == {device["name"]}
    assert all(r["pct_peak"] == "" and int(r["flops"]) == expected_flops(r) for r in csv_rows)

    text = (gpu_run / "cell_speed.md").read_text()
    for heading in ("# Cell speed on the GPU", "## Forward", "## Train step",
                    "## Agreement with the numpy reference", "## Machine", "## Targets"):
        assert heading in text
    assert device["name"] in text and "numba-cuda TFLOP/s" in text
    assert "% peak |" not in text  # no peak, no column
    assert "torch not measured" in text


def test_gpu_mode_without_a_cuda_backend_exits_2(
    cell_speed: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rnnbench.plugins.cells import numba_cuda

    monkeypatch.setattr(numba_cuda, "unavailable_reason", lambda: "no CUDA GPU found (test)")
    out = tmp_path / "out"
    rc = cell_speed.main(["--device", "cuda", "--grid", "tiny", "--no-torch", "--no-first-call",
                          "-o", str(out)])
    assert rc == 2
    assert "numba-cuda: no CUDA GPU found (test)" in capsys.readouterr().err
    assert not out.exists()


def test_gpu_targets_are_computed_from_the_numbers(cell_speed: ModuleType) -> None:
    large, other_large, long = (100, 256, 1024, 1024), (100, 64, 256, 512), (1000, 1, 64, 128)
    rows = [
        _row("numba-cuda", large, "forward", 0.015), _row("torch", large, "forward", 0.01),
        _row("numba-cuda", other_large, "forward", 0.01),
        _row("torch", other_large, "forward", 0.01),
        _row("numba-cuda", large, "train_step", 0.05), _row("torch", large, "train_step", 0.02),
        _row("numba-cuda", long, "forward", 0.005), _row("torch", long, "forward", 0.01),
        _row("numba-cuda", long, "train_step", 0.02), _row("torch", long, "train_step", 0.01),
        _row("numba-cuda", (50, 16, 64, 1024), "train_step", 1.0),  # B*H < 64*512: not large
        _row("torch", (50, 16, 64, 1024), "train_step", 0.01),
    ]
    cell_speed.add_derived(rows, peak_gflops=None)
    assert all(r["pct_peak"] is None for r in rows)
    forward_large, train_large, forward_long, train_long = cell_speed.compute_targets(
        rows, [], True, device="cuda")
    assert "forward within 2x of cuDNN" in forward_large["target"]
    assert "B*H >= 32768" in forward_large["target"]
    assert forward_large["status"] == "met"  # 0.67x and 1x
    assert "(100,64,256,512) 1.00x" in forward_large["detail"]
    assert train_large["status"] == "not met"  # 0.4x
    assert "(50,16,64,1024)" not in train_large["detail"]
    assert "forward faster than cuDNN" in forward_long["target"]
    assert forward_long["status"] == "met"  # 2x
    assert train_long["status"] == "not met"  # 0.5x
    without_torch = cell_speed.compute_targets(
        [r for r in rows if r["implementation"] != "torch"], [], False, device="cuda")
    assert {t["status"] for t in without_torch} == {"n/a"}


def test_gpu_markdown_with_torch_and_a_peak(cell_speed: ModuleType) -> None:
    """The parts a GPU with torch fills in (peak, cuDNN, ratios), from made-up numbers."""
    point = (100, 256, 1024, 1024)
    rows = [dict(_row(impl, point, m, t), dtype="float32", reps=5, min_s=t, max_s=t,
                 flops=expected_flops({"cell": "lstm", "T": 100, "B": 256, "I": 1024,
                                       "H": 1024, "measurement": m}),
                 rel_diff_vs_numpy=1e-6)
            for impl, m, t in (("numba-cuda", "forward", 0.02), ("torch", "forward", 0.01),
                               ("numba-cuda", "train_step", 0.05),
                               ("torch", "train_step", 0.04))]
    cell_speed.add_derived(rows, peak_gflops=50_000.0)
    torch_info = {"version": "2.11.0+cu130", "cuda": "13.0", "cudnn_version": 91002,
                  "cudnn_available": True, "cudnn_enabled": True, "cudnn_benchmark": False,
                  "cudnn_rnn_fp32": {"setting": "torch.backends.cudnn.rnn.fp32_precision",
                                     "value": "ieee"}, "gpu": "NVIDIA H100"}
    report = {
        "device": {"type": "cuda", "simulator": False, "name": "NVIDIA H100",
                   "compute_capability": "9.0", "memory_bytes": 80 * 2**30},
        "settings": {"dtype": "float32", "budget_s": 1.0, "warmup": 2},
        "gemm": {"source": "torch.matmul on the GPU, TF32 off", "peak_gflops": 50_000.0,
                 "sizes": {"8192": {"gflops": 50_000.0}}},
        "torch": torch_info, "environment": {"packages": {"numba-cuda": "0.30.4"}},
        "measurements": rows, "first_call": [], "skipped": [], "errors": [],
        "targets": cell_speed.compute_targets(rows, [], True, device="cuda"),
    }
    text = cell_speed.to_markdown(report)
    assert "numba-cuda % peak" in text and "torch TFLOP/s" in text
    assert "| numba-cuda vs torch |" in text and "0.50x" in text and "0.80x" in text
    assert "cuDNN 91002" in text and "`ieee`" in text and "**50.0 TFLOP/s**" in text
    assert "compute capability 9.0, 80 GiB" in text
    csv_text = cell_speed.to_csv(rows, "NVIDIA H100")
    assert csv_text.splitlines()[0].endswith(",device")
    assert all(line.endswith(",NVIDIA H100") for line in csv_text.splitlines()[1:])
