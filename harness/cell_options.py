"""Cell options: settings a cell plugin declares for its cell (PyTorch's ``nonlinearity`` of
``nn.RNN``, say), which suites set like task parameters.

A plugin declares them as a dataclass whose fields each have a default and a help text
(:func:`rnnbench.param`), and passes it at registration::

    @dataclass
    class RNNOptions:
        nonlinearity: Literal["tanh", "relu"] = rnnbench.param("tanh", "h' = f(...)")

    register("rnn", "numpy", RNNCell, options=RNNOptions)

A suite then writes ``cell: [{name: rnn, params: {nonlinearity: [tanh, relu]}}, lstm]`` (a list
value expands, as task parameters do), and the factory receives every declared option, defaults
filled in, on :attr:`rnnbench.CellConfig.options` (read one with ``config.option(name)``).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from rnnbench.errors import did_you_mean

#: A cell's options: a dataclass type, or ``None`` for a cell without options.
OptionsClass = type | None


def option_fields(options: OptionsClass) -> list[dataclasses.Field]:  # type: ignore[type-arg]
    """The declared options, in declaration order (none for ``None``)."""
    if options is None:
        return []
    return [f for f in dataclasses.fields(options) if f.init]


def options_class_problem(options: Any) -> str | None:
    """Why ``options`` cannot declare a cell's options, or ``None`` when it can: a dataclass
    type whose every field has a default."""
    if options is None:
        return None
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        return (f"options={options!r} is not a dataclass type; declare the options as a "
                "@dataclass with fields rnnbench.param(default, help)")
    for f in option_fields(options):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            return f"option {f.name!r} of {options.__name__} has no default"
    # The defaults must be values the options accept: a suite that never sets them would
    # otherwise fail every run, far from the plugin's mistake.
    try:
        resolve_options(options, option_defaults(options), f"{options.__name__}'s defaults")
    except ValueError as exc:
        return f"its default options are not valid: {exc}"
    return None


def option_default(f: dataclasses.Field) -> Any:  # type: ignore[type-arg]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def option_hints(options: OptionsClass) -> dict[str, Any]:
    """Each option's annotation (empty when they cannot be resolved: types are not checked)."""
    if options is None:
        return {}
    try:
        return typing.get_type_hints(options)
    except Exception:  # an annotation that cannot be resolved: skip type checks
        return {}


def option_defaults(options: OptionsClass) -> dict[str, Any]:
    """Every declared option with its default."""
    return {f.name: option_default(f) for f in option_fields(options)}


def type_text(annotation: Any) -> str:
    """An annotation as ``rnnbench list`` shows it: ``tanh|relu``, ``float``."""
    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(str(choice) for choice in typing.get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def describe_options(options: OptionsClass) -> list[dict[str, Any]]:
    """One ``{"name", "type", "default", "help"}`` per option, for listings."""
    hints = option_hints(options)
    return [
        {"name": f.name, "type": type_text(hints.get(f.name, f.type)),
         "default": option_default(f), "help": f.metadata.get("help", "")}
        for f in option_fields(options)
    ]


def resolve_options(
    options: OptionsClass, given: Mapping[str, Any] | tuple[tuple[str, Any], ...], what: str
) -> tuple[tuple[str, Any], ...]:
    """Every option ``options`` declares, ``given`` values over the defaults, sorted by name.

    Raises ``ValueError`` naming ``what`` (e.g. ``cell 'rnn' on backend 'numpy'``) for an
    option not declared (with the closest names), a value of the wrong type, or one the
    dataclass's own ``__post_init__`` rejects.
    """
    from rnnbench.suite import _type_mismatch  # the suite's type rules; imported late (cycle)
    from rnnbench.suite_expand import as_field_type

    given = dict(given)
    fields = {f.name: f for f in option_fields(options)}
    unknown = [name for name in given if name not in fields]
    if unknown:
        hint = did_you_mean(unknown[0], list(fields)) if fields else "it declares no options"
        raise ValueError(f"{what} has no option {unknown[0]!r} ({hint})")
    hints = option_hints(options)
    for name, value in given.items():
        expected = _type_mismatch(value, hints.get(name))
        if expected is not None:
            raise ValueError(f"option {name!r} of {what}: expected {expected}, got {value!r}")
    values = {name: as_field_type(value, hints.get(name))
              for name, value in {**option_defaults(options), **given}.items()}
    if options is not None:
        try:
            options(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} rejects options {values}: {exc}") from exc
    return tuple(sorted(values.items()))
