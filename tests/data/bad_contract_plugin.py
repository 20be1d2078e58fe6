"""Passes a factory that is not callable: must be refused with this plugin's name."""

from rnnbench import hookimpl


@hookimpl
def rnnbench_register_cells(register):
    register("broken_cell", "numpy", "not a factory")
