"""The plugin manager: loads plugins and collects what they register into a Registry.

Built-in plugins are found through the ``rnnbench`` entry-point group, exactly like a third-party
package's. Local plugins come from ``-p MODULE_OR_FILE`` or a suite's ``plugins:`` list; ``-p
no:NAME`` blocks a plugin by its entry-point (or module) name. The manager built here is the only
global-ish state, and even it is passed around explicitly.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from rnnbench import hookspecs
from rnnbench.cell import CellSupport
from rnnbench.errors import PluginError
from rnnbench.task import Task, Topology

ENTRY_POINT_GROUP = "rnnbench"
READOUTS = ("last", "all")
MODELS = ("sequence", "encoder-decoder")
BETTER = ("lower", "higher", None)


@dataclass(frozen=True)
class CellEntry:
    name: str
    backend: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""
    available: Callable[[], str | None] | None = None
    #: What the implementation supports (dtypes, layers, bias); checked by ``validate``.
    supports: CellSupport = field(default_factory=CellSupport)

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here, or ``None`` when it can."""
        if self.available is None:
            return None
        try:
            return self.available()
        except Exception as exc:  # an availability probe must never crash a listing
            return f"availability check failed: {exc!r}"


@dataclass(frozen=True)
class TaskEntry:
    name: str
    task_class: type[Task]
    plugin: str

    @property
    def topology(self) -> Topology:
        return self.task_class.topology

    @property
    def description(self) -> str:
        return self.task_class.description


@dataclass(frozen=True)
class MetricEntry:
    name: str
    function: Callable[[Any], Any]
    plugin: str
    description: str = ""
    better: str | None = "lower"
    #: A wall-clock measurement: differs between identical runs, so determinism and
    #: reproducibility checks leave it out.
    timing: bool = False


@dataclass(frozen=True)
class ReporterEntry:
    name: str
    function: Callable[..., Any]
    plugin: str
    description: str = ""


@dataclass
class Registry:
    """Everything the loaded plugins contributed, keyed by name, each with its plugin's name."""

    cells: dict[tuple[str, str], CellEntry] = field(default_factory=dict)
    tasks: dict[str, TaskEntry] = field(default_factory=dict)
    metrics: dict[str, MetricEntry] = field(default_factory=dict)
    reporters: dict[str, ReporterEntry] = field(default_factory=dict)
    #: Plugins that failed to load: name -> error message. Shown by ``rnnbench list``.
    broken: dict[str, str] = field(default_factory=dict)

    @property
    def cell_names(self) -> list[str]:
        return sorted({name for name, _ in self.cells})

    @property
    def backend_names(self) -> list[str]:
        return sorted({backend for _, backend in self.cells})

    def backends_of(self, cell: str) -> list[str]:
        return sorted(backend for name, backend in self.cells if name == cell)


