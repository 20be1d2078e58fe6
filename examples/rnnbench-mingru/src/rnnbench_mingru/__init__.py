"""rnnbench-mingru: an example rnnbench plugin package.

It contributes, through the ``rnnbench`` entry-point group (see ``pyproject.toml``):

- the cell ``mingru`` on the ``numpy`` backend (:mod:`rnnbench_mingru.cell`),
- the task ``parity`` (:mod:`rnnbench_mingru.tasks`),
- the metric ``generalisation_gap`` (:mod:`rnnbench_mingru.metrics`),

and an opt-in reporter, ``leaderboard`` (:mod:`rnnbench_mingru.leaderboard`, loaded with ``-p``).
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__: str = metadata.version("rnnbench-mingru")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
