"""Built-in metrics of what a run costs besides its step time: host memory, time to a target.

``peak_memory_mb``
    The peak of host memory allocated during ONE forward+backward (``model.loss_and_grads``) on
    one training batch of the run's batch size (its first sequences), with the initial parameters,
    measured with :mod:`tracemalloc` after training and apart from it, so tracemalloc's overhead
    never touches the timed steps. One unmeasured call runs first (lazy caches, compilation).
    numpy reports its array allocations to tracemalloc, so this counts the arrays of the forward
    cache, the gradients and every temporary, in MiB (2**20 bytes), less what was allocated
    before the call. It depends on the backend: memory a backend allocates outside Python's and
    numpy's allocators (Numba's runtime allocations inside compiled code, device memory of GPU
    backends) is not seen; device memory is out of scope here.

    It is not a wall-clock measurement, but it is registered with ``timing=True`` all the same:
    identical runs differ by a few KiB (0.01% of a 7 MiB step), because freed small objects
    parked in Python's free lists and numpy's small-buffer cache still count as allocated, and
    how many there are depends on what ran before. ``timing=True`` is what keeps a value that
    varies between identical runs out of determinism checks and ``rnnbench compare``.

``steps_to_target`` / ``seconds_to_target``
    The optimizer steps and training seconds (optimizer steps only, as ``train_seconds``) at the
    evaluation where the validation loss first reached the suite's ``target_loss``; ``None`` when
    there is no target or it was not reached. ``seconds_to_target`` is a timing. Over seeds, the
    summary (:meth:`rnnbench.ResultTable.summary`) does not let the unreached seeds vanish from
    a mean: it gives the median with an unreached seed counted as never, and how many of the
    seeds with a target reached it ("400 (2/3 reached)").
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from rnnbench import RunOutcome, hookimpl

MIB = 2.0**20


def peak_step_bytes(model, params: dict[str, np.ndarray], batch) -> int:
    """Peak bytes tracemalloc sees allocated during one ``model.loss_and_grads(params, batch)``,
    above what was allocated when it started. Works whether or not tracemalloc is already on."""
    model.loss_and_grads(params, batch)  # warm-up: not measured
    gc.collect()
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        model.loss_and_grads(params, batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if started_here:
            tracemalloc.stop()
    return max(0, peak - before)


def peak_memory_mb(run: RunOutcome) -> float | None:
    split = run.data.train
    size = min(run.spec.training.batch_size, len(split))
    if size < 1:
        return None
    batch = split.batch(np.arange(size))
    return round(peak_step_bytes(run.model, run.initial_params, batch) / MIB, 4)


def steps_to_target(run: RunOutcome) -> int | None:
    reached = run.training.reached_target_at
    return None if reached is None else int(reached[0])


def seconds_to_target(run: RunOutcome) -> float | None:
    reached = run.training.reached_target_at
    return None if reached is None else float(reached[1])


@hookimpl
def rnnbench_register_metrics(register):
    register("peak_memory_mb", peak_memory_mb,
             "peak host memory (MiB, tracemalloc) of one forward+backward on one training batch; "
             "depends on the backend, device memory not included; varies by a few KiB between "
             "identical runs, so marked timing", timing=True)
    register("steps_to_target", steps_to_target,
             "optimizer steps until the validation loss first reached target_loss")
    register("seconds_to_target", seconds_to_target,
             "training seconds until the validation loss first reached target_loss", timing=True)
