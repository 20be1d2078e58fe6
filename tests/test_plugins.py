"""The plugin manager: entry points, local files, blocking, clashes and contract errors."""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest

import rnnbench
from rnnbench import hookspecs
from rnnbench.api import load_validated_suite
from rnnbench.errors import PluginError, SuiteError
from rnnbench.hookspecs import EvaluationLogs
from rnnbench.plugin_manager import (
    HOOK_NAMES,
    PluginConflictError,
    UnknownNameError,
    build_host,
)
from rnnbench.records import RunSpec, TrainingConfig
from rnnbench.runner import execute_run
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
    # Another installed plugin may register a numpy cell of its own; the built-ins are gone.
    for cell in ("rnn", "lstm", "gru"):
        assert (cell, "numpy") not in host.registry.cells
    assert "reference_cells" not in host.plugin_names()
    assert "adding" in host.registry.tasks


def test_clash_with_a_builtin_is_an_error_where_the_name_is_used(data_dir):
    host = build_host(plugins=[str(data_dir / "clashing_plugin.py")])  # loading is fine
    registry = host.registry
    with pytest.raises(PluginConflictError) as info:
        registry.cell("lstm", "numpy")
    message = str(info.value)
    assert "plugin 'reference_cells' (rnnbench " + rnnbench.__version__ + ")" in message
    assert "plugin 'clashing_plugin' (local file " in message
    assert "cell 'lstm' on backend 'numpy'" in message
    assert "-p no:reference_cells" in message and "-p no:clashing_plugin" in message
    assert info.value.plugins == ["reference_cells", "clashing_plugin"]
    # No read path picks one silently: the tables themselves refuse too.
    for read in (lambda: registry.cells[("lstm", "numpy")],
                 lambda: registry.cells.get(("lstm", "numpy")),
                 lambda: dict(registry.cells.items())):
        with pytest.raises(PluginConflictError):
            read()
    assert registry.conflict_for("cell", ("lstm", "numpy")) == message
    assert registry.conflict_for("cell", ("gru", "numpy")) is None


def test_clash_keeps_both_plugins_other_contributions(data_dir):
    host = build_host(plugins=[str(data_dir / "clashing_plugin.py")])
    registry = host.registry
    assert registry.cell("rnn", "numpy").plugin == "reference_cells"
    assert registry.cell("gru", "numpy").plugin == "reference_cells"
    assert registry.cell("clash_own", "numpy").plugin == "clashing_plugin"
    assert registry.metric("clash_metric").plugin == "clashing_plugin"
    assert [e.plugin for e in registry.cells.claims(("lstm", "numpy"))] == [
        "reference_cells", "clashing_plugin"]
    assert "lstm" in registry.cell_names  # listed, so a suite naming it is not "unknown"
    status = {info.name: info for info in host.plugins()}
    assert status["clashing_plugin"].status == "in conflict"
    assert status["reference_cells"].status == "in conflict"
    assert "cell lstm/numpy (also registered by 'clashing_plugin')" in (
        status["reference_cells"].reason)
    assert status["numba_cpu_cells"].status == "loaded"
    assert registry.broken == {}


def make_spec(host, cell="lstm", steps=20):
    return RunSpec(
        cell=cell, backend="numpy", task="adding",
        task_params=(("length", 4), ("test_size", 20), ("train_size", 40),
                     ("validation_size", 20)),
        hidden_size=4, num_layers=1, bias=True, dtype="float64", seed=0,
        training=TrainingConfig(optimizer="adam", lr=0.01, batch_size=20, steps=steps,
                                eval_every=10),
        metrics=tuple(sorted(host.registry.metrics)), suite="test",
    )


@pytest.fixture
def installed_clash(monkeypatch, data_dir):
    """An installed distribution, clash-dist 1.2.3, whose entry point registers 'gru'/'numpy'."""
    monkeypatch.syspath_prepend(str(data_dir / "site"))
    names = {ep.name for ep in importlib.metadata.entry_points(group="rnnbench")}
    assert "clash_cells" in names
    return "clash_cells"


