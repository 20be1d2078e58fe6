"""The plot reporter draws from records alone and writes PNG files atomically."""

from __future__ import annotations

import pytest
from matplotlib.colors import to_hex

from rnnbench.plugins.reporters.plots import (
    BASELINE_LABEL,
    MAX_PANELS,
    baseline_of,
    gradient_by_lag_figure,
    layout,
    learning_curves_figure,
    line_style,
    write_plots,
)
from rnnbench.records import RunRecord
from rnnbench.results import ResultTable


def record(cell, seed, with_profile=True):
    curve = [{"step": s, "val_loss": 1.0 / (s + seed), "train_loss": 1.0, "seconds": 0.1}
             for s in (10, 20, 30)]
    metrics = {"test_loss": 0.5}
    if with_profile:
        metrics.update(grad_lags=[0, 1, 2], grad_norm_by_lag_init=[1.0, 0.5, None],
                       grad_norm_by_lag_trained=[1.0, 0.9, 0.8])
    return RunRecord(run_id=f"{cell}{seed}", label=cell, suite="demo",
                     config={"cell": cell, "task": "adding", "seed": seed,
                             "task_params": {}, "training": {}},
                     status="ok", metrics=metrics, curve=curve)


def test_writes_learning_curves_and_gradient_profiles(tmp_path):
    records = [record(c, s) for c in ("rnn", "lstm") for s in (0, 1)]
    table = ResultTable("demo", records, ["test_loss", "grad_lags", "grad_norm_by_lag_init",
                                          "grad_norm_by_lag_trained"])
    paths = write_plots(table, tmp_path)
    assert sorted(p.name for p in paths) == ["gradient_by_lag.png", "learning_curves.png"]
    for path in paths:
        assert path.read_bytes().startswith(b"\x89PNG")
    assert not [p for p in (tmp_path / "plots").iterdir() if p.name.endswith(".tmp")]


def test_no_profiles_no_gradient_plot(tmp_path):
    table = ResultTable("demo", [record("rnn", 0, with_profile=False)], ["test_loss"])
    assert [p.name for p in write_plots(table, tmp_path)] == ["learning_curves.png"]


# --- layout, styles, legend, baseline -----------------------------------------------------------

def run(cell: str, seed: int = 0, task: str = "adding", length: int = 10, lr: float = 0.01,
        baseline: float = 0.17, steps=(0, 10, 20, 30), loss=None) -> RunRecord:
    loss = loss or (lambda step: 0.2 / (1 + step + seed))
    return RunRecord(
        run_id=f"{cell}-{task}{length}-{lr}-{seed}", label=cell, suite="demo",
        config={"cell": cell, "backend": "numpy", "task": task, "seed": seed,
                "task_params": {"length": length}, "training": {"lr": lr, "steps": 30}},
        status="ok", metrics={"test_loss": 0.1, "baseline_loss": baseline},
        curve=[{"step": s, "val_loss": loss(s)} for s in steps],
        task_label=f"{task}[length={length}]")


def visible_axes(figure):
    return [axis for axis in figure.axes if axis.get_visible()]


def run_lines(axis):
    return [line for line in axis.get_lines() if line.get_gid() != "baseline"]


def test_one_panel_per_group_of_varying_settings_and_lines_by_cell():
    records = [run(cell, seed, length=length, lr=lr) for cell in ("rnn", "lstm")
               for length in (10, 100) for lr in (0.01, 0.1) for seed in (0, 1)]
    figure = learning_curves_figure(ResultTable("demo", records, ["test_loss"]))
    axes = visible_axes(figure)
    assert len(axes) == 4  # adding[length=10|100] x lr=0.01|0.1
    titles = sorted(axis.get_title() for axis in axes)
    assert titles == ["adding[length=100], lr=0.01", "adding[length=100], lr=0.1",
                      "adding[length=10], lr=0.01", "adding[length=10], lr=0.1"]
    for axis in axes:
        assert sorted(line.get_label() for line in run_lines(axis)) == ["lstm", "rnn"]
    layout_ = layout(ResultTable("demo", records, ["test_loss"]))
    assert layout_.line_keys == ["cell"] and layout_.panel_keys == ["task", "lr"]


def test_a_single_varying_setting_makes_the_lines_of_one_panel():
    records = [run("lstm", lr=lr) for lr in (0.001, 0.01, 0.1)]
    figure = learning_curves_figure(ResultTable("demo", records, ["test_loss"]))
    (axis,) = visible_axes(figure)
    assert [line.get_label() for line in run_lines(axis)] == ["lr=0.001", "lr=0.01", "lr=0.1"]


def test_too_many_groups_move_settings_from_panels_to_lines():
    records = [run("lstm", length=length, lr=lr) for length in range(1, 8)
               for lr in (0.01, 0.1, 1.0)]
    plan = layout(ResultTable("demo", records, ["test_loss"]))
    assert len(plan.panels) == 7 and plan.line_keys == ["lr"]
    records = [run(f"c{i}", length=length, lr=lr) for i in range(2) for length in range(1, 8)
               for lr in (0.01, 0.1)]
    plan = layout(ResultTable("demo", records, ["test_loss"]))
    assert len(plan.panels) <= MAX_PANELS and plan.line_keys == ["lr", "cell"]


