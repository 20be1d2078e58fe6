"""The registry: what the loaded plugins contributed (cells, tasks, metrics, reporters), who
each plugin is (its provenance), and lookups that never resolve a name two plugins registered.

Every plugin's claim on a name is kept. A name claimed twice is *in conflict*: looking it up
raises :class:`PluginConflictError`, naming both plugins with their distributions and versions
and the ``-p no:NAME`` fix, so a suite that does not use it still runs and no plugin loses its
other contributions. The plugin manager (:mod:`rnnbench.plugin_manager`) fills the registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rnnbench.cell import CELL_MEMBERS, Cell, CellConfig, CellSupport
from rnnbench.cell_options import resolve_options
from rnnbench.errors import PluginError, RnnbenchError, did_you_mean
from rnnbench.records import RunSpec
from rnnbench.task import Task, Topology

#: What a plugin can be: loaded, broken (with the reason), disabled (``-p no:NAME``), or loaded
#: but in conflict (another plugin registers one of its names).
PLUGIN_STATUSES = ("loaded", "broken", "disabled", "in conflict")


# --- Registry entries ------------------------------------------------------------------------


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
    #: The cell's options: a dataclass of ``rnnbench.param`` fields, or None (no options).
    options: type | None = None

    def resolve_options(self, given: Any = ()) -> tuple[tuple[str, Any], ...]:
        """Every option this implementation declares, ``given`` over the defaults; raises
        ``ValueError`` for an undeclared option or a bad value."""
        return resolve_options(
            self.options, given, f"cell {self.name!r} on backend {self.backend!r}"
        )

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here, or ``None`` when it can."""
        if self.available is None:
            return None
        try:
            return self.available()
        except Exception as exc:  # an availability probe must never crash a listing
            return f"availability check failed: {exc!r}"

    def build(self, config: CellConfig) -> Cell:
        """A cell of this implementation for ``config`` (its options checked and completed
        with their defaults), checked against what it declared it supports and against the
        cell protocol, so a mistake names this plugin, not a line
        deep inside a run."""
        if not isinstance(config, CellConfig):
            raise TypeError(f"cell {self.name!r} needs a rnnbench.CellConfig, got {config!r}")
        problems = self.supports.problems(config)
        if problems:
            raise PluginError(
                self.plugin,
                f"cell {self.name!r} on backend {self.backend!r}: " + "; ".join(problems),
            )
        # The factory sees every declared option, defaults filled in.
        config = dataclasses.replace(config, options=self.resolve_options(config.options))
        cell = self.factory(config)
        missing = [name for name in CELL_MEMBERS if not hasattr(cell, name)]
        if missing:
            raise PluginError(
                self.plugin,
                f"registered a factory for cell {self.name!r} on {self.backend!r} that returned "
                f"{type(cell).__name__!r}, which lacks {', '.join(missing)} (see rnnbench.Cell)",
            )
        return cell


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


# --- Provenance --------------------------------------------------------------------------------


