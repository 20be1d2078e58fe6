"""Parameters to and from ``.npz`` files (or in-memory mappings), in PyTorch's names and shapes.

A cell's parameters are a dict keyed by PyTorch's names (``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}``; see :mod:`rnnbench.cell`), so the ``state_dict`` of a
``torch.nn.RNN`` (``nonlinearity="tanh"``), ``torch.nn.LSTM`` or ``torch.nn.GRU`` *is* such a dict.
An uncompressed ``.npz`` of it is the interchange format: numpy reads and writes it, and PyTorch
is needed only on the PyTorch side, never here.

Check a PyTorch module against a cell here, in memory (the tensors are converted; ``.numpy()``
of each ``state_dict`` value works as well)::

    config = rnnbench.CellConfig(input_size=..., hidden_size=..., num_layers=..., dtype="float64")
    params = rnnbench.load_params(module.state_dict(), "lstm", config)

or through a file, to load it later or elsewhere::

    import numpy as np
    np.savez(path, **{k: v.detach().numpy() for k, v in module.state_dict().items()})

    params = load_params(path, "lstm", CellConfig(input_size=..., hidden_size=..., ...))

The cell may also be given as a cell object (``load_params(source, cell)``, its config taken from
it), which works for any cell whose parameters are listed in ``cell.param_shapes`` (every
:class:`rnnbench.StackedCell`), PyTorch's layout or not.

Save parameters from here, then load them into a PyTorch module of the same sizes::

    save_params(path, params)

    module.load_state_dict({k: torch.from_numpy(v) for k, v in np.load(path).items()})

Export the recurrent module itself (``model.rnn.state_dict()``), not a model that wraps it, whose
keys carry a prefix (``rnn.weight_ih_l0``). Bidirectional modules (``*_reverse`` keys) and LSTM
projections (``proj_size``, ``weight_hr_l{k}``) have no counterpart here and are refused.

Files are read with ``allow_pickle=False``: loading a parameters file never runs code from it.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rnnbench.cell import GATES, CellConfig, param_shapes
from rnnbench.errors import RnnbenchError, did_you_mean
from rnnbench.results import atomic_write_bytes

#: The cell a number of gates suggests, for hints: a (3H, I) matrix was probably saved from a GRU.
_CELL_OF_GATES = {1: "an RNN", 3: "a GRU", 4: "an LSTM"}
#: Names ``np.savez`` takes as its own arguments, so they cannot be array names.
_SAVEZ_RESERVED = frozenset({"file", "allow_pickle"})
_LAYER_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")


class ParamsFileError(RnnbenchError):
    """A parameters file cannot be read, or it (or a mapping of arrays) does not hold the
    parameters of the cell expected.

    ``path`` is the file, or None when the parameters were given as a mapping; ``problems`` one
    line per problem found (every one, not just the first), each naming the key, the expected and
    the found shape, and a hint where one is obvious; ``expected``, when given, describes the cell
    and config the parameters were loaded for.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None, problems: list[str], expected: str | None = None
    ) -> None:
        self.path = None if path is None else Path(path)
        self.problems = list(problems)
        where = "parameters mapping" if self.path is None else f"parameters file {str(self.path)!r}"
        if expected:
            where += f" (expected the parameters of {expected})"
        if len(self.problems) == 1:
            text = f"{where}: {self.problems[0]}"
        else:
            text = f"{where}, {len(self.problems)} problems:\n" + "\n".join(
                f"  {p}" for p in self.problems
            )
        super().__init__(text)


