"""Parameters to and from ``.npz`` files: round trips, atomic writes, and every way a file can be
wrong, each reported as a ParamsFileError naming the file, the key and the shapes."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import rnnbench
from rnnbench import ParamsFileError, RnnbenchError, load_params, save_params
from rnnbench.cell import DTYPES, GATES, CellConfig, param_shapes
from rnnbench.plugins.cells.reference import GRUCell, LSTMCell, ReferenceCell, RNNCell

CELLS: dict[str, type[ReferenceCell]] = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
IN, HID = 4, 7


def params_of(cell: str, config: CellConfig, seed: int = 0) -> dict[str, np.ndarray]:
    return CELLS[cell](config).init_params(np.random.default_rng(seed))


def load_error(path: Path, cell: str, config: CellConfig) -> str:
    with pytest.raises(ParamsFileError) as info:
        load_params(path, cell, config)
    assert info.value.path == Path(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_public_api():
    for name in ("save_params", "load_params", "ParamsFileError"):
        assert name in rnnbench.__all__
    assert issubclass(ParamsFileError, RnnbenchError)


# --- Round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_round_trip(tmp_path, cell, num_layers, bias, dtype):
    config = CellConfig(IN, HID, num_layers=num_layers, bias=bias, dtype=dtype)
    params = params_of(cell, config)
    path = save_params(tmp_path / "params.npz", params)
    assert path == tmp_path / "params.npz"
    with np.load(path, allow_pickle=False) as raw:
        assert sorted(raw.files) == sorted(params)
    loaded = load_params(path, cell, config)
    assert list(loaded) == list(param_shapes(GATES[cell], config))
    for name, value in params.items():
        assert loaded[name].dtype == np.dtype(dtype)
        assert loaded[name].flags.c_contiguous
        np.testing.assert_array_equal(loaded[name], value)


def test_path_is_used_exactly_without_a_suffix(tmp_path):
    config = CellConfig(IN, HID)
    path = save_params(tmp_path / "weights.bin", params_of("gru", config))
    assert os.listdir(tmp_path) == ["weights.bin"]
    assert sorted(load_params(str(path), "gru", config)) == sorted(param_shapes(3, config))


def test_save_creates_the_folder(tmp_path):
    config = CellConfig(IN, HID)
    path = save_params(tmp_path / "a" / "b" / "p.npz", params_of("rnn", config))
    assert path.is_file()


def test_file_is_uncompressed(tmp_path):
    path = save_params(tmp_path / "p.npz", params_of("lstm", CellConfig(IN, HID)))
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}


@pytest.mark.parametrize(("saved", "wanted"), [("float64", "float32"), ("float32", "float64")])
def test_loaded_arrays_are_cast_to_the_config_dtype(tmp_path, saved, wanted):
    params = params_of("lstm", CellConfig(IN, HID, dtype=saved))
    path = save_params(tmp_path / "p.npz", params)
    loaded = load_params(path, "lstm", CellConfig(IN, HID, dtype=wanted))
    for name, value in params.items():
        assert loaded[name].dtype == np.dtype(wanted)
        np.testing.assert_array_equal(loaded[name], value.astype(wanted))


def test_fortran_ordered_arrays_load_c_contiguous(tmp_path):
    config = CellConfig(IN, HID, dtype="float64")
    params = {k: np.asfortranarray(v) for k, v in params_of("gru", config).items()}
    loaded = load_params(save_params(tmp_path / "p.npz", params), "gru", config)
    assert all(a.flags.c_contiguous for a in loaded.values())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", list(CELLS))
def test_loaded_params_run_identically(tmp_path, cell, dtype):
    config = CellConfig(IN, HID, num_layers=2, dtype=dtype)
    model = CELLS[cell](config)
    params = model.init_params(np.random.default_rng(1))
    loaded = load_params(save_params(tmp_path / "p.npz", params), cell, config)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3, IN)).astype(dtype)
    state = tuple(rng.standard_normal((2, 3, HID)).astype(dtype) for _ in range(model.state_size))
    original, reloaded = model.forward(params, x, state), model.forward(loaded, x, state)
    np.testing.assert_array_equal(reloaded.outputs, original.outputs)
    for a, b in zip(reloaded.final_state, original.final_state, strict=True):
        np.testing.assert_array_equal(a, b)
    d_out = rng.standard_normal(original.outputs.shape).astype(dtype)
    grads = model.backward(loaded, reloaded.cache, d_out).param_grads
    want = model.backward(params, original.cache, d_out).param_grads
    for name in want:
        np.testing.assert_array_equal(grads[name], want[name])


# --- Atomic writes -------------------------------------------------------------------------------


def test_atomic_write_leaves_no_temp_files(tmp_path):
    config = CellConfig(IN, HID)
    for seed in range(3):  # overwriting, too
        save_params(tmp_path / "p.npz", params_of("lstm", config, seed))
    assert os.listdir(tmp_path) == ["p.npz"]
    np.testing.assert_array_equal(
        load_params(tmp_path / "p.npz", "lstm", config)["weight_hh_l0"],
        params_of("lstm", config, 2)["weight_hh_l0"],
    )


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_files(tmp_path, monkeypatch):
    config = CellConfig(IN, HID)
    path = save_params(tmp_path / "p.npz", params_of("rnn", config, seed=0))
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_params(path, params_of("rnn", config, seed=1))
    assert os.listdir(tmp_path) == ["p.npz"]
    assert path.read_bytes() == before


def test_save_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="object"):
        save_params(tmp_path / "p.npz", {"weight_ih_l0": np.array([None, 1], dtype=object)})
    assert os.listdir(tmp_path) == []


# --- Files that do not match ---------------------------------------------------------------------


def test_missing_key(tmp_path):
    config = CellConfig(IN, HID, num_layers=2)
    params = params_of("lstm", config)
    del params["weight_hh_l1"]
    message = load_error(save_params(tmp_path / "p.npz", params), "lstm", config)
    assert "missing key 'weight_hh_l1'" in message


def test_missing_layer_hints_at_num_layers(tmp_path):
    path = save_params(tmp_path / "p.npz", params_of("gru", CellConfig(IN, HID, num_layers=1)))
    message = load_error(path, "gru", CellConfig(IN, HID, num_layers=2))
    assert "missing key 'weight_ih_l1'" in message
    assert "num_layers=1" in message


def test_unexpected_key(tmp_path):
    config = CellConfig(IN, HID)
    params = params_of("rnn", config) | {"extra": np.zeros(3)}
    message = load_error(save_params(tmp_path / "p.npz", params), "rnn", config)
    assert "unexpected key 'extra'" in message


def test_bias_in_a_model_without_bias(tmp_path):
    path = save_params(tmp_path / "p.npz", params_of("lstm", CellConfig(IN, HID, bias=True)))
    message = load_error(path, "lstm", CellConfig(IN, HID, bias=False))
    assert "unexpected key 'bias_ih_l0'" in message
    assert "unexpected key 'bias_hh_l0'" in message
    assert "bias=True?" in message


def test_no_bias_in_a_model_with_bias(tmp_path):
    path = save_params(tmp_path / "p.npz", params_of("lstm", CellConfig(IN, HID, bias=False)))
    message = load_error(path, "lstm", CellConfig(IN, HID, bias=True))
    assert "missing key 'bias_ih_l0'" in message
    assert "bias=False?" in message


def test_wrapped_module_prefix_is_hinted(tmp_path):
    config = CellConfig(IN, HID)
    params = {f"rnn.{k}": v for k, v in params_of("gru", config).items()}
    message = load_error(save_params(tmp_path / "p.npz", params), "gru", config)
    assert "unexpected key 'rnn.weight_ih_l0'" in message
    assert "'rnn.'" in message


def test_bidirectional_is_refused(tmp_path):
    config = CellConfig(IN, HID)
    params = params_of("gru", config)
    params |= {f"{k}_reverse": v for k, v in params.items()}
    message = load_error(save_params(tmp_path / "p.npz", params), "gru", config)
    assert "bidirectional" in message


@pytest.mark.parametrize(
    ("saved", "loaded", "hint"),
    [
        ("gru", "lstm", "saved from a GRU?"),
        ("lstm", "gru", "saved from an LSTM?"),
        ("rnn", "gru", "saved from an RNN?"),
    ],
)
def test_wrong_gate_count_hints_at_the_cell(tmp_path, saved, loaded, hint):
    config = CellConfig(IN, HID)
    path = save_params(tmp_path / "p.npz", params_of(saved, config))
    message = load_error(path, loaded, config)
    want, got = GATES[loaded] * HID, GATES[saved] * HID
    assert f"'weight_ih_l0': expected shape ({want}, {IN}), found ({got}, {IN})" in message
    assert hint in message


def test_wrong_shape_without_weight_hh_still_hints(tmp_path):
    config = CellConfig(IN, HID)
    params = params_of("gru", config)
    del params["weight_hh_l0"]
    message = load_error(save_params(tmp_path / "p.npz", params), "lstm", config)
    assert "missing key 'weight_hh_l0'" in message
    assert f"found ({3 * HID}, {IN})" in message
    assert "saved from a GRU?" in message


def test_hidden_size_differs(tmp_path):
    path = save_params(tmp_path / "p.npz", params_of("lstm", CellConfig(IN, 5)))
    message = load_error(path, "lstm", CellConfig(IN, HID))
    assert f"expected shape ({4 * HID}, {HID}), found (20, 5)" in message
    assert "hidden_size differs" in message


def test_input_size_differs(tmp_path):
    path = save_params(tmp_path / "p.npz", params_of("rnn", CellConfig(3, HID)))
    message = load_error(path, "rnn", CellConfig(IN, HID))
    assert f"'weight_ih_l0': expected shape ({HID}, {IN}), found ({HID}, 3)" in message
    assert "input_size differs" in message


def test_wrong_number_of_dimensions(tmp_path):
    config = CellConfig(IN, HID)
    params = params_of("rnn", config)
    params["bias_ih_l0"] = params["bias_ih_l0"][np.newaxis]
    message = load_error(save_params(tmp_path / "p.npz", params), "rnn", config)
    assert f"'bias_ih_l0': expected shape ({HID},), found (1, {HID})" in message


def test_every_problem_is_reported(tmp_path):
    config = CellConfig(IN, HID, num_layers=2)
    params = params_of("rnn", config)
    del params["weight_ih_l1"]
    params["weight_hh_l1"] = np.zeros((2, 2))
    params["surprise"] = np.zeros(1)
    with pytest.raises(ParamsFileError) as info:
        load_params(save_params(tmp_path / "p.npz", params), "rnn", config)
    assert len(info.value.problems) == 3


def test_non_float_arrays_are_refused(tmp_path):
    config = CellConfig(IN, HID)
    params = params_of("rnn", config)
    params["weight_hh_l0"] = np.ones((HID, HID), dtype=np.int64)
    message = load_error(save_params(tmp_path / "p.npz", params), "rnn", config)
    assert "'weight_hh_l0'" in message and "int64" in message


# --- Files that are not parameter files ----------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, not an npz", b"PK\x03\x04truncated zip", b"\x93NUMPY\x01\x00broken"],
    ids=["empty", "text", "truncated-zip", "broken-npy"],
)
def test_not_an_npz(tmp_path, content):
    path = tmp_path / "p.npz"
    path.write_bytes(content)
    message = load_error(path, "rnn", CellConfig(IN, HID))
    assert "not a valid .npz" in message


def test_a_single_npy_array(tmp_path):
    path = tmp_path / "p.npy"
    np.save(path, np.zeros((HID, IN)))
    assert ".npy" in load_error(path, "rnn", CellConfig(IN, HID))


def test_a_zip_that_is_not_an_npz(tmp_path):
    path = tmp_path / "p.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    assert "not a valid .npz" in load_error(path, "rnn", CellConfig(IN, HID))


def test_pickled_arrays_are_never_loaded(tmp_path):
    config = CellConfig(IN, HID)
    params = params_of("rnn", config)
    params["weight_hh_l0"] = np.array([object()] * HID * HID, dtype=object).reshape(HID, HID)
    path = tmp_path / "p.npz"
    np.savez(path, **params)  # numpy pickles object arrays; load_params must refuse them
    assert "not a valid .npz" in load_error(path, "rnn", config)


def test_missing_file(tmp_path):
    assert "no such file" in load_error(tmp_path / "nope.npz", "rnn", CellConfig(IN, HID))


def test_a_folder(tmp_path):
    assert "not a valid .npz" in load_error(tmp_path, "rnn", CellConfig(IN, HID))


def test_unknown_cell_name(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'lstm'"):
        load_params(tmp_path / "p.npz", "lstn", CellConfig(IN, HID))


# --- In-memory mappings (a converted PyTorch state_dict) and cell objects -------------------------


class FakeTensor:
    """What load_params needs of a torch.Tensor: ``detach``, ``cpu`` and ``numpy``, in order."""

    def __init__(self, array: np.ndarray, calls: list[str]) -> None:
        self.array, self.calls = array, calls

    def detach(self) -> FakeTensor:
        self.calls.append("detach")
        return self

    def cpu(self) -> FakeTensor:
        self.calls.append("cpu")
        return self

    def numpy(self) -> np.ndarray:
        self.calls.append("numpy")
        return self.array


def mapping_error(source, cell, config=None) -> str:
    with pytest.raises(ParamsFileError) as info:
        load_params(source, cell, config)
    assert info.value.path is None
    message = str(info.value)
    assert message.startswith("parameters mapping")
    return message


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", list(CELLS))
def test_a_mapping_loads_like_a_file(tmp_path, cell, dtype):
    config = CellConfig(IN, HID, num_layers=2, dtype=dtype)
    params = params_of(cell, CellConfig(IN, HID, num_layers=2, dtype="float64"))
    from_file = load_params(save_params(tmp_path / "p.npz", params), cell, config)
    reordered = dict(reversed(list(params.items())))  # a state_dict's order is not ours
    from_mapping = load_params(reordered, cell, config)
    assert list(from_mapping) == list(from_file) == list(param_shapes(GATES[cell], config))
    for name, value in from_file.items():
        assert from_mapping[name].dtype == np.dtype(dtype) and from_mapping[name].flags.c_contiguous
        np.testing.assert_array_equal(from_mapping[name], value)


def test_a_mapping_is_copied_not_shared():
    """Training updates parameters in place: it must never write into the caller's arrays."""
    config = CellConfig(IN, HID, dtype="float64")
    params = params_of("gru", config)
    loaded = load_params(params, "gru", config)
    for name, value in params.items():
        assert not np.shares_memory(loaded[name], value)