@dataclass
class PluginInfo:
    """Where one plugin comes from and what it did. ``rnnbench plugins`` shows one per row;
    ``environment.json`` and each run record's ``provenance`` name the plugin, distribution and
    version that provided something."""

    #: The entry-point name, or for a local plugin its file's stem or module name; what
    #: ``-p no:NAME`` takes.
    name: str
    #: ``"entry point"`` (an installed distribution's, the built-ins included) or ``"local"``
    #: (``-p`` or a suite's ``plugins:``).
    origin: str
    #: The distribution (``pip`` package) that provides it; ``None`` for a local file.
    distribution: str | None = None
    version: str | None = None
    #: Its module's import name (for an entry point, the entry point's value).
    module: str | None = None
    #: Its module's file.
    file: str | None = None
    #: A local plugin's reference as written (the ``-p`` argument or the suite's entry).
    reference: str | None = None
    #: The hooks it implements.
    hooks: list[str] = field(default_factory=list)
    #: What it registered, by kind (``cell``, ``task``, ``metric``, ``reporter``); cells as
    #: ``NAME/BACKEND``.
    registered: dict[str, list[str]] = field(default_factory=dict)
    #: One of :data:`PLUGIN_STATUSES`.
    status: str = "loaded"
    #: Why it is broken, disabled or in conflict.
    reason: str | None = None
    #: A failure's full traceback (shown with ``--traceback`` or ``RNNBENCH_TRACEBACK=1``).
    details: str | None = field(default=None, repr=False)

    @property
    def source(self) -> str:
        """Where it comes from, in words: ``rnnbench 0.2.0``, ``local file my_cells.py``."""
        if self.distribution is not None:
            return f"{self.distribution} {self.version or '(version unknown)'}"
        if self.origin == "local":
            if self.module is None:
                return f"local file {self.reference or self.file}"
            return f"local module {self.module}"
        return f"entry point {self.module}" if self.module else "source unknown"

    @property
    def label(self) -> str:
        """``'reference_cells' (rnnbench 0.2.0)``: the plugin as error messages name it."""
        return f"{self.name!r} ({self.source})"

    def provider(self) -> dict[str, Any]:
        """What a run record's provenance says about this plugin: its name, distribution and
        version, and for a local plugin its file or module as the user gave it."""
        provider: dict[str, Any] = {
            "plugin": self.name, "distribution": self.distribution, "version": self.version,
        }
        if self.distribution is None and self.origin == "local":
            provider["file"] = self.reference or self.module
        return provider

    def to_dict(self) -> dict[str, Any]:
        """Everything but the traceback, for ``rnnbench plugins --json``."""
        data = dataclasses.asdict(self)
        del data["details"]
        return data


class PluginConflictError(PluginError):
    """A name two or more plugins registered was used. rnnbench does not choose between them:
    the message names every plugin with its distribution and version, and the fix."""

    def __init__(self, what: str, plugins: Sequence[PluginInfo]) -> None:
        first, *others = plugins
        rest = ", ".join(f"plugin {p.label}" for p in others[:-1])
        rest = (rest + " and " if rest else "") + f"plugin {others[-1].label}"
        fixes = " or ".join(f"-p no:{p.name}" for p in plugins)
        both = "both" if len(plugins) == 2 else "all"
        super().__init__(
            first.name,
            f"({first.source}) and {rest} {both} register {what}; rnnbench will not choose "
            f"between them: disable one with {fixes} (`rnnbench plugins` shows what each "
            "provides)",
        )
        self.what = what
        self.plugins = [p.name for p in plugins]


class PluginLoadError(PluginError):
    """A plugin that could not be loaded; the message names the plugin's file and line,
    ``details`` holds the full traceback."""

    def __init__(self, plugin: str, reason: str, details: str | None = None) -> None:
        super().__init__(plugin, reason)
        self.details = details


class UnknownNameError(RnnbenchError, LookupError):
    """A cell, task, metric or reporter no loaded plugin registers; says the closest names."""


# --- The registry ----------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
E = TypeVar("E")


