"""The minGRU cell: rnnbench's cell checks (``rnnbench.testing``), then minGRU's own equations.

The generic checks (gradients against finite differences, step against forward, arguments left
alone, shapes and dtypes, ...) come from rnnbench's test kit, run on the cell as rnnbench loads
it: registered as ``mingru`` on ``numpy``, with the support it declares. The last tests check
what no test kit can know: minGRU's own equations.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from rnnbench import CellConfig
from rnnbench.testing import CELL_CHECK_NAMES, cell_checks

from rnnbench_mingru.cell import MinGRUCell

#: The checks that compare with another backend of the same cell: minGRU has one backend only,
#: so they would only skip. The scan-form test below is this package's independent reference.
REFERENCE_CHECKS = ("same_init_as_reference", "matches_reference")
CHECKS = [name for name in CELL_CHECK_NAMES if name not in REFERENCE_CHECKS]
#: Cases ``(T, B, I, H)``: a general one, one time step, one sequence (the kit adds
#: T = B = I = H = 1); with 1, 2 and 3 layers, bias on and off, float32 and float64 (every
#: combination the cell declares in its CellSupport).
SHAPES = [(5, 3, 3, 4), (1, 4, 2, 3), (7, 1, 2, 3)]
LAYERS = [1, 2, 3]


@pytest.mark.parametrize(
    "check", cell_checks(("mingru", "numpy"), checks=CHECKS, shapes=SHAPES, layers=LAYERS)
)
def test_follows_the_cell_contract(check):
    check()


# --- minGRU's own equations -------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_parameters_are_one_input_matrix_per_layer(bias):
    cell = MinGRUCell(CellConfig(3, 4, num_layers=2, bias=bias))
    expected = {"weight_ih_l0": (8, 3), "weight_ih_l1": (8, 4)}
    if bias:
        expected.update({"bias_ih_l0": (8,), "bias_ih_l1": (8,)})
    params = cell.init_params(np.random.default_rng(0))
    assert {name: p.shape for name, p in params.items()} == expected


def scan_form(params, x, h0, num_layers, hidden):
    """minGRU in the closed form the paper computes with a parallel scan, written independently
    of the cell: ``h_t = prod_{r<=t}(1 - z_r) h_0 + sum_{s<=t} z_s h~_s prod_{s<r<=t}(1 - z_r)``,
    layer after layer."""
    inputs = x
    for k in range(num_layers):
        a = inputs @ params[f"weight_ih_l{k}"].T + params.get(f"bias_ih_l{k}", 0.0)
        z, candidate = 1.0 / (1.0 + np.exp(-a[..., :hidden])), a[..., hidden:]
        keep = 1.0 - z
        outputs = np.empty_like(candidate)
        for t in range(x.shape[0]):
            outputs[t] = np.prod(keep[: t + 1], axis=0) * h0[k] + sum(
                z[s] * candidate[s] * np.prod(keep[s + 1 : t + 1], axis=0) for s in range(t + 1)
            )
        inputs = outputs
    return inputs


@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_the_scan_form(bias):
    cell = MinGRUCell(CellConfig(3, 4, num_layers=2, bias=bias, dtype="float64"))
    rng = np.random.default_rng(5)
    params = cell.init_params(rng)
    x = rng.standard_normal((6, 2, 3))
    h0 = rng.standard_normal((2, 2, 4))
    result = cell.forward(params, x, (h0,))
    expected = scan_form(params, x, h0, num_layers=2, hidden=4)
    np.testing.assert_allclose(result.outputs, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(result.final_state[0][-1], result.outputs[-1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_saturated_update_gate_keeps_or_replaces_the_state(dtype):
    """z = 1 replaces the state by the candidate h~; z = 0 keeps it. Pre-activations of ±1000
    also check that the gate's sigmoid neither overflows nor warns."""
    cell = MinGRUCell(CellConfig(2, 3, dtype=dtype))
    params = cell.init_params(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((4, 5, 2)).astype(dtype)
    h0 = (np.random.default_rng(2).standard_normal((1, 5, 3)).astype(dtype),)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params["bias_ih_l0"][:3] = 1000.0  # z = 1: h_t = h~_t
        replaced = cell.forward(params, x, h0).outputs
        params["bias_ih_l0"][:3] = -1000.0  # z = 0: h_t = h_0
        kept = cell.forward(params, x, h0).outputs
    candidate = x @ params["weight_ih_l0"][3:].T + params["bias_ih_l0"][3:]
    np.testing.assert_allclose(replaced, candidate, rtol=1e-6)
    np.testing.assert_array_equal(kept, np.broadcast_to(h0[0], kept.shape))


def test_bad_arguments_name_what_is_wrong():
    cell = MinGRUCell(CellConfig(3, 4, dtype="float64"))
    params = cell.init_params(np.random.default_rng(0))
    x, state = np.zeros((2, 1, 3)), cell.initial_state(1)
    with pytest.raises(ValueError, match="weight_hh_l0"):
        cell.forward({**params, "weight_hh_l0": np.zeros((8, 4))}, x, state)
    with pytest.raises(ValueError, match="float32"):
        cell.forward(params, x.astype(np.float32), state)
    with pytest.raises(ValueError, match=r"\(T, B, 3\)"):
        cell.forward(params, np.zeros((2, 1, 5)), state)
