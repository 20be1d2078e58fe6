"""rnnbench's core: the public API a plugin author imports.

Everything a plugin needs comes from here::

    from harness import hookimpl, Cell, CellConfig, ForwardResult, BackwardResult
    from harness import Task, TaskData, Split, Topology, param, mse, cross_entropy
    from harness import RunOutcome, ResultTable, atomic_write_text
    from harness import save_params, load_params, ParamsFileError

The hooks themselves are documented in :mod:`harness.hookspecs`.
"""

from __future__ import annotations

import pluggy

from harness.cell import (
    GATES,
    BackwardResult,
    Cell,
    CellConfig,
    ForwardResult,
    init_uniform,
    param_shapes,
    parameter_count,
)
from harness.errors import PluginError, RnnbenchError, SuiteError
from harness.losses import accuracy, cross_entropy, mse
from harness.params_io import ParamsFileError, load_params, save_params
from harness.records import RunRecord, RunSpec, TrainingConfig
from harness.results import (
    ResultTable,
    atomic_write_bytes,
    atomic_write_text,
    format_mean_std,
    format_value,
)
from harness.runner import RunOutcome
from harness.task import (
    Split,
    Task,
    TaskData,
    Topology,
    check_sizes,
    one_hot,
    param,
    positional_cross_entropy,
    positional_distribution,
)

#: Marks a function as a hook implementation: ``@hookimpl def rnnbench_register_cells(...)``.
hookimpl = pluggy.HookimplMarker("rnnbench")

__all__ = [
    "GATES",
    "BackwardResult",
    "Cell",
    "CellConfig",
    "ForwardResult",
    "ParamsFileError",
    "PluginError",
    "ResultTable",
    "RnnbenchError",
    "RunOutcome",
    "RunRecord",
    "RunSpec",
    "Split",
    "SuiteError",
    "Task",
    "TaskData",
    "Topology",
    "TrainingConfig",
    "accuracy",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_sizes",
    "cross_entropy",
    "format_mean_std",
    "format_value",
    "hookimpl",
    "init_uniform",
    "load_params",
    "mse",
    "one_hot",
    "param",
    "param_shapes",
    "parameter_count",
    "positional_cross_entropy",
    "positional_distribution",
    "save_params",
]