class ClaimTable(MutableMapping[K, E], Generic[K, E]):
    """One table of the registry (cells, tasks, metrics or reporters): key -> entry.

    Every plugin's claim on a key is kept. Reading a key two plugins claimed (``table[key]``,
    ``.get``, ``.items()``) raises :class:`PluginConflictError` instead of picking one, so no
    caller can resolve a conflict silently. Listings that must show every claim, conflicts
    included, use :meth:`claimed`; :meth:`conflicts` lists the keys in conflict.
    """

    def __init__(self, kind: str, describe: Callable[[str], PluginInfo]) -> None:
        self.kind = kind
        self._describe = describe
        self._claims: dict[K, list[E]] = {}

    def what(self, key: K) -> str:
        """The key in words: ``cell 'lstm' on backend 'numpy'``, ``task 'adding'``."""
        if isinstance(key, tuple):
            name, backend = key
            return f"{self.kind} {name!r} on backend {backend!r}"
        return f"{self.kind} {key!r}"

    def key_text(self, key: K) -> str:
        return "/".join(key) if isinstance(key, tuple) else str(key)

    def conflict_error(self, key: K) -> PluginConflictError | None:
        """The error that using ``key`` raises, or None when at most one plugin claims it."""
        claims = self._claims.get(key, [])
        if len(claims) < 2:
            return None
        plugins = [self._describe(_plugin_of(entry)) for entry in claims]
        return PluginConflictError(self.what(key), plugins)

    def __getitem__(self, key: K) -> E:
        claims = self._claims[key]
        error = self.conflict_error(key)
        if error is not None:
            raise error
        return claims[0]

    def __setitem__(self, key: K, entry: E) -> None:
        """Set the one entry for ``key`` (replacing any claims); plugins go through
        :meth:`claim`."""
        self._claims[key] = [entry]

    def __delitem__(self, key: K) -> None:
        del self._claims[key]

    def __contains__(self, key: object) -> bool:
        return key in self._claims

    def __iter__(self) -> Iterator[K]:
        return iter(self._claims)

    def __len__(self) -> int:
        return len(self._claims)

    def __repr__(self) -> str:
        return f"ClaimTable({self.kind}: {sorted(map(self.key_text, self._claims))})"

    def claim(self, key: K, entry: E) -> None:
        """Add one plugin's claim on ``key``; a second plugin's claim puts ``key`` in conflict."""
        self._claims.setdefault(key, []).append(entry)

    def claims(self, key: K) -> list[E]:
        """Every claim on ``key``, in load order (empty when nobody registered it)."""
        return list(self._claims.get(key, []))

    def claimed(self) -> Iterator[tuple[K, E]]:
        """Every (key, entry) claim, conflicting ones included, sorted by key: for listings."""
        for key in sorted(self._claims, key=self.key_text):
            for entry in self._claims[key]:
                yield key, entry

    def resolved(self) -> dict[K, E]:
        """The keys exactly one plugin claims, with their entry."""
        return {key: claims[0] for key, claims in self._claims.items() if len(claims) == 1}

    def conflicts(self) -> dict[K, list[E]]:
        """The keys two or more plugins claim, with every claim."""
        return {key: list(claims) for key, claims in self._claims.items() if len(claims) > 1}

    def forget(self, plugin: str) -> None:
        """Drop every claim ``plugin`` made."""
        for key in list(self._claims):
            kept = [e for e in self._claims[key] if _plugin_of(e) != plugin]
            if kept:
                self._claims[key] = kept
            else:
                del self._claims[key]


def _plugin_of(entry: Any) -> str:
    return str(entry.plugin)


