"""The runner: determinism, failure isolation, divergence, resume, the results store."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rnnbench.events import PluginHookWarning
from rnnbench.plugin_manager import build_host
from rnnbench.records import RunSpec, TrainingConfig
from rnnbench.results import ResultStore
from rnnbench.runner import SilentObserver, execute_run, execute_runs

TIMING = {"step_ms", "train_seconds", "sequences_per_second"}  # a few every run must have


def make_spec(host, cell="lstm", hidden_size=8, seed=0, steps=30, length=5):
    return RunSpec(
        cell=cell,
        backend="numpy",
        task="adding",
        task_params=(("length", length), ("test_size", 50), ("train_size", 100),
                     ("validation_size", 50)),
        hidden_size=hidden_size,
        num_layers=1,
        bias=True,
        dtype="float64",
        seed=seed,
        training=TrainingConfig(optimizer="adam", lr=0.01, batch_size=20, steps=steps,
                                eval_every=10),
        metrics=tuple(sorted(host.registry.metrics)),
        suite="test",
    )


def deterministic(record, host):
    timing = {name for name, entry in host.registry.metrics.items() if entry.timing}
    return {k: v for k, v in record.metrics.items() if k not in timing}


def test_same_seed_same_numbers(host):
    spec = make_spec(host)
    first, _ = execute_run(spec, host)
    second, _ = execute_run(spec, host)
    assert first.status == "ok", first.error
    assert deterministic(first, host) == deterministic(second, host)
    untimed = [{k: v for k, v in point.items() if k != "seconds"} for point in first.curve]
    assert untimed == [{k: v for k, v in p.items() if k != "seconds"} for p in second.curve]
    assert first.metrics["test_loss"] > 0
    assert TIMING <= set(first.metrics)


def test_different_seed_different_numbers(host):
    first, _ = execute_run(make_spec(host, seed=0), host)
    second, _ = execute_run(make_spec(host, seed=1), host)
    assert first.metrics["test_loss"] != second.metrics["test_loss"]


def test_run_ids_are_stable_and_distinct(host):
    assert make_spec(host).run_id == make_spec(host).run_id
    assert make_spec(host).run_id != make_spec(host, seed=1).run_id
    assert len(make_spec(host).run_id) == 12


def test_failing_run_is_recorded_and_suite_goes_on(host, tmp_path):
    runs = [make_spec(host, "toy_boom", 8), make_spec(host, "toy_boom", 13),
            make_spec(host, "toy", 8)]
    store = ResultStore(tmp_path)
    store.start_fresh()
    records = execute_runs(None, runs, host, store)
    assert [r.status for r in records] == ["ok", "failed", "ok"]
    assert "boom: this cell refuses hidden_size 13" in records[1].error
    assert [r.status for r in store.records()] == ["ok", "failed", "ok"]


def test_nan_run_is_diverged_with_metrics(host):
    record, _ = execute_run(make_spec(host, "toy_nan"), host)
    assert record.status == "diverged"
    assert record.metrics["diverged"] is True
    assert record.metrics["test_loss"] is None
    assert "non-finite" in record.error


def test_results_are_appended_as_runs_finish_and_resume_skips_them(host, tmp_path):
    runs = [make_spec(host, seed=s, steps=10) for s in range(3)]
    store = ResultStore(tmp_path)
    store.start_fresh()

    class Interrupt:
        def __init__(self):
            self.seen = 0

        def run_started(self, spec, index, total):
            if index == 3:
                raise KeyboardInterrupt

        def training_step(self, step, total):
            pass

        def run_finished(self, record, index, total):
            # the record is on disk before the next run starts
            assert record.run_id in {r.run_id for r in store.records()}

    with pytest.raises(KeyboardInterrupt):
        execute_runs(None, runs, host, store, observer=Interrupt())
    assert [r.run_id for r in store.records()] == [runs[0].run_id, runs[1].run_id]

    remaining = [r for r in runs if r.run_id not in store.finished_ids()]
    assert remaining == [runs[2]]
    execute_runs(None, remaining, host, store)
    assert [r.run_id for r in store.records()] == [r.run_id for r in runs]


def test_failed_runs_are_retried_on_resume(host, tmp_path):
    store = ResultStore(tmp_path)
    store.start_fresh()
    spec = make_spec(host, "toy_boom", 13, steps=5)
    execute_runs(None, [spec], host, store)
    assert spec.run_id not in store.finished_ids()


def test_torn_last_line_is_skipped_with_warning(host, tmp_path):
    store = ResultStore(tmp_path)
    store.start_fresh()
    execute_runs(None, [make_spec(host, steps=5)], host, store)
    with open(store.path, "a") as handle:
        handle.write('{"run_id": "abc", "lab')
    with pytest.warns(UserWarning, match="unreadable record"):
        records = store.records()
    assert len(records) == 1


def test_start_fresh_keeps_the_previous_file(host, tmp_path):
    store = ResultStore(tmp_path)
    store.start_fresh()
    execute_runs(None, [make_spec(host, steps=5)], host, store)
    store.start_fresh()
    assert store.records() == []
    [kept] = tmp_path.glob("results.previous-*.jsonl")
    previous = kept.read_text().splitlines()
    assert json.loads(previous[0])["status"] == "ok"


def test_event_hooks_see_every_run(host, tmp_path, data_dir):
    events = []

    class Recorder:
        from rnnbench import hookimpl

        @hookimpl
        def rnnbench_suite_start(self, runs):
            events.append(("suite_start", len(runs)))

        @hookimpl
        def rnnbench_run_start(self, run):
            events.append(("run_start", run.run_id))

        @hookimpl
        def rnnbench_run_end(self, run, record):
            events.append(("run_end", record.status))

        @hookimpl
        def rnnbench_suite_end(self, records):
            events.append(("suite_end", len(records)))

    host.pm.register(Recorder(), name="recorder")
    store = ResultStore(tmp_path)
    spec = make_spec(host, steps=5)
    execute_runs(None, [spec], host, store)
    assert events == [("suite_start", 1), ("run_start", spec.run_id), ("run_end", "ok"),
                      ("suite_end", 1)]


def test_epoch_end_hook_stops_early(host, data_dir):
    host.load_local(str(data_dir / "stopper_plugin.py"))
    record, _ = execute_run(make_spec(host, steps=30), host)
    assert record.metrics["stopped_early"] is True
    assert record.metrics["steps"] == 10


def test_factory_breaking_the_cell_contract_names_the_plugin(host, tmp_path):
    plugin = tmp_path / "lazy_plugin.py"
    plugin.write_text(
        "from rnnbench import hookimpl\n"
        "class HalfCell:\n"
        "    def __init__(self, config):\n"
        "        self.config = config\n"
        "@hookimpl\n"
        "def rnnbench_register_cells(register):\n"
        "    register('half', 'numpy', HalfCell)\n"
    )
    host.load_local(str(plugin))
    record, _ = execute_run(make_spec(host, "half"), host)
    assert record.status == "failed"
    assert "plugin 'lazy_plugin'" in record.error
    assert "lacks state_size, init_params" in record.error


def test_metric_returning_garbage_is_an_error_value_not_a_crash(host, tmp_path):
    plugin = tmp_path / "odd_metric.py"
    plugin.write_text(
        "from rnnbench import hookimpl\n"
        "@hookimpl\n"
        "def rnnbench_register_metrics(register):\n"
        "    register('odd', lambda run: {'a': 1})\n"
        "    register('curve', lambda run: [[0, 1.5], [1, 0.5]])\n"
        "    register('raises', lambda run: 1 / 0)\n"
    )
    host.load_local(str(plugin))
    spec = make_spec(host, steps=5)
    record, _ = execute_run(spec, host)
    assert record.status == "ok"
    assert "returned dict" in record.metrics["odd"]
    assert record.metrics["curve"] == [[0, 1.5], [1, 0.5]]
    assert record.metrics["raises"].startswith("error: ZeroDivisionError")
    assert isinstance(record.metrics["test_loss"], float)


def test_cell_protocol_members_are_complete():
    from rnnbench.cell import CELL_MEMBERS, Cell

    declared = {name for name in vars(Cell) if not name.startswith("_")}
    declared |= set(Cell.__annotations__)
    assert declared == set(CELL_MEMBERS)


def test_provoked_explosion_is_recorded_as_diverged(host):
    """A learning rate far past stability, recurrent weights scaled to spectral radius 3 and no
    clipping: the loss overflows, and the run is a *diverged* result with its metrics, not a
    crash."""
    spec = dataclasses.replace(
        make_spec(host, cell="rnn", steps=300),
        dtype="float32",
        training=TrainingConfig(optimizer="sgd", lr=50.0, batch_size=20, steps=300,
                                eval_every=10, init="orthogonal", spectral_radius=3.0),
    )
    record, _ = execute_run(spec, host)
    assert record.status == "diverged", record.metrics
    assert record.metrics["diverged"] is True
    assert "non-finite" in record.error
    assert record.metrics["steps"] < 300


def test_case_9_an_event_hook_that_raises_is_reported_and_the_suite_goes_on(
    host, tmp_path, data_dir
):
    """Issue 9, case 9: every event hook of a plugin raises (run_start with sys.exit(3)); each
    failure is one warning naming the plugin, the hook and its line, and the records are those
    of a suite without the plugin."""
    specs = [make_spec(host, steps=20, seed=seed) for seed in (0, 1)]
    clean = execute_runs(None, specs, build_host(plugins=[str(data_dir / "toy_plugin.py")]),
                         ResultStore(tmp_path / "clean"))
    host.load_local(str(data_dir / "raising_hooks_plugin.py"))
    warnings: list[str] = []

    class Collecting(SilentObserver):
        def warning(self, message: str) -> None:
            warnings.append(message)

    records = execute_runs(None, specs, host, ResultStore(tmp_path / "out"),
                           observer=Collecting())
    assert [deterministic(r, host) for r in records] == [deterministic(r, host) for r in clean]
    assert [r.status for r in records] == ["ok", "ok"]
    assert [(r.metrics["steps"], r.metrics["stopped_early"]) for r in records] == [(20, False)] * 2
    hooks = ["suite_start", "run_start", "evaluation", "run_end", "suite_end"]
    assert len(warnings) == len(hooks)  # once per hook, though two runs failed each
    for hook, warning in zip(hooks, warnings, strict=True):
        assert f"plugin 'raising_hooks_plugin' raised in rnnbench_{hook}" in warning
        assert "raising_hooks_plugin.py:" in warning
    assert "SystemExit: 3" in warnings[1]


def test_case_9_a_hook_failure_without_an_observer_is_a_python_warning(host, tmp_path, data_dir):
    host.load_local(str(data_dir / "raising_hooks_plugin.py"))
    with pytest.warns(PluginHookWarning, match="raising_hooks_plugin"):
        execute_runs(None, [make_spec(host, steps=5)], host, ResultStore(tmp_path))


def test_case_9_ctrl_c_in_an_event_hook_still_interrupts(host, tmp_path):
    class Interrupting:
        from rnnbench import hookimpl

        @hookimpl
        def rnnbench_run_start(self, run):
            raise KeyboardInterrupt

    host.pm.register(Interrupting(), name="interrupting")
    with pytest.raises(KeyboardInterrupt):
        execute_runs(None, [make_spec(host, steps=5)], host, ResultStore(tmp_path))


def test_case_9_an_event_hook_wrapper_is_reported_not_silently_skipped(host, tmp_path):
    class Wrapping:
        from rnnbench import hookimpl

        @hookimpl(wrapper=True)
        def rnnbench_run_end(self, run, record):
            return (yield)

    host.pm.register(Wrapping(), name="wrapping")
    with pytest.warns(PluginHookWarning, match="plugin 'wrapping' is a hook wrapper"):
        (record,) = execute_runs(None, [make_spec(host, steps=5)], host, ResultStore(tmp_path))
    assert record.status == "ok"


def test_a_metric_returning_a_string_is_an_error_not_a_value():
    """Records keep strings for errors only, so a metric's own string must not pass as a value;
    numpy values pass as the numbers and lists they convert to."""
    import numpy as np

    from rnnbench.registry import MetricEntry, Registry
    from rnnbench.runner import compute_metrics

    registry = Registry()
    for name, function in {
        "text": lambda run: "hello",
        "np_bool": lambda run: np.True_,
        "np_array": lambda run: np.array([1.0, 2.0]),
    }.items():
        registry.metrics[name] = MetricEntry(name, function, "a_plugin")
    values = compute_metrics(None, ["text", "np_bool", "np_array"], registry)
    assert values["text"].startswith("error: plugin 'a_plugin' metric 'text' returned str")
    assert values["np_bool"] is True and values["np_array"] == [1.0, 2.0]
