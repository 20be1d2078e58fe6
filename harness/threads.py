"""Thread budgets: how many BLAS, OpenMP and Numba threads one run may use.

A threaded GEMM per training step collapses when cores are shared (issue 11: a plain RNN step
took 65 ms instead of 1.2 ms on a busy 2-core machine), and the thread count changes the last
bits of BLAS sums. So every run executes under an explicit budget: ``threads:`` in the suite,
``rnnbench run --threads N``, or the default :func:`default_threads` (the cores free of other
work divided among the runs that share the machine, at least 1). The budget is recorded with
each run (``RunRecord.execution``) and in the suite's ``environment.json``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rnnbench.records import RunSpec


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


#: Environment variables that cap thread pools when a library loads. A budget set at run time
#: overrides them (threadpoolctl can raise a pool up to the cores), so the default respects the
#: smallest one set: ``OPENBLAS_NUM_THREADS=1 rnnbench run ...`` still means one thread.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def _environment_cap() -> int | None:
    caps = []
    for name in THREAD_VARIABLES:
        try:
            value = int(os.environ.get(name, ""))
        except ValueError:
            continue
        if value >= 1:
            caps.append(value)
    return min(caps) if caps else None


def busy_cores(cores: int) -> int:
    """Cores other processes keep busy, from the 1-minute load average (rounded), leaving at
    least one core free: 0 on an idle machine or where the OS gives no load average."""
    load = load_average()
    if not load:
        return 0
    return max(0, min(cores - 1, int(load[0] + 0.5)))


def default_threads(workers: int = 1) -> int:
    """The default budget: the cores free of other work (usable cores less
    :func:`busy_cores`) divided among ``workers``, at least 1, so neither the suite's own runs
    nor a job beside them is oversubscribed (a second CPU-bound process made a 2-thread
    quickstart 4x slower than a 1-thread one); no more than the smallest of
    :data:`THREAD_VARIABLES` set in the environment. Decided once when a suite starts and
    recorded: for bitwise-repeatable numbers, set ``threads:``."""
    cores = usable_cores()
    threads = max(1, (cores - busy_cores(cores)) // max(1, workers))
    cap = _environment_cap()
    return min(threads, cap) if cap is not None else threads


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


#: The budgets of the :func:`thread_budget` blocks now open, innermost last.
_ACTIVE_BUDGETS: list[int] = []


def current_thread_budget() -> int | None:
    """The thread budget of the run in progress (the innermost :func:`thread_budget` block), or
    ``None`` outside one. For cell backends with their own thread pools that threadpoolctl
    cannot reach (PyTorch's intra-op pool): they bound their pool to this while they compute."""
    return _ACTIVE_BUDGETS[-1] if _ACTIVE_BUDGETS else None


@contextmanager
def thread_budget(threads: int) -> Iterator[int | None]:
    """Limit BLAS and OpenMP pools (threadpoolctl) and Numba's parallel threads to ``threads``
    for the ``with`` block; the previous limits are restored after. Yields the threads the
    BLAS/OpenMP pools actually have inside the block (their largest; fewer than ``threads``
    when a library started with fewer, e.g. under ``OPENBLAS_NUM_THREADS=1``); None when no
    such pool is loaded."""
    from threadpoolctl import threadpool_info, threadpool_limits

    numba_before = None
    try:
        import numba

        numba_before = numba.get_num_threads()
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    except Exception:  # Numba absent, or its threading layer unusable
        numba_before = None
    _ACTIVE_BUDGETS.append(threads)
    try:
        with threadpool_limits(limits=threads):
            pools = [pool.get("num_threads") for pool in threadpool_info()]
            counts = [n for n in pools if isinstance(n, int)]
            yield max(counts) if counts else None
    finally:
        _ACTIVE_BUDGETS.pop()
        if numba_before is not None:
            import numba

            numba.set_num_threads(numba_before)


def execution_info(threads: int, workers: int) -> dict[str, Any]:
    """What ``RunRecord.execution`` records at the start of a run."""
    return {
        "threads": threads,
        "workers": workers,
        "load_average": load_average(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def resolve_threads(threads: int | None, workers: int = 1) -> int:
    """The budget a suite's runs get: ``threads`` when given (``--threads``, ``threads:``),
    else :func:`default_threads` for ``workers`` runs at once."""
    return int(threads) if threads is not None else default_threads(workers)


def with_budget(runs: Sequence[RunSpec], threads: int, workers: int = 1) -> list[RunSpec]:
    """``runs`` with their ``threads`` and ``workers`` set (presentation-only fields: the run
    ids do not change)."""
    return [dataclasses.replace(spec, threads=threads, workers=workers) for spec in runs]


def budget_summary(threads: int, workers: int = 1) -> dict[str, Any]:
    """The suite-level record in ``environment.json`` (``"execution"``)."""
    return {"threads": threads, "workers": workers, "usable_cores": usable_cores()}
