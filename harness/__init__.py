"""rnnbench: a plugin-based benchmark harness for recurrent neural networks.

``import rnnbench`` is the whole public API; a plugin imports nothing else (tests may import
:mod:`rnnbench.testing`, the test kit). The contract, every hook with what it receives and
returns, is :mod:`rnnbench.hookspecs`; the tutorial is ``docs/writing-plugins.md``::

    from rnnbench import hookimpl, CellRegistrar, StackedCell, CellConfig, CellSupport
    from rnnbench import Task, TaskData, Split, Topology, param, mse, cross_entropy
    from rnnbench import RunOutcome, ResultTable, atomic_write_text
    from rnnbench import build_cell, load_params, save_params, run_suite

Names keep their meaning within a contract version (:data:`CONTRACT_VERSION`).
"""

from __future__ import annotations

from importlib import metadata

import pluggy

from rnnbench.api import SuiteRun, run_suite
from rnnbench.boundary import CellContractError
from rnnbench.cell import (
    GATES,
    Array,
    BackwardResult,
    Cell,
    CellConfig,
    CellSupport,
    ForwardResult,
    Params,
    State,
    init_uniform,
    param_shapes,
    parameter_count,
)
from rnnbench.claims import CLAIM_COLUMNS, Claim, ClaimResult, evaluate_claims
from rnnbench.device_ops import ArrayOps
from rnnbench.errors import PluginError, RnnbenchError, SuiteError
from rnnbench.hookspecs import (
    CellRegistrar,
    EvaluationLogs,
    MetricRegistrar,
    MetricValue,
    ReporterRegistrar,
    TaskRegistrar,
)
from rnnbench.initialisation import gate_blocks, spectral_radius
from rnnbench.json_numbers import encode_nonfinite
from rnnbench.losses import accuracy, cross_entropy, mse
from rnnbench.model import EncoderDecoderModel, Evaluation, Model, Readout, SequenceModel
from rnnbench.params_io import ParamsFileError, load_params, save_params
from rnnbench.plugin_manager import (
    PluginConflictError,
    PluginHost,
    PluginLoadError,
    UnknownNameError,
    build_cell,
    load_plugins,
)
from rnnbench.records import RunRecord, RunSpec, TrainingConfig
from rnnbench.results import (
    ResultTable,
    atomic_write_bytes,
    atomic_write_text,
    format_mean_std,
    format_value,
    runs_cell,
    summary_cell,
    summary_heading,
)
from rnnbench.runner import RunObserver, RunOutcome, SilentObserver
from rnnbench.stacked_cell import LayerState, StackedCell
from rnnbench.suite import Suite
from rnnbench.task import (
    SolvedCriterion,
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
from rnnbench.threads import current_thread_budget
from rnnbench.training import SGD, Adam, RMSprop, TrainingResult

#: The installed rnnbench's version (its distribution's, from the package metadata).
try:
    __version__: str = metadata.version("rnnbench")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

#: The version of the plugin contract (the hooks in :mod:`rnnbench.hookspecs` and the objects
#: they exchange). A plugin module may declare the version it was written for with a module-level
#: ``RNNBENCH_CONTRACT = 1``; a plugin that needs a newer contract than this rnnbench provides is
#: reported as broken, with the fix (upgrade rnnbench), instead of failing in the middle of a run.
#: Version 2 (rnnbench 0.3) adds, and changes nothing of version 1: cell ``options=`` and
#: ``CellSupport.forget_gate``; ``Task.online``/``sample``, ``scores``, ``gradient_positions`` and
#: ``solved_criterion``; ``SolvedCriterion``; ``ResultTable.claims``; the ``lr`` evaluation log
#: and the step-0 evaluation; ``Task.standard_loss`` and a cell's optional ``training_ops()``
#: returning an :class:`ArrayOps` (training resident on a device).
CONTRACT_VERSION = 2

#: Marks a function as a hook implementation: ``@hookimpl def rnnbench_register_cells(...)``.
hookimpl = pluggy.HookimplMarker("rnnbench")

__all__ = [
    "CLAIM_COLUMNS",
    "CONTRACT_VERSION",
    "GATES",
    "SGD",
    "Adam",
    "Array",
    "ArrayOps",
    "BackwardResult",
    "Cell",
    "CellConfig",
    "CellContractError",
    "CellRegistrar",
    "CellSupport",
    "Claim",
    "ClaimResult",
    "EncoderDecoderModel",
    "Evaluation",
    "EvaluationLogs",
    "ForwardResult",
    "LayerState",
    "MetricRegistrar",
    "MetricValue",
    "Model",
    "Params",
    "ParamsFileError",
    "PluginConflictError",
    "PluginError",
    "PluginHost",
    "PluginLoadError",
    "RMSprop",
    "Readout",
    "ReporterRegistrar",
    "ResultTable",
    "RnnbenchError",
    "RunObserver",
    "RunOutcome",
    "RunRecord",
    "RunSpec",
    "SequenceModel",
    "SilentObserver",
    "SolvedCriterion",
    "Split",
    "StackedCell",
    "State",
    "Suite",
    "SuiteError",
    "SuiteRun",
    "Task",
    "TaskData",
    "TaskRegistrar",
    "Topology",
    "TrainingConfig",
    "TrainingResult",
    "UnknownNameError",
    "__version__",
    "accuracy",
    "atomic_write_bytes",
    "atomic_write_text",
    "build_cell",
    "check_sizes",
    "cross_entropy",
    "current_thread_budget",
    "encode_nonfinite",
    "evaluate_claims",
    "format_mean_std",
    "format_value",
    "gate_blocks",
    "hookimpl",
    "init_uniform",
    "load_params",
    "load_plugins",
    "mse",
    "one_hot",
    "param",
    "param_shapes",
    "parameter_count",
    "positional_cross_entropy",
    "positional_distribution",
    "run_suite",
    "runs_cell",
    "save_params",
    "spectral_radius",
    "summary_cell",
    "summary_heading",
]
