"""Built-in plugins use the public API only, like a third party's would.

Every module under ``plugins/`` may import ``rnnbench`` itself, ``rnnbench.testing``, and modules
of its own folder (a backend its own kernels), nothing else of ``rnnbench``: when a built-in
needs something the public API lacks, the public API grows. And no backend imports the numpy
reference cells: they are the oracle the other backends are checked against, so they share no
code with them but the public :class:`rnnbench.StackedCell`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rnnbench

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"
HARNESS = ROOT / "harness"
#: The oracle: no other module may import it.
REFERENCE = "rnnbench.plugins.cells.reference"
#: Modules of rnnbench a plugin may import besides its own folder's.
ALLOWED = ("rnnbench", "rnnbench.testing")


def module_name(path: Path) -> str:
    """``plugins/cells/numba_cpu.py`` -> ``rnnbench.plugins.cells.numba_cpu``."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("rnnbench", *parts))


def _is_core_module(name: str) -> bool:
    """Whether ``rnnbench.<name>`` is a module or subpackage of the core (``harness/``)."""
    return (HARNESS / f"{name}.py").is_file() or (HARNESS / name / "__init__.py").is_file()


def _is_plugin_module(name: str) -> bool:
    """Whether ``name`` (``rnnbench.plugins....``) is a module or package under ``plugins/``."""
    path = ROOT.joinpath("plugins", *name.split(".")[2:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _allowed(target: str, importer: str, package: str) -> bool:
    if target == REFERENCE and importer != REFERENCE:
        return False
    if target in ALLOWED or target.startswith("rnnbench.testing."):
        return True
    return target == package or target.startswith(package + ".")


def forbidden_imports(source: str, importer: str, is_package: bool = False) -> list[str]:
    """Each import of ``source`` (the module ``importer``) that reaches past the public API,
    as ``line N: imports X``."""
    package = importer if is_package else importer.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, one level up per extra dot
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets = [module]
            for alias in node.names:
                if module == "rnnbench" and _is_core_module(alias.name):
                    targets.append(f"rnnbench.{alias.name}")  # a core module via the package
                elif module.startswith("rnnbench.plugins") and _is_plugin_module(
                    f"{module}.{alias.name}"
                ):
                    targets.append(f"{module}.{alias.name}")  # a module of that folder
        for target in targets:
            if (target == "rnnbench" or target.startswith("rnnbench.")) and not _allowed(
                target, importer, package
            ):
                found.append(f"line {node.lineno}: imports {target}")
    return found


def plugin_modules() -> list[Path]:
    return sorted(PLUGINS.rglob("*.py"))


def test_there_are_plugin_modules_to_check():
    names = [module_name(p) for p in plugin_modules()]
    assert REFERENCE in names and "rnnbench.plugins.metrics.gradient_flow" in names


@pytest.mark.parametrize("path", plugin_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_built_in_plugins_import_only_the_public_api(path):
    problems = forbidden_imports(
        path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
    )
    assert not problems, f"{path.relative_to(ROOT)} reaches past the public API: {problems}"


@pytest.mark.parametrize(
    ("source", "importer", "expected"),
    [
        ("from rnnbench import Cell, hookimpl", "rnnbench.plugins.cells.x", []),
        ("import rnnbench", "rnnbench.plugins.cells.x", []),
        ("from rnnbench.testing import check_cell", "rnnbench.plugins.cells.x", []),
        ("from rnnbench.plugins.cells import numba_kernels as k", "rnnbench.plugins.cells.x", []),
        ("from . import cuda_kernels", "rnnbench.plugins.cells.x", []),
        ("from rnnbench.model import SequenceModel", "rnnbench.plugins.metrics.x",
         ["line 1: imports rnnbench.model"]),
        ("import rnnbench.cell", "rnnbench.plugins.cells.x", ["line 1: imports rnnbench.cell"]),
        ("from rnnbench import initialisation", "rnnbench.plugins.metrics.x",
         ["line 1: imports rnnbench.initialisation"]),
        ("def f():\n    from rnnbench.task import Split", "rnnbench.plugins.metrics.x",
         ["line 2: imports rnnbench.task"]),
        ("from rnnbench.plugins.cells.reference import sigmoid", "rnnbench.plugins.cells.x",
         [f"line 1: imports {REFERENCE}"]),
        ("from rnnbench.plugins.cells import reference", "rnnbench.plugins.cells.x",
         [f"line 1: imports {REFERENCE}"]),
        ("from .reference import RNNCell", "rnnbench.plugins.cells.x",
         [f"line 1: imports {REFERENCE}"]),
        ("from rnnbench.plugins.tasks import many_to_one", "rnnbench.plugins.cells.x",
         ["line 1: imports rnnbench.plugins.tasks", "line 1: imports "
          "rnnbench.plugins.tasks.many_to_one"]),
        ("from ..tasks.many_to_one import AddingProblem", "rnnbench.plugins.cells.x",
         ["line 1: imports rnnbench.plugins.tasks.many_to_one"]),
    ],
)
def test_the_import_check_itself(source, importer, expected):
    assert forbidden_imports(source, importer) == expected


def test_cell_scaffolding_is_public_and_documented():
    for name in ("StackedCell", "SequenceModel", "gate_blocks", "spectral_radius", "load_params"):
        assert name in rnnbench.__all__
        assert getattr(rnnbench, name).__doc__, name
    for method in ("layer_forward", "layer_backward", "layer_param_shapes", "check_array",
                   "zeros", "stack", "to_backend", "to_host"):
        assert getattr(rnnbench.StackedCell, method).__doc__, method


def test_every_built_in_cell_builds_on_stacked_cell():
    from rnnbench.plugin_manager import build_host

    cells = build_host().registry.cells
    assert {backend for _, backend in cells} >= {"numpy", "numba-cpu", "numba-cuda"}
    for (name, backend), entry in cells.items():
        assert issubclass(entry.factory, rnnbench.StackedCell), (name, backend)


def _documented_data(name: str) -> bool:
    """Whether a public constant or type alias carries a ``#:`` comment just above where a
    core module assigns it (data have no docstrings of their own)."""
    for path in HARNESS.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith((f"{name} =", f"{name}:")) and any(
                above.strip().startswith("#:") for above in lines[max(0, index - 3):index]
            ):
                return True
    return False


@pytest.mark.parametrize("name", sorted(rnnbench.__all__))
def test_every_public_name_is_documented(name):
    import inspect

    value = getattr(rnnbench, name)
    if inspect.isclass(value) or inspect.isfunction(value) or inspect.ismethod(value):
        own = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        assert own and own.strip(), f"rnnbench.{name} has no docstring of its own"
    else:  # constants, type aliases, the hookimpl marker: a '#:' comment documents them
        assert _documented_data(name), f"rnnbench.{name}: add a '#:' comment above it"


def test_build_cell_is_the_public_way_to_any_registered_cell():
    config = rnnbench.CellConfig(input_size=3, hidden_size=4, dtype="float64")
    cell = rnnbench.build_cell("gru", "numpy", config)
    assert isinstance(cell, rnnbench.StackedCell) and cell.config == config
    with pytest.raises(rnnbench.UnknownNameError, match="did you mean 'gru'"):
        rnnbench.build_cell("gur", "numpy", config)
    with pytest.raises(rnnbench.UnknownNameError, match="no backend 'numpyy'"):
        rnnbench.build_cell("gru", "numpyy", config)
    host = rnnbench.load_plugins(plugins=[str(ROOT / "tests" / "data" / "narrow_plugin.py")])
    with pytest.raises(rnnbench.PluginError, match="num_layers 2 is more than the 1 supported"):
        host.build_cell("narrow_lstm", "numpy", rnnbench.CellConfig(3, 4, num_layers=2))
