"""The plugin manager: loads plugins, collects what they register into a Registry, and records
where every plugin came from (its provenance, shown by ``rnnbench plugins``).

Built-in plugins are found through the ``rnnbench`` entry-point group, exactly like a third-party
package's. Local plugins come from ``-p MODULE_OR_FILE`` or a suite's ``plugins:`` list; ``-p
no:NAME`` blocks a plugin by its entry-point (or local) name. The manager built here is the only
global-ish state, and even it is passed around explicitly.

Loading is safe: one plugin's failure (an import error; an exception or a contract violation in a
registration hook; a newer contract than this rnnbench; a ``rnnbench_*`` function that is no
hook) never takes another plugin down, and its message names the plugin's file and line. A name
that two plugins register is never resolved silently, and never costs either plugin its other
contributions: both claims are kept, and *using* the name raises :class:`PluginConflictError`,
which names both plugins, their distributions and the ``-p no:NAME`` fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pluggy

from rnnbench import hookspecs
from rnnbench.cell import Cell, CellConfig, CellSupport
from rnnbench.cell_options import describe_options, options_class_problem
from rnnbench.errors import PluginError, did_you_mean

# The registry's names are re-exported: the plugin manager is where callers have found them.
from rnnbench.registry import PLUGIN_STATUSES as PLUGIN_STATUSES
from rnnbench.registry import CellEntry as CellEntry
from rnnbench.registry import ClaimTable as ClaimTable
from rnnbench.registry import MetricEntry as MetricEntry
from rnnbench.registry import PluginConflictError as PluginConflictError
from rnnbench.registry import PluginInfo as PluginInfo
from rnnbench.registry import PluginLoadError as PluginLoadError
from rnnbench.registry import Registry as Registry
from rnnbench.registry import ReporterEntry as ReporterEntry
from rnnbench.registry import TaskEntry as TaskEntry
from rnnbench.registry import UnknownNameError as UnknownNameError
from rnnbench.task import Task, Topology

ENTRY_POINT_GROUP = "rnnbench"
READOUTS = ("last", "all")
MODELS = ("sequence", "encoder-decoder")
BETTER = ("lower", "higher", None)
#: Set (to anything but ``0``) to have the command line print a plugin failure's full traceback,
#: as ``--traceback`` does.
TRACEBACK_ENV = "RNNBENCH_TRACEBACK"
#: Every hook of the contract (the functions of :mod:`rnnbench.hookspecs`).
HOOK_NAMES = frozenset(
    name for name, function in vars(hookspecs).items() if hasattr(function, "rnnbench_spec")
)
#: Hooks renamed since an earlier contract: old name -> what to implement instead.
RENAMED_HOOKS = {"rnnbench_epoch_end": "rnnbench_evaluation(run, step, logs)"}
#: rnnbench's own package folder: its files are never "the plugin's own" in a traceback.
_CORE_DIR = Path(__file__).resolve().parent


# --- The host --------------------------------------------------------------------------------


class PluginHost:
    """A pluggy manager plus the Registry built from its plugins' registration hooks."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.registry = Registry()
        #: The names given to ``-p no:``, in order.
        self.blocked: list[str] = []
        #: Harmless oddities worth a quiet mention (a plugin given twice, ...).
        self.notes: list[str] = []
        #: Every plugin name met (entry points, local plugins), loaded or not: what ``-p no:``
        #: can match.
        self._seen: set[str] = set()
        #: Whether installed (entry-point) plugins were loaded; with :attr:`local_references`
        #: and :attr:`blocked`, what :meth:`recipe` needs to rebuild this host elsewhere.
        self.entry_points = False
        #: The local plugins asked for, in order: module names, and files as absolute paths.
        self.local_references: list[str] = []

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def plugin_names(self) -> list[str]:
        return sorted(
            name for name, plugin in self.pm.list_name_plugin() if plugin is not None and name
        )

    def block(self, name: str) -> None:
        """Disable plugin ``name`` (``-p no:NAME``): it is not loaded from here on."""
        self.blocked.append(name)
        self.pm.set_blocked(name)

    def unmatched_blocks(self) -> list[str]:
        """A warning for each ``-p no:NAME`` that matched no plugin met so far (a typo leaves
        the plugin enabled), with the closest plugin name."""
        known = sorted(self._seen)
        return [
            f"-p no:{name} matches no plugin, so it disables nothing "
            f"({did_you_mean(name, known)})"
            for name in dict.fromkeys(self.blocked) if name not in self._seen
        ]

    def build_cell(
        self, name: str, backend: str, config: CellConfig,
        options: Mapping[str, Any] | None = None,
    ) -> Cell:
        """A cell registered as ``name`` on ``backend``, built for ``config``: the way to get any
        cell, built-in or a plugin's, e.g. to check it against a PyTorch module. ``options``
        (e.g. ``{"nonlinearity": "relu"}``) are the cell's options, over ``config.options``;
        those not given take their declared defaults (an undeclared one raises ``ValueError``).

        Raises :class:`PluginError` (an unknown name or backend, with the closest one; a name two
        plugins register; a config beyond what the cell declared it supports; a backend that
        cannot run here, with the reason; a factory that breaks the cell protocol).
        """
        entry = self.registry.cell(name, backend)
        reason = entry.unavailable_reason()
        if reason is not None:
            raise PluginError(
                entry.plugin, f"cell {name!r} on backend {backend!r} cannot run here: {reason}"
            )
        if options:
            config = dataclasses.replace(config, options={**dict(config.options), **options})
        return entry.build(config)

    # -- loading --------------------------------------------------------------------------------

    def load_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        """Load one entry-point plugin. A failure is recorded (status ``broken``), not raised:
        one broken installed package must not stop the others."""
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            ep.name, "entry point",
            distribution=dist.name if dist is not None else None,
            version=dist.version if dist is not None else None,
            module=ep.value,
        )
        first = self.registry.plugins.get(ep.name)
        if first is not None and first.origin == "entry point":
            # Two installed entry points of one name: -p no:NAME cannot tell them apart, and
            # only one can be loaded. Never silently: the second is broken, with the reason.
            reason = (
                f"has the entry-point name of plugin {first.label}, which is loaded already; "
                "uninstall one of the distributions or rename one entry point"
            )
            info.status, info.reason = "broken", reason
            key = f"{ep.name} [{info.source}]"
            self.registry.plugins[key] = info
            self.registry.broken[key] = reason
            return
        self._seen.add(ep.name)
        if self.pm.is_blocked(ep.name):
            self._disable(info)
            return
        try:
            module = ep.load()
        except (Exception, SystemExit) as exc:  # sys.exit() in a plugin is its failure
            module_name = ep.value.partition(":")[0].strip()
            self._broken(info, _load_error(
                ep.name, f"failed to import {ep.value!r}", exc, _own_files(module_name, None)
            ))
            return
        info.file = _module_file(module)
        try:
            self.add_module(module, ep.name, info)
        except PluginError:
            pass  # recorded as broken by add_module

    def load_local(self, reference: str, base_dir: Path | None = None) -> str:
        """Load a plugin given as a module name or a ``.py`` file path; returns its name.

        A module or file that is loaded already (e.g. through its entry point) is not loaded
        again. A failure raises :class:`PluginError` (the user named this plugin on purpose)
        after recording it.
        """
        name = Path(reference).stem if _is_path(reference) else reference
        self.local_references.append(
            str(_resolve(reference, base_dir)) if _is_path(reference) else reference)
        if self.pm.is_blocked(name):  # disabled: not even imported
            self._seen.add(name)
            self._disable(PluginInfo(name, "local", reference=reference,
                                     module=None if _is_path(reference) else reference))
            return name
        if _is_path(reference):
            path = _resolve(reference, base_dir)
            loaded = self._plugin_with_file(path)
            if loaded is not None:
                self.notes.append(f"{reference}: already loaded as plugin {loaded!r}")
                return loaded
        elif self.pm.has_plugin(reference) and reference in self.registry.plugins:
            # An installed plugin's name (as -p no:NAME takes it): it is loaded already.
            self.notes.append(f"{reference}: an installed plugin, loaded already")
            return reference
        try:
            module, name = import_plugin(reference, base_dir)
        except PluginError as exc:
            self._seen.add(exc.plugin)
            self._broken(PluginInfo(exc.plugin, "local", reference=reference,
                                    module=None if _is_path(reference) else reference), exc)
            raise
        info = PluginInfo(name, "local", reference=reference, file=_module_file(module))
        if not _is_path(reference):
            info.module = reference
            info.distribution, info.version = _distribution_of(reference)
        return self.add_module(module, name, info)

    def add_module(self, module: Any, name: str, info: PluginInfo | None = None) -> str:
        """Register one more plugin module and collect its registrations; returns the name it
        is loaded under. A failure is recorded (status ``broken``) and raised as
        :class:`PluginError`; nothing the plugin registered stays behind."""
        if info is None:
            info = PluginInfo(name, "local", module=getattr(module, "__name__", None),
                              file=_module_file(module))
        self._seen.add(name)
        if self.pm.is_blocked(name):
            self._disable(info)
            return name
        existing = self.pm.get_name(module)
        if existing is not None:  # the same module object, e.g. -p of an entry point's module
            if existing != name:
                self.notes.append(f"{name}: already loaded as plugin {existing!r}")
            return existing
        if self.pm.has_plugin(name):
            other = self.registry.plugin_info(name)
            raise PluginError(
                name, f"from {info.reference or info.file or info.module} has the name of plugin "
                f"{other.label}, which is loaded already; rename one of them"
            )
        own = _own_files(info.module, info.file)
        try:
            _check_contract_version(module, name)
            _check_hook_names(module, name)
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as exc:
            error = PluginError(name, _contract_violation(module, exc))
            self._broken(info, error)
            raise error from exc
        except PluginError as exc:
            self._broken(info, exc)
            raise
        info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(module) or [])
        self.registry.plugins[name] = info
        try:
            self._collect(name, info, own)
        except PluginError as exc:
            self._forget(name)
            self._broken(info, exc)
            raise
        return name

    def recipe(self) -> Any:
        """What a worker process needs to build this host again: an
        :class:`rnnbench.execution.HostRecipe` (``-j N`` and Dask runs)."""
        from rnnbench.execution import HostRecipe

        return HostRecipe.of(self)

    def failure_location(self, plugin_name: str, exc: BaseException) -> str | None:
        """``file:line`` where ``exc`` happened, preferring plugin ``plugin_name``'s own files
        (as load failures are located)."""
        info = self.registry.plugins.get(plugin_name)
        own = _own_files(info.module, info.file) if info is not None else []
        return _location(exc, own)

    def _disable(self, info: PluginInfo) -> None:
        info.status, info.reason = "disabled", f"by -p no:{info.name}"
        if info.name not in self.registry.plugins or info.origin == "entry point":
            self.registry.plugins[info.name] = info

    def _broken(self, info: PluginInfo, error: PluginError) -> None:
        info.status, info.reason = "broken", error.reason
        info.details = getattr(error, "details", None)
        info.hooks, info.registered = [], {}
        self.registry.plugins[info.name] = info
        self.registry.broken[info.name] = error.reason

    def _forget(self, name: str) -> None:
        """Undo a plugin that failed half-way: nothing it registered stays behind."""
        self.pm.unregister(name=name)
        for table in self.registry.tables.values():
            table.forget(name)

    def _plugin_with_file(self, path: Path) -> str | None:
        for name, plugin in self.pm.list_name_plugin():
            file = _module_file(plugin)
            if plugin is not None and file is not None and Path(file).resolve() == path:
                return name
        return None

    # -- registration -----------------------------------------------------------------------

    def _collect(self, plugin_name: str, info: PluginInfo, own: list[Path]) -> None:
        plugin = self.pm.get_plugin(plugin_name)
        registrars = {
            "rnnbench_register_cells": self._cell_registrar,
            "rnnbench_register_tasks": self._task_registrar,
            "rnnbench_register_metrics": self._metric_registrar,
            "rnnbench_register_reporters": self._reporter_registrar,
        }
        for hook_name, make_registrar in registrars.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                register = make_registrar(plugin_name)
                try:
                    impl.function(*[{"register": register}[arg] for arg in impl.argnames])
                except PluginError as exc:
                    where = _location(exc, own)
                    raise PluginLoadError(
                        plugin_name, exc.reason + (f" (at {where})" if where else ""),
                        _traceback_text(exc),
                    ) from exc
                except (Exception, SystemExit) as exc:
                    raise _load_error(plugin_name, f"raised in {hook_name}", exc, own) from exc

    def _claim(self, table: ClaimTable[Any, Any], key: Any, entry: Any) -> None:
        """Add ``entry``'s claim on ``key``. Another plugin's claim on it too puts the key in
        conflict (an error where it is used); the same plugin registering it twice is a bug in
        that plugin."""
        if any(other.plugin == entry.plugin for other in table.claims(key)):
            raise PluginError(entry.plugin, f"registers {table.what(key)} twice")
        table.claim(key, entry)
        info = self.registry.plugins.get(entry.plugin)
        if info is not None:
            info.registered.setdefault(table.kind, []).append(table.key_text(key))

    def _cell_registrar(self, plugin: str) -> Callable[..., None]:
        def register(
            name: str,
            backend: str,
            factory: Callable[..., Any],
            description: str = "",
            available: Callable[[], str | None] | None = None,
            supports: CellSupport | None = None,
            options: type | None = None,
        ) -> None:
            _require(plugin, "cell name", name, is_name)
            _require(plugin, f"backend of cell {name!r}", backend, is_name)
            _require(plugin, f"factory of cell {name!r}", factory, callable)
            if available is not None:
                _require(plugin, f"'available' of cell {name!r}", available, callable)
            if supports is None:
                supports = CellSupport()
            elif not isinstance(supports, CellSupport):
                raise PluginError(
                    plugin, f"passed supports={supports!r} for cell {name!r}; use "
                    "rnnbench.CellSupport(dtypes=..., max_layers=..., bias=..., forget_gate=...)"
                )
            problem = options_class_problem(options)
            if problem is not None:
                raise PluginError(plugin, f"cell {name!r} on {backend!r}: {problem}")
            entry = CellEntry(name, backend, factory, plugin, description, available, supports,
                              options)
            self._claim(self.registry.cells, (name, backend), entry)

        return register

    def _task_registrar(self, plugin: str) -> Callable[..., None]:
        def register(task_class: type[Task]) -> None:
            if not (isinstance(task_class, type) and issubclass(task_class, Task)):
                raise PluginError(
                    plugin, f"registered {task_class!r} as a task; it must subclass rnnbench.Task"
                )
            # Its own @dataclass, not one inherited from rnnbench.Task: fields are parameters.
            if "__dataclass_fields__" not in vars(task_class):
                raise PluginError(
                    plugin, f"task class {task_class.__name__} is not a dataclass; decorate it "
                    "with @dataclass (its fields are the task's parameters)"
                )
            name = getattr(task_class, "name", None)
            _require(plugin, f"name of task class {task_class.__name__}", name, is_name)
            missing = [method for method in ("make_data", "loss", "baseline_loss")
                       if getattr(task_class, method) is getattr(Task, method)]
            if missing:
                raise PluginError(
                    plugin, f"task {name!r} does not implement {', '.join(missing)} (see "
                    "rnnbench.Task)"
                )
            if not isinstance(getattr(task_class, "topology", None), Topology):
                raise PluginError(
                    plugin, f"task {name!r} has no topology (set topology = rnnbench.Topology.X)"
                )
            if task_class.model not in MODELS:
                raise PluginError(
                    plugin, f"task {name!r} has model {task_class.model!r}; use one of {MODELS}"
                )
            if task_class.free_running and task_class.feedback is Task.feedback:
                raise PluginError(
                    plugin, f"task {name!r} is free_running but does not implement feedback()"
                )
            if task_class.readout not in READOUTS:
                raise PluginError(
                    plugin, f"task {name!r} has readout {task_class.readout!r}; use one of "
                    f"{READOUTS}"
                )
            for f in task_class.parameters():
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise PluginError(
                        plugin, f"parameter {f.name!r} of task {name!r} has no default"
                    )
            self._claim(self.registry.tasks, name, TaskEntry(name, task_class, plugin))

        return register

    def _metric_registrar(self, plugin: str) -> Callable[..., None]:
        def register(
            name: str,
            function: Callable[[Any], Any],
            description: str = "",
            better: str | None = "lower",
            timing: bool = False,
        ) -> None:
            _require(plugin, "metric name", name, is_name)
            _require(plugin, f"function of metric {name!r}", function, callable)
            if better not in BETTER:
                raise PluginError(
                    plugin, f"metric {name!r}: better={better!r}; use 'lower', 'higher' or None"
                )
            entry = MetricEntry(name, function, plugin, description, better, bool(timing))
            self._claim(self.registry.metrics, name, entry)

        return register

    def _reporter_registrar(self, plugin: str) -> Callable[..., None]:
        def register(name: str, function: Callable[..., Any], description: str = "") -> None:
            _require(plugin, "reporter name", name, is_name)
            _require(plugin, f"function of reporter {name!r}", function, callable)
            self._claim(self.registry.reporters, name, ReporterEntry(name, function, plugin,
                                                                     description))

        return register

    # -- provenance -----------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Every plugin met, by name, with its final status: a loaded plugin one of whose names
        another plugin registers too is ``in conflict`` (the reason says which and with whom)."""
        clashes: dict[str, list[str]] = {}
        for kind, key, names in self.registry.conflicts():
            what = f"{kind} {self.registry.tables[kind].key_text(key)}"
            for name in names:
                others = ", ".join(repr(other) for other in names if other != name)
                clashes.setdefault(name, []).append(f"{what} (also registered by {others})")
        result = []
        for name in sorted(self.registry.plugins):
            info = self.registry.plugins[name]
            if info.status == "loaded" and name in clashes:
                info = dataclasses.replace(info, status="in conflict",
                                           reason="; ".join(clashes[name]))
            result.append(info)
        return result

    def plugin_report(self) -> list[dict[str, Any]]:
        """:meth:`plugins` as JSON-ready dicts (``rnnbench plugins --json``); a plugin whose
        cells declare options has ``cell_options``: ``{"NAME/BACKEND": [{"name", "type",
        "default", "help"}, ...]}``."""
        report = []
        for info in self.plugins():
            row = info.to_dict()
            options = self.cell_options(info.name)
            if options:
                row["cell_options"] = options
            report.append(row)
        return report

    def cell_options(self, plugin: str) -> dict[str, list[dict[str, Any]]]:
        """The options of each cell ``plugin`` registered (those that declare any), by
        ``NAME/BACKEND``."""
        found = {}
        for (name, backend), entry in self.registry.cells.claimed():
            if entry.plugin == plugin and entry.options is not None:
                found[f"{name}/{backend}"] = describe_options(entry.options)
        return found

    def environment_plugins(self) -> list[dict[str, Any]]:
        """The plugins for ``environment.json``: name, distribution, version, status (and a local
        plugin's file or module as given), without machine-specific paths."""
        return [
            {**info.provider(), "status": info.status,
             **({"module": info.module} if info.origin == "entry point" else {})}
            for info in self.plugins()
        ]


# --- Checks on a plugin module ---------------------------------------------------------------


def _check_contract_version(module: Any, name: str) -> None:
    """A plugin declaring ``RNNBENCH_CONTRACT = N`` must not need a newer contract than this."""
    import rnnbench  # here, not at the top: rnnbench imports this module

    declared = getattr(module, "RNNBENCH_CONTRACT", None)
    if declared is None:
        return
    provided = rnnbench.CONTRACT_VERSION
    here = f"this is rnnbench {rnnbench.__version__}, which provides contract {provided}"
    where = _assignment_line(module, "RNNBENCH_CONTRACT")
    at = f" (at {where})" if where else ""
    if not isinstance(declared, int) or isinstance(declared, bool) or declared < 1:
        raise PluginError(
            name, f"declares RNNBENCH_CONTRACT = {declared!r}{at}, which is not a contract "
            f"version (a whole number, 1 or more); {here}: set RNNBENCH_CONTRACT = {provided}",
        )
    if declared > provided:
        raise PluginError(
            name, f"needs plugin contract {declared} (RNNBENCH_CONTRACT{at}), but {here}; "
            f"upgrade rnnbench (pip install --upgrade rnnbench), or use a release of the plugin "
            f"written for contract {provided}",
        )


def _check_hook_names(module: Any, name: str) -> None:
    """Every ``rnnbench_*`` function must be a hook of the contract, decorated as one: any other
    would silently never be called (a typo, a renamed hook, a forgotten ``@hookimpl``)."""
    for attribute in sorted(dir(module)):
        if not attribute.startswith("rnnbench_"):
            continue
        function = getattr(module, attribute, None)
        if not callable(function):
            continue
        where = _function_line(function)
        at = f" (at {where})" if where else ""
        if attribute in HOOK_NAMES:
            if not hasattr(function, "rnnbench_impl"):
                raise PluginError(
                    name, f"defines {attribute}{at} without @rnnbench.hookimpl, so it would "
                    "never be called; decorate it with @rnnbench.hookimpl",
                )
            continue
        if attribute in RENAMED_HOOKS:
            raise PluginError(
                name, f"implements {attribute}{at}, a hook renamed in plugin contract 1, so it "
                f"would never be called; implement {RENAMED_HOOKS[attribute]} instead",
            )
        raise PluginError(
            name, f"implements {attribute}{at}, which is not an rnnbench hook, so it would never "
            f"be called; {did_you_mean(attribute, HOOK_NAMES)} (the hooks: rnnbench.hookspecs)",
        )


def is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and value.strip() == value


def _require(plugin: str, what: str, value: Any, check: Callable[[Any], bool]) -> None:
    if not check(value):
        raise PluginError(plugin, f"passed an invalid {what}: {value!r}")


# --- Importing, and saying where a failure is ----------------------------------------------


def _is_path(reference: str) -> bool:
    return reference.endswith(".py") or "/" in reference or "\\" in reference


def _resolve(reference: str, base_dir: Path | None) -> Path:
    path = Path(reference)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path.resolve()


def import_plugin(reference: str, base_dir: Path | None = None) -> tuple[Any, str]:
    """Import a plugin from a module name (``pkg.mod``) or a file path (``dir/mod.py``).

    A file is imported under its stem as module name; a relative path is taken relative to
    ``base_dir`` (the suite file's folder) when given, else to the working directory. A failure
    is a :class:`PluginLoadError` naming the plugin's file and line.
    """
    if _is_path(reference):
        path = Path(reference)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        name = path.stem
        if not path.is_file():
            raise PluginError(name, f"plugin file {str(path)!r} does not exist")
        # One module per file: the same file is the same module (loading it again is
        # harmless), two files of one name are two modules (and then two plugins of one name).
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        module_name = f"rnnbench_local_plugins.{name}_{digest}"
        if module_name in sys.modules:
            return sys.modules[module_name], name
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PluginError(name, f"cannot import plugin file {str(path)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # sys.exit() at import is the plugin's failure
            del sys.modules[module_name]
            raise _load_error(
                name, f"failed to import {str(path)!r}", exc, [path.resolve()]
            ) from exc
        return module, name
    try:
        return importlib.import_module(reference), reference
    except ModuleNotFoundError as exc:
        # `-p mingru_cells` (an entry point's name, as `-p no:` takes) is a natural mistake.
        entry_point = next((ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
                            if ep.name == reference and exc.name == reference), None)
        if entry_point is None:
            raise _load_error(reference, f"failed to import module {reference!r}", exc,
                              _own_files(reference, None)) from exc
        raise PluginError(
            reference, f"is the name of an installed plugin (module {entry_point.value}), which "
            "is loaded already; -p takes a module or a .py file, -p no:NAME disables a plugin"
        ) from exc
    except (Exception, SystemExit) as exc:
        raise _load_error(
            reference, f"failed to import module {reference!r}", exc, _own_files(reference, None)
        ) from exc


def _load_error(plugin: str, what: str, exc: BaseException, own: list[Path]) -> PluginLoadError:
    """``what: ExcType: message (at file:line)``, the location being the deepest traceback frame
    in the plugin's own files (else the last one); the whole traceback goes in ``details``."""
    where = _location(exc, own)
    reason = f"{what}: {type(exc).__name__}: {exc}" + (f" (at {where})" if where else "")
    return PluginLoadError(plugin, reason, _traceback_text(exc))


def _traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _location(exc: BaseException, own: Sequence[Path]) -> str | None:
    """``file:line`` of where ``exc`` happened, preferring the plugin's own files."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{_shown_path(exc.filename)}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    mine = [frame for frame in frames if _inside(frame.filename, own)]
    frame = (mine or frames)[-1]
    return f"{_shown_path(frame.filename)}:{frame.lineno}"


def _inside(filename: str, roots: Sequence[Path]) -> bool:
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return False
    return any(path == root or path.is_relative_to(root) for root in roots)


def _own_files(module_name: str | None, file: str | Path | None) -> list[Path]:
    """The files a plugin counts as its own, for locating a failure: its module file, and the
    folders of its package and top-level package (never rnnbench's core folder)."""
    roots: list[Path] = []
    if file is not None:
        roots.append(Path(file).resolve())
    if module_name:
        module_name = module_name.partition(":")[0].strip()
        parts = module_name.split(".")
        for candidate in dict.fromkeys([module_name, ".".join(parts[:-1]), parts[0]]):
            if not candidate:
                continue
            try:
                spec = importlib.util.find_spec(candidate)
            except Exception:  # a parent package that fails to import: nothing to learn
                continue
            if spec is None:
                continue
            if spec.submodule_search_locations:
                roots.extend(Path(p).resolve() for p in spec.submodule_search_locations)
            elif spec.origin and spec.origin not in ("built-in", "frozen"):
                roots.append(Path(spec.origin).resolve())
    return [root for root in dict.fromkeys(roots) if root != _CORE_DIR]


def _shown_path(filename: str) -> str:
    """A path relative to the working directory when it is below it, else as it is."""
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return filename


def _module_file(module: Any) -> str | None:
    file = getattr(module, "__file__", None)
    return str(file) if file else None


def _contract_violation(module: Any, exc: pluggy.PluginValidationError) -> str:
    """pluggy's refusal as one line: the hook, the arguments it does not have, the hook's own
    arguments, and where the function is (pluggy's own text says none of this plainly)."""
    for hook_name in HOOK_NAMES:
        function = getattr(module, hook_name, None)
        if function is None or hook_name not in str(exc):
            continue
        spec = inspect.signature(getattr(hookspecs, hook_name)).parameters
        asked = inspect.signature(function).parameters
        unknown = [arg for arg in asked if arg not in spec]
        where = _function_line(function)
        at = f" (at {where})" if where else ""
        if unknown:
            return (
                f"{hook_name}{at} asks for {', '.join(map(repr, unknown))}, which the hook does "
                f"not pass; it passes {', '.join(spec)} ({did_you_mean(unknown[0], list(spec))})"
            )
        return f"{hook_name}{at} does not follow the hook contract: {exc}"
    return f"does not follow the hook contract: {exc}"


def _function_line(function: Any) -> str | None:
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    return f"{_shown_path(code.co_filename)}:{code.co_firstlineno}"


def _assignment_line(module: Any, variable: str) -> str | None:
    """``file:line`` of ``VARIABLE = ...`` at the top level of a module's source."""
    file = _module_file(module)
    if file is None:
        return None
    pattern = re.compile(rf"^{variable}\s*[:=]")
    try:
        for number, line in enumerate(Path(file).read_text(encoding="utf-8").splitlines(), 1):
            if pattern.match(line):
                return f"{_shown_path(file)}:{number}"
    except (OSError, UnicodeDecodeError):
        pass
    return None


def _distribution_of(module_name: str) -> tuple[str | None, str | None]:
    """The installed distribution (and its version) that provides a module, if any."""
    top = module_name.split(".")[0]
    if top == "rnnbench":
        import rnnbench

        return "rnnbench", rnnbench.__version__
    try:
        names = importlib.metadata.packages_distributions().get(top) or []
        if names:
            return names[0], importlib.metadata.version(names[0])
    except Exception:  # broken metadata of some other package must not break loading
        pass
    return None, None


def load_plugins(plugins: Iterable[str] = (), blocked: Iterable[str] = ()) -> PluginHost:
    """Load rnnbench's plugins as ``rnnbench run`` does: every installed entry point of the
    ``rnnbench`` group, less ``blocked`` (``-p no:NAME``), plus ``plugins`` (``-p MODULE_OR_FILE``).

    The returned host's ``registry`` holds what they registered; ``host.build_cell(...)`` builds
    a cell. A broken installed plugin is recorded, not raised (see ``rnnbench plugins``); a
    broken plugin named in ``plugins`` raises :class:`PluginError`.
    """
    return build_host(plugins=plugins, blocked=blocked)


def build_cell(
    name: str, backend: str, config: CellConfig, plugins: Iterable[str] = (),
    options: Mapping[str, Any] | None = None,
) -> Cell:
    """The cell registered as ``name`` on ``backend`` (built-in or an installed plugin's, or one
    of ``plugins``), built for ``config`` with the cell's ``options`` (the others at their
    defaults); see :meth:`PluginHost.build_cell`::

        cell = rnnbench.build_cell("lstm", "numpy", rnnbench.CellConfig(input_size=3,
                                                                         hidden_size=8))
        relu = rnnbench.build_cell("rnn", "numpy", rnnbench.CellConfig(3, 8),
                                   options={"nonlinearity": "relu"})
    """
    return load_plugins(plugins).build_cell(name, backend, config, options=options)


def build_host(
    plugins: Iterable[str] = (),
    blocked: Iterable[str] = (),
    entry_points: bool = True,
    strict: bool = True,
) -> PluginHost:
    """Build the plugin manager: entry-point plugins (unless blocked), then local ones.

    A broken entry-point plugin does not stop the others: it is recorded (``registry.broken``,
    shown by ``rnnbench list`` and ``rnnbench plugins``, reported by ``run``). A broken local
    plugin, which the user named on purpose, raises :class:`PluginError`, unless ``strict`` is
    false (listings), when it is recorded like a broken entry point. Names two plugins register
    do not fail here: they fail where they are used.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm)
    for name in blocked:
        host.block(name)
    host.entry_points = entry_points
    if entry_points:
        for ep in sorted(
            importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
        ):
            host.load_entry_point(ep)
    for reference in plugins:
        try:
            host.load_local(reference)
        except PluginError:
            if strict:
                raise
    return host
