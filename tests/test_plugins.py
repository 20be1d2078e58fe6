"""The plugin manager: entry points, local files, blocking, clashes and contract errors."""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest

from rnnbench import hookspecs
from rnnbench.errors import PluginError
from rnnbench.plugin_manager import build_host
from rnnbench.task import Topology

BUILTINS = {
    "reference_cells",
    "numba_cpu_cells",
    "many_to_one_tasks",
    "training_metrics",
    "table_reporters",
}


def test_builtins_load_through_the_entry_point_group():
    names = {ep.name for ep in importlib.metadata.entry_points(group="rnnbench")}
    assert BUILTINS <= names
    host = build_host()
    registry = host.registry
    assert BUILTINS <= set(host.plugin_names())
    for cell in ("rnn", "lstm", "gru"):
        assert registry.cells[(cell, "numpy")].plugin == "reference_cells"
    assert registry.tasks["adding"].plugin == "many_to_one_tasks"
    assert registry.tasks["adding"].topology is Topology.MANY_TO_ONE
    assert registry.metrics["test_loss"].plugin == "training_metrics"
    assert registry.metrics["step_ms"].timing
    assert not registry.metrics["test_loss"].timing
    assert {"markdown", "csv", "json"} <= set(registry.reporters)
    assert registry.broken == {}


def test_local_plugin_file_registers_cells(data_dir):
    host = build_host(plugins=[str(data_dir / "toy_plugin.py")])
    entry = host.registry.cells[("toy", "numpy")]
    assert entry.plugin == "toy_plugin"
    assert entry.description == "linear recurrence, for tests"
    assert ("lstm", "numpy") in host.registry.cells  # built-ins still there


def test_local_plugin_by_module_name(monkeypatch, data_dir):
    monkeypatch.syspath_prepend(str(data_dir))
    host = build_host(plugins=["toy_plugin"])
    assert host.registry.cells[("toy", "numpy")].plugin == "toy_plugin"


def test_block_a_plugin_with_no_prefix():
    host = build_host(blocked=["reference_cells"])
    assert not any(backend == "numpy" for _, backend in host.registry.cells)
    assert "reference_cells" not in host.plugin_names()
    assert "adding" in host.registry.tasks


def test_name_clash_names_both_plugins(data_dir):
    with pytest.raises(PluginError) as info:
        build_host(plugins=[str(data_dir / "clashing_plugin.py")])
    message = str(info.value)
    assert "clashing_plugin" in message and "reference_cells" in message
    assert "'lstm'" in message and "'numpy'" in message


def test_clash_is_avoided_by_blocking_the_other(data_dir):
    host = build_host(plugins=[str(data_dir / "clashing_plugin.py")], blocked=["reference_cells"])
    assert host.registry.cells[("lstm", "numpy")].plugin == "clashing_plugin"


def test_contract_violation_names_plugin_and_what(data_dir):
    with pytest.raises(PluginError) as info:
        build_host(plugins=[str(data_dir / "bad_contract_plugin.py")])
    assert info.value.plugin == "bad_contract_plugin"
    assert "factory of cell 'broken_cell'" in str(info.value)


def test_hookimpl_with_unknown_argument_is_refused(data_dir):
    with pytest.raises(PluginError) as info:
        build_host(plugins=[str(data_dir / "bad_hook_plugin.py")])
    assert info.value.plugin == "bad_hook_plugin"
    assert "colour" in str(info.value)


def test_import_failure_names_plugin(data_dir):
    with pytest.raises(PluginError) as info:
        build_host(plugins=[str(data_dir / "import_error_plugin.py")])
    assert info.value.plugin == "import_error_plugin"
    assert "a_module_that_does_not_exist" in str(info.value)


def test_missing_plugin_file():
    with pytest.raises(PluginError, match="does not exist"):
        build_host(plugins=["no/such/plugin.py"])


def test_broken_entry_point_is_recorded_not_fatal(monkeypatch):
    real = importlib.metadata.entry_points(group="rnnbench")
    broken = importlib.metadata.EntryPoint(
        name="broken_thing", value="no_such_module_anywhere", group="rnnbench"
    )

    def fake_entry_points(group):
        assert group == "rnnbench"
        return [*real, broken]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    host = build_host()
    assert "broken_thing" in host.registry.broken
    assert "no_such_module_anywhere" in host.registry.broken["broken_thing"]
    assert ("lstm", "numpy") in host.registry.cells


def test_failed_plugin_leaves_nothing_behind(data_dir, tmp_path):
    half = tmp_path / "half_plugin.py"
    half.write_text(
        "from rnnbench import hookimpl\n"
        "@hookimpl\n"
        "def rnnbench_register_cells(register):\n"
        "    register('fine_cell', 'numpy', lambda config: None)\n"
        "    register('lstm', 'numpy', lambda config: None)\n"
    )
    host = build_host()
    with pytest.raises(PluginError):
        host.load_local(str(half))
    assert ("fine_cell", "numpy") not in host.registry.cells
    assert "half_plugin" not in host.plugin_names()


def test_every_hook_is_documented():
    hooks = [
        (name, function)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("rnnbench_")
    ]
    assert len(hooks) >= 9
    for name, function in hooks:
        doc = inspect.getdoc(function) or ""
        assert len(doc.split()) >= 15, f"hook {name} needs a docstring stating its contract"
