"""The numba-cuda cells: the test kit's cell checks, and every output and gradient against the
numpy reference in both dtypes.

These need ``numba.cuda``: a CUDA GPU, or Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, as
``tox -e cuda-sim`` sets it; the variable is read when Numba is imported, so it cannot be set
from here). Elsewhere they are skipped, with the reason, except the checks of how the backend is
registered and imported, which hold everywhere.

The simulator runs every GPU thread as a Python thread, so the shapes are tiny; the kernels'
geometry there (see ``SIMULATOR_GEOMETRY``) is small enough that they still cover several
blocks, several shared-memory rounds and partial tiles, and ``test_any_geometry`` runs the
kernels under a few more geometries, the GPU's included.

Errors are measured per array as in ``test_numba_cpu``: ``max|a - b| / max|b|``, bounds float64
1e-9, float32 1e-4. The kit's finite-difference checks (``gradients``, ``edge_shapes``) run on a
GPU only: on the simulator they would take minutes, and the gradients are held to 1e-9 of the
reference's, which ``test_reference_cells`` checks against finite differences.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
from rnnbench.testing import CELL_CHECK_NAMES, cell_checks, check_cell, make_case, scaled_error

KINDS = ["rnn", "lstm", "gru"]
CUDA = {"rnn": CudaRNNCell, "lstm": CudaLSTMCell, "gru": CudaGRUCell}
HOST = build_host()
REFERENCE = {kind: HOST.registry.cells[(kind, "numpy")].factory for kind in KINDS}
#: (T, B, I, H). The last: H and B not multiples of any block or tile size.
SHAPES = [(1, 1, 1, 1), (1, 2, 3, 1), (3, 2, 5, 7), (2, 3, 4, 17)]

REASON = numba_cuda.unavailable_reason()
needs_cuda = pytest.mark.skipif(
    REASON is not None, reason=f"numba-cuda cells cannot run here: {REASON}"
)
#: The kit's checks run here: finite differences take minutes on the simulator.
KIT_CHECKS = [
    name for name in CELL_CHECK_NAMES
    if name != "matches_reference"  # every shape in test_matches_reference
    and not (numba_cuda.on_simulator() and name in ("gradients", "edge_shapes"))
]


pytestmark = pytest.mark.usefixtures("fast_simulator_threads")


def everything(case, on_device: bool) -> dict[str, np.ndarray]:
    """Forward outputs, final state and every gradient of ``case``'s loss (the kit passes
    device arrays), as host arrays; with ``on_device``, each must have come back as a device
    array."""
    cell = case.cell
    result = case.forward()
    back = cell.backward(case.backend_params(), result.cache, cell.to_backend(case.w_out),
                         case.backend_state(case.w_state))
    found = {"outputs": result.outputs, "x": back.d_inputs}
    found.update({f"final[{i}]": s for i, s in enumerate(result.final_state)})
    found.update({f"d_initial[{i}]": d for i, d in enumerate(back.d_initial_state)})
    found.update({f"grad {name}": g for name, g in back.param_grads.items()})
    if on_device:
        for name, array in found.items():
            assert is_device_array(array), f"{name} is a {type(array).__name__}"
    return {name: cell.to_host(array) for name, array in found.items()}


@needs_cuda
@pytest.mark.parametrize(
    "check",
    [check for kind in KINDS for check in cell_checks(
        CUDA[kind], reference=REFERENCE[kind], checks=KIT_CHECKS, layers=[2], bias=[True],
        supports=HOST.registry.cells[(kind, "numba-cuda")].supports)],
)
def test_cell_checks(check):
    """Step against forward, arguments left alone, separate gradient arrays (the optimizer
    updates them in place), init as the reference's, float32 against float64, ... on two
    layers; test_matches_reference covers every layer count and bias setting."""
    check()


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference(kind, shape):
    """Every output and gradient, in 1 and 2 layers, with and without bias, both dtypes."""
    check_cell(CUDA[kind], reference=REFERENCE[kind], checks=["matches_reference"],
               shapes=[shape]).raise_on_failure()


RELU = {"nonlinearity": "relu"}


@needs_cuda
@pytest.mark.parametrize(
    "check",
    cell_checks(CudaRNNCell, reference=REFERENCE["rnn"], checks=KIT_CHECKS, layers=[2],
                bias=[True], options=RELU),
)
def test_relu_rnn_cell_checks(check):
    """The rnn cell with option nonlinearity: relu passes the kit's checks too."""
    check()


