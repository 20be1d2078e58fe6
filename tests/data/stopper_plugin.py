"""Stops every run at its first evaluation, through the epoch-end event hook."""

from harness import hookimpl


@hookimpl
def rnnbench_epoch_end(step):
    return True
