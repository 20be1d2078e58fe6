"""An opt-in reporter: ``leaderboard.md``, the configurations of each task ranked by test loss.

Every registered reporter writes into every results folder, so this module is deliberately *not*
an entry point of the package: load it for the suites that want it, with
``rnnbench run SUITE -p rnnbench_mingru.leaderboard`` or ``plugins: [rnnbench_mingru.leaderboard]``
in the suite.
"""

from __future__ import annotations

from pathlib import Path

from rnnbench import (
    ReporterRegistrar,
    ResultTable,
    atomic_write_text,
    format_mean_std,
    format_value,
    hookimpl,
)

#: The version of rnnbench's plugin contract this module was written for.
RNNBENCH_CONTRACT = 2

#: The metric the leaderboard ranks by; lower is better.
RANKED_BY = "test_loss"


def write_leaderboard(table: ResultTable, out_dir: Path) -> list[Path]:
    """Write ``leaderboard.md``: per task, the configurations (seeds pooled) by mean test loss,
    lowest first; configurations without a test loss (all runs failed or diverged) come last.
    Writes nothing when the suite did not compute ``test_loss``."""
    if RANKED_BY not in table.metrics:
        return []
    columns = [c for c in table.display_columns if c not in ("seed", "task")]
    by_task: dict[str, list[dict]] = {}
    for row in table.summary():
        by_task.setdefault(row["task_label"], []).append(row)
    lines = [f"# Leaderboard: {table.suite}", "",
             f"Ranked by mean {RANKED_BY} over seeds (± standard deviation); runs: ok/total.", ""]
    for task, rows in by_task.items():
        rows.sort(key=lambda r: (r[f"{RANKED_BY}_mean"] is None, r[f"{RANKED_BY}_mean"] or 0.0))
        lines += [f"## {task}", "", "| " + " | ".join(["rank", *columns, RANKED_BY, "runs"]) + " |",
                  "|" + "---|" * (len(columns) + 3)]
        for rank, row in enumerate(rows, start=1):
            cells = [str(rank), *(format_value(row[c]) for c in columns),
                     format_mean_std(row[f"{RANKED_BY}_mean"], row[f"{RANKED_BY}_std"]),
                     f"{row['ok']}/{row['runs']}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return [atomic_write_text(out_dir / "leaderboard.md", "\n".join(lines))]


@hookimpl
def rnnbench_register_reporters(register: ReporterRegistrar) -> None:
    register("leaderboard", write_leaderboard, "leaderboard.md: each task's configurations "
             "ranked by mean test loss")
