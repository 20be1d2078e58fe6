"""The old helpers of the cell tests, now a thin import of the test kit (``rnnbench.testing``),
kept for tests written against them; new tests use ``rnnbench.testing`` directly."""

from __future__ import annotations

import numpy as np

from rnnbench.testing import FD_TOL, CellCase, CellFactory, Shape, max_relative_error
from rnnbench.testing import make_case as _make_case


def make_case(
    kind: str,
    shape: Shape,
    num_layers: int = 1,
    bias: bool = True,
    dtype: str = "float64",
    seed: int = 0,
    cell_class: CellFactory | None = None,
) -> CellCase:
    """``rnnbench.testing.make_case`` for ``cell_class``, or for the numpy cell ``kind``."""
    if cell_class is None:
        from rnnbench.plugin_manager import build_host

        cell_class = build_host().registry.cells[(kind, "numpy")].factory
    return _make_case(cell_class, shape, num_layers, bias, dtype, seed)


def assert_gradients_match(analytic: dict[str, np.ndarray], numeric: dict[str, np.ndarray]):
    worst, where = max_relative_error(analytic, numeric)
    assert worst < FD_TOL, f"relative error {worst:.3g} at {where}"
