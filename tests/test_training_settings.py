"""Training settings through suites and the runner: schedules, warm-up and online data validated
at file:line, online runs, and the gradient metrics (plugins/metrics/gradients.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from rnnbench.errors import SuiteError
from rnnbench.plugins.metrics import gradient_flow, gradients
from rnnbench.records import RunSpec, TrainingConfig
from rnnbench.runner import execute_run, online_seed_for, seeds_for
from rnnbench.suite import load_suite
from rnnbench.training import TrainingResult

# --- validation --------------------------------------------------------------------------------


def problems(tmp_path, host, text):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    with pytest.raises(SuiteError) as info:
        load_suite(path, host.registry)
    return [(p.line, p.field, p.message, p.hint) for p in info.value.problems]


HEAD = """
name: s
cell: rnn
backend: numpy
hidden_size: 4
task: {name: adding, params: {length: 5, train_size: 20}}
"""


def test_step_schedule_needs_decay_every(tmp_path, host):
    found = problems(tmp_path, host, HEAD + "training:\n  steps: 10\n  schedule: step\n")
    assert len(found) == 1
    line, field, message, hint = found[0]
    assert (line, field) == (8, "training.schedule")
    assert "schedule 'step' needs decay_every" in message and "decay_every: 1000" in hint


def test_decay_settings_without_step_schedule_are_errors(tmp_path, host):
    found = problems(tmp_path, host, HEAD + "training:\n  steps: 10\n  decay_every: 5\n"
                                            "  decay_rate: 0.5\n")
    assert [(line, field) for line, field, _, _ in found] == [
        (8, "training.decay_every"), (9, "training.decay_rate")]
    assert "decay_every 5 does nothing with schedule 'constant'" in found[0][2]
    assert "set schedule: step, or remove decay_every" in found[0][3]
    assert "include: [{schedule: step, decay_every: 5}]" in found[0][3]


def test_comparing_schedules_with_an_include_validates(tmp_path, host):
    path = tmp_path / "suite.yaml"
    path.write_text(HEAD.lstrip("\n") + textwrap.dedent("""
        training: {steps: 10, schedule: [constant, cosine], warmup_steps: 2}
        include:
          - {schedule: step, decay_every: 5, decay_rate: 0.5}
        """).lstrip("\n"))
    suite = load_suite(path, host.registry)
    assert [(r.training.schedule, r.training.decay_every) for r in suite.runs] == [
        ("constant", None), ("cosine", None), ("step", 5)]


def test_warmup_must_be_below_the_total_steps(tmp_path, host):
    found = problems(tmp_path, host, HEAD + "training:\n  steps: 10\n  warmup_steps: 10\n")
    assert found == [(8, "training.warmup_steps", "warmup_steps 10 is not below the run's 10 "
                      "optimizer steps: the learning rate would never reach lr",
                      "use warmup_steps below 10 (e.g. 1), or train longer")]
    # With epochs the total comes from train_size: 2 epochs of ceil(20 / 10) batches.
    found = problems(tmp_path, host, HEAD + "training:\n  epochs: 2\n  batch_size: 10\n"
                                            "  warmup_steps: 4\n")
    assert [(line, field) for line, field, _, _ in found] == [(9, "training.warmup_steps")]


def test_online_data_needs_a_task_that_can_sample(tmp_path, host):
    found = problems(tmp_path, host, """
        name: s
        cell: rnn
        backend: numpy
        hidden_size: 4
        task: [adding, forecast]
        training:
          steps: 10
          data: online
        """)
    assert len(found) == 1
    line, field, message, hint = found[0]
    assert (line, field) == (8, "training.data")
    assert "task 'forecast' cannot draw fresh training sequences" in message
    assert "exclude: [{task: forecast, data: online}]" in hint


# --- online runs through the runner -------------------------------------------------------------


def spec(host, cell="lstm", data="fixed", seed=0, **training):
    return RunSpec(
        cell=cell, backend="numpy", task="adding",
        task_params=(("length", 5), ("test_size", 40), ("train_size", 60),
                     ("validation_size", 40)),
        hidden_size=6, num_layers=1, bias=True, dtype="float64", seed=seed,
        training=TrainingConfig(lr=0.01, batch_size=20, steps=12, eval_every=6, data=data,
                                **training),
        metrics=tuple(sorted(host.registry.metrics)), suite="test",
    )


def untimed(record, host):
    timing = {name for name, entry in host.registry.metrics.items() if entry.timing}
    return {k: v for k, v in record.metrics.items() if k not in timing}


def test_online_runs_are_reproducible_and_keep_the_evaluation_splits(host):
    first, outcome = execute_run(spec(host, data="online"), host)
    again, _ = execute_run(spec(host, data="online"), host)
    fixed, fixed_outcome = execute_run(spec(host), host)
    assert first.status == again.status == fixed.status == "ok", first.error
    assert untimed(first, host) == untimed(again, host)
    assert first.metrics["test_loss"] != fixed.metrics["test_loss"]
    assert first.config["training"]["data"] == "online"  # in the id; fixed runs leave it out
    assert "data" not in fixed.config["training"]
    for split in ("validation", "test"):
        np.testing.assert_array_equal(getattr(outcome.data, split).inputs,
                                      getattr(fixed_outcome.data, split).inputs)
    # Same initialisation, same validation split: the same step-0 point's validation loss.
    assert first.curve[0]["val_loss"] == fixed.curve[0]["val_loss"]


def test_online_batches_depend_on_the_seed_alone():
    # A third stream, so the data and model streams of seeds_for stay what they were.
    assert online_seed_for(0) != online_seed_for(1)
    assert online_seed_for(0) not in seeds_for(0)
    assert seeds_for(0) == seeds_for(0)


def test_online_run_of_a_task_that_cannot_sample_fails_clearly(host):
    bad = dataclasses.replace(spec(host, data="online"), task="forecast",
                              task_params=(("series_length", 200),))
    record, _ = execute_run(bad, host)
    assert record.status == "failed"
    assert "task 'forecast' cannot sample fresh sequences" in record.error


# --- gradient metrics ---------------------------------------------------------------------------


def outcome(norms, clip=None, clipped=0, diverged=False, before=None, after=None,
            by_lag_init=None, by_lag_trained=None):
    before = {"weight_hh_l0": np.eye(2)} if before is None else before
    after = before if after is None else after
    training = TrainingResult(params=after, steps_done=len(norms), total_steps=len(norms),
                              train_seconds=1.0, diverged=diverged, grad_norms=list(norms),
                              clipped_steps=clipped)
    # The gradient-by-lag profiles, as gradient_flow caches them for a run.
    profiles = {"lags": None, "init": by_lag_init, "trained": by_lag_trained}
    return SimpleNamespace(training=training, initial_params=before,
                           spec=SimpleNamespace(training=TrainingConfig(steps=10, clip=clip)),
                           extras={gradient_flow.CACHE_KEY: profiles})


def test_grad_norm_statistics_and_clipped_fraction():
    run = outcome([1.0, 4.0, 2.0, 3.0], clip=2.5, clipped=2)
    assert gradients.grad_norm_max(run) == 4.0
    assert gradients.grad_norm_median(run) == 2.5
    assert gradients.clipped_fraction(run) == 0.5
    assert gradients.clipped_fraction(outcome([1.0, 4.0])) is None  # no clip
    empty = outcome([])
    assert gradients.grad_norm_max(empty) is None and gradients.exploded(empty) is None


def test_exploded_rule():
    steady = [1.0] * 10 + [50.0]  # 50 x the reference: not two orders of magnitude
    assert gradients.grad_norm_peak_ratio(outcome(steady)) == 50.0
    assert gradients.exploded(outcome(steady)) is False
    spike = [1.0] * 10 + [2.0, 150.0, 3.0]
    assert gradients.exploded(outcome(spike)) is True
    # The reference is the median of the first 10 steps: one odd first batch does not set it.
    assert gradients.grad_norm_peak_ratio(outcome([500.0] + [1.0] * 9 + [120.0])) == 500.0
    assert gradients.exploded(outcome([1.0, 1.0], diverged=True)) is True
    # Large from the start is no increase during training: the profile through time tells.
    assert gradients.exploded(outcome([3e4, 5e4, 4e4])) is False
    assert gradients.exploded(outcome([3e4, 5e4, 4e4], by_lag_init=[1.0, 9.0, 3e6])) is True
    assert gradients.exploded(outcome([1.0], by_lag_trained=[1.0, 2.0, 100.0])) is True
    assert gradients.exploded(outcome([1.0], by_lag_init=[1.0, 5.0, None])) is True  # overflow
    assert gradients.exploded(outcome([1.0], by_lag_init=[1.0, 0.1, 1e-9])) is False  # vanishes
    assert gradients.exploded(outcome([], by_lag_init=[1.0, 0.5])) is False


def test_weight_norm_growth_is_the_frobenius_ratio_of_the_recurrent_matrices():
    before = {"encoder.weight_hh_l0": np.ones((2, 2)), "decoder.weight_hh_l0": np.ones((2, 2)),
              "weight_ih_l0": np.ones((2, 2))}
    after = {"encoder.weight_hh_l0": 2 * np.ones((2, 2)),
             "decoder.weight_hh_l0": 2 * np.ones((2, 2)), "weight_ih_l0": 100 * np.ones((2, 2))}
    assert gradients.weight_norm_growth(outcome([1.0], before=before, after=after)) == 2.0
    no_recurrent = {"weight_ih_l0": np.ones((2, 2))}
    assert gradients.weight_norm_growth(outcome([1.0], before=no_recurrent)) is None


MINGRU_INSTALLED = importlib.util.find_spec("rnnbench_mingru") is not None


@pytest.mark.parametrize("cell", [
    "lstm",
    # the example package's cell (no weight_hh); tox -e example installs it, tox -e py does not
    pytest.param("mingru", marks=pytest.mark.skipif(
        not MINGRU_INSTALLED, reason="the example package rnnbench-mingru is not installed")),
])
def test_gradient_metrics_through_the_runner(host, cell):
    record, result = execute_run(spec(host, cell=cell, clip=0.1, optimizer="rmsprop",
                                      schedule="cosine", warmup_steps=3), host)
    assert record.status == "ok", record.error
    metrics = record.metrics
    norms = result.training.grad_norms
    assert len(norms) == 12
    assert metrics["grad_norm_max"] == max(norms)
    assert metrics["grad_norm_median"] == pytest.approx(float(np.median(norms)))
    assert metrics["clipped_fraction"] == sum(n > 0.1 for n in norms) / 12
    assert metrics["exploded"] is False
    if cell == "mingru":  # no weight_hh: nothing recurrent to grow
        assert metrics["weight_norm_growth"] is None
    else:
        assert math.isfinite(metrics["weight_norm_growth"]) and metrics["weight_norm_growth"] > 0
    assert [point["step"] for point in record.curve] == [0, 6, 12]
    assert record.curve[0]["lr"] == pytest.approx(0.01 / 3)
    assert record.curve[-1]["lr"] == pytest.approx(0.01 * (1 + math.cos(math.pi * 8 / 9)) / 2)


def test_exploded_flags_a_recurrent_matrix_beyond_radius_one_even_when_clipped(host):
    """Spectral radius 3 (Pascanu et al. 2013's regime) against 1, on the plain RNN (32 units;
    a very small one saturates instead) at T = 50, clipped at every step: the norm does not grow
    *during* training, the profile through time does."""
    found = {}
    for radius in (1.0, 3.0):
        run = dataclasses.replace(
            spec(host, cell="rnn", clip=1.0, spectral_radius=radius, optimizer="sgd"),
            hidden_size=32, task_params=(("length", 50), ("test_size", 20), ("train_size", 60),
                         ("validation_size", 20)))
        record, _ = execute_run(run, host)
        assert record.status == "ok", record.error
        found[radius] = record.metrics
    assert found[1.0]["exploded"] is False and found[3.0]["exploded"] is True
    assert found[3.0]["grad_ratio_init"] >= 100 > found[1.0]["grad_ratio_init"]
    assert found[3.0]["clipped_fraction"] == 1.0
    assert found[3.0]["grad_norm_max"] > 100 * found[1.0]["grad_norm_max"]


def test_momentum_with_adam_is_refused_where_it_is_written(tmp_path, host):
    """Adam has no momentum setting: momentum would change the id and label, not the run."""
    (found,) = problems(tmp_path, host, """
        name: m
        cell: rnn
        task: echo
        hidden_size: 4
        training: {steps: 5, optimizer: [adam, rmsprop], momentum: 0.9}
    """)
    assert found[:2] == (5, "training.momentum")
    assert found[2].startswith("momentum 0.9 does nothing with optimizer 'adam'")
