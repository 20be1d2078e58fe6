"""Declares a plugin contract newer than any rnnbench provides: must be reported as broken."""

from rnnbench import hookimpl

RNNBENCH_CONTRACT = 99


@hookimpl
def rnnbench_register_cells(register):
    register("future", "numpy", lambda config: None)
