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


def test_registered_through_the_entry_point_group():
    for kind in KINDS:
        entry = HOST.registry.cells[(kind, "numba-cpu")]
        assert entry.plugin == "numba_cpu_cells"
        assert entry.factory.__module__ == numba_cpu.__name__
    assert numba_cpu.BACKEND == "numba-cpu"
