"""Parameters to and from ``.npz`` files, in PyTorch's names and shapes.

A cell's parameters are a dict keyed by PyTorch's names (``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}``; see :mod:`rnnbench.cell`), so the ``state_dict`` of a
``torch.nn.RNN`` (``nonlinearity="tanh"``), ``torch.nn.LSTM`` or ``torch.nn.GRU`` *is* such a dict.
An uncompressed ``.npz`` of it is the interchange format: numpy reads and writes it, and PyTorch
is needed only on the PyTorch side, never here.

Export a trained PyTorch module, then load it here::

    import numpy as np
    np.savez(path, **{k: v.detach().numpy() for k, v in module.state_dict().items()})

    params = load_params(path, "lstm", CellConfig(input_size=..., hidden_size=..., ...))

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
    """A parameters file cannot be read, or does not hold the parameters of the cell expected.

    ``path`` is the file; ``problems`` one line per problem found (every one, not just the first),
    each naming the key, the expected and the found shape, and a hint where one is obvious;
    ``expected``, when given, describes the cell and config the file was loaded for.
    """

    def __init__(
        self, path: str | os.PathLike[str], problems: list[str], expected: str | None = None
    ) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        where = f"parameters file {str(self.path)!r}"
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
    path: str | os.PathLike[str], cell: str, config: CellConfig
) -> dict[str, np.ndarray]:
    """Read the parameters of a ``cell`` (``"rnn"``, ``"lstm"`` or ``"gru"``) of ``config``.

    The file must hold exactly the keys of :func:`rnnbench.cell.param_shapes` for the cell and
    config, each a floating-point array of the expected shape; anything else raises
    :class:`ParamsFileError` listing every problem. The arrays come back C-contiguous, cast to
    ``config.dtype``, in PyTorch's order of names.
    """
    if cell not in GATES:
        raise ValueError(f"unknown cell {cell!r}: {did_you_mean(cell, GATES)}")
    if not isinstance(config, CellConfig):
        raise TypeError(f"load_params needs a CellConfig, got {config!r}")
    expected = param_shapes(GATES[cell], config)
    found = _read_npz(path)

    problems = _key_problems(found, expected, config)
    file_sizes = _file_sizes(found)
    for name, shape in expected.items():
        if name not in found:
            continue
        array = found[name]
        if not np.issubdtype(array.dtype, np.floating):
            problems.append(f"{name!r}: dtype {array.dtype} is not a floating-point type")
        elif array.shape != shape:
            hint = _shape_hint(name, shape, array.shape, cell, config, file_sizes)
            problems.append(
                f"{name!r}: expected shape {shape}, found {array.shape}"
                + (f" ({hint})" if hint else "")
            )
    if problems:
        raise ParamsFileError(path, problems, expected=f"{cell}({_describe(config)})")
    return {name: np.ascontiguousarray(found[name], dtype=config.np_dtype) for name in expected}


# --- Helpers -------------------------------------------------------------------------------------


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
    found: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], config: CellConfig
) -> list[str]:
    """A line for every missing and every unexpected key, with a hint where one is obvious."""
    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected]
    file_layers = {int(m.group(2)) for n in found if (m := _LAYER_KEY.match(n))}
    file_has_bias = any(n.startswith("bias_") for n in found)
    problems = []
    for name in missing:
        hint = None
        if name.startswith("bias_") and not file_has_bias:
            hint = "was the model saved with bias=False?"
        elif file_layers and int(name.rsplit("_l", 1)[1]) > max(file_layers):
            hint = f"was the model saved with num_layers={max(file_layers) + 1}?"
        problems.append(f"missing key {name!r}" + (f" ({hint})" if hint else ""))
    for name in unexpected:
        hint = None
        match = _LAYER_KEY.match(name)
        if name.endswith("_reverse"):
            hint = "bidirectional models are not supported"
        elif name.startswith("weight_hr_"):
            hint = "LSTM projections (proj_size) are not supported"
        elif "." in name and name.rsplit(".", 1)[1] in expected:
            prefix = name.rsplit(".", 1)[0]
            hint = (
                f"a key with the prefix {prefix + '.'!r}: save the recurrent module's state_dict,"
                " not that of a model wrapping it"
            )
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
    config: CellConfig,
    file_sizes: tuple[int, int] | None,
) -> str | None:
    """Why ``got`` may differ from ``want``: another cell, hidden_size or input_size."""
    gates, hidden = GATES[cell], config.hidden_size
    if len(got) != len(want):
        return f"expected a {len(want)}-D array"
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