def save_params(path: str | os.PathLike[str], params: Mapping[str, np.ndarray]) -> Path:
    """Write ``params`` to an uncompressed ``.npz`` at exactly ``path``; returns it as a Path.

    The keys of the file are exactly the keys of ``params`` (no suffix is added to ``path``
    either). The write is atomic: the file is written under a temporary name in the same folder,
    then renamed over ``path``, so a reader sees the old file or the new one, never half of one.
    Arrays are stored as they are (dtype and shape); object arrays, which would need pickle to be
    read back, are refused with :class:`TypeError`.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"parameter names must be non-empty strings, got {name!r}")
        if name in _SAVEZ_RESERVED:
            raise ValueError(f"{name!r} cannot be a parameter name in a .npz file")
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError(
                f"params[{name!r}] is an object array ({type(value).__name__}); only numeric"
                " arrays can be saved (object arrays would need pickle to load)"
            )
        arrays[name] = array
    buffer = io.BytesIO()  # numpy writes to a handle as given: no ".npz" appended
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def load_params(
    source: str | os.PathLike[str] | Mapping[str, Any],
    cell: str | Any,
    config: CellConfig | None = None,
) -> dict[str, np.ndarray]:
    """The parameters of a cell, read from ``source``: the path of a ``.npz`` file, or a mapping
    of names to arrays (a PyTorch ``state_dict``: tensors are detached, moved to the CPU and
    converted; anything ``numpy.asarray`` reads works).

    ``cell`` is a built-in cell's name (``"rnn"``, ``"lstm"`` or ``"gru"``) with its ``config``,
    or a cell object, whose ``config`` and ``param_shapes`` (every :class:`rnnbench.StackedCell`
    has them) say what is expected. ``source`` must hold exactly those keys, each a
    floating-point array of the expected shape; anything else raises :class:`ParamsFileError`
    listing every problem. The arrays come back C-contiguous, cast to ``config.dtype``, in the
    cell's order of names, never sharing memory with ``source``.
    """
    name, config, expected, gates = _expected_params(cell, config)
    if isinstance(source, Mapping):
        path, found, problems = None, *_read_mapping(source)
    else:
        path, found, problems = source, _read_npz(source), []

    pytorch_layout = gates is not None
    problems += _key_problems(found, expected, config, pytorch_layout)
    file_sizes = _file_sizes(found)
    for key, shape in expected.items():
        if key not in found:
            continue
        array = found[key]
        if not np.issubdtype(array.dtype, np.floating):
            problems.append(f"{key!r}: dtype {array.dtype} is not a floating-point type")
        elif array.shape != shape:
            hint = _shape_hint(key, shape, array.shape, name, gates, config, file_sizes)
            problems.append(
                f"{key!r}: expected shape {shape}, found {array.shape}"
                + (f" ({hint})" if hint else "")
            )
    if problems:
        raise ParamsFileError(path, problems, expected=f"{name}({_describe(config)})")
    return {key: np.array(found[key], dtype=config.np_dtype, order="C") for key in expected}


# --- Helpers -------------------------------------------------------------------------------------


def _expected_params(
    cell: str | Any, config: CellConfig | None
) -> tuple[str, CellConfig, dict[str, tuple[int, ...]], int | None]:
    """``(name, config, shapes, gates)`` of the cell asked for; ``gates`` is None unless the
    parameters are PyTorch's layout (then the hints about cells and sizes apply)."""
    if isinstance(cell, str):
        if cell not in GATES:
            raise ValueError(f"unknown cell {cell!r}: {did_you_mean(cell, GATES)}")
        if not isinstance(config, CellConfig):
            raise TypeError(f"load_params needs a CellConfig, got {config!r}")
        return cell, config, param_shapes(GATES[cell], config), GATES[cell]
    own = getattr(cell, "config", None)
    shapes = getattr(cell, "param_shapes", None)
    if not isinstance(own, CellConfig) or not isinstance(shapes, Mapping):
        raise TypeError(
            "load_params needs a cell name (rnn, lstm, gru) and a CellConfig, or a cell object"
            f" with config and param_shapes (a rnnbench.StackedCell), got {cell!r}"
        )
    if config is not None and config != own:
        raise ValueError(f"config {config!r} differs from the cell's own {own!r}; leave it out")
    gates = getattr(cell, "gates", None)
    if not isinstance(gates, int) or dict(shapes) != param_shapes(gates, own):
        gates = None
    name = getattr(cell, "kind", None) or type(cell).__name__
    return name, own, dict(shapes), gates


