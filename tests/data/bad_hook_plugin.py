"""Implements a registration hook with an argument the spec does not have."""

from rnnbench import hookimpl


@hookimpl
def rnnbench_register_cells(register, colour):
    pass
