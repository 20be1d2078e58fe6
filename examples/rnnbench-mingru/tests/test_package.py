"""The package as rnnbench sees it: entry points, contract version, ``rnnbench list``,
``rnnbench plugins``, ``rnnbench check`` and the shipped suite, through the command line."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import rnnbench

import rnnbench_mingru

PLUGIN_MODULES = {
    "mingru_cells": "rnnbench_mingru.cell",
    "mingru_tasks": "rnnbench_mingru.tasks",
    "mingru_metrics": "rnnbench_mingru.metrics",
}
SUITE = Path(__file__).parents[1] / "benchmarks" / "mingru_vs_builtins.yaml"


def rnnbench_cli(*args: str) -> str:
    """The output of the ``rnnbench`` command of this interpreter's environment (else the first
    on PATH), which must exit 0."""
    command = shutil.which("rnnbench", path=str(Path(sys.executable).parent)) or shutil.which(
        "rnnbench"
    )
    assert command, "the rnnbench command is not installed"
    done = subprocess.run([command, *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "250"}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_entry_points_name_the_plugin_modules():
    found = {ep.name: ep for ep in metadata.entry_points(group="rnnbench")
             if ep.dist is not None and ep.dist.name == "rnnbench-mingru"}
    assert {name: ep.value for name, ep in found.items()} == PLUGIN_MODULES
    assert rnnbench_mingru.__version__ == metadata.version("rnnbench-mingru") == "0.1.0"


@pytest.mark.parametrize("module", [*PLUGIN_MODULES.values(), "rnnbench_mingru.leaderboard"])
def test_every_plugin_module_declares_the_contract_it_needs(module):
    assert importlib.import_module(module).RNNBENCH_CONTRACT == rnnbench.CONTRACT_VERSION


def test_rnnbench_list_shows_the_cell_task_and_metric_with_their_plugins():
    rows = rnnbench_cli("list").splitlines()

    def row_of(name: str) -> str:
        matches = [row for row in rows if row.strip("│┃ ").startswith(name + " ")]
        assert matches, f"{name} not listed"
        return matches[0]

    assert "mingru_cells" in row_of("mingru") and "numpy" in row_of("mingru")
    assert "mingru_tasks" in row_of("parity")
    assert "mingru_metrics" in row_of("generalisation_gap")


def test_rnnbench_plugins_shows_the_distribution_version_and_registrations():
    plugins = {p["name"]: p for p in json.loads(rnnbench_cli("plugins", "--json"))}
    registered = {
        "mingru_cells": {"cell": ["mingru/numpy"]},
        "mingru_tasks": {"task": ["parity"]},
        "mingru_metrics": {"metric": ["generalisation_gap"]},
    }
    for name, module in PLUGIN_MODULES.items():
        plugin = plugins[name]
        assert (plugin["distribution"], plugin["version"]) == ("rnnbench-mingru", "0.1.0")
        assert (plugin["module"], plugin["status"]) == (module, "loaded"), plugin["reason"]
        assert plugin["registered"] == registered[name]


@pytest.mark.parametrize(("subject", "name", "label"), [("cell", "mingru", "mingru/numpy"),
                                                        ("task", "parity", "task parity")])
def test_rnnbench_check_passes(subject, name, label):
    last = rnnbench_cli("check", subject, name).splitlines()[-1]
    assert last.startswith("all checks passed: ") and last.endswith(f" on {label}"), last


def test_the_shipped_suite_is_valid():
    assert "valid; 18 runs" in rnnbench_cli("validate", str(SUITE))
