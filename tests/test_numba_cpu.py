"""The numba-cpu cells: the test kit's cell checks, and every output and gradient against the
numpy reference in both dtypes, on fixed and random shapes.

Errors against the reference are measured per array, relative to its scale:
``max|a - b| / max|b|`` (elementwise relative error is meaningless for elements that are zero up
to rounding). Bounds: float64 1e-9, float32 1e-4 (``rnnbench.testing.TOLERANCE``).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnbench.plugin_manager import build_host
from rnnbench.plugins.cells import numba_cpu
from rnnbench.testing import cell_checks, check_cell

KINDS = ["rnn", "lstm", "gru"]
HOST = build_host()
#: (T, B, I, H); the last is wide enough for the vectorised gate loops' main body and a
#: remainder (257 is not a multiple of any SIMD width).
SHAPES = [(1, 1, 1, 1), (1, 2, 3, 1), (4, 1, 2, 3), (7, 3, 5, 6), (3, 64, 9, 257)]


@pytest.mark.parametrize(
    "check",
    [check for kind in KINDS for check in cell_checks(
        (kind, "numba-cpu"), reference="numpy", shapes=[(4, 2, 3, 3)], host=HOST)],
)
def test_cell_checks(check):
    """Finite-difference gradients, step against forward, arguments left alone, separate
    gradient arrays, ... in 1 and 2 layers, with and without bias, both dtypes."""
    check()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference(kind, shape):
    """Every output and gradient, in 1 and 2 layers, with and without bias, both dtypes."""
    check_cell((kind, "numba-cpu"), reference="numpy", checks=["matches_reference"],
               shapes=[shape], host=HOST).raise_on_failure()


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    shape=st.tuples(*(st.integers(1, n) for n in (6, 5, 7, 9))),
    num_layers=st.integers(1, 3),
    bias=st.booleans(),
    dtype=st.sampled_from(["float64", "float32"]),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_on_random_shapes(kind, shape, num_layers, bias, dtype, seed):
    check_cell(
        (kind, "numba-cpu"), reference="numpy", checks=["matches_reference"], shapes=[shape],
        layers=[num_layers], bias=[bias], dtypes=[dtype], seed=seed, host=HOST,
    ).raise_on_failure()


@pytest.fixture(params=["serial", "tiled-1", "tiled-3"])
def path(request, monkeypatch):
    """Force the serial kernels, or the tiled kernels with 1 or 3 tiles (3 splits the hidden
    units unevenly and pads the last panel); after the test, check the forced path ran."""
    from rnnbench.plugins.cells import numba_kernels

    calls = []
    for name in [f"{kind}_{way}_tiled" for kind in KINDS for way in ("forward", "backward")]:
        kernel = getattr(numba_kernels, name)
        monkeypatch.setattr(numba_kernels, name,
                            lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    if request.param == "serial":
        monkeypatch.setattr(numba_cpu, "TILED_MIN_HIDDEN", None)
    else:
        monkeypatch.setattr(numba_cpu, "TILED_MIN_HIDDEN", 0)
        monkeypatch.setattr(numba_cpu, "TILED_BLOCKS", int(request.param[-1]))
    yield request.param
    tiled = request.param != "serial"
    assert any(name.endswith("forward_tiled") for name in calls) == tiled  # the path ran
    assert any(name.endswith("backward_tiled") for name in calls) == tiled


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (4, 1, 2, 3), (7, 3, 5, 6), (3, 5, 9, 37)],
                         ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("kind", KINDS)
def test_paths_match_reference(path, kind, shape):
    """Each path, outputs and gradients, in 1 and 2 layers, with and without bias, both
    dtypes (the rnn in tanh; relu below)."""
    check_cell((kind, "numba-cpu"), reference="numpy", checks=["matches_reference"],
               shapes=[shape], host=HOST).raise_on_failure()


def test_relu_rnn_paths_match_reference(path):
    check_cell(("rnn", "numba-cpu"), reference="numpy", checks=["matches_reference"],
               shapes=[(7, 5, 3, 9), (3, 2, 4, 37)], options={"nonlinearity": "relu"},
               host=HOST).raise_on_failure()


@pytest.mark.parametrize("kind", KINDS)
def test_paths_pass_cell_checks(path, kind):
    """Finite differences and the protocol checks on each path."""
    for check in cell_checks((kind, "numba-cpu"), reference="numpy", shapes=[(4, 2, 3, 5)],
                             host=HOST):
        check()


def test_tiled_path_is_chosen_by_size_and_threads(monkeypatch):
    import numba

    monkeypatch.setattr(numba_cpu, "TILED_BLOCKS", None)
    monkeypatch.setattr(numba_cpu, "TILED_MIN_HIDDEN", None)
    assert numba_cpu.tiled_blocks(4096) == 0  # off by default
    monkeypatch.setattr(numba_cpu, "TILED_MIN_HIDDEN", 512)
    assert numba_cpu.tiled_blocks(511) == 0
    threads = numba.get_num_threads()
    assert numba_cpu.tiled_blocks(512) == (threads if threads >= 2 else 0)
    numba.set_num_threads(1)  # a budget of one thread: serial kernels
    try:
        assert numba_cpu.tiled_blocks(512) == 0
    finally:
        numba.set_num_threads(threads)


def test_tiled_threshold_from_the_environment(monkeypatch):
    monkeypatch.setenv("RNNBENCH_NUMBA_TILED_MIN_HIDDEN", "768")
    assert numba_cpu._tiled_min_hidden_from_environment() == 768
    monkeypatch.setenv("RNNBENCH_NUMBA_TILED_MIN_HIDDEN", "big")
    with pytest.raises(ValueError, match="RNNBENCH_NUMBA_TILED_MIN_HIDDEN must be an integer"):
        numba_cpu._tiled_min_hidden_from_environment()


def test_tiled_path_from_several_threads_at_once(monkeypatch):
    """Runs in threads (as -j / Dask threaded workers do) give the single-threaded answer: the
    tiled kernels' parallel regions are serialised by a lock (the workqueue layer is not safe
    for concurrent launches)."""
    import threading

    import numpy as np

    from rnnbench.cell import CellConfig

    monkeypatch.setattr(numba_cpu, "TILED_MIN_HIDDEN", 0)
    monkeypatch.setattr(numba_cpu, "TILED_BLOCKS", 2)
    cell = numba_cpu.NumbaLSTMCell(CellConfig(input_size=3, hidden_size=11))
    rng = np.random.default_rng(0)
    params = cell.init_params(rng)
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    dy = rng.standard_normal((6, 4, 11)).astype(np.float32)

    def grads():
        result = cell.forward(params, x, cell.initial_state(4))
        return cell.backward(params, result.cache, dy, None).param_grads

    expected = grads()
    results: list = []
    threads = [threading.Thread(target=lambda: results.append([grads() for _ in range(5)]))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    for run in results:
        for got in run:
            for name, value in expected.items():
                np.testing.assert_array_equal(got[name], value)


def test_pack_panels_is_gate_interleaved():
    import numpy as np

    from rnnbench.plugins.cells import numba_kernels

    hidden, gates = 5, 4
    w = np.arange(gates * hidden * hidden, dtype=np.float64).reshape(gates * hidden, hidden)
    rows, bs = numba_kernels.pack_panels(w, gates, 2)
    assert bs == 3 and rows.shape == (2, gates * bs, hidden)
    for k in range(2):
        for g in range(gates):
            for u in range(bs):
                j = k * bs + u
                expected = w[g * hidden + j] if j < hidden else np.zeros(hidden)
                np.testing.assert_array_equal(rows[k, g * bs + u], expected)


def test_registered_through_the_entry_point_group():
    for kind in KINDS:
        entry = HOST.registry.cells[(kind, "numba-cpu")]
        assert entry.plugin == "numba_cpu_cells"
        assert entry.factory.__module__ == numba_cpu.__name__
    assert numba_cpu.BACKEND == "numba-cpu"


PACKED_KERNELS = [f"lstm_{way}_packed{par}" for way in ("forward", "backward")
                  for par in ("", "_par")]


@pytest.fixture(params=["packed-serial", "packed-parallel"])
def packed(request, monkeypatch):
    """Force a packed driver: serial (one block of all units) or parallel with blocks of 8
    units (37 units: five blocks, the last padded); after the test, check that driver ran."""
    from rnnbench.plugins.cells import numba_kernels

    calls = []
    for name in PACKED_KERNELS:
        kernel = getattr(numba_kernels, name)
        monkeypatch.setattr(numba_kernels, name,
                            lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    way = request.param.split("-")[1]
    monkeypatch.setattr(numba_cpu, "PACKED_FORCE", way)
    monkeypatch.setattr(numba_cpu, "PACKED_BLOCK", 8)
    yield way
    suffix = "_par" if way == "parallel" else ""
    assert calls and all(name.endswith("packed" + suffix) for name in calls)
    assert {name.split("_")[1] for name in calls} == {"forward", "backward"}


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (4, 1, 2, 3), (7, 3, 5, 6), (3, 5, 9, 37),
                                   (2, 4, 3, 70)],
                         ids=lambda s: "T{}B{}I{}H{}".format(*s))
def test_packed_lstm_matches_reference(packed, shape):
    """Outputs and gradients, in 1 and 2 layers, with and without bias, both dtypes."""
    check_cell(("lstm", "numba-cpu"), reference="numpy", checks=["matches_reference"],
               shapes=[shape], host=HOST).raise_on_failure()


def test_packed_lstm_passes_cell_checks(packed):
    """Finite differences and the protocol checks on each packed driver."""
    for check in cell_checks(("lstm", "numba-cpu"), reference="numpy", shapes=[(4, 2, 3, 5)],
                             host=HOST):
        check()


def test_packed_path_is_chosen_by_size_and_threads(monkeypatch):
    import numba

    threads = numba.get_num_threads()
    parallel = "parallel" if threads >= 2 else None
    monkeypatch.setattr(numba_cpu, "PACKED_FORCE", None)
    monkeypatch.setattr(numba_cpu, "TILED_MIN_HIDDEN", None)
    monkeypatch.setattr(numba_cpu, "PACKED_SERIAL_MAX_WORK", 0)  # the defaults
    monkeypatch.setattr(numba_cpu, "PACKED_MAX_BATCH", 2)
    monkeypatch.setattr(numba_cpu, "PACKED_MIN_HIDDEN", 1536)
    assert numba_cpu.packed_path(1, 1, 1) is None  # the serial driver: off
    assert numba_cpu.packed_path(2048, 2, 4) == parallel
    assert numba_cpu.packed_path(1536, 2, 4) == parallel
    assert numba_cpu.packed_path(2048, 1, 4) is None  # GEMV, no packing: BLAS
    assert numba_cpu.packed_path(2048, 3, 4) is None
    assert numba_cpu.packed_path(1535, 2, 4) is None
    monkeypatch.setattr(numba_cpu, "PACKED_SERIAL_MAX_WORK", 4 * 64 * 64)
    assert numba_cpu.packed_path(64, 1, 4) == "serial"
    assert numba_cpu.packed_path(64, 2, 4) is None
    numba.set_num_threads(1)  # a budget of one thread: BLAS kernels
    try:
        assert numba_cpu.packed_path(2048, 2, 4) is None
    finally:
        numba.set_num_threads(threads)
    monkeypatch.setattr(numba_cpu, "TILED_MIN_HIDDEN", 512)  # asking for tiled wins
    assert numba_cpu.packed_path(2048, 2, 4) is None


def test_packed_thresholds_from_the_environment(monkeypatch):
    monkeypatch.setenv("RNNBENCH_NUMBA_PACKED_MAX_BATCH", "8")
    assert numba_cpu._env_int("RNNBENCH_NUMBA_PACKED_MAX_BATCH", 16) == 8
    monkeypatch.setenv("RNNBENCH_NUMBA_PACKED_MAX_BATCH", "")
    assert numba_cpu._env_int("RNNBENCH_NUMBA_PACKED_MAX_BATCH", 16) == 16
    monkeypatch.setenv("RNNBENCH_NUMBA_PACKED_MAX_BATCH", "few")
    with pytest.raises(ValueError, match="RNNBENCH_NUMBA_PACKED_MAX_BATCH must be an integer"):
        numba_cpu._env_int("RNNBENCH_NUMBA_PACKED_MAX_BATCH", 16)


def test_pack_forward_and_backward_layouts():
    import numpy as np

    from rnnbench.plugins.cells import numba_kernels

    hidden, gates, sb = 5, 4, 3
    w = np.arange(gates * hidden * hidden, dtype=np.float64).reshape(gates * hidden, hidden)
    fwd = numba_kernels.pack_forward(w, gates, sb)
    bwd = numba_kernels.pack_backward(w, sb)
    assert fwd.shape == (2, hidden, gates * sb) and bwd.shape == (2, gates * hidden, sb)
    for s in range(2):
        for u in range(sb):
            j = s * sb + u
            for q in range(gates):
                expected = w[q * hidden + j] if j < hidden else np.zeros(hidden)
                np.testing.assert_array_equal(fwd[s, :, q * sb + u], expected)
            expected = w[:, j] if j < hidden else np.zeros(gates * hidden)
            np.testing.assert_array_equal(bwd[s, :, u], expected)
