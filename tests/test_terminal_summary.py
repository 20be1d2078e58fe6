"""The terminal summary shows the suite's own metrics (scalars; profiles go to the plots), the
settings that vary as columns, and splits metrics that do not fit the console's width."""

from __future__ import annotations

import io

from rich.console import Console

from rnnbench.cli import TERMINAL_METRICS, main, print_table
from rnnbench.records import RunRecord
from rnnbench.results import ResultTable, summary_heading


def record(lr: float, seed: int, **metrics) -> RunRecord:
    config = {"cell": "lstm", "task": "adding", "seed": seed, "task_params": {},
              "training": {"lr": lr, "steps": 10}}
    values = {"test_loss": 0.1 * seed + lr, "grad_norm_max": 3.0, "solved": True,
              "grad_lags": [0, 1], "grad_norm_by_lag_init": [1.0, 0.5], "step_ms": 0.2,
              **metrics}
    return RunRecord(run_id=f"r{lr}{seed}", label="x", suite="demo", config=config,
                     status="ok", metrics=values)


def table() -> ResultTable:
    names = ["test_loss", "grad_norm_max", "solved", "grad_lags", "grad_norm_by_lag_init",
             "step_ms"]
    return ResultTable("demo", [record(lr, s) for lr in (0.01, 0.1) for s in (0, 1)], names)


def printed(view: ResultTable, width: int, metrics=None) -> str:
    out = io.StringIO()
    print_table(view, Console(file=out, width=width, color_system=None), metrics)
    return out.getvalue()


def test_the_suites_metrics_and_varying_settings_are_shown():
    text = printed(table(), 200, ["grad_norm_max", "solved", "grad_norm_by_lag_init"])
    header = next(line for line in text.splitlines() if "runs" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == [
        "lr", "runs", "grad_norm_max", "solved_fraction"]
    assert "0.01" in text and "0.1 " in text  # the lr column tells the groups apart
    assert "2/2" in text  # solved as results.md writes it: seeds that solved, of all
    assert "grad_norm_by_lag_init" not in text  # a profile: a plot, not a column


def test_without_a_suite_list_the_default_metrics_are_shown():
    text = printed(table(), 200)
    assert [m for m in TERMINAL_METRICS if m in text] == ["test_loss", "step_ms"]
    assert "grad_norm_max" not in text


def test_metrics_that_do_not_fit_go_to_a_continued_table():
    many = ["test_loss", "grad_norm_max", "solved", "step_ms"]
    text = printed(table(), 44, many)
    assert "(continued)" in text
    assert max(len(line) for line in text.splitlines()) <= 44
    for metric in many:
        assert summary_heading(metric) in text
    assert printed(table(), 200, many).count("mean ± std") == 1


SUITE = """\
name: tiny
cell: lstm
task:
  - name: adding
    params: {length: 4, train_size: 60, validation_size: 20, test_size: 20}
hidden_size: 4
dtype: float64
training: {optimizer: adam, lr: [0.01, 0.03], batch_size: 20, steps: 4, eval_every: 2}
metrics: [baseline_loss, param_count, train_seconds]
"""


def test_run_and_show_print_the_suites_metrics(tmp_path, capsys):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    assert main(["run", str(suite), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("lr", "baseline_loss", "param_count", "train_seconds"):
        assert name in text, text
    assert "test_loss" not in text.split("mean ± std")[1]
    assert main(["show", str(out)]) == 0
    assert "param_count" in capsys.readouterr().out


def test_the_terminal_cells_are_those_of_results_md():
    """A seed that never reached the target is counted the way results.md counts it."""
    records = [record(0.01, seed, steps_to_target=steps) for seed, steps in
               enumerate([100, None, None])]
    for each in records:
        each.config["training"]["target_loss"] = 0.1
    view = ResultTable("demo", records, ["steps_to_target", "solved"])
    text = printed(view, 200, ["steps_to_target", "solved"])
    assert "not reached (1/3 reached)" in text and "3/3" in text