def test_tensor_like_values_are_detached_and_converted():
    config = CellConfig(IN, HID, dtype="float32")
    params = params_of("lstm", config)
    calls: list[str] = []
    state_dict = {name: FakeTensor(value, calls) for name, value in params.items()}
    loaded = load_params(state_dict, "lstm", config)
    assert calls == ["detach", "cpu", "numpy"] * len(params)
    for name, value in params.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_a_wrong_shape_in_a_mapping_is_explained():
    config = CellConfig(IN, HID)
    params = params_of("gru", config)
    message = mapping_error(params, "lstm", config)
    assert "(expected the parameters of lstm(input_size=4, hidden_size=7" in message
    assert f"'weight_ih_l0': expected shape ({4 * HID}, {IN}), found ({3 * HID}, {IN})" in message
    assert "saved from a GRU?" in message


def test_a_mapping_reports_every_problem():
    config = CellConfig(IN, HID)
    params: dict = dict(params_of("rnn", config))
    params["weight_hh_l0"] = [[1.0, 2.0], [3.0]]  # ragged: not an array
    params[3] = np.zeros(2)
    params["rnn.weight_ih_l0"] = params.pop("weight_ih_l0")
    message = mapping_error(params, "rnn", config)
    assert "'weight_hh_l0': cannot be read as an array (ValueError" in message
    assert "key 3 is not a string" in message
    assert "missing key 'weight_ih_l0'" in message
    assert "unexpected key 'rnn.weight_ih_l0' (a key with the prefix 'rnn.'" in message


