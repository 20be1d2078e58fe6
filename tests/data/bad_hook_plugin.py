"""Implements a registration hook with an argument the spec does not have."""

from harness import hookimpl


@hookimpl
def rnnbench_register_cells(register, colour):
    pass
