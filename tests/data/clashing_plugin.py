"""Registers the built-in 'lstm' on 'numpy' (a clash with reference_cells) and a cell and a
metric of its own: the clash is an error where 'lstm'/'numpy' is used; the rest stays usable."""

from rnnbench import hookimpl

RNNBENCH_CONTRACT = 1


class _NotACell:
    def __init__(self, config):
        self.config = config


@hookimpl
def rnnbench_register_cells(register):
    register("lstm", "numpy", _NotACell, description="a clashing lstm")
    register("clash_own", "numpy", _NotACell, description="this plugin's own cell")


@hookimpl
def rnnbench_register_metrics(register):
    register("clash_metric", lambda run: 1.0, "this plugin's own metric")