@pytest.mark.parametrize("cell", list(CELLS))
def test_a_cell_object_says_what_to_expect(cell):
    config = CellConfig(IN, HID, num_layers=2, dtype="float64")
    params = params_of(cell, config)
    loaded = load_params(params, CELLS[cell](config))
    assert list(loaded) == list(param_shapes(GATES[cell], config))
    assert load_params(params, CELLS[cell](config), config).keys() == loaded.keys()
    with pytest.raises(ValueError, match="differs from the cell's own"):
        load_params(params, CELLS[cell](config), CellConfig(IN, HID))
    message = mapping_error(params, CELLS[cell](CellConfig(IN, 5, num_layers=2)))
    assert "hidden_size differs" in message


class VectorRecurrence(rnnbench.StackedCell):
    """Parameters that are not PyTorch's: an IndRNN-like vector recurrent weight."""

    def layer_param_shapes(self, k):
        return {f"w{k}": (self.config.hidden_size, self.layer_input_size(k)),
                f"u{k}": (self.config.hidden_size,)}

    def layer_forward(self, params, k, inputs, state):
        raise NotImplementedError

    def layer_backward(self, params, k, layer_cache, d_outputs, d_final):
        raise NotImplementedError


def test_any_stacked_cells_parameters_load():
    cell = VectorRecurrence(CellConfig(IN, HID, num_layers=2, dtype="float64"))
    params = cell.init_params(np.random.default_rng(0))
    loaded = load_params(params, cell)
    assert list(loaded) == ["w0", "u0", "w1", "u1"]
    broken = {**params, "u1": params["u1"][:3], "bias_ih_l0": np.zeros(HID)}
    del broken["w0"]
    message = mapping_error(broken, cell)
    assert "expected the parameters of VectorRecurrence(" in message
    assert "missing key 'w0'\n" in message
    assert "unexpected key 'bias_ih_l0'\n" in message  # no PyTorch hints for another layout
    assert f"'u1': expected shape ({HID},), found (3,)" in message


def test_a_cell_must_be_a_name_or_a_cell_object():
    with pytest.raises(TypeError, match=r"needs a cell name .* or a cell object"):
        load_params({}, object())
    with pytest.raises(TypeError, match="needs a CellConfig"):
        load_params({}, "rnn")
