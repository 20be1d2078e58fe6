"""What ``rnnbench check cell`` and ``rnnbench check task`` do; the CLI only parses and prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rnnbench.errors import RnnbenchError
from rnnbench.plugin_manager import PluginHost
from rnnbench.testing.cells import check_cell
from rnnbench.testing.lookup import find_backends, find_cell, find_task
from rnnbench.testing.report import CheckReport
from rnnbench.testing.tasks import check_task


@dataclass(frozen=True)
class BackendCheck:
    """The checks of one backend of a cell, or why they could not run (``unavailable``)."""

    backend: str
    report: CheckReport | None = None
    unavailable: str | None = None


def check_cell_backends(
    host: PluginHost,
    name: str,
    backend: str | None = None,
    *,
    reference: str | None = "auto",
    dtypes: Sequence[str] | None = None,
    checks: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[BackendCheck]:
    """The cell checks of cell ``name`` on ``backend``, or on each of its backends (an
    unavailable one is reported as such). Unknown names, and a named backend (or every
    backend) that cannot run here, are :class:`RnnbenchError`."""
    backends = find_backends(host, name)
    if backend is not None:
        find_cell(host, name, backend)
        backends = [backend]
    if reference is not None and reference != "auto":
        find_cell(host, name, reference)
    found = []
    for each in backends:
        reason = host.registry.cells[(name, each)].unavailable_reason()
        if reason is not None:
            if backend is not None:
                raise RnnbenchError(f"cell {name!r} on backend {each!r} cannot run here: {reason}")
            found.append(BackendCheck(each, unavailable=reason))
            continue
        own_reference = "auto" if reference == each else reference  # not itself
        report = check_cell((name, each), reference=own_reference, dtypes=_supported(
            host, name, each, dtypes), checks=checks, host=host, options=options)
        found.append(BackendCheck(each, report))
    if not any(each.report for each in found):
        reasons = "; ".join(f"{each.backend}: {each.unavailable}" for each in found)
        raise RnnbenchError(f"no backend of cell {name!r} can run here ({reasons})")
    return found


def _supported(host: PluginHost, name: str, backend: str,
               dtypes: Sequence[str] | None) -> Sequence[str] | None:
    """``dtypes``, less those this backend does not support when several backends are checked
    (asking for a dtype one backend lacks is not an error for the others)."""
    if dtypes is None:
        return None
    supported = host.registry.cells[(name, backend)].supports.dtypes
    kept = [d for d in dtypes if d in supported]
    if not kept:
        raise RnnbenchError(f"cell {name!r} on backend {backend!r} supports "
                            f"{', '.join(supported)}, not {', '.join(dtypes)}")
    return kept


def check_registered_task(
    host: PluginHost, name: str, *, checks: Sequence[str] | None = None
) -> CheckReport:
    """The task checks of registered task ``name`` with its default parameters."""
    entry = find_task(host, name)
    return check_task(entry.task_class, checks=checks, host=host)
