"""Calling the event hooks (``rnnbench_suite_start`` ... ``rnnbench_evaluation``) so that no
plugin can take a suite down.

pluggy stops at the first implementation that raises and lets the exception out, so a logging
plugin's bug would abort a week of runs. Here each implementation is called on its own: one that
raises (``SystemExit`` included: a plugin's ``sys.exit()`` is its failure, not rnnbench's exit)
is reported as a warning naming the plugin, the hook and the file:line, once per plugin and hook,
and the others, the run and its record go on as if it had returned ``None``. Ctrl-C
(``KeyboardInterrupt``) still interrupts.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from rnnbench.plugin_manager import PluginHost


class PluginHookWarning(RuntimeWarning):
    """An event hook of a plugin raised; the suite went on without it."""


def default_report(message: str) -> None:
    """Where a hook failure goes when no observer takes it: a Python warning (a notebook
    shows it)."""
    warnings.warn(message, PluginHookWarning, stacklevel=2)


def failure_text(host: PluginHost, plugin: str, exc: BaseException) -> str:
    """`` (at file:line): ExcType: message`` for a plugin's exception: where in the plugin's own
    files it was raised (when known) and what it said."""
    where = host.failure_location(plugin, exc)
    return (f" (at {where})" if where else "") + f": {type(exc).__name__}: {exc}"


class EventHooks:
    """Calls event hooks implementation by implementation; see the module docstring."""

    def __init__(self, host: PluginHost, report: Callable[[str], None] | None = None) -> None:
        self.host = host
        self.report = report or default_report
        #: (plugin, hook) -> how many times it raised.
        self.failures: dict[tuple[str, str], int] = {}

    def call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of ``hook_name`` (in pluggy's order: last registered
        first) with the arguments it accepts; returns the results of those that returned."""
        results = []
        for impl in reversed(getattr(self.host.pm.hook, hook_name).get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:  # would run half-way at best: say so, skip it
                self._say_once(impl.plugin_name, hook_name, "is a hook wrapper, which event "
                               "hooks do not support; ignored (drop wrapper=/hookwrapper=)")
                continue
            arguments = {name: kwargs[name] for name in impl.argnames}
            try:
                results.append(impl.function(**arguments))
            except (Exception, SystemExit) as exc:
                self._failed(impl.plugin_name, hook_name, exc)
        return results

    def _failed(self, plugin: str, hook_name: str, exc: BaseException) -> None:
        self._say_once(
            plugin, hook_name, f"raised in {hook_name}{failure_text(self.host, plugin, exc)}; "
            "ignored, the suite goes on (further failures of this hook are not repeated)"
        )

    def _say_once(self, plugin: str, hook_name: str, what: str) -> None:
        """Report ``plugin {what}`` the first time ``plugin``'s ``hook_name`` fails: a hook that
        fails every run would drown the progress lines."""
        key = (plugin, hook_name)
        self.failures[key] = self.failures.get(key, 0) + 1
        if self.failures[key] == 1:
            self.report(f"plugin {plugin!r} {what}")
