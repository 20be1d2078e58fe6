"""Keeps numba-cuda compiling kernels on numpy 2.5.

numba-cuda 0.30.4 (the newest release, 2026-11) registers an overload for ``np.row_stack`` when it
first compiles a kernel; numpy 2.5 removed that alias of ``np.vstack``, so every kernel compile
failed there with ``AttributeError: module 'numpy' has no attribute 'row_stack'`` (seen on the
GPU machines' image: numpy 2.5.2). Numba 0.68 guards the same line by the numpy version;
numba-cuda does not yet. Until it does, the alias is restored, only where numpy lacks it, before
any CUDA kernel module is imported. It names the same function numpy 2.4 exported under that name.
"""

from __future__ import annotations

import numpy as np


def restore_row_stack() -> None:
    """Give numpy its ``row_stack`` alias of ``vstack`` back where numpy >= 2.5 removed it."""
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack  # type: ignore[attr-defined]


restore_row_stack()