def test_fifteen_lines_have_distinct_colour_and_style_pairs():
    records = [run(f"cell{i:02d}", loss=lambda s, i=i: 0.1 + i + s) for i in range(15)]
    figure = learning_curves_figure(ResultTable("demo", records, ["test_loss"]))
    (axis,) = visible_axes(figure)
    lines = run_lines(axis)
    assert len(lines) == 15
    pairs = {(to_hex(line.get_color()), line.get_linestyle()) for line in lines}
    assert len(pairs) == 15
    assert len({to_hex(line.get_color()) for line in lines}) == 10  # colours repeat, styles differ
    assert {line_style(i)["linestyle"] for i in range(40)} == {"-", "--", "-.", ":"}
    assert len({(line_style(i)["color"], line_style(i)["linestyle"]) for i in range(40)}) == 40


def test_the_legend_stands_outside_every_panel():
    records = [run(f"cell{i:02d}", length=length) for i in range(12) for length in (10, 20)]
    figure = learning_curves_figure(ResultTable("demo", records, ["test_loss"]))
    figure.canvas.draw()
    (legend,) = figure.legends
    box = legend.get_window_extent()
    axes = visible_axes(figure)
    assert len(axes) == 2
    for axis in axes:
        assert not box.overlaps(axis.get_window_extent())
        assert axis.get_legend() is None  # no legend over the data
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels[:2] == ["cell00", "cell01"] and labels[-1] == BASELINE_LABEL


def test_the_tasks_baseline_is_drawn_in_each_panel():
    records = [run("rnn", seed, length=length, baseline=base) for seed in (0, 1)
               for length, base in ((10, 0.16), (100, 0.2 + seed * 0.02))]
    figure = learning_curves_figure(ResultTable("demo", records, ["test_loss"]))
    found = {}
    for axis in visible_axes(figure):
        (line,) = [line for line in axis.get_lines() if line.get_gid() == "baseline"]
        found[axis.get_title()] = line.get_ydata()[0]
    assert found == pytest.approx({"adding[length=10]": 0.16, "adding[length=100]": 0.21})


def test_baseline_from_the_loss_ratio_when_not_recorded():
    record = run("rnn")
    record.metrics = {"test_loss": 0.05, "loss_vs_baseline": 0.25}
    assert baseline_of([record]) == pytest.approx(0.2)
    record.metrics = {"test_loss": 0.05}
    assert baseline_of([record]) is None


def test_the_step_0_point_is_drawn_and_loss_spanning_decades_is_log_scaled():
    records = [run("rnn", loss=lambda s: 10.0 ** -s / 10 if s else 1.0)]
    (axis,) = visible_axes(learning_curves_figure(ResultTable("demo", records, [])))
    (line,) = run_lines(axis)
    assert list(line.get_xdata()) == [0, 10, 20, 30]
    assert axis.get_yscale() == "log"
    flat = [run("rnn", loss=lambda s: 0.15 + s / 1000)]
    (axis,) = visible_axes(learning_curves_figure(ResultTable("demo", flat, [])))
    assert axis.get_yscale() == "linear"


def test_seeds_evaluated_at_different_steps_are_aligned_by_step():
    records = [run("rnn", 0, steps=(0, 10, 20, 30)), run("rnn", 1, steps=(0, 10))]
    (axis,) = visible_axes(learning_curves_figure(ResultTable("demo", records, [])))
    (line,) = run_lines(axis)
    assert list(line.get_xdata()) == [0, 10, 20, 30]
    assert line.get_ydata()[1] == pytest.approx((0.2 / 11 + 0.2 / 12) / 2)


def test_gradient_panels_per_group_and_state():
    records = [record(c, s) for c in ("rnn", "lstm") for s in (0, 1)]
    for r in records[:2]:
        r.config["training"] = {"lr": 0.1}
        r.run_id += "-fast"
    table = ResultTable("demo", records, ["test_loss", "grad_lags", "grad_norm_by_lag_init",
                                          "grad_norm_by_lag_trained"])
    figure = gradient_by_lag_figure(table)
    titles = [axis.get_title() for axis in visible_axes(figure)]
    assert len(titles) == 4 and "lr=0.1: at initialisation" in titles[0]
    assert all(axis.get_yscale() == "log" for axis in visible_axes(figure))
    assert len(figure.legends) == 1


def test_a_cell_option_labels_only_the_cells_that_have_it_and_long_titles_wrap():
    relu, tanh, lstm = run("rnn", length=10), run("rnn", length=10), run("lstm", length=10)
    relu.config["cell_params"] = {"nonlinearity": "relu"}
    tanh.config["cell_params"] = {"nonlinearity": "tanh"}
    relu.run_id += "-relu"
    long_task = "adding[length=100,train_size=10000,validation_size=500,test_size=1000]"
    for each in (relu, tanh, lstm):
        each.task_label = long_task
    plan = layout(ResultTable("demo", [relu, tanh, lstm], ["test_loss"]))
    assert plan.lines == ["rnn, nonlinearity=relu", "rnn, nonlinearity=tanh", "lstm"]
    figure = learning_curves_figure(ResultTable("demo", [relu, tanh, lstm], ["test_loss"]))
    (axis,) = visible_axes(figure)
    assert "\n" in axis.get_title()  # wrapped, not running over the next panel
    assert all(len(line) <= 48 for line in axis.get_title().splitlines())
