"""The plot reporter draws from records alone and writes PNG files atomically."""

from __future__ import annotations

from rnnbench.plugins.reporters.plots import write_plots
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
