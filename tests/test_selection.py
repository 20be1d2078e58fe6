"""``-k`` expressions."""

from __future__ import annotations

import pytest

from rnnbench.errors import RnnbenchError
from rnnbench.selection import matches

LABEL = "lstm/numpy/adding[length=10]/h32x1/float64/seed1 0123abcd"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("lstm", True),
        ("LSTM", True),
        ("gru", False),
        ("lstm and seed1", True),
        ("lstm and not seed1", False),
        ("gru or seed1", True),
        ("not (gru or rnn/)", True),
        ("(gru or lstm) and length=10", True),
        ("0123abcd", True),
        ("", True),
    ],
)
def test_expressions(expression, expected):
    assert matches(expression, LABEL) is expected


@pytest.mark.parametrize("expression", ["lstm and", "(lstm", "lstm )", "and lstm"])
def test_malformed_expressions_are_errors(expression):
    with pytest.raises(RnnbenchError, match="-k"):
        matches(expression, LABEL)
