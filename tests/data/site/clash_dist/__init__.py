"""An installed-like third-party plugin package (tests/data/site is put on sys.path, where its
dist-info makes it an installed distribution, 'clash-dist' 1.2.3, with an rnnbench entry point).

It registers the built-in name 'gru' on 'numpy' (a clash with reference_cells) and a cell and a
task of its own, which must stay usable.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnbench import Task, Topology, hookimpl

RNNBENCH_CONTRACT = 1


class _NotACell:
    def __init__(self, config):
        self.config = config


@dataclass
class ClashTask(Task):
    name = "clash_task"
    topology = Topology.MANY_TO_ONE
    readout = "last"
    description = "this distribution's own task"

    # Only registered, never run, in the tests: loading checks that these exist.
    def make_data(self, seed):
        raise NotImplementedError("a loading fixture")

    def loss(self, predictions, targets):
        raise NotImplementedError("a loading fixture")

    def baseline_loss(self, data):
        raise NotImplementedError("a loading fixture")


@hookimpl
def rnnbench_register_cells(register):
    register("gru", "numpy", _NotACell, description="a gru that clashes with the built-in")
    register("clash_gru", "numpy", _NotACell, description="this distribution's own cell")


@hookimpl
def rnnbench_register_tasks(register):
    register(ClashTask)
