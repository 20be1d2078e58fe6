"""Non-finite numbers in standard JSON: how results files record inf, -inf and NaN.

JSON has no literal for them, and ``results.jsonl`` must stay readable by any JSON parser, so a
non-finite float is written as a one-key object, anywhere in a record (metrics, lists, the
learning curve, the configuration)::

    {"$float": "inf"}    {"$float": "-inf"}    {"$float": "nan"}

Reading turns these objects back into floats; records written before this encoding simply hold
no such objects and read unchanged.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: The key of the one-key object that stands for a non-finite float.
FLOAT_KEY = "$float"
_NAMES = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_nonfinite(value: Any) -> Any:
    """``value`` with every non-finite float (in dicts, lists and tuples) as its ``$float``
    object; numpy scalars and arrays become Python numbers and lists first."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if math.isnan(value):
            return {FLOAT_KEY: "nan"}
        return {FLOAT_KEY: "inf" if value > 0 else "-inf"}
    if isinstance(value, dict):
        return {key: encode_nonfinite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_nonfinite(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return encode_nonfinite(value.tolist())
    return value


def decode_nonfinite(value: Any) -> Any:
    """The inverse of :func:`encode_nonfinite`: ``$float`` objects back to floats."""
    if isinstance(value, dict):
        name = value.get(FLOAT_KEY)
        if len(value) == 1 and isinstance(name, str) and name in _NAMES:
            return _NAMES[name]
        return {key: decode_nonfinite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_nonfinite(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of ``value`` with non-finite floats encoded: always standard JSON."""
    return json.dumps(encode_nonfinite(value), allow_nan=False, **options)
