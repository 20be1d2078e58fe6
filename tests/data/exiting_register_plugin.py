"""Calls sys.exit(3) in a registration hook: a broken plugin, never rnnbench exiting 3."""

import sys

from rnnbench import hookimpl


@hookimpl
def rnnbench_register_metrics(register):
    sys.exit(3)
