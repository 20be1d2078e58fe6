"""Registered cells and tasks by name, for the checkers and ``rnnbench check``.

The one place the test kit reaches the plugin manager, so how plugins are loaded can change
here alone. Unknown names are :class:`rnnbench.RnnbenchError` with the closest name.
"""

from __future__ import annotations

from collections.abc import Iterable

from rnnbench.errors import RnnbenchError, did_you_mean
from rnnbench.plugin_manager import CellEntry, PluginHost, TaskEntry, build_host

#: The backend a cell is compared with by default: the numpy reference, when there is one.
PREFERRED_REFERENCE = "numpy"


def load_host(host: PluginHost | None = None, plugins: Iterable[str] = ()) -> PluginHost:
    """``host``, or the installed plugins plus ``plugins`` (modules or ``.py`` files)."""
    if host is not None:
        for reference in plugins:
            host.load_local(reference)
        return host
    return build_host(plugins=list(plugins))


def find_backends(host: PluginHost, name: str) -> list[str]:
    """The backends of registered cell ``name``."""
    registry = host.registry
    if name not in registry.cell_names:
        raise RnnbenchError(
            f"no cell {name!r} is registered; {did_you_mean(name, registry.cell_names)}"
        )
    return registry.backends_of(name)


def find_cell(host: PluginHost, name: str, backend: str) -> CellEntry:
    """The registered implementation of cell ``name`` on ``backend``."""
    registry = host.registry
    find_backends(host, name)
    entry = registry.cells.get((name, backend))
    if entry is None:
        backends = registry.backends_of(name)
        raise RnnbenchError(
            f"cell {name!r} has no backend {backend!r}; {did_you_mean(backend, backends)} "
            f"(backends of {name!r}: {', '.join(backends)})"
        )
    return entry


def find_task(host: PluginHost, name: str) -> TaskEntry:
    """The registered task ``name``."""
    entry = host.registry.tasks.get(name)
    if entry is None:
        raise RnnbenchError(
            f"no task {name!r} is registered; {did_you_mean(name, host.registry.tasks)}"
        )
    return entry


def default_reference(host: PluginHost, name: str, backend: str) -> CellEntry | None:
    """Another available backend of cell ``name`` to compare ``backend`` with: the numpy
    reference when there is one, else the first other available backend; ``None`` if none."""
    others = [b for b in host.registry.backends_of(name) if b != backend]
    others.sort(key=lambda b: (b != PREFERRED_REFERENCE, b))
    for other in others:
        try:
            entry = host.registry.cells[(name, other)]
        except RnnbenchError:  # two plugins claim it: not a reference to pick silently
            continue
        if entry.unavailable_reason() is None:
            return entry
    return None