class Registry:
    """Everything the loaded plugins contributed, keyed by name, each with its plugin's name;
    and what is known about every plugin (:class:`PluginInfo`).

    Look names up with :meth:`cell`, :meth:`task`, :meth:`metric` and :meth:`reporter`: they
    raise :class:`PluginConflictError` for a name two plugins registered and
    :class:`UnknownNameError` (with the closest names) for one nobody did. The tables
    themselves (``cells``, ``tasks``, ``metrics``, ``reporters``) iterate over every name, for
    listings, and refuse to resolve a conflict too.
    """

    def __init__(self) -> None:
        #: Every plugin seen (loaded, broken or disabled), by name.
        self.plugins: dict[str, PluginInfo] = {}
        self.cells: ClaimTable[tuple[str, str], CellEntry] = ClaimTable("cell", self.plugin_info)
        self.tasks: ClaimTable[str, TaskEntry] = ClaimTable("task", self.plugin_info)
        self.metrics: ClaimTable[str, MetricEntry] = ClaimTable("metric", self.plugin_info)
        self.reporters: ClaimTable[str, ReporterEntry] = ClaimTable("reporter", self.plugin_info)
        #: Plugins that failed to load: name -> why. Shown by ``rnnbench list`` and ``plugins``.
        self.broken: dict[str, str] = {}

    @property
    def tables(self) -> dict[str, ClaimTable[Any, Any]]:
        return {"cell": self.cells, "task": self.tasks, "metric": self.metrics,
                "reporter": self.reporters}

    def plugin_info(self, name: str) -> PluginInfo:
        """What is known about plugin ``name`` (only its name, for an entry made by hand)."""
        info = self.plugins.get(name)
        return info if info is not None else PluginInfo(name, origin="unknown")

    @property
    def cell_names(self) -> list[str]:
        return sorted({name for name, _ in self.cells})

    @property
    def backend_names(self) -> list[str]:
        return sorted({backend for _, backend in self.cells})

    def backends_of(self, cell: str) -> list[str]:
        return sorted(backend for name, backend in self.cells if name == cell)

    # -- lookups that never resolve a conflict ---------------------------------------------------

    def cell(self, name: str, backend: str) -> CellEntry:
        """The implementation of cell ``name`` on ``backend``."""
        if (name, backend) not in self.cells:
            if name not in self.cell_names:
                raise UnknownNameError(
                    f"unknown cell {name!r} ({did_you_mean(name, self.cell_names)})"
                )
            raise UnknownNameError(
                f"cell {name!r} has no backend {backend!r}; available: "
                + ", ".join(self.backends_of(name))
            )
        return self.cells[(name, backend)]

    def task(self, name: str) -> TaskEntry:
        """The task registered as ``name``."""
        return self._lookup(self.tasks, name)

    def metric(self, name: str) -> MetricEntry:
        """The metric registered as ``name``."""
        return self._lookup(self.metrics, name)

    def reporter(self, name: str) -> ReporterEntry:
        """The reporter registered as ``name``."""
        return self._lookup(self.reporters, name)

    def reporters_in_use(self) -> list[ReporterEntry]:
        """Every reporter, by name: all of them write every results folder, so a reporter name
        in conflict is an error here."""
        return [self.reporter(name) for name in sorted(self.reporters)]

    def _lookup(self, table: ClaimTable[str, Any], name: str) -> Any:
        if name not in table:
            raise UnknownNameError(
                f"unknown {table.kind} {name!r} ({did_you_mean(name, list(table))})"
            )
        return table[name]

    def conflict_for(self, kind: str, key: Any) -> str | None:
        """The error message for using ``key`` (a cell's ``(name, backend)``, or a task, metric or
        reporter name) when two plugins register it, else None. For suite validation, which
        reports it at the file, line and field that name it."""
        if kind not in self.tables:
            raise ValueError(f"unknown kind {kind!r}; use one of {sorted(self.tables)}")
        error = self.tables[kind].conflict_error(key)
        return None if error is None else str(error)

    def conflicts(self) -> list[tuple[str, Any, list[str]]]:
        """Every name in conflict: ``(kind, key, plugin names)``."""
        found = []
        for kind, table in self.tables.items():
            for key, claims in table.conflicts().items():
                found.append((kind, key, [entry.plugin for entry in claims]))
        return found

    # -- provenance ---------------------------------------------------------------------------

    def provider(self, plugin: str) -> dict[str, Any]:
        """The plugin, distribution and version behind one contribution."""
        return self.plugin_info(plugin).provider()

    def run_provenance(self, spec: RunSpec) -> dict[str, Any]:
        """Who provided a run's cell, task and metrics: ``{"cell": provider, "task": provider,
        "metrics": [provider + {"names": [...]}, ...]}`` (a provider is ``{"plugin",
        "distribution", "version"}``). Never raises: a name nobody (or more than one plugin)
        provides is left out, since the run fails on it with the reason."""
        def owner(table: ClaimTable[Any, Any], key: Any) -> str | None:
            claims = table.claims(key)
            return claims[0].plugin if len(claims) == 1 else None

        cell = owner(self.cells, (spec.cell, spec.backend))
        task = owner(self.tasks, spec.task)
        by_plugin: dict[str, list[str]] = {}
        for name in spec.metrics:
            plugin = owner(self.metrics, name)
            if plugin is not None:
                by_plugin.setdefault(plugin, []).append(name)
        return {
            "cell": None if cell is None else self.provider(cell),
            "task": None if task is None else self.provider(task),
            "metrics": [{**self.provider(plugin), "names": names}
                        for plugin, names in by_plugin.items()],
        }