@needs_cuda
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
def test_relu_rnn_matches_reference(shape):
    """nonlinearity: relu: every output and gradient as the numpy reference's, in 1 and 2
    layers, with and without bias, both dtypes (the reference is checked against finite
    differences in test_cell_options)."""
    check_cell(CudaRNNCell, reference=REFERENCE["rnn"], checks=["matches_reference"],
               shapes=[shape], options=RELU).raise_on_failure()


@needs_cuda
@pytest.mark.parametrize("backend", ["numpy", "numba-cpu", "numba-cuda"])
def test_relu_keeps_a_nan_pre_activation_as_every_backend_does(backend):
    """max(0, NaN) is NaN on numpy, numba-cpu and in PyTorch; a backend turning it into 0
    would train on where the others record a divergence."""
    config = CellConfig(input_size=1, hidden_size=2, bias=False, dtype="float64",
                        options=RELU)
    cell = HOST.build_cell("rnn", backend, config)
    params = {"weight_ih_l0": np.zeros((2, 1)), "weight_hh_l0": np.ones((2, 2))}
    state = (cell.to_backend(np.array([[[np.inf, -np.inf]]])),)
    output, _ = cell.step({k: cell.to_backend(v) for k, v in params.items()},
                          cell.to_backend(np.zeros((1, 1))), state)
    assert np.isnan(cell.to_host(output)).all()


@needs_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_results_are_device_arrays(kind):
    case = make_case(CUDA[kind], (3, 2, 2, 3), num_layers=2)
    everything(case, on_device=True)
    cell = case.cell
    output, state = cell.step(case.backend_params(), cell.to_backend(case.x[0]),
                              case.backend_state())
    assert is_device_array(output) and all(is_device_array(s) for s in state)


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

    def factory(config):
        cell = CUDA[kind](config)
        cell.geometry = GPU_GEOMETRY if geometry == "gpu" else Geometry(**geometry)
        return cell

    # One thread does a whole GEMM by itself there: a smaller case.
    shape = (2, 3, 2, 5) if geometry != "gpu" and geometry["max_blocks"] == 1 else (3, 5, 4, 9)
    check_cell(factory, reference=REFERENCE[kind], checks=["matches_reference"], shapes=[shape],
               layers=[2], bias=[True], dtypes=["float64"]).raise_on_failure()


@needs_cuda
def test_host_and_device_arguments_give_the_same_results():
    case = make_case(CudaLSTMCell, (3, 2, 3, 4), num_layers=2)
    cell = case.cell
    on_device = everything(case, on_device=True)
    result = cell.forward(case.params, case.x, case.state)  # host arrays, copied over
    back = cell.backward(case.params, result.cache, case.w_out, case.w_state)
    on_host = {"outputs": result.outputs, "x": back.d_inputs}
    on_host.update({f"final[{i}]": s for i, s in enumerate(result.final_state)})
    on_host.update({f"d_initial[{i}]": d for i, d in enumerate(back.d_initial_state)})
    on_host.update({f"grad {name}": g for name, g in back.param_grads.items()})
    assert on_host.keys() == on_device.keys()
    for name, value in on_host.items():
        assert is_device_array(value), name
        np.testing.assert_array_equal(cell.to_host(value), on_device[name], err_msg=name)


@needs_cuda
def test_protocol_arrays_and_state():
    """What the kit's protocol check leaves to this backend: arrays live on the device, and a
    device or host array passes through unchanged where no copy is needed."""
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
    params = cell.init_params(np.random.default_rng(3))
    assert all(isinstance(value, np.ndarray) for value in params.values())  # on the host


@needs_cuda
def test_bad_arguments_are_explained():
    case = make_case(CudaRNNCell, (2, 3, 2, 4))
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
    for factory in (REFERENCE[kind], CUDA[kind]):
        cell = factory(CellConfig(data.input_size, 6, num_layers=2, dtype="float64"))
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
    assert "numba_cuda_cells" not in HOST.registry.broken
    for kind, cell_class in CUDA.items():
        entry = HOST.registry.cells[(kind, "numba-cuda")]
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
