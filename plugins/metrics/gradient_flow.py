"""Built-in metrics of *why* a cell trains or fails: gradient flow through time, recurrent spectra.

Gradient norm by time lag
-------------------------
For a fixed probe batch (the first :data:`PROBE_BATCH` sequences of the validation split) and the
task's own loss through the model's readout, the profile is ``||dLoss/dh_t||`` as a function of
the *lag* ``T - 1 - t``, where ``h_t`` is the top layer's hidden state (the cell's output) at step
``t``. Lag 0 is the gradient the readout injects at the last step; a lag-k value is what is left of
the loss's gradient k steps back. A profile that falls with the lag vanishes, one that rises
explodes.

*Where the loss is measured.* A task may name the steps whose loss matters
(:meth:`rnnbench.Task.gradient_positions`; ``readout = "all"`` tasks only). The profile is then
that of the task's loss *at those steps alone* (:meth:`~rnnbench.Task.loss` applied to the
predictions and targets there), and the lag is counted back from the *first* of them, ``o``:
lag ``k`` is ``||dLoss_P/dh_{o-k}||``. Copy memory names its recall positions, so its profile is
the literature's (Arjovsky et al. 2016): how much of the recall's gradient reaches the steps
before it, through the recurrence alone for every lag above 0 (lag 0 also holds the first recall
step's own readout gradient). Without positions (the default), every step's own loss term is
in the profile, and for a task with a loss at every step that term dominates every lag (copy
memory's used to read a decay of 1.000). Everything below holds with ``T - 1`` read as ``o``.

*How it is computed, on any backend.* Only the cell protocol is used: ``forward`` from a given
initial state, and ``backward`` with a given ``d_final_state``, returning ``d_initial_state``.
The sequence is cut into consecutive chunks at the steps to probe; the forward runs chunk by chunk
(each from the previous chunk's final state), and the backward runs the chunks in reverse order,
each with the readout's gradient on its own outputs and, as ``d_final_state``, the
``d_initial_state`` of the chunk after it. That is plain backpropagation through time cut at the
chunk boundaries, so for a chunk starting at step ``t + 1``::

    dLoss/dh_t = readout gradient at step t  +  (h part, top layer) of that chunk's d_initial_state

Why this is *exactly* dLoss/dh_t (the partial derivative with the other state tensors, the LSTM
cell state ``c`` and the lower layers' states, held fixed): ``h_t`` reaches the loss only through
the readout at step ``t`` (present when the readout sees every step) and through the recurrence
into steps ``t + 1 ... T - 1``; the loss terms of steps before ``t`` do not depend on ``h_t``. The
chunk's ``d_initial_state`` is the gradient of everything downstream of the state after step ``t``,
i.e. of the loss on the *suffix* ``x[t+1:]`` started from the true state at ``t`` — the same
number as running that suffix by itself and backpropagating (the tests check both this and
finite differences). Chaining the chunks gives every lag from one forward and one backward pass
over the sequence (O(T) steps in all, plus one cell call per chunk), instead of one suffix run per
lag (O(T^2)).

Details, fixed so runs compare:

- lags probed: every lag ``0 ... 8``, then ``16, 32, 64, ...`` (doubling), plus the largest,
  ``T - 1``; at most :data:`MAX_LAGS` of them (the largest always kept), i.e. at most that many
  cell calls each way;
- the loss is the task's loss on the probe batch (a mean over its sequences) multiplied by the
  number of sequences, so each sequence's gradient is that of its own loss and the values do not
  depend on the probe batch's size; the norm reported is the *mean over the sequences of the
  per-sequence L2 norm* of ``dLoss/dh_t`` (a ``(H,)`` vector per sequence), taken in float64;
- LSTM: the state is ``(h, c)``; the profile is of the ``h`` part only;
- several layers: ``h_t`` is the top layer's state (the cell's output, what the readout sees);
- a non-finite norm (overflow, NaN) is recorded as ``None`` in the profile.

Metrics and their value shapes (JSON-friendly flat lists of numbers, aligned element by element):

- ``grad_lags``: ``[0, 1, ..., 8, 16, 32, ..., T-1]`` (ints), the lags probed;
- ``grad_norm_by_lag_init`` / ``grad_norm_by_lag_trained``: the norms at those lags (floats, or
  ``None`` where non-finite), with the initial parameters and the trained ones;
- ``grad_decay_init`` / ``grad_decay_trained``: ``exp(slope)`` of the least-squares line of
  ``log(norm)`` against lag over the finite positive norms: the fitted per-step factor (below 1
  vanishes, above 1 explodes); ``None`` with fewer than two such points;
- ``grad_ratio_init`` / ``grad_ratio_trained``: norm at the largest lag / norm at lag 0.

All are ``None`` when the model is not the plain one-cell model (a :class:`rnnbench.SequenceModel`
whose ``single_cell`` is true; other models wire cells differently), when the sequences have a
single step, or when the readout is neither ``"last"`` nor ``"all"``; the ``_trained`` ones are
``None`` for a diverged run.

Spectral radius
---------------
``spectral_radius_init`` / ``spectral_radius_trained``: the largest spectral radius (largest
absolute eigenvalue) over every gate's ``H x H`` block of every recurrent weight
(``weight_hh_l*``, also under a prefix such as ``encoder.``), as
:func:`rnnbench.spectral_radius` computes it (on the blocks :func:`rnnbench.gate_blocks` gives).
``None`` when there is no such weight or it is not finite; computed for diverged runs too while
the weights are finite.

Only the public API (``from rnnbench import ...``) is used here, as in any third-party metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnbench import (
    RunOutcome,
    SequenceModel,
    Split,
    Task,
    gate_blocks,
    hookimpl,
    spectral_radius,
)

#: Sequences of the validation split the gradient profile is measured on (its first ones).
PROBE_BATCH = 32
#: Every lag up to this one is probed; beyond it, lags double.
DENSE_LAGS = 8
#: At most this many lags (so at most this many cell calls each way per profile).
MAX_LAGS = 20
#: Where a run's profiles are cached in ``RunOutcome.extras`` (several metrics share them).
CACHE_KEY = "rnnbench.plugins.metrics.gradient_flow"


# --- The profile ---------------------------------------------------------------------------------


def probe_lags(length: int) -> list[int]:
    """The lags probed for sequences of ``length`` steps: ``0..8``, ``16, 32, ...``, ``T - 1``."""
    largest = length - 1
    if largest < 0:
        return []
    lags = list(range(min(DENSE_LAGS, largest) + 1))
    lag = 2 * DENSE_LAGS
    while lag < largest:
        lags.append(lag)
        lag *= 2
    if lags[-1] != largest:
        lags.append(largest)
    if len(lags) > MAX_LAGS:
        lags = [*lags[: MAX_LAGS - 1], largest]
    return lags


def measured_positions(task: Task, steps: int) -> list[int] | None:
    """The steps whose loss the profile differentiates (:meth:`rnnbench.Task.gradient_positions`,
    sorted, checked), or ``None`` for the whole loss. Only ``readout = "all"`` tasks may
    narrow it (a ``"last"`` readout has one loss position already)."""
    if task.readout != "all":
        return None
    positions = task.gradient_positions(steps)
    if positions is None:
        return None
    found = sorted({int(p) for p in positions})
    if not found or found[0] < 0 or found[-1] >= steps:
        raise ValueError(
            f"task {task.name!r}: gradient_positions({steps}) must name steps in "
            f"[0, {steps - 1}], got {list(positions)}"
        )
    return found


def origin_step(task: Task, steps: int) -> int:
    """The step lags are counted back from: the first measured position, else the last step."""
    positions = measured_positions(task, steps)
    return steps - 1 if positions is None else positions[0]


def state_gradients(
    model: SequenceModel, params: dict[str, np.ndarray], batch: Split, lags: Sequence[int]
) -> dict[int, np.ndarray]:
    """``dLoss/dh_t`` ``(N, H)`` (float64) for each lag ``o - t``, through the cell protocol
    only (see the module docstring): ``Loss`` is the task's loss times the batch's size (the
    loss at the task's :meth:`~rnnbench.Task.gradient_positions` only, when it names them),
    ``h_t`` the top layer's hidden state at step ``t``, ``o`` the :func:`origin_step`."""
    cell, task = model.cell, model.task
    dtype = cell.config.np_dtype
    steps, count = batch.inputs.shape[:2]
    positions = measured_positions(task, steps)
    origin = steps - 1 if positions is None else positions[0]
    if any(not 0 <= lag <= origin for lag in lags):
        raise ValueError(f"lags must lie in [0, {origin}], got {list(lags)}")
    cell_params = model.cell_params(params)
    inputs = batch.inputs.astype(dtype, copy=False)

    # Chunks [start, end): a new chunk starts right after every probed step t = T-1-lag, so the
    # d_initial_state of the chunk starting at t+1 is the gradient w.r.t. the state after step t.
    starts = sorted({origin + 1 - lag for lag in lags if origin + 1 - lag < steps} | {0})
    bounds = list(zip(starts, [*starts[1:], steps], strict=True))
    state = cell.initial_state(count)
    results, host_outputs = [], []
    for start, end in bounds:
        result = cell.forward(cell_params, cell.to_backend(inputs[start:end]), state)
        results.append(result)
        host_outputs.append(cell.to_host(result.outputs))
        state = result.final_state
    outputs = np.concatenate(host_outputs)

    seen = outputs[-1] if task.readout == "last" else outputs
    if positions is None:
        _, d_predictions = task.loss(model.readout.apply(params, seen), batch.targets)
    else:  # the task's loss at those steps alone (readout "all": time is axis 0 of both)
        _, d_measured = task.loss(
            model.readout.apply(params, seen[positions]), batch.targets[positions]
        )
        d_predictions = np.zeros((steps, count, model.output_size), dtype=d_measured.dtype)
        d_predictions[positions] = d_measured
    # x count: each sequence's gradient is that of its own loss (the task's loss is a mean).
    d_seen = model.readout.d_hidden(params, d_predictions) * dtype.type(count)
    if task.readout == "last":
        direct = np.zeros_like(outputs)
        direct[-1] = d_seen
    else:
        direct = d_seen

    by_step = {steps - 1: direct[steps - 1].astype(np.float64)}
    d_final = None
    for (start, end), result in zip(reversed(bounds), reversed(results), strict=True):
        back = cell.backward(cell_params, result.cache, cell.to_backend(direct[start:end]), d_final)
        d_final = back.d_initial_state
        if start > 0:
            through_time = cell.to_host(d_final[0])[-1].astype(np.float64)  # top layer's h
            by_step[start - 1] = direct[start - 1].astype(np.float64) + through_time
    return {lag: by_step[origin - lag] for lag in lags}


def gradient_by_lag(
    model: SequenceModel, params: dict[str, np.ndarray], batch: Split, lags: Sequence[int]
) -> list[float | None]:
    """Mean over the sequences of ``||dLoss/dh_t||`` at each lag (see :func:`state_gradients`);
    ``None`` where that is not finite (overflow, NaN)."""
    norms: list[float | None] = []
    with np.errstate(over="ignore", invalid="ignore"):  # an explosion is a result, not an error
        gradients = state_gradients(model, params, batch, lags)
        for lag in lags:
            norm = float(np.mean(np.linalg.norm(gradients[lag], axis=-1)))
            norms.append(norm if math.isfinite(norm) else None)
    return norms


def fit_decay(lags: Sequence[float], norms: Sequence[float | None]) -> float | None:
    """``exp(slope)`` of the least-squares line of ``log(norm)`` against lag, over the finite
    positive norms: the per-step factor. ``None`` with fewer than two such points (at distinct
    lags) or a non-finite result."""
    points = [
        (float(lag), math.log(norm))
        for lag, norm in zip(lags, norms, strict=True)
        if norm is not None and math.isfinite(norm) and norm > 0
    ]
    if len({lag for lag, _ in points}) < 2:
        return None
    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    x_centred = x - x.mean()
    slope = float(np.dot(x_centred, y - y.mean()) / np.dot(x_centred, x_centred))
    try:
        rate = math.exp(slope)
    except OverflowError:
        return None
    return rate if math.isfinite(rate) and rate > 0 else None


def lag_ratio(norms: Sequence[float | None]) -> float | None:
    """Norm at the largest lag / norm at lag 0; ``None`` where either is missing or zero."""
    if len(norms) < 2 or norms[0] is None or norms[-1] is None or norms[0] == 0:
        return None
    ratio = norms[-1] / norms[0]
    return ratio if math.isfinite(ratio) else None


def probe_batch(run: RunOutcome) -> Split:
    split = run.data.validation
    return split.batch(np.arange(min(PROBE_BATCH, len(split))))


def applies(run: RunOutcome) -> bool:
    """The profile is defined for the plain one-cell model with sequences longer than one step
    (``single_cell``: a subclass of the model may wire the cell differently)."""
    return (
        isinstance(run.model, SequenceModel)
        and run.model.single_cell
        and run.task.readout in ("last", "all")
        and run.data.validation.inputs.shape[0] > 1
    )


def profiles(run: RunOutcome) -> dict[str, Any]:
    """The run's lags and both profiles, computed once per run and kept in ``run.extras``."""
    cached = run.extras.get(CACHE_KEY)
    if cached is None:
        try:
            cached = _compute_profiles(run)
        except Exception as exc:  # every metric of this family reports the same error
            cached = {"error": exc}
        run.extras[CACHE_KEY] = cached
    if "error" in cached:
        raise cached["error"]
    return cached


def _compute_profiles(run: RunOutcome) -> dict[str, Any]:
    if not applies(run):
        return {"lags": None, "init": None, "trained": None}
    batch = probe_batch(run)
    lags = probe_lags(origin_step(run.task, batch.inputs.shape[0]) + 1)
    init = gradient_by_lag(run.model, run.initial_params, batch, lags)
    trained = None
    if not run.training.diverged:
        trained = gradient_by_lag(run.model, run.training.params, batch, lags)
    return {"lags": lags, "init": init, "trained": trained}


def grad_lags(run: RunOutcome) -> list[int] | None:
    return profiles(run)["lags"]


def grad_norm_by_lag_init(run: RunOutcome) -> list[float | None] | None:
    return profiles(run)["init"]


def grad_norm_by_lag_trained(run: RunOutcome) -> list[float | None] | None:
    return profiles(run)["trained"]


def _decay(run: RunOutcome, which: str) -> float | None:
    found = profiles(run)
    norms = found[which]
    return None if norms is None else fit_decay(found["lags"], norms)


def _ratio(run: RunOutcome, which: str) -> float | None:
    norms = profiles(run)[which]
    return None if norms is None else lag_ratio(norms)


def grad_decay_init(run: RunOutcome) -> float | None:
    return _decay(run, "init")


def grad_decay_trained(run: RunOutcome) -> float | None:
    return _decay(run, "trained")


def grad_ratio_init(run: RunOutcome) -> float | None:
    return _ratio(run, "init")


def grad_ratio_trained(run: RunOutcome) -> float | None:
    return _ratio(run, "trained")


# --- Spectral radius -----------------------------------------------------------------------------


def max_spectral_radius(params: dict[str, np.ndarray]) -> float | None:
    """The largest spectral radius over every gate block of every ``weight_hh_l*`` (any prefix);
    ``None`` when there is none, or a weight is not finite."""
    radii = []
    for name, weight in params.items():
        if not name.rsplit(".", 1)[-1].startswith("weight_hh_l"):
            continue
        weight = np.asarray(weight)
        if weight.ndim != 2 or weight.shape[0] % weight.shape[1] or not np.all(np.isfinite(weight)):
            return None
        radii.extend(spectral_radius(block) for block in gate_blocks(weight))
    return max(radii) if radii else None


def spectral_radius_init(run: RunOutcome) -> float | None:
    return max_spectral_radius(run.initial_params)


def spectral_radius_trained(run: RunOutcome) -> float | None:
    return max_spectral_radius(run.training.params)


@hookimpl
def rnnbench_register_metrics(register):
    profile = (
        "mean per-sequence ||dLoss/dh_t|| (top layer's h; h part of an LSTM's (h, c)) at each "
        "of grad_lags, on the first 32 validation sequences"
    )
    register("grad_lags", grad_lags,
             "time lags o-t at which the grad_norm_by_lag profiles are measured, o the last step "
             "(the first recall step for copy memory): 0..8, then doubling, plus o (list)",
             better=None)
    register("grad_norm_by_lag_init", grad_norm_by_lag_init,
             f"{profile}, initial parameters (list aligned with grad_lags)", better=None)
    register("grad_norm_by_lag_trained", grad_norm_by_lag_trained,
             f"{profile}, trained parameters (list aligned with grad_lags)", better=None)
    decay = (
        "per-step gradient factor through time, exp(slope of log norm vs lag): "
        "<1 vanishes, >1 explodes"
    )
    register("grad_decay_init", grad_decay_init, f"{decay}; initial parameters", better=None)
    register("grad_decay_trained", grad_decay_trained, f"{decay}; trained parameters",
             better=None)
    ratio = "gradient norm at the largest lag / at lag 0"
    register("grad_ratio_init", grad_ratio_init, f"{ratio}; initial parameters", better=None)
    register("grad_ratio_trained", grad_ratio_trained, f"{ratio}; trained parameters",
             better=None)
    radius = "largest spectral radius over the gate blocks of the recurrent weights"
    register("spectral_radius_init", spectral_radius_init, f"{radius}, at initialisation",
             better=None)
    register("spectral_radius_trained", spectral_radius_trained, f"{radius}, after training",
             better=None)
