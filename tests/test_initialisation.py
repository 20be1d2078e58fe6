"""Initialisation schemes and spectral-radius rescaling of the recurrent weights."""

from __future__ import annotations

import numpy as np
import pytest

from rnnbench.cell import CellConfig
from rnnbench.initialisation import gate_blocks, initialise, spectral_radius
from rnnbench.plugins.cells.reference import GRUCell, LSTMCell, RNNCell


def params_of(cell_class, hidden=6, layers=2, prefix=""):
    cell = cell_class(CellConfig(3, hidden, layers, True, "float64"))
    return {prefix + k: v for k, v in cell.init_params(np.random.default_rng(0)).items()}


@pytest.mark.parametrize("cell_class", [RNNCell, LSTMCell, GRUCell])
def test_orthogonal_blocks(cell_class):
    params = params_of(cell_class)
    initialise(params, "orthogonal", None, np.random.default_rng(1))
    for k in range(2):
        for block in gate_blocks(params[f"weight_hh_l{k}"]):
            np.testing.assert_allclose(block @ block.T, np.eye(6), atol=1e-12)
            assert spectral_radius(block) == pytest.approx(1.0)


@pytest.mark.parametrize("prefix", ["", "encoder."])
def test_identity_zeroes_biases_under_any_prefix(prefix):
    params = params_of(LSTMCell, prefix=prefix)
    input_weights = params[f"{prefix}weight_ih_l0"].copy()
    initialise(params, "identity", None, np.random.default_rng(1))
    for block in gate_blocks(params[f"{prefix}weight_hh_l1"]):
        np.testing.assert_array_equal(block, np.eye(6))
    assert not params[f"{prefix}bias_ih_l0"].any() and not params[f"{prefix}bias_hh_l1"].any()
    np.testing.assert_array_equal(params[f"{prefix}weight_ih_l0"], input_weights)


@pytest.mark.parametrize("scheme", ["pytorch", "orthogonal", "identity"])
def test_spectral_radius_rescaling(scheme):
    params = params_of(GRUCell)
    initialise(params, scheme, 1.7, np.random.default_rng(2))
    for block in gate_blocks(params["weight_hh_l0"]):
        assert spectral_radius(block) == pytest.approx(1.7)


def test_default_leaves_params_and_rng_alone():
    params = params_of(RNNCell)
    before = {k: v.copy() for k, v in params.items()}
    rng = np.random.default_rng(3)
    initialise(params, "pytorch", None, rng)
    for name in params:
        np.testing.assert_array_equal(params[name], before[name])
    assert rng.uniform() == np.random.default_rng(3).uniform()


def test_unknown_scheme():
    with pytest.raises(ValueError, match="unknown init"):
        initialise(params_of(RNNCell), "xavier", None, np.random.default_rng(0))


@pytest.mark.parametrize(("scheme", "radius"), [("orthogonal", None), ("pytorch", 1.5)])
def test_a_cell_without_recurrent_matrices_is_refused_not_silently_left_alone(scheme, radius):
    params = {"weight_ih_l0": np.ones((6, 2)), "bias_ih_l0": np.zeros(6)}  # minGRU-like
    before = {name: value.copy() for name, value in params.items()}
    with pytest.raises(ValueError, match="this cell has none"):
        initialise(params, scheme, radius, np.random.default_rng(0))
    assert all(np.array_equal(params[name], before[name]) for name in params)
    initialise(params, "pytorch", None, np.random.default_rng(0))  # the default needs nothing


def test_a_recurrent_weight_that_is_not_gate_matrices_is_refused():
    params = {"weight_ih_l0": np.ones((3, 2)), "weight_hh_l0": np.ones(3)}  # IndRNN-like vector
    with pytest.raises(ValueError, match=r"shape \(G\*H, H\)"):
        initialise(params, "identity", None, np.random.default_rng(0))