def test_clash_between_an_installed_plugin_and_a_builtin(installed_clash):
    host = build_host()
    with pytest.raises(PluginConflictError) as info:
        host.registry.cell("gru", "numpy")
    message = str(info.value)
    assert "plugin 'clash_cells' (clash-dist 1.2.3)" in message
    assert "plugin 'reference_cells' (rnnbench " in message
    assert "-p no:clash_cells" in message
    # Nothing else of either plugin is lost.
    assert host.registry.cell("lstm", "numpy").plugin == "reference_cells"
    assert host.registry.cell("clash_gru", "numpy").plugin == "clash_cells"
    assert host.registry.task("clash_task").plugin == "clash_cells"
    info_of = {info.name: info for info in host.plugins()}["clash_cells"]
    assert (info_of.distribution, info_of.version) == ("clash-dist", "1.2.3")
    assert info_of.registered == {"cell": ["gru/numpy", "clash_gru/numpy"],
                                  "task": ["clash_task"]}
    blocked = build_host(blocked=["clash_cells"])
    assert blocked.registry.cell("gru", "numpy").plugin == "reference_cells"
    assert {i.name: i.status for i in blocked.plugins()}["clash_cells"] == "disabled"


def test_clash_is_avoided_by_blocking_the_other(data_dir):
    host = build_host(plugins=[str(data_dir / "clashing_plugin.py")], blocked=["reference_cells"])
    assert host.registry.cell("lstm", "numpy").plugin == "clashing_plugin"
    assert host.registry.conflicts() == []


def test_registering_the_same_name_twice_in_one_plugin_is_its_bug(tmp_path):
    twice = tmp_path / "twice_plugin.py"
    twice.write_text(
        "from rnnbench import hookimpl\n"
        "@hookimpl\n"
        "def rnnbench_register_metrics(register):\n"
        "    register('twice', lambda run: 1)\n"
        "    register('twice', lambda run: 2)\n"
    )
    with pytest.raises(PluginError, match=r"registers metric 'twice' twice \(at .*:5\)"):
        build_host(plugins=[str(twice)])


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


def test_failed_plugin_leaves_nothing_behind(data_dir):
    host = build_host()
    with pytest.raises(PluginError):
        host.load_local(str(data_dir / "raising_plugin.py"))
    assert ("half_done", "numpy") not in host.registry.cells
    assert "raising_plugin" not in host.plugin_names()
    assert {i.name: i.status for i in host.plugins()}["raising_plugin"] == "broken"


def test_every_hook_is_documented():
    hooks = [
        (name, function)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("rnnbench_")
    ]
    assert {name for name, _ in hooks} == HOOK_NAMES
    assert "rnnbench_evaluation" in HOOK_NAMES and "rnnbench_epoch_end" not in HOOK_NAMES
    for name, function in hooks:
        doc = inspect.getdoc(function) or ""
        assert len(doc.split()) >= 15, f"hook {name} needs a docstring stating its contract"


# --- -p and -p no: -----------------------------------------------------------------------------


def test_p_of_a_module_loaded_through_its_entry_point_is_harmless():
    from rnnbench.plugins.cells import reference

    for reference_arg in ("rnnbench.plugins.cells.reference", reference.__file__):
        host = build_host(plugins=[reference_arg])
        assert host.plugin_names().count("reference_cells") == 1
        assert len(host.plugin_names()) == len(build_host().plugin_names())
        assert host.registry.cell("lstm", "numpy").plugin == "reference_cells"
        assert host.registry.conflicts() == []
        assert any("already loaded as plugin 'reference_cells'" in note for note in host.notes)


def test_p_twice_of_the_same_file_is_harmless(data_dir):
    toy = str(data_dir / "toy_plugin.py")
    host = build_host(plugins=[toy, toy])
    assert host.registry.cell("toy", "numpy").plugin == "toy_plugin"


def test_two_plugin_files_of_the_same_name_are_refused(data_dir, tmp_path):
    other = tmp_path / "toy_plugin.py"
    other.write_text("")
    with pytest.raises(PluginError, match=r"has the name of plugin 'toy_plugin' .*rename one"):
        build_host(plugins=[str(data_dir / "toy_plugin.py"), str(other)])


def test_blocking_an_unknown_name_warns_with_the_closest_name():
    host = build_host(blocked=["referenc_cells"])
    (warning,) = host.unmatched_blocks()
    assert "-p no:referenc_cells matches no plugin" in warning
    assert "did you mean 'reference_cells'?" in warning
    assert host.registry.cell("lstm", "numpy")  # nothing was disabled
    assert build_host(blocked=["reference_cells"]).unmatched_blocks() == []


def test_blocking_a_local_plugin_by_name_matches_and_skips_it(data_dir):
    host = build_host(plugins=[str(data_dir / "import_error_plugin.py")],
                      blocked=["import_error_plugin"])
    assert host.unmatched_blocks() == []  # matched, and never even imported
    assert {i.name: i.status for i in host.plugins()}["import_error_plugin"] == "disabled"


# --- broken plugins: file and line ---------------------------------------------------------


