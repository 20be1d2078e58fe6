"""A metric that kills its own process (SIGKILL) on seed 1, as a segfault or the OOM killer
would: the parallel executor must record that run as failed and finish the others."""

import os
import signal

from rnnbench import hookimpl


def doomed(outcome):
    if outcome.spec.seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return 1.0


@hookimpl
def rnnbench_register_metrics(register):
    register("doomed", doomed, "1.0, but kills its process on seed 1")