def _read_mapping(source: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every value of ``source`` as a numpy array, and a line for each one that is not."""
    found, problems = {}, []
    for key, value in source.items():
        if not isinstance(key, str):
            problems.append(f"key {key!r} is not a string")
            continue
        try:
            found[key] = _as_array(value)
        except Exception as exc:
            problems.append(f"{key!r}: cannot be read as an array ({_reason(exc)})")
    return found, problems


def _as_array(value: Any) -> np.ndarray:
    """A numpy array of ``value``; a torch tensor is detached and moved to the CPU first."""
    if not isinstance(value, np.ndarray):
        for method in ("detach", "cpu", "numpy"):
            if callable(getattr(value, method, None)):
                value = getattr(value, method)()
    return np.asarray(value)


def _read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``; a file that is not one raises ParamsFileError."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise ParamsFileError(path, ["no such file"]) from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ParamsFileError(path, [f"not a valid .npz file ({_reason(exc)})"]) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ParamsFileError(
            path, ["is a single .npy array, not a .npz of named parameters (save with np.savez)"]
        )
    with loaded:
        not_arrays = [n for n in loaded.zip.namelist() if not n.endswith(".npy")]
        if not_arrays:
            raise ParamsFileError(
                path, [f"not a valid .npz file (members that are not .npy arrays: {not_arrays})"]
            )
        try:
            return {name: loaded[name] for name in loaded.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise ParamsFileError(path, [f"not a valid .npz file ({_reason(exc)})"]) from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).split("\n")[0].split(". ")[0].strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _describe(config: CellConfig) -> str:
    return (
        f"input_size={config.input_size}, hidden_size={config.hidden_size},"
        f" num_layers={config.num_layers}, bias={config.bias}"
    )


def _key_problems(
    found: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[int, ...]],
    config: CellConfig,
    pytorch_layout: bool = True,
) -> list[str]:
    """A line for every missing and every unexpected key, with a hint where one is obvious (the
    hints about bias and layers only for PyTorch's names)."""
    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected]
    file_layers = {int(m.group(2)) for n in found if (m := _LAYER_KEY.match(n))}
    file_has_bias = any(n.startswith("bias_") for n in found)
    problems = []
    for name in missing:
        hint = None
        if not pytorch_layout:
            pass
        elif name.startswith("bias_") and not file_has_bias:
            hint = "was the model saved with bias=False?"
        elif file_layers and int(name.rsplit("_l", 1)[1]) > max(file_layers):
            hint = f"was the model saved with num_layers={max(file_layers) + 1}?"
        problems.append(f"missing key {name!r}" + (f" ({hint})" if hint else ""))
    for name in unexpected:
        hint = None
        match = _LAYER_KEY.match(name) if pytorch_layout else None
        if "." in name and name.rsplit(".", 1)[1] in expected:
            prefix = name.rsplit(".", 1)[0]
            hint = (
                f"a key with the prefix {prefix + '.'!r}: save the recurrent module's state_dict,"
                " not that of a model wrapping it"
            )
        elif not pytorch_layout:
            pass
        elif name.endswith("_reverse"):
            hint = "bidirectional models are not supported"
        elif name.startswith("weight_hr_"):
            hint = "LSTM projections (proj_size) are not supported"
        elif match and match.group(1).startswith("bias_") and not config.bias:
            hint = "was the model saved with bias=True?"
        elif match and int(match.group(2)) >= config.num_layers:
            hint = f"was the model saved with num_layers={max(file_layers) + 1}?"
        problems.append(f"unexpected key {name!r}" + (f" ({hint})" if hint else ""))
    return problems


def _file_sizes(found: Mapping[str, np.ndarray]) -> tuple[int, int] | None:
    """``(gates, hidden_size)`` of the model in the file, read off ``weight_hh_l0`` ``(G*H, H)``,
    or None when that is missing or not of that form."""
    w_hh = found.get("weight_hh_l0")
    if w_hh is None or w_hh.ndim != 2 or w_hh.shape[1] < 1 or w_hh.shape[0] % w_hh.shape[1]:
        return None
    return w_hh.shape[0] // w_hh.shape[1], w_hh.shape[1]


def _shape_hint(
    name: str,
    want: tuple[int, ...],
    got: tuple[int, ...],
    cell: str,
    gates: int | None,
    config: CellConfig,
    file_sizes: tuple[int, int] | None,
) -> str | None:
    """Why ``got`` may differ from ``want``: another cell, hidden_size or input_size (the last
    three for PyTorch's layout only, ``gates`` given)."""
    hidden = config.hidden_size
    if len(got) != len(want):
        return f"expected a {len(want)}-D array"
    if gates is None:
        return None
    if file_sizes is not None:
        file_gates, file_hidden = file_sizes
        if file_gates != gates and file_gates in _CELL_OF_GATES:
            return (
                f"the file's weight_hh_l0 has {file_gates}*hidden_size rows, {cell} needs"
                f" {gates}*hidden_size: saved from {_CELL_OF_GATES[file_gates]}?"
            )
        if file_hidden != hidden:
            return f"hidden_size differs: the file's is {file_hidden}, the config's {hidden}"
    rows = got[0]
    if rows != want[0]:
        if rows % hidden == 0 and rows // hidden != gates and rows // hidden in _CELL_OF_GATES:
            return (
                f"{rows} rows = {rows // hidden}*hidden_size, {cell} needs {gates}*hidden_size:"
                f" saved from {_CELL_OF_GATES[rows // hidden]}?"
            )
        if rows % gates == 0:
            return f"hidden_size differs: {rows} rows = {gates}*{rows // gates}"
        return None
    if name == "weight_ih_l0":
        return f"input_size differs: the file's is {got[1]}, the config's {config.input_size}"
    return f"hidden_size differs: the file's is {got[1]}, the config's {hidden}"
