"""The tables of a kernels suite (``kind: kernels``): Markdown, CSV and JSON, written atomically.

- ``kernels.csv``: tidy rows, one per cell x point x dtype x backend x measurement (forward,
  backward, train_step, and first_call: the first forward + backward in a fresh process);
- ``ratios.csv``: each backend against the suite's ``baseline``, measured in the same run;
- ``results.json``: the rows, ratios, targets, GEMM peak, thread budget and load, notes,
  errors and the environment;
- ``results.md``: per measurement one table (ms, GFLOP/s, % of the GEMM peak, ratio to the
  baseline, per backend), the agreement with the reference, the first calls, the targets.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnbench.json_numbers import encode_nonfinite
from rnnbench.kernel_bench import FLOP_MODEL, MEASUREMENTS
from rnnbench.results import atomic_write_text, format_value

if TYPE_CHECKING:
    from rnnbench.kernel_suite import KernelRun

__all__ = ["ROW_COLUMNS", "TABLE_FILES", "kernel_markdown", "write_kernel_tables"]

#: The tables a run writes (a re-run keeps the previous ones as ``NAME.previous-<UTC time>.EXT``).
TABLE_FILES = ("kernels.csv", "ratios.csv", "results.json", "results.md")

ROW_COLUMNS = ("cell", "T", "B", "I", "H", "dtype", "backend", "measurement", "median_s",
               "min_s", "max_s", "reps", "flops", "gflops", "pct_peak", "ratio", "rel_diff",
               "first_call_s", "device", "threads", "error")
RATIO_COLUMNS = ("cell", "T", "B", "I", "H", "dtype", "measurement", "backend", "baseline",
                 "ratio")
TITLES = {"forward": "Forward (with the cache training keeps)",
          "backward": "Backward (each on a fresh forward's cache, made untimed)",
          "train_step": "Training step (forward + backward)"}


def write_kernel_tables(run: KernelRun) -> list[Path]:
    """Write the four tables into the run's folder; returns their paths."""
    out = run.output_dir
    document = {
        "suite": run.suite.name, "kind": "kernels", "device": run.suite.device,
        "interrupted": run.interrupted,
        "settings": {"budget_s": run.suite.budget, "warmup": run.suite.warmup,
                     "min_reps": run.suite.min_reps, "max_reps": run.suite.max_reps,
                     "baseline": run.suite.baseline, "reference": run.suite.reference,
                     "statistic": "median", "num_layers": 1, "bias": True},
        "flop_model": FLOP_MODEL, "gemm": run.gemm, "threads": run.threads,
        "targets": run.targets, "notes": run.notes, "errors": run.errors,
        "rows": run.rows, "ratios": run.ratios, "environment": run.environment,
    }
    text = json.dumps(encode_nonfinite(document), indent=2, default=str, allow_nan=False)
    return [
        atomic_write_text(out / "kernels.csv", _csv(run.rows, ROW_COLUMNS)),
        atomic_write_text(out / "ratios.csv", _csv(run.ratios, RATIO_COLUMNS)),
        atomic_write_text(out / "results.json", text + "\n"),
        atomic_write_text(out / "results.md", kernel_markdown(run)),
    ]


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return buffer.getvalue()


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *map(line, body)]


def _backends(run: KernelRun) -> list[str]:
    present = {r["backend"] for r in run.rows}
    return [b for b in run.suite.backends if b in present]


