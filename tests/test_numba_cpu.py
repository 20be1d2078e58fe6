"""The numba-cpu cells against the numpy reference: every output and gradient, both dtypes.

Errors are measured per array, relative to its scale: ``max|a - b| / max|b|`` (elementwise
relative error is meaningless for elements that are zero up to rounding). Bounds: float64
1e-9, float32 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
from cellcheck import CELLS, KINDS, assert_gradients_match, make_case
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnbench.plugin_manager import build_host
from rnnbench.plugins.cells import numba_cpu
from rnnbench.plugins.cells.numba_cpu import NumbaGRUCell, NumbaLSTMCell, NumbaRNNCell

NUMBA = {"rnn": NumbaRNNCell, "lstm": NumbaLSTMCell, "gru": NumbaGRUCell}
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}
#: (T, B, I, H); the last is wide enough for the vectorised gate loops' main body and a
#: remainder (257 is not a multiple of any SIMD width).
SHAPES = [(1, 1, 1, 1), (1, 2, 3, 1), (4, 1, 2, 3), (7, 3, 5, 6), (3, 64, 9, 257)]


def scaled_error(ours: np.ndarray, reference: np.ndarray) -> float:
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    scale = max(float(np.max(np.abs(reference))), np.finfo(reference.dtype).tiny)
    return float(np.max(np.abs(ours.astype(np.float64) - reference))) / scale


def everything(case, cell) -> dict[str, np.ndarray]:
    """Forward outputs, final state and every gradient of ``case``'s loss, computed by ``cell``."""
    result = cell.forward(case.params, case.x, case.state)
    back = cell.backward(case.params, result.cache, case.w_out, case.w_state)
    found = {"outputs": result.outputs, "x": back.d_inputs}
    found.update({f"final[{i}]": s for i, s in enumerate(result.final_state)})
    found.update({f"d_initial[{i}]": d for i, d in enumerate(back.d_initial_state)})
    found.update({f"grad {name}": g for name, g in back.param_grads.items()})
    return found


def assert_matches_reference(kind, shape, num_layers, bias, dtype, seed=0):
    case = make_case(kind, shape, num_layers, bias, dtype, seed)
    expected = everything(case, case.cell)
    got = everything(case, NUMBA[kind](case.cell.config))
    assert got.keys() == expected.keys()
    for name in expected:
        error = scaled_error(got[name], expected[name])
        assert error < TOLERANCE[dtype], f"{kind} {shape} L{num_layers} {dtype} {name}: {error:.3g}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference(kind, num_layers, bias, shape, dtype):
    assert_matches_reference(kind, shape, num_layers, bias, dtype)


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
    assert_matches_reference(kind, shape, num_layers, bias, dtype, seed)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (4, 2, 3, 3)], ids=["T1B1I1H1", "T4B2I3H3"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(kind, num_layers, shape):
    case = make_case(kind, shape, num_layers, cell_class=NUMBA[kind])
    assert_gradients_match(case.analytic(), case.numeric())


@pytest.mark.parametrize("kind", KINDS)
def test_step_repeated_equals_forward(kind):
    case = make_case(kind, (5, 3, 4, 6), num_layers=2, cell_class=NUMBA[kind])
    whole = case.cell.forward(case.params, case.x, case.state)
    state, outputs = case.state, []
    for x_t in case.x:
        output, state = case.cell.step(case.params, x_t, state)
        outputs.append(output)
    np.testing.assert_allclose(np.stack(outputs), whole.outputs, rtol=1e-12)
    for ours, theirs in zip(state, whole.final_state, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_backward_leaves_its_arguments_alone(kind):
    case = make_case(kind, (4, 3, 2, 5), num_layers=2, cell_class=NUMBA[kind])
    result = case.cell.forward(case.params, case.x, case.state)
    frozen = [*case.params.values(), case.w_out, *case.w_state]
    for array in frozen:
        array.setflags(write=False)
    first = case.cell.backward(case.params, result.cache, case.w_out, case.w_state)
    second = case.cell.backward(case.params, result.cache, case.w_out, case.w_state)
    for name, grad in first.param_grads.items():
        np.testing.assert_array_equal(grad, second.param_grads[name])


def test_bias_gradients_are_separate_arrays():
    """The optimizer and clipping update gradients in place: two keys must not share one."""
    case = make_case("lstm", (3, 2, 2, 3), cell_class=NumbaLSTMCell)
    result = case.cell.forward(case.params, case.x, case.state)
    grads = case.cell.backward(case.params, result.cache, case.w_out).param_grads
    assert not np.shares_memory(grads["bias_ih_l0"], grads["bias_hh_l0"])


def test_registered_through_the_entry_point_group():
    host = build_host()
    for kind in CELLS:
        entry = host.registry.cells[(kind, "numba-cpu")]
        assert entry.plugin == "numba_cpu_cells"
        assert entry.factory is NUMBA[kind]
    assert numba_cpu.BACKEND == "numba-cpu"
