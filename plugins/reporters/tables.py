"""Built-in reporters: Markdown, CSV and JSON result tables, written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from rnnbench import (
    CLAIM_COLUMNS,
    ResultTable,
    atomic_write_text,
    encode_nonfinite,
    format_value,
    hookimpl,
    runs_cell,
    summary_cell,
    summary_heading,
)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def summary_cells(table: ResultTable) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the seed-aggregated summary, varying configuration columns only."""
    columns = [c for c in table.display_columns if c != "seed"]
    header = [*columns, "runs", *(summary_heading(m) for m in table.metrics)]
    rows = []
    for row in table.summary():
        rows.append(
            [format_value(table.display_value(row, c)) for c in columns]
            + [runs_cell(row)]
            + [summary_cell(row, m) for m in table.metrics]
        )
    return header, rows


def claims_markdown(table: ResultTable) -> list[str]:
    """The claims section that heads results.md (nothing when the suite states no claims)."""
    if not table.claims:
        return []
    rows = [[" ".join(cell.split()) for cell in result.cells()] for result in table.claims]
    return ["## Claims", "", _markdown_table(list(CLAIM_COLUMNS), rows), ""]


def write_markdown(table: ResultTable, out_dir: Path) -> list[Path]:
    variant = (table.environment or {}).get("variant")
    title = table.suite + (f" (variant {variant})" if isinstance(variant, str) else "")
    parts = [f"# Results: {title}", "", *claims_markdown(table)]
    constant = table.constant
    if constant:
        parts += ["Fixed settings: " + ", ".join(
            f"{key}={format_value(value)}" for key, value in constant.items() if value is not None
        ), ""]
    env = table.environment or {}
    if env:
        packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
        git = env.get("git") or {}
        commit = git.get("commit", "")[:12] + (" (modified)" if git.get("dirty") else "")
        parts += [
            f"Ran {env.get('date', '?')} on {env.get('cpu', '?')} ({env.get('cpu_count', '?')} "
            f"CPUs), Python {env.get('python', '?')}, {packages}"
            + (f", commit {commit}" if commit else "") + ".",
            "",
        ]
    budgets = table.thread_budgets()
    if budgets:
        parts += [f"Thread budget (BLAS/OpenMP/Numba threads per run): "
                  f"{', '.join(map(str, budgets))}.", ""]
    header, rows = summary_cells(table)
    parts += ["## Summary (mean ± std over seeds; runs: ok/total)", "",
              _markdown_table(header, rows), ""]
    note = table.timing_note()
    if note:
        parts += [note, ""]
    run_columns = table.display_columns
    run_header = ["run_id", *run_columns, "status", *table.metrics]
    run_rows = [
        [row["run_id"], *(format_value(table.display_value(row, c)) for c in run_columns),
         row["status"],
         *(format_value(row[m]) for m in table.metrics)]
        for row in table.rows()
    ]
    parts += ["## Runs", "", _markdown_table(run_header, run_rows), ""]
    failures = [row for row in table.rows() if row["error"]]
    if failures:
        parts += ["## Failures", ""]
        parts += [f"- `{row['run_id']}` ({row['status']}): {row['error']}" for row in failures]
        parts.append("")
    return [atomic_write_text(out_dir / "results.md", "\n".join(parts))]


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def write_csv(table: ResultTable, out_dir: Path) -> list[Path]:
    return [
        atomic_write_text(out_dir / "runs.csv", _csv_text(table.rows())),
        atomic_write_text(out_dir / "summary.csv", _csv_text(table.summary())),
    ]


def write_json(table: ResultTable, out_dir: Path) -> list[Path]:
    document = {
        "suite": table.suite,
        "metrics": table.metrics,
        "claims": [result.to_dict() for result in table.claims],
        "environment": table.environment,
        "runs": table.rows(),
        "summary": table.summary(),
        "profiles": {
            record.run_id: {name: record.metrics.get(name) for name in table.profiles}
            for record in table.records
        } if table.profiles else {},
    }
    # inf / -inf / NaN as {"$float": "inf"} objects, as in results.jsonl: standard JSON.
    text = json.dumps(encode_nonfinite(document), indent=2, default=str, allow_nan=False) + "\n"
    return [atomic_write_text(out_dir / "results.json", text)]


@hookimpl
def rnnbench_register_reporters(register):
    register("markdown", write_markdown, "results.md: summary over seeds and one row per run")
    register("csv", write_csv, "runs.csv (one row per run) and summary.csv (over seeds)")
    register("json", write_json, "results.json: runs, summary and environment")
