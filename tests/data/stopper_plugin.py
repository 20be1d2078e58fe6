"""Stops every run at its first evaluation, through the epoch-end event hook."""

from rnnbench import hookimpl


@hookimpl
def rnnbench_epoch_end(step):
    return True