class PluginHost:
    """A pluggy manager plus the Registry built from its plugins' registration hooks."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.registry = Registry()
        self.broken: dict[str, str] = {}

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def plugin_names(self) -> list[str]:
        return sorted(
            name for name, plugin in self.pm.list_name_plugin() if plugin is not None and name
        )

    def add_module(self, module: Any, name: str) -> None:
        """Register one more plugin module and collect its registrations."""
        if self.pm.is_blocked(name) or self.pm.has_plugin(name):
            return
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(name, f"does not follow the hook contract: {exc}") from exc
        try:
            self._collect(name)
        except PluginError:
            self._forget(name)
            raise

    def _forget(self, name: str) -> None:
        """Undo a plugin that failed half-way: nothing it registered stays behind."""
        self.pm.unregister(name=name)
        registry = self.registry
        for table in (registry.cells, registry.tasks, registry.metrics, registry.reporters):
            for key in [key for key, entry in table.items() if entry.plugin == name]:
                del table[key]

    def load_local(self, reference: str, base_dir: Path | None = None) -> str:
        """Load a plugin given as a module name or a ``.py`` file path; returns its name."""
        module, name = import_plugin(reference, base_dir)
        self.add_module(module, name)
        return name

    # -- registration -----------------------------------------------------------------------

    def _collect(self, plugin_name: str) -> None:
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
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        plugin_name, f"raised {type(exc).__name__} in {hook_name}: {exc}"
                    ) from exc

    def _cell_registrar(self, plugin: str) -> Callable[..., None]:
        def register(
            name: str,
            backend: str,
            factory: Callable[..., Any],
            description: str = "",
            available: Callable[[], str | None] | None = None,
            supports: CellSupport | None = None,
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
                    "rnnbench.CellSupport(dtypes=..., max_layers=..., bias=...)"
                )
            entry = CellEntry(name, backend, factory, plugin, description, available, supports)
            _claim(self.registry.cells, (name, backend), entry,
                   f"cell {name!r} on backend {backend!r}")

        return register

    def _task_registrar(self, plugin: str) -> Callable[..., None]:
        def register(task_class: type[Task]) -> None:
            if not (isinstance(task_class, type) and issubclass(task_class, Task)):
                raise PluginError(
                    plugin, f"registered {task_class!r} as a task; it must subclass rnnbench.Task"
                )
            if not dataclasses.is_dataclass(task_class):
                raise PluginError(plugin, f"task class {task_class.__name__} is not a dataclass")
            name = getattr(task_class, "name", None)
            _require(plugin, f"name of task class {task_class.__name__}", name, is_name)
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
            _claim(self.registry.tasks, name, TaskEntry(name, task_class, plugin), f"task {name!r}")

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
            _claim(self.registry.metrics, name, entry, f"metric {name!r}")

        return register

    def _reporter_registrar(self, plugin: str) -> Callable[..., None]:
        def register(name: str, function: Callable[..., Any], description: str = "") -> None:
            _require(plugin, "reporter name", name, is_name)
            _require(plugin, f"function of reporter {name!r}", function, callable)
            entry = ReporterEntry(name, function, plugin, description)
            _claim(self.registry.reporters, name, entry, f"reporter {name!r}")

        return register


def _claim(table: dict[Any, Any], key: Any, entry: Any, what: str) -> None:
    """Add ``entry`` under ``key``; a name another plugin holds already is an error naming both."""
    if key in table:
        other = table[key].plugin
        raise PluginError(
            entry.plugin,
            f"registers {what}, which plugin {other!r} already registered; disable one with "
            f"-p no:{entry.plugin} or -p no:{other}",
        )
    table[key] = entry


def is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and value.strip() == value


def _require(plugin: str, what: str, value: Any, check: Callable[[Any], bool]) -> None:
    if not check(value):
        raise PluginError(plugin, f"passed an invalid {what}: {value!r}")


def import_plugin(reference: str, base_dir: Path | None = None) -> tuple[Any, str]:
    """Import a plugin from a module name (``pkg.mod``) or a file path (``dir/mod.py``).

    A file is imported under its stem as module name; a relative path is taken relative to
    ``base_dir`` (the suite file's folder) when given, else to the working directory.
    """
    if reference.endswith(".py") or "/" in reference or "\\" in reference:
        path = Path(reference)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        name = path.stem
        if not path.is_file():
            raise PluginError(name, f"plugin file {str(path)!r} does not exist")
        module_name = f"rnnbench_local_plugins.{name}"
        if module_name in sys.modules:
            return sys.modules[module_name], name
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PluginError(name, f"cannot import plugin file {str(path)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise PluginError(
                name, f"failed to import {str(path)!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return module, name
    try:
        return importlib.import_module(reference), reference
    except Exception as exc:
        raise PluginError(
            reference, f"failed to import module {reference!r}: {type(exc).__name__}: {exc}"
        ) from exc


def build_host(
    plugins: Iterable[str] = (),
    blocked: Iterable[str] = (),
    entry_points: bool = True,
) -> PluginHost:
    """Build the plugin manager: entry-point plugins (unless blocked), then local ones.

    A broken entry-point plugin does not stop the others: it is recorded in
    ``registry.broken`` (shown by ``rnnbench list``, reported by ``run``). A broken local plugin,
    which the user named on purpose, raises :class:`PluginError`.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    host = PluginHost(pm)
    if entry_points:
        for ep in sorted(
            importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
        ):
            if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
                host.add_module(module, ep.name)
            except PluginError as exc:
                host.registry.broken[ep.name] = exc.reason
            except Exception as exc:
                host.registry.broken[ep.name] = (
                    f"failed to import {ep.value!r}: {type(exc).__name__}: {exc}"
                )
    for reference in plugins:
        host.load_local(reference)
    return host
