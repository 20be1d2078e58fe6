"""Specs and records: what a run is (RunSpec), and what it produced (RunRecord).

A RunSpec is fully resolved: every default filled in, so its id (a hash of its configuration)
is stable across machines, sessions and suite-file formatting. A data file a task parameter
names (``param(..., path=True)``) enters the id by its content digest, not its path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

OPTIMIZERS = ("sgd", "adam", "rmsprop")
#: Initialisations of the recurrent weights (see rnnbench.initialisation).
INITS = ("pytorch", "orthogonal", "identity")
#: Learning-rate schedules after the warm-up (see rnnbench.training).
SCHEDULES = ("constant", "step", "cosine")
#: Where training sequences come from: one fixed training set drawn from the seed, or fresh
#: sequences for every batch (generated from the seed too, so still reproducible).
DATA_MODES = ("fixed", "online")


@dataclass(frozen=True)
class TrainingConfig:
    """How one run is trained. Exactly one of ``steps`` and ``epochs`` is set after resolution."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    batch_size: int = 32
    steps: int | None = None
    epochs: int | None = None
    clip: float | None = None
    eval_every: int | None = None
    #: Stop once the validation loss reaches this (early stopping on a target); None: never.
    target_loss: float | None = None
    #: How the recurrent weights start: "pytorch" (uniform), "orthogonal" or "identity".
    init: str = "pytorch"
    #: Rescale every gate's recurrent matrix to this spectral radius after ``init`` (above 1
    #: provokes exploding gradients, below 1 vanishing ones); None: leave as initialised.
    spectral_radius: float | None = None
    #: Added to the forget-gate biases at initialisation (Gers et al. 2000; Jozefowicz et al.
    #: 2015 recommend 1.0); only for cells that declare a forget gate.
    forget_bias: float = 0.0
    #: The learning rate after the warm-up: "constant"; "step" (times ``decay_rate`` every
    #: ``decay_every`` steps); "cosine" (annealed to 0 at the end of the planned steps). The
    #: formulas: rnnbench.training.learning_rate.
    schedule: str = "constant"
    #: Steps over which the learning rate rises linearly to ``lr`` (0: no warm-up).
    warmup_steps: int = 0
    decay_every: int | None = None
    decay_rate: float = 0.1
    #: "fixed" (one training set, reshuffled every epoch) or "online" (fresh sequences for
    #: every batch, generated from the seed).
    data: str = "fixed"

    def to_dict(self) -> dict[str, Any]:
        """The settings that enter the run's configuration and id: every setting, except that
        those added after the first release are left out at their default, so runs that do not
        use them keep the ids (and committed results) they always had."""
        settings = asdict(self)
        for name in LATER_TRAINING_SETTINGS:
            if settings[name] == _TRAINING_FIELD_DEFAULTS[name]:
                del settings[name]
        return settings

    def settings(self) -> dict[str, Any]:
        """Every setting by name, defaults included (what tables, filters and claims see)."""
        return asdict(self)


#: Training settings added after the first release: left out of a run's configuration (and so
#: of its id) while at their default; see :meth:`TrainingConfig.to_dict`.
LATER_TRAINING_SETTINGS = (
    "forget_bias", "schedule", "warmup_steps", "decay_every", "decay_rate", "data",
)
_TRAINING_FIELD_DEFAULTS = {f.name: f.default for f in fields(TrainingConfig)}


