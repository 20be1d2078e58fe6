"""Suite files: YAML -> validated :class:`Suite` -> a list of fully resolved :class:`RunSpec`.

A suite is a small matrix of experiments written in YAML. Every axis takes one value or a list;
the runs are the cartesian product of the axes, plus ``include`` sets, minus ``exclude`` matches::

    name: quickstart                 # required: letters, digits, '-', '_', '.'
    description: "RNN vs LSTM vs GRU on the adding problem"
    output: results/quickstart       # optional; the caller defaults to results/<name>
    plugins: [my_cells.py, pkg.mod]  # optional; loaded by the caller before validation
    cell: [rnn, lstm, gru]           # required: a name or a non-empty list of names; an entry
                                     #   may be {name: rnn, params: {nonlinearity: [tanh, relu]}}
                                     #   (the cell's options; a list value is expanded)
    backend: numpy                   # default numpy
    task:                            # required: one task entry or a list of them
      - adding                       #   a bare name: the task with its default parameters
      - name: adding                 #   or a mapping; a list-valued parameter is expanded
        params: {length: [10, 50]}
    hidden_size: [16, 32]            # required: positive integer(s)
    num_layers: 1                    # default 1
    bias: true                       # default true
    dtype: float64                   # default float32 (one of rnnbench.cell.DTYPES)
    seed: [0, 1, 2]                  # default 0
    training:                        # every value may also be a list (expanded)
      optimizer: adam                # sgd | adam | rmsprop, default adam
      lr: 0.01                       # > 0, default 0.001
      momentum: 0.9                  # in [0, 1), default 0
      batch_size: 32                 # default 32
      steps: 200                     # exactly one of steps / epochs (the other absent or null)
      clip: 1.0                      # > 0 or null (no clipping), default null
      eval_every: 50                 # null: once per epoch, decided by the trainer
      warmup_steps: 20               # lr rises linearly over these first steps; default 0
      schedule: cosine               # constant | step (with decay_every, decay_rate) | cosine
      data: online                   # fixed | online (fresh sequences every batch); default fixed
      target_loss: 0.01              # stop early once the validation loss reaches it; default null
      init: orthogonal               # pytorch | orthogonal | identity, default pytorch
      spectral_radius: 1.5           # rescale recurrent matrices to this radius; default null
      forget_bias: 1.0               # added to the forget-gate biases (cells declaring one); 0
    metrics: [final_loss, test_loss] # default: every registered metric, sorted
    include:                         # extra run sets: keys override the suite's axes
      - {cell: lstm, hidden_size: 128, lr: 0.1}   # training keys are given flat here
      - {cell: rnn, cell.nonlinearity: relu}       # and cell options as cell.<option>
    exclude:                         # drop runs whose RunSpec.flat() matches ALL the keys
      - {cell: rnn, hidden_size: 32}
      - {task.length: 50, cell: [rnn, gru]}       # a list matches any of its items
      - {cell.nonlinearity: relu, backend: numba-cpu}
    skip_unavailable: false          # true: skip runs on unavailable backends, not an error
    max_runs: 20000                  # refuse to expand to more runs (default 10000)
    threads: 1                       # BLAS/OpenMP/Numba threads per run (default: cores/workers)
    variants:                        # named overlays of top-level keys: --variant full
      full: {seed: [0, 1, 2, 3, 4], training: {steps: 20000}}   # training merged key by key

A suite goes through four modules, one job each:

- :mod:`rnnbench.suite_yaml` reads the file into a :class:`SuiteDocument` that keeps the line of
  every key and item (:func:`read_suite`), and places problems at file:line:field;
- :mod:`rnnbench.suite_schema` checks its structure and value types (:data:`SUITE_SCHEMA`);
- this module checks it against the plugin registry (names, task parameters, cell/backend pairs,
  what each cell supports, availability) and returns the validated :class:`Suite`;
- :mod:`rnnbench.suite_expand` fills in defaults and expands the axes into runs.

Reading and validating are separate steps (:func:`read_suite`, :func:`validate_suite`) because a
suite may name local plugins (``plugins:``) that must be loaded into the registry before its cell
and task names can be checked. Validation collects *every* problem and raises one
:class:`~rnnbench.errors.SuiteError`; each problem names the file, the line and the field (a
dotted path such as ``training.lr`` or ``task[1].params.length``) and, where it can, a fix.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnbench.cell import CellSupport
from rnnbench.cell_options import option_default, option_defaults, option_fields, option_hints
from rnnbench.claims import Claim, check_selectors, parse_claims
from rnnbench.data_files import content_digest, is_path_parameter, looks_like_path, resolve
from rnnbench.errors import did_you_mean
from rnnbench.plugin_manager import CellEntry, Registry
from rnnbench.records import CONFIG_AXES, TRAINING_AXES, RunSpec, label_value
from rnnbench.suite_expand import (
    AXIS_DEFAULTS,
    MISSING,
    TRAINING_DEFAULTS,
    AxisValue,
    CellChoice,
    ExpandedRun,
    RunSet,
    TaskChoice,
    as_field_type,
    axis_values,
    count_runs,
    expand_runs,
    same_value,
    union_args,
)
from rnnbench.suite_schema import SUITE_SCHEMA, check_structure
from rnnbench.suite_variants import VARIANTS_KEY, apply_variant, variant_output
from rnnbench.suite_yaml import (
    KeyPath,
    SuiteDocument,
    SuiteProblems,
    field_name,
    read_suite,
    yaml_text,
)

# SUITE_SCHEMA, SuiteDocument, field_name and read_suite live in the schema and reading modules;
# they are re-exported so callers keep importing them from here.
__all__ = [
    "DEFAULT_MAX_RUNS",
    "SUITE_SCHEMA",
    "Suite",
    "SuiteDocument",
    "field_name",
    "load_suite",
    "read_suite",
    "validate_suite",
]


#: The most runs a suite may expand to unless it says ``max_runs:`` (or ``--max-runs``): a typo
#: in an axis must not make validation take minutes and gigabytes.
DEFAULT_MAX_RUNS = 10_000


@dataclass
class Suite:
    """A validated suite: its metadata and its runs, every one fully resolved."""

    name: str
    description: str
    path: Path
    #: From ``output:`` as written (a relative path is left to the caller to resolve), or
    #: ``None``: the caller then uses ``results/<name>``.
    output: Path | None
    plugins: list[str]
    metrics: tuple[str, ...]
    #: Expanded, excluded, deduplicated by run id; in suite order (the order values are listed,
    #: base runs before each ``include`` set), so tables and logs come out the same every time.
    runs: list[RunSpec]
    #: Runs dropped because their backend is unavailable here and ``skip_unavailable`` is true,
    #: each with the backend's reason.
    skipped: list[tuple[RunSpec, str]] = field(default_factory=list)
    #: The variant (``variants:``) these runs are of; None for the suite as written.
    variant: str | None = None
    #: What the suite says its results should show (``claims:``; see :mod:`rnnbench.claims`).
    claims: list[Claim] = field(default_factory=list)
    #: ``threads:``: the thread budget of each run (None: the default, cores // workers).
    threads: int | None = None


def load_suite(
    path: str | Path, registry: Registry, max_runs: int | None = None,
    variant: str | None = None,
) -> Suite:
    """Read and validate a suite, for callers whose registry already holds every plugin."""
    return validate_suite(read_suite(path), registry, max_runs=max_runs, variant=variant)


def validate_suite(
    doc: SuiteDocument, registry: Registry, max_runs: int | None = None,
    variant: str | None = None,
) -> Suite:
    """Check a parsed suite against its schema and the registry and expand it into runs.

    ``max_runs`` (e.g. ``--max-runs``) overrides the suite's ``max_runs:`` and
    :data:`DEFAULT_MAX_RUNS`; a suite whose axes multiply to more runs is refused before any
    run is built.

    Raises :class:`SuiteError` listing every problem found, in file order. Structural and name
    problems are all collected first; the checks on the expanded runs (whether excludes leave
    any run, cell/backend pairs, what each cell supports, availability) run only when those
    pass, since they need sound axes.

    ``variant`` (``--variant``) validates and expands the suite with that variant's keys in
    place of its own (:mod:`rnnbench.suite_variants`); its output folder defaults to the
    suite's with ``-<variant>`` appended.
    """
    suite = _Validation(apply_variant(doc, variant), registry, max_runs).run()
    if variant is not None:
        suite.variant = variant
        if "output" not in doc.data[VARIANTS_KEY][variant]:
            suite.output = variant_output(doc, variant)
    return suite


class _Validation:
    """One validation of one document: every check adds to one problem list."""

    def __init__(self, doc: SuiteDocument, registry: Registry, max_runs: int | None) -> None:
        self.doc = doc
        self.registry = registry
        self.max_runs = max_runs
        self.problems = SuiteProblems(doc)
        self.add = self.problems.add
        self._availability: dict[tuple[str, str], str | None] = {}
        self._hints_cache: dict[type, dict[str, Any]] = {}
        #: A task entry failed its checks, so the suite's task parameters are not all known.
        self._task_failed = False

    def name_hint(self, name: str, choices: list[str]) -> str:
        """Closest names; and when plugins failed to load, that may be why a name is missing."""
        hint = did_you_mean(name, choices)
        for plugin, reason in sorted(self.registry.broken.items()):
            hint += f"; plugin {plugin!r} failed to load: {reason}"
        return hint

    # -- the steps ------------------------------------------------------------------------------

    def run(self) -> Suite:
        data = self.doc.data
        check_structure(self.doc, self.problems)
        self.check_run_count()
        base = self.run_set((), data, None)
        includes = [
            self.run_set(("include", index), entry, base)
            for index, entry in enumerate(_list(data.get("include")))
            if isinstance(entry, dict)
        ]
        metrics = self.metrics()
        excludes = self.excludes([base, *includes])
        claims = parse_claims(self.doc, self.problems, metrics, self.registry.metrics)
        self.problems.raise_if_any()

        expanded = expand_runs([base, *includes], excludes)
        if not expanded:
            self.add(
                ("exclude",),
                "exclude removes every run",
                "each exclude entry drops the runs matching all of its keys; narrow them",
            )
        runs: list[RunSpec] = []
        skipped: list[tuple[RunSpec, str]] = []
        skip_unavailable = data.get("skip_unavailable") is True
        for run in expanded:
            key = (run.spec.cell, run.spec.backend)
            conflict = self.registry.conflict_for("cell", key)
            if conflict is not None:  # two plugins claim it: never pick one silently
                cell = run.values["cell"]
                self.add(cell.path, conflict, line=cell.line)
                continue
            entry = self.registry.cells.get(key)
            if entry is None:
                self.missing_pair(run.values["cell"], run.values["backend"])
                continue
            self.check_supported(run, entry.supports)
            self.check_cell_options(run, entry)
            self.check_forget_bias(run, entry.supports)
            self.check_training(run)
            spec = dataclasses.replace(run.spec, metrics=metrics, suite=data["name"])
            reason = self.unavailable(entry)
            if reason is None:
                runs.append(spec)
            elif skip_unavailable:
                skipped.append((spec, reason))
            else:
                backend = run.values["backend"]
                self.add(
                    backend.path,
                    f"backend {spec.backend!r} of cell {spec.cell!r} is unavailable here: {reason}",
                    "set skip_unavailable: true to skip its runs, or exclude it",
                    line=backend.line,
                )
        check_selectors(claims, [*runs, *(spec for spec, _ in skipped)], self.problems)
        self.problems.raise_if_any()
        output = data.get("output")
        return Suite(
            name=data["name"],
            description=data.get("description", ""),
            path=self.doc.path,
            output=Path(output) if output is not None else None,
            plugins=[reference for reference, _ in self.doc.plugins],
            metrics=metrics,
            runs=runs,
            skipped=skipped,
            claims=claims,
            threads=data.get("threads"),
        )

    def check_run_count(self) -> None:
        """Refuse, before anything is expanded, a suite whose axes multiply to more runs than
        the limit (with the structure problems found so far)."""
        written = self.doc.data.get("max_runs")
        limit = self.max_runs
        if limit is None:
            valid = isinstance(written, int) and not isinstance(written, bool) and written > 0
            limit = written if valid else DEFAULT_MAX_RUNS
        count = count_runs(self.doc.data)
        if count <= limit:
            return
        source = "--max-runs" if self.max_runs is not None else (
            "max_runs" if limit == written else "the default limit")
        self.add(
            ("max_runs",) if source == "max_runs" else (),
            f"the axes multiply to {count} runs, more than {source} allows ({limit})",
            f"narrow the axes, or raise the limit: max_runs: {count} in the suite, or "
            f"--max-runs {count}",
            line=self.doc.line_of("max_runs") if source == "max_runs" else 1,
        )
        self.problems.raise_if_any()

    def run_set(self, origin: KeyPath, mapping: dict[str, Any], base: RunSet | None) -> RunSet:
        """Resolve and check the axes of the base suite (``base`` None) or of one include."""
        axes: dict[str, list[AxisValue]] = {}
        for axis in CONFIG_AXES:
            if axis == "task":
                continue
            fallback = base.axes[axis] if base is not None else None
            default = AXIS_DEFAULTS.get(axis)
            axes[axis] = axis_values(self.doc, origin, mapping, axis, fallback, default)
        if base is not None and "cell" not in mapping:
            cells = [dataclasses.replace(choice, given=dict(choice.given),
                                         paths=dict(choice.paths)) for choice in base.cells]
        else:
            cells = [c for c in map(self.cell_choice, axes["cell"]) if c is not None]
        if base is not None:
            self.cell_option_keys(origin, mapping, cells)
        for value in axes["backend"]:
            if isinstance(value.value, str) and value.value not in self.registry.backend_names:
                self.add(
                    value.path,
                    f"unknown backend {value.value!r}",
                    self.name_hint(value.value, self.registry.backend_names),
                    line=value.line,
                )

        if base is not None and "task" not in mapping:
            tasks = base.tasks
        else:
            tasks = []
            for value in axis_values(self.doc, origin, mapping, "task", [], None):
                choice = self.task_choice(value)
                if choice is None:
                    self._task_failed = True
                else:
                    tasks.append(choice)

        if base is None:
            training_map = mapping.get("training")
            training_map = training_map if isinstance(training_map, dict) else {}
            container: KeyPath = ("training",)
            training = {
                key: axis_values(
                    self.doc, container, training_map, key, None, TRAINING_DEFAULTS[key]
                )
                for key in TRAINING_AXES
            }
            rule_path = container
        else:
            training = {
                key: axis_values(self.doc, origin, mapping, key, base.training[key], None)
                for key in TRAINING_AXES
            }
            rule_path = origin if ("steps" in mapping or "epochs" in mapping) else ("training",)
        self.check_steps_epochs(training, rule_path)
        return RunSet(origin, axes, tasks, training, cells)

    def cell_choice(self, value: AxisValue) -> CellChoice | None:
        """Check one cell entry (its name; the names, types and values of the options it sets,
        against what the cell's backends declare) and note each backend's option defaults."""
        named = _named_entry(value)
        if named is None:
            return None
        name, params, name_path = named
        if name not in self.registry.cell_names:
            self.add(name_path, f"unknown cell {name!r}",
                     self.name_hint(name, self.registry.cell_names), line=value.line
                     if name_path == value.path else None)
            return None
        choice = CellChoice(value, name, defaults=self.option_defaults(name))
        for key, raw_value in params.items():
            self.add_cell_option(choice, (*value.path, "params", key), key, raw_value)
        return choice

    def option_classes(self, cell: str) -> dict[str, type | None]:
        """Each backend of ``cell`` (that one plugin registers) with its options class."""
        found = {}
        for backend in self.registry.backends_of(cell):
            claims = self.registry.cells.claims((cell, backend))
            if len(claims) == 1:
                found[backend] = claims[0].options
        return found

    def option_defaults(self, cell: str) -> dict[str, dict[str, Any]]:
        result = {}
        for backend, options in self.option_classes(cell).items():
            hints = option_hints(options)
            result[backend] = {key: as_field_type(default, hints.get(key))
                               for key, default in option_defaults(options).items()}
        return result

    def add_cell_option(self, choice: CellChoice, path: KeyPath, key: str, raw: Any) -> None:
        """Check one option a suite sets on ``choice`` (declared by some backend of the cell,
        of the declared type, accepted by the options class) and add its values."""
        classes = {b: c for b, c in self.option_classes(choice.name).items() if c is not None}
        declared = {f.name: (f, c) for c in classes.values() for f in option_fields(c)}
        if key not in declared:
            hint = (did_you_mean(key, sorted(declared)) if declared
                    else f"cell {choice.name!r} declares no options")
            self.add(path, f"cell {choice.name!r} has no option {key!r}", hint)
            return
        _, options = declared[key]
        hint = option_hints(options).get(key)
        items = raw if isinstance(raw, list) else [raw]
        converted = []
        for index, item in enumerate(items):
            item_path = (*path, index) if isinstance(raw, list) else path
            expected = _type_mismatch(item, hint)
            if expected is not None:
                got = yaml_text(item) + (" (a string)" if isinstance(item, str) else "")
                self.add(item_path, f"expected {expected}, got {got}",
                         f"option {key!r} of cell {choice.name!r}")
                continue
            value = as_field_type(item, hint)
            try:  # the options class's own checks (its __post_init__)
                options(**{**option_defaults(options), key: value})
            except (TypeError, ValueError) as exc:
                self.add(item_path, f"cell {choice.name!r} rejects {key}={value!r}: {exc}")
                continue
            converted.append(value)
        if converted and len(converted) == len(items):
            choice.given[key] = converted
            choice.paths[key] = path

    def cell_option_keys(
        self, origin: KeyPath, mapping: dict[str, Any], cells: list[CellChoice]
    ) -> None:
        """An include's flat ``cell.<option>`` keys: set the option on each of its cells."""
        for key, raw in mapping.items():
            if not key.startswith("cell."):
                continue
            option = key[5:]
            for choice in cells:
                written = choice.paths.get(option)
                if written is not None and written[:len(origin)] == origin:
                    self.add((*origin, key), f"the option {option!r} of cell {choice.name!r} is "
                             "set twice in this include", "set it in one place")
                    continue
                self.add_cell_option(choice, (*origin, key), option, raw)

    def check_steps_epochs(self, training: dict[str, list[AxisValue]], path: KeyPath) -> None:
        for steps, epochs in itertools.product(training["steps"], training["epochs"]):
            if steps.value is not None and epochs.value is not None:
                self.add(
                    path,
                    "both steps and epochs are set; give exactly one",
                    "steps counts optimizer updates, epochs passes over the training set",
                )
            elif steps.value is None and epochs.value is None:
                self.add(
                    path,
                    "one of steps or epochs is required",
                    "e.g. training: {steps: 200}" if path == ("training",) else "e.g. {steps: 200}",
                )

    def task_choice(self, value: AxisValue) -> TaskChoice | None:
        """Check one task entry (name, parameter names, types, values) and expand its params."""
        named = _named_entry(value)
        if named is None:
            return None
        name, params, name_path = named
        conflict = self.registry.conflict_for("task", name)
        if conflict is not None:
            self.add(name_path, conflict)
            return None
        entry = self.registry.tasks.get(name)
        if entry is None:
            self.add(
                name_path,
                f"unknown task {name!r}",
                self.name_hint(name, sorted(self.registry.tasks)),
            )
            return None
        fields = {f.name: f for f in entry.task_class.parameters()}
        hints = self.type_hints(entry.task_class)
        given: list[tuple[str, list[Any]]] = []
        digests: dict[tuple[str, str], str] = {}
        ok = True
        for key, raw_value in params.items():
            path = (*value.path, "params", key)
            if key not in fields:
                hint = did_you_mean(key, fields) if fields else f"task {name!r} takes no parameters"
                self.add(path, f"task {name!r} has no parameter {key!r}", hint)
                ok = False
                continue
            items = raw_value if isinstance(raw_value, list) else [raw_value]
            converted = []
            for index, item in enumerate(items):
                item_path = (*path, index) if isinstance(raw_value, list) else path
                expected = _type_mismatch(item, hints.get(key))
                if expected is not None:
                    got = yaml_text(item) + (" (a string)" if isinstance(item, str) else "")
                    self.add(
                        item_path,
                        f"expected {expected}, got {got}",
                        f"parameter {key!r} of task {name!r}",
                    )
                    ok = False
                elif is_path_parameter(fields[key]) and looks_like_path(item):
                    item = self.data_file(item, item_path, key, name, digests)
                    ok = ok and item is not None
                converted.append(as_field_type(item, hints.get(key)))
            given.append((key, converted))
        if not ok:
            return None
        defaults = {
            key: as_field_type(option_default(f), hints.get(key)) for key, f in fields.items()
        }
        combos = []
        for combo in itertools.product(*(values for _, values in given)):
            chosen = dict(zip([key for key, _ in given], combo, strict=True))
            try:
                entry.task_class(**chosen)
            except Exception as exc:  # the task's own check, in its __post_init__
                shown = ", ".join(f"{k}={v!r}" for k, v in chosen.items())
                kind = "" if isinstance(exc, (ValueError, TypeError)) else f"{type(exc).__name__}: "
                self.add(
                    value.path,
                    f"task {name!r} rejects {shown or 'its defaults'}: {kind}{exc}",
                    line=value.line,
                )
                ok = False
                continue
            combos.append(tuple(sorted({**defaults, **chosen}.items())))
        return TaskChoice(entry, combos, defaults, digests) if ok else None

    def data_file(
        self, value: str, path: KeyPath, key: str, task: str, digests: dict[tuple[str, str], str]
    ) -> str | None:
        """A data-file parameter's value resolved against the suite file's folder, its content
        digest noted in ``digests``; ``None`` (and a problem at ``path``) when it cannot be
        read."""
        resolved = resolve(value, self.doc.path.parent)
        where = f"parameter {key!r} of task {task!r}; a relative path is taken from the suite " \
            "file's folder"
        if not resolved.is_file():
            self.add(path, f"data file {value!r} does not exist (looked for {str(resolved)!r})",
                     where)
            return None
        try:
            digests[(key, str(resolved))] = content_digest(resolved)
        except OSError as exc:
            self.add(path, f"data file {value!r} cannot be read: {exc.strerror or exc}", where)
            return None
        return str(resolved)

    def type_hints(self, cls: type) -> dict[str, Any]:
        if cls not in self._hints_cache:
            try:
                self._hints_cache[cls] = typing.get_type_hints(cls)
            except Exception:  # an annotation that cannot be resolved: skip type checks
                self._hints_cache[cls] = {}
        return self._hints_cache[cls]

    def metrics(self) -> tuple[str, ...]:
        raw = self.doc.data.get("metrics", MISSING)
        if raw is MISSING:
            # No metrics key means every registered metric, so a name two plugins claim is used.
            for name in sorted(self.registry.metrics):
                conflict = self.registry.conflict_for("metric", name)
                if conflict is not None:
                    self.add(
                        ("metrics",),
                        f"no metrics key, so every registered metric is used, and {conflict}",
                        "or name the metrics this suite wants: metrics: [test_loss, ...]",
                    )
            return tuple(sorted(self.registry.metrics))
        names = []
        for index, name in enumerate(_list(raw)):
            if not isinstance(name, str):
                continue
            conflict = self.registry.conflict_for("metric", name)
            if conflict is not None:
                self.add(("metrics", index), conflict)
            elif name not in self.registry.metrics:
                self.add(
                    ("metrics", index),
                    f"unknown metric {name!r}",
                    self.name_hint(name, sorted(self.registry.metrics)),
                )
            names.append(name)
        return tuple(dict.fromkeys(names))

    def excludes(self, run_sets: list[RunSet]) -> list[dict[str, list[Any]]]:
        """Each exclude entry as {flat key: accepted values}; names checked, so a typo in an
        exclude is reported rather than silently matching nothing."""
        params = sorted(
            {
                f.name
                for run_set in run_sets
                for choice in run_set.tasks
                for f in choice.entry.task_class.parameters()
            }
        )
        path_params = {
            f.name
            for run_set in run_sets
            for choice in run_set.tasks
            for f in choice.entry.task_class.parameters()
            if is_path_parameter(f)
        }
        options = {
            f.name
            for run_set in run_sets
            for choice in run_set.cells
            for options_class in self.option_classes(choice.name).values()
            for f in option_fields(options_class)
        }
        known = {
            "cell": self.registry.cell_names,
            "backend": self.registry.backend_names,
            "task": sorted(self.registry.tasks),
        }
        result = []
        for index, entry in enumerate(_list(self.doc.data.get("exclude"))):
            if not isinstance(entry, dict):
                continue
            criteria: dict[str, list[Any]] = {}
            for key, raw in entry.items():
                path: KeyPath = ("exclude", index, key)
                values = raw if isinstance(raw, list) else [raw]
                if key in known:
                    for position, item in enumerate(values):
                        if isinstance(item, str) and item not in known[key]:
                            item_path = (*path, position) if isinstance(raw, list) else path
                            self.add(
                                item_path,
                                f"unknown {key} {item!r}",
                                self.name_hint(item, known[key]),
                            )
                elif key.startswith("task.") and not self._task_failed and key[5:] not in params:
                    self.add(
                        path,
                        f"no task of this suite has a parameter {key[5:]!r}",
                        did_you_mean(key, [f"task.{p}" for p in params]),
                    )
                elif key.startswith("cell.") and key[5:] not in options:
                    self.add(
                        path,
                        f"no cell of this suite has an option {key[5:]!r}",
                        did_you_mean(key, [f"cell.{o}" for o in sorted(options)])
                        if options else "the suite's cells declare no options",
                    )
                if key[5:] in path_params:  # a data file: matched as resolved in the runs
                    base = self.doc.path.parent
                    values = [str(resolve(v, base)) if looks_like_path(v) else v for v in values]
                criteria[key] = values
            result.append(criteria)
        return result

    # -- checks on the expanded runs ------------------------------------------------------------

    def missing_pair(self, cell: AxisValue, backend: AxisValue) -> None:
        where = backend if backend.explicit else cell
        available = ", ".join(self.registry.backends_of(cell.value)) or "none"
        self.add(
            where.path,
            f"cell {cell.value!r} has no backend {backend.value!r}; available: {available}",
            f"exclude the pair: exclude: [{{cell: {cell.value}, backend: {backend.value}}}]",
            line=where.line,
        )

    def check_supported(self, run: ExpandedRun, supports: CellSupport) -> None:
        """Reject a run that asks its cell for more than the cell declared at registration
        (``supports=``): a dtype, a number of layers or a bias setting it cannot run.

        Each problem names the cell, backend and the value asked for, so the runs of a list
        axis that a cell does support are not blamed; it is placed at that value when the suite
        wrote it, else (a default) at the cell.
        """
        spec = run.spec
        asked: list[tuple[str, Any, str, str]] = []  # (axis, value, what is supported, fix)
        if spec.dtype not in supports.dtypes:
            choices = " or ".join(supports.dtypes)
            asked.append(("dtype", spec.dtype, f"supported: {', '.join(supports.dtypes)}",
                          f"use dtype {choices} for it"))
        if supports.max_layers is not None and spec.num_layers > supports.max_layers:
            asked.append(("num_layers", spec.num_layers, f"at most {supports.max_layers}",
                          f"use num_layers up to {supports.max_layers} for it"))
        if spec.bias not in supports.bias:
            choices = " or ".join(label_value(value) for value in supports.bias)
            asked.append(("bias", spec.bias, f"supported: {choices}", f"use bias {choices} for it"))
        for axis, value, supported, fix in asked:
            source = run.values[axis]
            where = source if source.explicit else run.values["cell"]
            default = "" if source.explicit else "the suite's default; "
            self.add(
                where.path,
                f"cell {spec.cell!r} on backend {spec.backend!r} does not support {axis} "
                f"{label_value(value)} ({default}{supported})",
                f"{fix}, or exclude the combination: exclude: [{{cell: {spec.cell}, "
                f"backend: {spec.backend}, {axis}: {label_value(value)}}}]",
                line=where.line,
            )

    def check_cell_options(self, run: ExpandedRun, entry: CellEntry) -> None:
        """Every option the run's cell entry sets must be declared by this backend too."""
        choice = run.cell_choice
        if choice is None:
            return
        declared = {f.name for f in option_fields(entry.options)}
        for key, path in choice.paths.items():
            if key not in declared:
                self.add(
                    path,
                    f"cell {entry.name!r} on backend {entry.backend!r} has no option {key!r} "
                    f"(its other backends declare it)",
                    f"exclude the pair: exclude: [{{cell: {entry.name}, backend: "
                    f"{entry.backend}}}], or leave the option out",
                )

    def check_forget_bias(self, run: ExpandedRun, supports: CellSupport) -> None:
        """A non-zero ``training.forget_bias`` needs a forget gate and biases."""
        spec = run.spec
        forget_bias = spec.training.forget_bias
        if forget_bias == 0:
            return
        fb = f"{forget_bias:g}"
        if supports.forget_gate is None:
            reason = "has no forget gate (its CellSupport declares forget_gate=None)"
            fix = (f"set forget_bias only for cells with a forget gate (e.g. in an include: "
                   f"{{cell: lstm, forget_bias: {fb}}}), or exclude: [{{cell: {spec.cell}, "
                   f"forget_bias: {fb}}}]")
        elif not spec.bias:
            reason = "runs without biases here (bias: false)"
            fix = f"exclude: [{{cell: {spec.cell}, bias: false, forget_bias: {fb}}}]"
        else:
            return
        source = run.values.get("forget_bias")
        self.add(
            source.path if source is not None else ("training", "forget_bias"),
            f"forget_bias {fb} is added to the forget-gate biases, and cell "
            f"{spec.cell!r} on backend {spec.backend!r} {reason}",
            fix,
            line=source.line if source is not None else None,
        )

    def check_training(self, run: ExpandedRun) -> None:
        """Training settings of one run that cannot work together, or that would do nothing.

        A decay setting without ``schedule: step`` (or momentum with adam) is an error, not a
        warning: it changes nothing in the run yet enters its id and label, so two runs that
        compute the same numbers would look like two settings compared."""
        training, values = run.spec.training, run.values

        def add(key: str, message: str, hint: str) -> None:
            self.add(values[key].path, message, hint, line=values[key].line)

        if training.optimizer == "adam" and training.momentum:
            add("momentum", f"momentum {label_value(training.momentum)} does nothing with "
                "optimizer 'adam' (its moment estimates are its momentum), yet it would enter "
                "the run's id and label",
                "remove momentum for adam, or give it to sgd or rmsprop runs in an include: "
                f"include: [{{optimizer: sgd, momentum: {label_value(training.momentum)}}}]")
        if training.schedule == "step" and training.decay_every is None:
            add("schedule", "schedule 'step' needs decay_every (optimizer steps between two "
                "decays of the learning rate by decay_rate)",
                "e.g. training: {schedule: step, decay_every: 1000, decay_rate: 0.1}")
        if training.schedule != "step":
            for key in ("decay_every", "decay_rate"):
                value = getattr(training, key)
                if value != TRAINING_DEFAULTS[key]:
                    add(key, f"{key} {label_value(value)} does nothing with schedule "
                        f"{training.schedule!r}: only schedule 'step' decays",
                        f"set schedule: step, or remove {key}; to compare schedules, give the "
                        f"step runs their decay in an include: include: [{{schedule: step, "
                        f"{key}: {label_value(value)}}}]")
        total = self.total_steps(run.spec)
        if training.warmup_steps and total is not None and training.warmup_steps >= total:
            add("warmup_steps", f"warmup_steps {training.warmup_steps} is not below the run's "
                f"{total} optimizer steps: the learning rate would never reach lr",
                f"use warmup_steps below {total} (e.g. {total // 10}), or train longer")
        task = self.registry.tasks.get(run.spec.task)
        if training.data == "online" and task is not None and \
                not getattr(task.task_class, "online", False):
            add("data", f"task {run.spec.task!r} cannot draw fresh training sequences "
                "(it does not implement sample(); online is False), so data 'online' cannot "
                "train it",
                f"use data: fixed for it, or exclude the pair: exclude: [{{task: "
                f"{run.spec.task}, data: online}}]")

    @staticmethod
    def total_steps(spec: RunSpec) -> int | None:
        """The run's optimizer steps when known before any data exist: ``steps``, or
        ``epochs`` times the batches in ``train_size`` for a task that has that parameter."""
        training = spec.training
        if training.steps is not None:
            return training.steps
        train_size = dict(spec.task_params).get("train_size")
        if training.epochs is None or not isinstance(train_size, int):
            return None
        return training.epochs * max(1, math.ceil(train_size / training.batch_size))

    def unavailable(self, entry: CellEntry) -> str | None:
        key = (entry.name, entry.backend)
        if key not in self._availability:
            self._availability[key] = entry.unavailable_reason()
        return self._availability[key]


# --- helpers --------------------------------------------------------------------------------------


def _named_entry(value: AxisValue) -> tuple[str, dict[str, Any], KeyPath] | None:
    """A cell or task entry as ``(name, params, path of the name)``: a bare name, or a mapping
    ``{name: ..., params: {...}}``; None for anything else (the schema has said why)."""
    raw = value.value
    if isinstance(raw, str):
        return raw, {}, value.path
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        params = raw.get("params")
        return raw["name"], params if isinstance(params, dict) else {}, (*value.path, "name")
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _type_mismatch(value: Any, annotation: Any) -> str | None:
    """What ``annotation`` expects when ``value`` does not fit it, else ``None``.

    Understands the annotations task parameters use: int, float (an int is accepted), bool,
    str, Literal and unions with None. bool is not an int here, though Python says it is. Any
    other annotation is not checked: the task's own ``__post_init__`` still is.
    """
    args = union_args(annotation)
    if args is not None:
        parts = [_type_mismatch(value, arg) for arg in args]
        if any(part is None for part in parts):
            return None
        return " or ".join(part for part in parts if part)
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        if any(same_value(value, choice) for choice in choices):
            return None
        return "one of " + ", ".join(yaml_text(choice) for choice in choices)
    is_bool = isinstance(value, bool)
    checks = {
        int: ("an integer", isinstance(value, int) and not is_bool),
        float: ("a number", isinstance(value, (int, float)) and not is_bool),
        bool: ("true or false", is_bool),
        str: ("a string", isinstance(value, str)),
        type(None): ("null", value is None),
    }
    if annotation in checks:
        expected, ok = checks[annotation]
        return None if ok else expected
    return None

