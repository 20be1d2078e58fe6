"""A local plugin whose cell declares narrow support: float64 only, one layer, with biases.

The cell is the numpy reference LSTM under another name; only the declaration differs, so tests
can check that ``validate`` rejects a suite asking for more than a cell supports, and that a
suite within it runs.
"""

from __future__ import annotations

from rnnbench import CellSupport, hookimpl
from rnnbench.plugins.cells.reference import LSTMCell

NARROW = CellSupport(dtypes=("float64",), max_layers=1, bias=(True,))


def narrow_lstm(config):
    return LSTMCell(config)


@hookimpl
def rnnbench_register_cells(register):
    register("narrow_lstm", "numpy", narrow_lstm, description="the reference LSTM, declared "
             "for float64, one layer, with biases", supports=NARROW)