#: The configuration key holding the content digest of each data file a run reads.
DATA_KEY = "data_sha256"
#: The matrix axes of a suite, in the order they appear in run labels and tables.
CONFIG_AXES = ("cell", "backend", "task", "hidden_size", "num_layers", "bias", "dtype", "seed")
TRAINING_AXES = tuple(f.name for f in fields(TrainingConfig))
#: Settings a run's label shows when they vary within its suite (the other axes are always in
#: the label): see :attr:`RunSpec.label_settings`.
LABEL_SETTINGS = ("bias", *TRAINING_AXES)


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved run of a suite."""

    cell: str
    backend: str
    task: str
    task_params: tuple[tuple[str, Any], ...]
    hidden_size: int
    num_layers: int
    bias: bool
    dtype: str
    seed: int
    training: TrainingConfig
    metrics: tuple[str, ...] = ()
    suite: str = ""
    #: Task parameters to show in the label (those the suite set away from their defaults);
    #: ``None`` shows them all. Presentation only: not part of the configuration or the id.
    label_params: tuple[str, ...] | None = field(default=None, compare=False)
    #: Flat keys of the settings (of :data:`LABEL_SETTINGS`, and ``cell.<option>``) that vary
    #: between the runs of the suite, shown in the label with this run's values (``lr=0.01``;
    #: options in the cell part, ``rnn[nonlinearity=tanh]``) so that no two runs read alike.
    #: Presentation only: not part of the configuration or the id.
    label_settings: tuple[str, ...] = field(default=(), compare=False)
    #: ``(parameter, SHA-256 digest)`` of each task parameter that names a data file (the path,
    #: resolved, is in ``task_params``); see :mod:`rnnbench.data_files`.
    data_files: tuple[tuple[str, str], ...] = ()
    #: The cell's options (``register(..., options=...)``), every declared one, defaults filled
    #: in, sorted by name; empty for a cell without options.
    cell_params: tuple[tuple[str, Any], ...] = ()
    #: The declared defaults of the options: those at their default are left out of the run id
    #: (so adding an option keeps old ids) and of the label. Empty: every option counts as set.
    cell_defaults: tuple[tuple[str, Any], ...] = ()
    #: BLAS/OpenMP/Numba threads for this run; ``None``: decided at run time. Presentation
    #: only: not part of the configuration or the id.
    threads: int | None = field(default=None, compare=False)
    #: How many runs share the machine at once (``-j N``). Presentation only.
    workers: int = field(default=1, compare=False)

    def config(self) -> dict[str, Any]:
        """The configuration that determines the run's numbers (and so its id).

        The suite name and the metric list are left out: renaming a suite or adding a metric
        does not change what a run computes. A run reading data files has ``data_sha256``
        (parameter -> content digest) too; runs without any have exactly the keys they always
        had, so their ids never changed. A cell that declares options has ``cell_params``
        (every option; :meth:`identity` keeps only those away from their defaults).
        """
        config = {
            "cell": self.cell,
            "backend": self.backend,
            "task": self.task,
            "task_params": dict(self.task_params),
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "dtype": self.dtype,
            "seed": self.seed,
            "training": self.training.to_dict(),
        }
        if self.data_files:
            config[DATA_KEY] = dict(self.data_files)
        if self.cell_params:
            config["cell_params"] = dict(self.cell_params)
        return config

    @property
    def cell_params_set(self) -> tuple[tuple[str, Any], ...]:
        """The cell options away from their declared defaults."""
        defaults = dict(self.cell_defaults)
        return tuple(
            (key, value) for key, value in self.cell_params
            if key not in defaults or not same_value(value, defaults[key])
        )

    def identity(self) -> dict[str, Any]:
        """What the run id hashes: :meth:`config`, with each data file's path replaced by its
        content digest, so the id names the data (the same file moved keeps it; an edited file
        gets a new one) while the record keeps the path for people."""
        identity = self.config()
        digests = identity.pop(DATA_KEY, {})
        identity["task_params"].update(
            {name: f"sha256:{digest}" for name, digest in digests.items()}
        )
        identity.pop("cell_params", None)
        if self.cell_params_set:  # options at their defaults leave the id as it always was
            identity["cell_params"] = dict(self.cell_params_set)
        return identity

    @property
    def run_id(self) -> str:
        """A stable 12-hex-digit id derived from :meth:`identity`."""
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def task_label(self) -> str:
        """The task with the parameters the suite set away from their defaults:
        ``adding[length=30]``."""
        files = dict(self.data_files)
        shown = [
            (k, Path(v).name if k in files else v) for k, v in self.task_params
            if self.label_params is None or k in self.label_params
        ]
        if not shown:
            return self.task
        return self.task + "[" + ",".join(f"{k}={v}" for k, v in shown) + "]"

    @property
    def cell_label(self) -> str:
        """The cell with the options set away from their defaults, and those the suite varies
        (:attr:`label_settings`) even at their default: ``rnn[nonlinearity=relu]``,
        ``rnn[nonlinearity=tanh]`` beside it."""
        away = dict(self.cell_params_set)
        shown = [(key, value) for key, value in self.cell_params
                 if key in away or f"cell.{key}" in self.label_settings]
        if not shown:
            return self.cell
        return self.cell + "[" + ",".join(f"{k}={v}" for k, v in shown) + "]"

    @property
    def settings_label(self) -> str:
        """The varying settings with this run's values, ``lr=0.01,clip=null``; empty when the
        suite varies none of them (see :attr:`label_settings`)."""
        flat = self.flat()
        return ",".join(f"{key}={label_value(flat.get(key))}" for key in self.label_settings
                        if not key.startswith("cell."))  # options are in the cell_label

    @property
    def label(self) -> str:
        """A human-readable name: every setting that varies in the suite is in it, so runs that
        differ in anything but the seed read differently (``-k`` matches it too)."""
        settings = self.settings_label
        return (
            f"{self.cell_label}/{self.backend}/{self.task_label}/h{self.hidden_size}"
            f"x{self.num_layers}/{self.dtype}" + (f"/{settings}" if settings else "")
            + f"/seed{self.seed}"
        )

    def flat(self) -> dict[str, Any]:
        """One flat row of configuration columns: task parameters as ``task.NAME``, cell
        options as ``cell.NAME``, training settings by their own names. Used by tables, filters
        and include/exclude."""
        row: dict[str, Any] = {axis: getattr(self, axis) for axis in CONFIG_AXES}
        for key, value in self.task_params:
            row[f"task.{key}"] = value
        row.update({f"cell.{key}": value for key, value in self.cell_params})
        row.update({f"task.{key}.sha256": digest for key, digest in self.data_files})
        row.update(self.training.settings())
        return row


def label_value(value: Any) -> str:
    """A setting's value as labels write it, in the suite's own spelling: ``true``, ``null``,
    ``0.01``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def same_value(a: Any, b: Any) -> bool:
    """Equality as a suite means it: 1 matches 1.0, but true never matches 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


#: Run statuses. ``diverged`` is a result (the loss went NaN/inf), ``failed`` an error.
STATUSES = ("ok", "diverged", "failed")


@dataclass
class RunRecord:
    """What one run produced; one line of ``results.jsonl``."""

    run_id: str
    label: str
    suite: str
    config: dict[str, Any]
    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0
    #: The task and its non-default parameters, for tables (``RunSpec.task_label``).
    task_label: str = ""
    #: Who provided the run's cell, task and metrics: ``{"cell": P, "task": P, "metrics": [P +
    #: {"names": [...]}]}``, each P ``{"plugin", "distribution", "version"}`` (plus ``"file"``
    #: for a local plugin file). Not part of the configuration, so not of the run id; ``None``
    #: in records written before rnnbench recorded it.
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def flat_config(self) -> dict[str, Any]:
        """The configuration as flat columns, as :meth:`RunSpec.flat` gives them (cell options
        as ``cell.NAME``)."""
        config = dict(self.config)
        task_params = config.pop("task_params", {}) or {}
        training = config.pop("training", {}) or {}
        digests = config.pop(DATA_KEY, {}) or {}
        cell_params = config.pop("cell_params", {}) or {}
        row = dict(config)
        row.update({f"task.{k}": v for k, v in task_params.items()})
        # Records written before a cell declared options have none here (they ran at the
        # defaults of the time).
        row.update({f"cell.{k}": v for k, v in cell_params.items()})
        if isinstance(digests, dict):
            row.update({f"task.{k}.sha256": v for k, v in digests.items()})
        # Records written before a setting existed ran at its default.
        row.update({**_TRAINING_FIELD_DEFAULTS, **training})
        return row
