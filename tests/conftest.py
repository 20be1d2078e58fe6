from __future__ import annotations

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
