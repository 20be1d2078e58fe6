"""Registers the built-in metric name 'test_loss' again: a clash wherever that metric is used."""

from rnnbench import hookimpl


@hookimpl
def rnnbench_register_metrics(register):
    register("test_loss", lambda run: 0.0, "a clashing test_loss")