def test_import_failure_names_the_file_and_line(data_dir):
    with pytest.raises(PluginError) as info:
        build_host(plugins=[str(data_dir / "import_error_plugin.py")])
    assert "import_error_plugin.py:3)" in str(info.value)
    assert "ModuleNotFoundError" in str(info.value)
    assert "Traceback (most recent call last)" in info.value.details


def test_exception_in_a_registration_hook_names_the_plugins_line(data_dir):
    with pytest.raises(PluginError) as info:
        build_host(plugins=[str(data_dir / "raising_plugin.py")])
    message = str(info.value)
    assert "raised in rnnbench_register_cells: KeyError: 'missing'" in message
    assert "raising_plugin.py:7)" in message  # the deepest frame in the plugin's own file
    assert "_settings" in info.value.details


def test_contract_violation_names_the_register_call(data_dir):
    with pytest.raises(PluginError) as info:
        build_host(plugins=[str(data_dir / "bad_contract_plugin.py")])
    assert "bad_contract_plugin.py:8)" in str(info.value)


def test_broken_entry_point_names_file_and_line(monkeypatch, tmp_path):
    package = tmp_path / "fragile_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cells.py").write_text("import math\n\nVALUE = math.sqrt(-1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = importlib.metadata.entry_points(group="rnnbench")
    fragile = importlib.metadata.EntryPoint(
        name="fragile", value="fragile_pkg.cells", group="rnnbench"
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [*real, fragile])
    host = build_host()
    reason = host.registry.broken["fragile"]
    assert "failed to import 'fragile_pkg.cells': ValueError: math domain error" in reason
    assert "fragile_pkg/cells.py:3)" in reason
    info = {i.name: i for i in host.plugins()}["fragile"]
    assert info.status == "broken" and "Traceback" in info.details
    assert host.registry.cell("lstm", "numpy")  # the others loaded


# --- contract version and hook names ---------------------------------------------------------


def test_a_plugin_needing_a_newer_contract_is_broken(data_dir):
    with pytest.raises(PluginError) as info:
        build_host(plugins=[str(data_dir / "future_contract_plugin.py")])
    message = str(info.value)
    assert "needs plugin contract 99" in message
    assert f"this is rnnbench {rnnbench.__version__}, which provides contract " \
        f"{rnnbench.CONTRACT_VERSION}" in message
    assert "future_contract_plugin.py:5" in message
    assert "upgrade rnnbench" in message
    host = build_host(plugins=[str(data_dir / "future_contract_plugin.py")], strict=False)
    assert "future_contract_plugin" in host.registry.broken
    assert ("future", "numpy") not in host.registry.cells


@pytest.mark.parametrize("declared", ["'1'", "1.5", "True", "0"])
def test_a_contract_version_that_is_not_one_is_broken(tmp_path, declared):
    plugin = tmp_path / "odd_contract.py"
    plugin.write_text(f"RNNBENCH_CONTRACT = {declared}\n")
    with pytest.raises(PluginError, match="which is not a contract version"):
        build_host(plugins=[str(plugin)])


def test_the_current_contract_version_loads(data_dir):
    assert build_host(plugins=[str(data_dir / "clashing_plugin.py")]).registry.broken == {}


def test_the_old_evaluation_hook_name_names_the_new_one(data_dir):
    with pytest.raises(PluginError) as info:
        build_host(plugins=[str(data_dir / "old_hook_plugin.py")])
    message = str(info.value)
    assert "implements rnnbench_epoch_end (at " in message and "old_hook_plugin.py:6)" in message
    assert "implement rnnbench_evaluation(run, step, logs) instead" in message


def test_a_misspelt_hook_gets_did_you_mean(tmp_path):
    plugin = tmp_path / "typo_plugin.py"
    plugin.write_text(
        "from rnnbench import hookimpl\n"
        "@hookimpl\n"
        "def rnnbench_register_cell(register):\n"
        "    pass\n"
    )
    with pytest.raises(PluginError, match="did you mean 'rnnbench_register_cells'"):
        build_host(plugins=[str(plugin)])


def test_a_hook_without_hookimpl_is_refused(tmp_path):
    plugin = tmp_path / "bare_plugin.py"
    plugin.write_text("def rnnbench_register_cells(register):\n    pass\n")
    with pytest.raises(PluginError, match=r"without @rnnbench.hookimpl, so it would never"):
        build_host(plugins=[str(plugin)])


def test_evaluation_hook_receives_the_documented_logs(host, tmp_path):
    plugin = tmp_path / "logger_plugin.py"
    plugin.write_text(
        "from rnnbench import hookimpl\n"
        "SEEN = []\n"
        "@hookimpl\n"
        "def rnnbench_evaluation(run, step, logs):\n"
        "    SEEN.append((run.run_id, step, logs))\n"
    )
    host.load_local(str(plugin))
    spec = make_spec(host, steps=20)
    record, _ = execute_run(spec, host)
    seen = host.pm.get_plugin("logger_plugin").SEEN
    assert [step for _, step, _ in seen] == [0, 10, 20]  # step 0: before any update
    assert all(run_id == spec.run_id for run_id, _, _ in seen)
    documented = set(EvaluationLogs.__annotations__)
    for _, step, logs in seen:
        assert EvaluationLogs.__required_keys__ <= set(logs) <= documented
        assert logs["step"] == step
    assert [logs for _, _, logs in seen] == record.curve


# --- lookups, provenance, the typed contract ------------------------------------------------


def test_lookups_of_unknown_names_suggest_the_closest():
    registry = build_host().registry
    with pytest.raises(UnknownNameError, match="did you mean 'lstm'"):
        registry.cell("lstn", "numpy")
    with pytest.raises(UnknownNameError, match="has no backend 'cuda'; available: numba-cpu"):
        registry.cell("lstm", "cuda")
    with pytest.raises(UnknownNameError, match="did you mean 'adding'"):
        registry.task("addin")
    with pytest.raises(UnknownNameError, match="unknown metric"):
        registry.metric("no_such_metric")
    with pytest.raises(ValueError, match="unknown kind"):
        registry.conflict_for("cells", "lstm")


def test_plugin_provenance(data_dir):
    host = build_host(plugins=[str(data_dir / "toy_plugin.py")])
    info = {i.name: i for i in host.plugins()}
    builtin = info["reference_cells"]
    assert (builtin.origin, builtin.distribution) == ("entry point", "rnnbench")
    assert builtin.version == rnnbench.__version__
    assert builtin.module == "rnnbench.plugins.cells.reference"
    assert builtin.file.endswith("reference.py")
    assert builtin.hooks == ["rnnbench_register_cells"]
    assert builtin.registered == {"cell": ["rnn/numpy", "lstm/numpy", "gru/numpy"]}
    local = info["toy_plugin"]
    assert (local.origin, local.distribution, local.version) == ("local", None, None)
    assert local.reference == str(data_dir / "toy_plugin.py")
    assert local.provider() == {"plugin": "toy_plugin", "distribution": None, "version": None,
                                "file": str(data_dir / "toy_plugin.py")}
    environment = {p["plugin"]: p for p in host.environment_plugins()}
    assert environment["reference_cells"] == {
        "plugin": "reference_cells", "distribution": "rnnbench",
        "version": rnnbench.__version__, "status": "loaded",
        "module": "rnnbench.plugins.cells.reference",
    }


def test_run_provenance_names_cell_task_and_metric_providers(host):
    spec = make_spec(host, cell="toy")
    provenance = host.registry.run_provenance(spec)
    assert provenance["cell"]["plugin"] == "toy_plugin"
    assert provenance["cell"]["distribution"] is None
    assert provenance["task"] == {"plugin": "many_to_one_tasks", "distribution": "rnnbench",
                                  "version": rnnbench.__version__}
    by_plugin = {group["plugin"]: group["names"] for group in provenance["metrics"]}
    assert "test_loss" in by_plugin["training_metrics"]
    assert sorted(n for names in by_plugin.values() for n in names) == sorted(spec.metrics)


@pytest.mark.parametrize("protocol, make", [
    (hookspecs.CellRegistrar, "_cell_registrar"),
    (hookspecs.TaskRegistrar, "_task_registrar"),
    (hookspecs.MetricRegistrar, "_metric_registrar"),
    (hookspecs.ReporterRegistrar, "_reporter_registrar"),
])
def test_registrar_protocols_match_the_register_callables(protocol, make):
    """The Protocols are the documentation: they must take exactly what register takes."""
    implemented = inspect.signature(getattr(build_host(entry_points=False), make)("x"))
    documented = inspect.signature(protocol.__call__)
    params = list(documented.parameters.values())[1:]  # without self
    assert [(p.name, p.kind, p.default) for p in params] == [
        (p.name, p.kind, p.default) for p in implemented.parameters.values()
    ]


def test_hooks_are_typed_not_any():
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("rnnbench_"):
            annotations = function.__annotations__
            assert "Any" not in " ".join(map(str, annotations.values())), name


def test_two_entry_points_of_one_name_never_drop_one_silently(monkeypatch):
    real = importlib.metadata.entry_points(group="rnnbench")
    twin = importlib.metadata.EntryPoint(
        name="reference_cells", value="rnnbench.plugins.cells.numba_cpu", group="rnnbench"
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [*real, twin])
    host = build_host()
    (key,) = host.registry.broken
    assert key.startswith("reference_cells [")
    assert "has the entry-point name of plugin 'reference_cells' (rnnbench " in (
        host.registry.broken[key])
    assert host.registry.cell("lstm", "numpy").plugin == "reference_cells"
    rows = [(i.status, i.module) for i in host.plugins() if i.name == "reference_cells"]
    assert rows == [("loaded", "rnnbench.plugins.cells.reference"),
                    ("broken", "rnnbench.plugins.cells.numba_cpu")]


@pytest.mark.parametrize(
    ("file", "where"),
    [("exiting_plugin.py", "failed to import"), ("exiting_register_plugin.py", "raised in")],
)
def test_case_9_sys_exit_in_a_plugin_is_that_plugins_error(data_dir, file, where):
    """Issue 9, case 9: sys.exit(3) at import or in a registration hook used to make rnnbench
    exit 3 without a word; it is now the plugin's failure, with its file and line."""
    with pytest.raises(PluginError) as raised:
        build_host(plugins=[str(data_dir / file)])
    message = str(raised.value)
    assert where in message and "SystemExit: 3" in message
    assert f"{file}:" in message
    host = build_host(plugins=[str(data_dir / file)], strict=False)
    assert {i.name: i.status for i in host.plugins()}[file.removesuffix(".py")] == "broken"


def test_case_9_suite_plugins_with_one_stem_in_two_folders_are_refused(tmp_path):
    """Issue 9, case 9: two suite plugins named extra.py in different folders: never one
    silently skipped, but an error at the suite's plugins line naming both files."""
    for folder, metric in (("a", "ma"), ("b", "mb")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "extra.py").write_text(
            "from rnnbench import hookimpl\n\n\n@hookimpl\n"
            f"def rnnbench_register_metrics(register):\n    register({metric!r}, len)\n"
        )
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\ncell: lstm\ntask: adding\nhidden_size: 4\ntraining: {steps: 2}\n"
        "plugins: [a/extra.py, b/extra.py]\nmetrics: [ma, mb]\n"
    )
    with pytest.raises(SuiteError) as raised:
        load_validated_suite(suite, build_host())
    message = str(raised.value)
    assert "suite.yaml:6: plugins:" in message
    assert "b/extra.py has the name of plugin 'extra' (local file a/extra.py)" in message
    assert "rename one of them" in message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("class T(Task):\n    name = 't'\n    topology = Topology.MANY_TO_ONE\n",
         "is not a dataclass; decorate it with @dataclass"),
        ("@dataclass\nclass T(Task):\n    name = 't'\n    topology = Topology.MANY_TO_ONE\n"
         "    def make_data(self, seed): ...\n",
         "task 't' does not implement loss, baseline_loss"),
    ],
)
def test_a_task_without_its_own_dataclass_or_methods_is_refused_at_loading(tmp_path, body,
                                                                          message):
    plugin = tmp_path / "half_task.py"
    plugin.write_text(
        "from dataclasses import dataclass\nfrom rnnbench import Task, Topology, hookimpl\n"
        f"{body}\n@hookimpl\ndef rnnbench_register_tasks(register):\n    register(T)\n"
    )
    with pytest.raises(PluginError, match=message):
        build_host(plugins=[str(plugin)])


def test_a_hook_asking_for_an_argument_the_hook_does_not_pass_is_named_with_the_fix(tmp_path):
    plugin = tmp_path / "argname.py"
    plugin.write_text("from rnnbench import hookimpl\n\n@hookimpl\n"
                      "def rnnbench_evaluation(run, stepp, logs):\n    return None\n")
    with pytest.raises(PluginError, match=r"rnnbench_evaluation \(at .*argname.py:3\) asks for "
                                          r"'stepp', which the hook does not pass; it passes "
                                          r"run, step, logs \(did you mean 'step'\?\)"):
        build_host(plugins=[str(plugin)])


def test_p_with_an_installed_plugins_name_is_harmless():
    """``-p training_metrics`` (the entry point's name, as ``-p no:`` takes it) is loaded
    already: a quiet note, not an import error."""
    host = build_host(plugins=["training_metrics"])
    assert host.registry.metric("test_loss").plugin == "training_metrics"
    assert "training_metrics: an installed plugin, loaded already" in host.notes
