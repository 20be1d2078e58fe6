"""The numba-cuda cells against the numpy reference: every output and gradient, both dtypes.

These need ``numba.cuda``: a CUDA GPU, or Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, as
``tox -e cuda-sim`` sets it; the variable is read when Numba is imported, so it cannot be set
from here). Elsewhere they are skipped, with the reason, except the checks of how the backend is
registered and imported, which hold everywhere.

The simulator runs every GPU thread as a Python thread, so the shapes are tiny; the kernels'
geometry there (see ``SIMULATOR_GEOMETRY``) is small enough that they still cover several
blocks, several shared-memory rounds and partial tiles, and ``test_any_geometry`` runs the
kernels under a few more geometries, the GPU's included.

Errors are measured per array as in ``test_numba_cpu``: ``max|a - b| / max|b|``, bounds float64
1e-9, float32 1e-4.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cellcheck import CELLS as REFERENCE
from cellcheck import KINDS, make_case

from rnnbench.cell import CellConfig
from rnnbench.model import SequenceModel
from rnnbench.plugin_manager import build_host
from rnnbench.plugins.cells import numba_cuda
from rnnbench.plugins.cells.numba_cuda import (
    CudaGRUCell,
    CudaLSTMCell,
    CudaRNNCell,
    is_device_array,
)
from rnnbench.plugins.tasks.many_to_one import AddingProblem

CUDA = {"rnn": CudaRNNCell, "lstm": CudaLSTMCell, "gru": CudaGRUCell}
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}
#: (T, B, I, H). The last: H and B not multiples of any block or tile size.
SHAPES = [(1, 1, 1, 1), (1, 2, 3, 1), (3, 2, 5, 7), (2, 3, 4, 17)]

REASON = numba_cuda.unavailable_reason()
needs_cuda = pytest.mark.skipif(
    REASON is not None, reason=f"numba-cuda cells cannot run here: {REASON}"
)


@pytest.fixture(scope="module", autouse=True)
def _fast_simulator_threads():
    """The simulator's block manager busy-polls its threads at every barrier; with Python's
    default 5 ms thread switch interval most of the time goes to waiting for the GIL."""
    if REASON is not None or not numba_cuda.on_simulator():
        yield
        return
    saved = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    yield
    sys.setswitchinterval(saved)


def scaled_error(ours: np.ndarray, reference: np.ndarray) -> float:
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    scale = max(float(np.max(np.abs(reference))), np.finfo(reference.dtype).tiny)
    return float(np.max(np.abs(ours.astype(np.float64) - reference))) / scale


def everything(case, cell, on_device: bool) -> dict[str, np.ndarray]:
    """Forward outputs, final state and every gradient of ``case``'s loss, computed by ``cell``,
    as host arrays; with ``on_device``, each must have come back as a device array."""
    result = cell.forward(case.params, case.x, case.state)
    back = cell.backward(case.params, result.cache, case.w_out, case.w_state)
    found = {"outputs": result.outputs, "x": back.d_inputs}
    found.update({f"final[{i}]": s for i, s in enumerate(result.final_state)})
    found.update({f"d_initial[{i}]": d for i, d in enumerate(back.d_initial_state)})
    found.update({f"grad {name}": g for name, g in back.param_grads.items()})
    if on_device:
        for name, array in found.items():
            assert is_device_array(array), f"{name} is a {type(array).__name__}"
    return {name: cell.to_host(array) for name, array in found.items()}


def assert_matches_reference(case, cuda_cell, label=""):
    expected = everything(case, case.cell, on_device=False)
    got = everything(case, cuda_cell, on_device=True)
    assert got.keys() == expected.keys()
    dtype = case.cell.config.dtype
    for name in expected:
        error = scaled_error(got[name], expected[name])
        assert error < TOLERANCE[dtype], f"{label} {dtype} {name}: {error:.3g}"


@needs_cuda
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference(kind, num_layers, bias, shape, dtype):
    case = make_case(kind, shape, num_layers, bias, dtype)
    cell = CUDA[kind](case.cell.config)
    assert_matches_reference(case, cell, f"{kind} {shape} L{num_layers}")


@needs_cuda
@pytest.mark.parametrize(
    "geometry",
    [
        # One thread per block, one element per shared-memory round, one block per grid
        # dimension where the kernel loops: every loop of every kernel runs many times.
        dict(tile=1, micro=1, depth=1, cols=1, rows=1, per_thread=1, chunk=1, threads=1,
             max_blocks=1),
        # Sizes that divide nothing here.
        dict(tile=3, micro=3, depth=5, cols=5, rows=3, per_thread=3, chunk=7, threads=5,
             max_blocks=2),
        "gpu",
    ],
    ids=["one-thread", "odd", "gpu"],
)
@pytest.mark.parametrize("kind", KINDS)
def test_any_geometry(kind, geometry):
    from rnnbench.plugins.cells.cuda_kernels import GPU_GEOMETRY, Geometry

    # One thread does a whole GEMM by itself there: a smaller case.
    shape = (2, 3, 2, 5) if geometry != "gpu" and geometry["max_blocks"] == 1 else (3, 5, 4, 9)
    case = make_case(kind, shape, num_layers=2)
    cell = CUDA[kind](case.cell.config)
    cell.geometry = GPU_GEOMETRY if geometry == "gpu" else Geometry(**geometry)
    assert_matches_reference(case, cell, f"{kind} {cell.geometry}")


@needs_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_step_repeated_equals_forward(kind):
    case = make_case(kind, (4, 3, 2, 5), num_layers=2, cell_class=CUDA[kind])
    cell = case.cell
    whole = cell.forward(case.params, case.x, case.state)
    params = {name: cell.to_backend(p) for name, p in case.params.items()}
    state, outputs = tuple(cell.to_backend(s) for s in case.state), []
    for x_t in case.x:
        output, state = cell.step(params, cell.to_backend(x_t), state)
        assert is_device_array(output) and all(is_device_array(s) for s in state)
        outputs.append(cell.to_host(output))
    np.testing.assert_allclose(np.stack(outputs), cell.to_host(whole.outputs), rtol=1e-12)
    for ours, theirs in zip(state, whole.final_state, strict=True):
        np.testing.assert_allclose(cell.to_host(ours), cell.to_host(theirs), rtol=1e-12)


@needs_cuda
def test_host_and_device_arguments_give_the_same_results():
    case = make_case("lstm", (3, 2, 3, 4), num_layers=2, cell_class=CudaLSTMCell)
    cell = case.cell
    on_host = everything(case, cell, on_device=True)
    case.params = {name: cell.to_backend(p) for name, p in case.params.items()}
    case.x = cell.to_backend(case.x)
    case.state = tuple(cell.to_backend(s) for s in case.state)
    case.w_out = cell.to_backend(case.w_out)
    case.w_state = tuple(cell.to_backend(s) for s in case.w_state)
    on_device = everything(case, cell, on_device=True)
    for name, value in on_host.items():
        np.testing.assert_array_equal(on_device[name], value, err_msg=name)


@needs_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_backward_leaves_its_arguments_alone(kind):
    case = make_case(kind, (4, 3, 2, 5), num_layers=2, cell_class=CUDA[kind])
    cell = case.cell
    params = {name: cell.to_backend(p) for name, p in case.params.items()}
    result = cell.forward(params, case.x, case.state)
    d_out = cell.to_backend(case.w_out)
    d_final = tuple(cell.to_backend(s) for s in case.w_state)
    first = cell.backward(params, result.cache, d_out, d_final)
    second = cell.backward(params, result.cache, d_out, d_final)
    for name, grad in first.param_grads.items():
        np.testing.assert_array_equal(cell.to_host(grad), cell.to_host(second.param_grads[name]))
    np.testing.assert_array_equal(cell.to_host(d_out), case.w_out)
    for ours, original in zip(d_final, case.w_state, strict=True):
        np.testing.assert_array_equal(cell.to_host(ours), original)
    for name, value in params.items():
        np.testing.assert_array_equal(cell.to_host(value), case.params[name])


@needs_cuda
def test_bias_gradients_are_separate_arrays():
    """The optimizer and clipping update gradients in place: two keys must not share one."""
    case = make_case("lstm", (3, 2, 2, 3), cell_class=CudaLSTMCell)
    cell = case.cell
    result = cell.forward(case.params, case.x, case.state)
    grads = cell.backward(case.params, result.cache, case.w_out).param_grads
    before = cell.to_host(grads["bias_hh_l0"])
    grads["bias_ih_l0"].copy_to_device(np.zeros_like(before))
    np.testing.assert_array_equal(cell.to_host(grads["bias_hh_l0"]), before)


@needs_cuda
def test_protocol_arrays_and_state():
    config = CellConfig(3, 4, num_layers=2, dtype="float32")
    cell = CudaGRUCell(config)
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    device = cell.to_backend(host)
    assert is_device_array(device) and device.dtype == np.float32
    assert cell.to_backend(device) is device
    np.testing.assert_array_equal(cell.to_host(device), host.astype(np.float32))
    assert cell.to_host(host) is host
    (h,) = cell.initial_state(5)
    assert is_device_array(h) and h.shape == (2, 5, 4) and h.dtype == np.float32
    np.testing.assert_array_equal(cell.to_host(h), np.zeros((2, 5, 4), np.float32))
    params = cell.init_params(np.random.default_rng(3))
    reference = REFERENCE["gru"](config).init_params(np.random.default_rng(3))
    for name, value in reference.items():
        assert isinstance(params[name], np.ndarray)
        np.testing.assert_array_equal(params[name], value)


@needs_cuda
def test_bad_arguments_are_explained():
    case = make_case("rnn", (2, 3, 2, 4), cell_class=CudaRNNCell)
    cell = case.cell
    with pytest.raises(ValueError, match="dtype"):
        cell.forward(case.params, case.x.astype(np.float32), case.state)
    with pytest.raises(ValueError, match="dtype"):
        cell.forward(case.params, cell.to_backend(case.x).view(np.int64), case.state)
    with pytest.raises(ValueError, match="shape"):
        cell.forward(case.params, cell.to_backend(case.x[:, :, :1].copy()), case.state)
    with pytest.raises(TypeError, match="device array"):
        cell.forward(case.params, case.x.tolist(), case.state)
    with pytest.raises(ValueError, match="missing"):
        cell.forward({}, case.x, case.state)
    reference_cache = REFERENCE["rnn"](cell.config).forward(case.params, case.x, case.state).cache
    with pytest.raises(ValueError, match="cache"):
        cell.backward(case.params, reference_cache, case.w_out)


@needs_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_sequence_model_gives_the_numpy_cells_loss_and_gradients(kind):
    task = AddingProblem(length=4, train_size=5, validation_size=1, test_size=1)
    data = task.make_data(0)
    batch = data.train.batch(np.arange(5))
    found = []
    for cell_class in (REFERENCE[kind], CUDA[kind]):
        cell = cell_class(CellConfig(data.input_size, 6, num_layers=2, dtype="float64"))
        model = SequenceModel(cell, task, data.output_size)
        params = model.init_params(np.random.default_rng(4))
        found.append(model.loss_and_grads(params, batch))
    (loss, grads), (cuda_loss, cuda_grads) = found
    assert cuda_loss == pytest.approx(loss, rel=1e-12)
    assert cuda_grads.keys() == grads.keys()
    for name, grad in grads.items():
        assert isinstance(cuda_grads[name], np.ndarray)
        assert scaled_error(cuda_grads[name], grad) < 1e-9, name


# --- Everywhere, GPU or not ----------------------------------------------------------------------


def test_registered_through_the_entry_point_group():
    host = build_host()
    assert "numba_cuda_cells" not in host.registry.broken
    for kind, cell_class in CUDA.items():
        entry = host.registry.cells[(kind, "numba-cuda")]
        assert entry.plugin == "numba_cuda_cells"
        assert entry.factory is cell_class
        assert entry.unavailable_reason() == REASON
    if REASON is not None:
        assert "NUMBA_ENABLE_CUDASIM=1" in REASON


def test_importing_the_plugin_does_not_import_numba_cuda():
    """``rnnbench list`` imports every plugin: this one must stay cheap without a GPU."""
    code = (
        "import sys, rnnbench.plugins.cells.numba_cuda; "
        "print('numba.cuda' in sys.modules or 'numba_cuda' in sys.modules)"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "False"
