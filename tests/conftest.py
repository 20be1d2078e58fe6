from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rnnbench.plugin_manager import PluginHost, build_host

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def host() -> PluginHost:
    """The built-ins (from entry points) plus the toy cells of tests/data/toy_plugin.py."""
    return build_host(plugins=[str(DATA / "toy_plugin.py")])


@pytest.fixture(scope="module")
def fast_simulator_threads():
    """On Numba's CUDA simulator, whose block manager busy-polls its threads at every barrier:
    with Python's default 5 ms thread switch interval most of the time goes to waiting for the
    GIL, so the interval is shortened for the module. A no-op elsewhere."""
    from rnnbench.plugins.cells import numba_cuda

    if numba_cuda.unavailable_reason() is not None or not numba_cuda.on_simulator():
        yield
        return
    saved = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    yield
    sys.setswitchinterval(saved)