def kernel_markdown(run: KernelRun) -> str:
    """results.md: how to read it, one table per measurement, agreement, first calls, targets,
    machine and threads, notes."""
    suite, gemm = run.suite, run.gemm
    peak = gemm.get("peak_gflops")
    baseline = suite.baseline
    lines = [f"# Kernels: {suite.name}", ""]
    if run.interrupted:
        lines += [f"**This run was {run.interrupted}: the tables hold only what was measured "
                  "before it stopped.**", ""]
    if suite.description:
        lines += [suite.description.strip(), ""]
    lines += [
        f"One layer with bias on {suite.device}; median of repeated calls after {suite.warmup} "
        f"warm-up calls ({suite.budget:g} s per measurement, {suite.min_reps}-{suite.max_reps} "
        "reps); ms = median milliseconds per call. " + FLOP_MODEL
        + (" % peak: of the GEMM peak of the row's dtype (float32, float64) measured in this "
           "run." if peak else "")
        + (f" `vs {baseline}` = median({baseline}) / median(backend), measured in this run: "
           "above 1 means faster." if baseline else ""),
        "",
    ]
    if run.targets:
        lines += ["## Targets", ""]
        lines += _table(["id", "target", "status", "detail"],
                        [[t["id"], t["target"], f"**{t['status']}**", t["detail"]]
                         for t in run.targets])
        lines.append("")
    backends = _backends(run)
    if baseline not in backends:
        baseline = None  # skipped or failed: no ratio columns
    by_key = {(r["cell"], r["T"], r["B"], r["I"], r["H"], r["dtype"], r["measurement"],
               r["backend"]): r for r in run.rows}
    points = list(dict.fromkeys((r["cell"], r["T"], r["B"], r["I"], r["H"], r["dtype"])
                                for r in run.rows if r["measurement"] != "first_call"))
    for measurement in MEASUREMENTS:
        if measurement not in suite.measurements:
            continue
        header = ["cell", "T", "B", "I", "H", "dtype", "GFLOP"]
        for b in backends:
            header += [f"{b} ms", f"{b} GFLOP/s"] + ([f"{b} % peak"] if peak else [])
            if baseline and b != baseline:
                header.append(f"{b} vs {baseline}")
        body = []
        for point in points:
            present = [by_key.get((*point, measurement, b)) for b in backends]
            if not any(present):
                continue
            first = next(r for r in present if r)
            cells = [*map(str, point), format_value(first["flops"] / 1e9, 3)]
            for b, row in zip(backends, present, strict=True):
                if row is None:
                    cells += [""] * (2 + bool(peak))
                else:
                    cells += [format_value(row["median_s"] * 1e3), f"{row['gflops']:.2f}"]
                    if peak:
                        cells.append("" if row["pct_peak"] is None else f"{row['pct_peak']:.1f}")
                if baseline and b != baseline:
                    ratio = row["ratio"] if row else None
                    cells.append("" if ratio is None else f"{ratio:.2f}x")
            body.append(cells)
        lines += [f"## {TITLES[measurement]}", ""]
        lines += (_table(header, body) if body else ["(no measurements)"]) + [""]
    agree = [r for r in run.rows if r["rel_diff"] is not None and r["backend"] != suite.reference]
    if agree:
        lines += [f"## Agreement with {suite.reference}", "",
                  "Largest max|Δ| / max|reference| over all points: outputs (forward), "
                  "parameter and input gradients (backward, train step).", ""]
        body = [[b, *(format_value(max((r["rel_diff"] for r in agree if r["backend"] == b
                                        and r["measurement"] == m), default=None), 3)
                      for m in suite.measurements)]
                for b in backends if any(r["backend"] == b for r in agree)]
        lines += [*_table(["backend", *suite.measurements], body), ""]
    calls = [r for r in run.rows if r["measurement"] == "first_call"]
    if calls:
        lines += ["## First call in a fresh process", "",
                  "First forward + backward (T=5, B=3, I=4, H=8) in a new Python process, the "
                  "second of two (a compile cache filled by the first is used); setup = "
                  "imports, plugins and building the cell.", ""]
        body = [[r["cell"], r["backend"], r["dtype"], format_value(r["first_call_s"]),
                 format_value(r.get("setup_s")), format_value(r.get("process_s")),
                 r["error"] or ""] for r in calls]
        header = ["cell", "backend", "dtype", "first call s", "setup s", "process s", "error"]
        lines += [*_table(header, body), ""]
    env, threads = run.environment, run.threads
    sizes = ", ".join(f"{n}: {v:.1f}" for n, v in gemm.get("sizes", {}).items())
    packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
    lines += ["## Machine and threads", "",
              (f"GEMM peak ({gemm['source']}, best median GFLOP/s over square sizes, measured "
               f"before and after the kernels: {gemm.get('peak_gflops_before', peak):.1f} and "
               f"{gemm.get('peak_gflops_after', peak):.1f}): **{peak:.1f} GFLOP/s** ({sizes})."
               if peak else
               f"GEMM peak: not measured ({gemm.get('absent')}); no % peak."),
              *[f"{dtype} GEMM peak ({other['source']}): **{other['peak_gflops']:.1f} GFLOP/s**"
                f" (the % peak of the {dtype} rows)." if other.get("peak_gflops") else
                f"{dtype} GEMM peak: not measured ({other.get('absent')}); no % peak for "
                f"{dtype} rows." for dtype, other in gemm.get("other_dtypes", {}).items()],
              f"Thread budget {threads['budget']} (BLAS {threads.get('blas')}, Numba "
              f"{threads.get('numba')}, torch {threads.get('torch')}) of "
              f"{threads['usable_cores']} usable cores; load average before "
              f"{threads.get('load_average_before')}, after {threads.get('load_average_after')}"
              f" ({threads.get('busy_cores_before')} cores busy with other work at the start).",
              *([f"GPU: {env['gpu'].get('name')}"
                 + (f", compute capability {env['gpu']['compute_capability']}"
                    if env["gpu"].get("compute_capability") else "") + "."]
                if env.get("gpu") else []),
              f"CPU: {env.get('cpu')}, {env.get('cpu_count')} logical CPUs; Python "
              f"{env.get('python')}; {packages}.", ""]
    if run.notes or run.errors:
        lines += ["## Skipped and failed", ""]
        lines += [f"- {note}" for note in run.notes]
        lines += [f"- FAILED {e['backend']} {e['measurement']} {e['cell']} "
                  f"(T={e['T']}, B={e['B']}, I={e['I']}, H={e['H']}, {e['dtype']}): {e['error']}"
                  for e in run.errors]
        lines.append("")
    return "\n".join(lines)
