"""Which BLAS kernels a process runs, and whether the environment forced weaker ones.

Why: numpy's and SciPy's OpenBLAS (Numba's compiled ``np.dot`` calls SciPy's) pick their
kernels for the processor when they load, unless ``OPENBLAS_CORETYPE`` names a core. Forced
kernels can be far slower: on a 2-core AMD Zen 5 (AVX-512) machine whose environment set
``OPENBLAS_CORETYPE=Haswell``, float32 square GEMMs ran at 255 GFLOP/s against 480 with the
SkylakeX kernels OpenBLAS picks there by itself, and the numba-cpu LSTM's training step at
0.60x PyTorch's (whose MKL and oneDNN use AVX-512 whatever OpenBLAS does) against 0.89-1.10x.
A speed comparison is only fair when the reader knows this, so results record the kernels
(``environment.json``: ``blas``) and kernel suites say when they were forced.

rnnbench never changes the variable: a user who set it chose it (``tox -e repro`` relies on
the kernels the committed results were written with: other kernels round a few sums
differently).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CORETYPE_VAR = "OPENBLAS_CORETYPE"

_PROBE = (
    "import numpy, threadpoolctl; "
    "print(next((p.get('architecture') for p in threadpoolctl.threadpool_info() "
    "if p.get('internal_api') == 'openblas'), ''))"
)


def blas_in_use() -> list[dict[str, str]]:
    """Every BLAS library loaded in this process, with the kernels it runs (threadpoolctl's
    ``architecture``): what ``environment.json`` records as ``blas``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    libraries = [
        {
            "library": str(pool.get("internal_api")),
            "version": str(pool.get("version")),
            "kernels": str(pool.get("architecture")),
            "file": Path(str(pool.get("filepath"))).name,
        }
        for pool in threadpool_info()
        if pool.get("user_api") == "blas"
    ]
    return sorted(libraries, key=lambda entry: entry["file"])


def own_openblas_kernels(timeout: float = 60.0) -> str | None:
    """The kernels numpy's OpenBLAS picks for this processor by itself: a fresh interpreter
    with ``OPENBLAS_CORETYPE`` removed from its environment. None when that cannot be told."""
    environ = {k: v for k, v in os.environ.items() if k != CORETYPE_VAR}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=environ, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    kernels = done.stdout.strip()
    return kernels if done.returncode == 0 and kernels else None


def forced_kernels_note(in_use: list[dict[str, Any]] | None = None,
                        own: str | None = None) -> str | None:
    """A sentence for a speed report when ``OPENBLAS_CORETYPE`` makes OpenBLAS run other
    kernels than it picks for this processor by itself; None when it does not."""
    forced = os.environ.get(CORETYPE_VAR)
    if not forced:
        return None
    in_use = blas_in_use() if in_use is None else in_use
    running = sorted({entry["kernels"] for entry in in_use if entry["library"] == "openblas"})
    own = own_openblas_kernels() if own is None else own
    if not running or own is None or running == [own]:
        return None
    return (
        f"{CORETYPE_VAR}={forced} is set in the environment: OpenBLAS runs its "
        f"{', '.join(running)} kernels, not the {own} kernels it picks for this processor by "
        f"itself, so every BLAS call (numpy, numba-cpu) may run well below this machine's "
        f"speed while PyTorch's MKL/oneDNN do not; unset it (env -u {CORETYPE_VAR} ...) for "
        f"a comparison at each library's best"
    )
