"""Every event hook raises (one of them with sys.exit): the suite must go on without it."""

import sys

from rnnbench import hookimpl


@hookimpl
def rnnbench_suite_start(runs):
    raise RuntimeError("suite_start broke")


@hookimpl
def rnnbench_run_start(run):
    sys.exit(3)


@hookimpl
def rnnbench_evaluation(step):
    raise ValueError("evaluation broke")


@hookimpl
def rnnbench_run_end(run, record):
    raise KeyError("run_end broke")


@hookimpl
def rnnbench_suite_end(records):
    raise RuntimeError("suite_end broke")
