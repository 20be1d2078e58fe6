"""Built-in metrics of the gradients and weights during training: explosions, clipping, growth.

They read the per-step record the training loop keeps (``TrainingResult.grad_norms``: the
global L2 norm of all gradients *before* clipping, at every optimizer step taken, and
``clipped_steps``) and the recurrent weights before and after training.

``exploded`` follows Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent
neural networks", section 3: "the exploding gradients problem refers to the large increase in
the norm of the gradient during training". The rule, fixed so runs compare:

- the run diverged (a non-finite loss or gradient: the explosion ran away), or
- the largest gradient norm of the run is at least :data:`EXPLOSION_FACTOR` (100, two orders
  of magnitude) times the *reference* norm, the median norm of the first
  :data:`REFERENCE_STEPS` (10) optimizer steps (a median, so one odd first batch does not set
  it). ``grad_norm_peak_ratio`` is that ratio.

The norms are taken before clipping, so a run whose explosion clipping contained still reads
``exploded`` (and ``clipped_fraction`` says how often it was clipped). A network whose
gradients are large *from the first step* (e.g. a recurrent matrix initialised with spectral
radius well above 1) has no increase during training to see: the per-step gradient factor
through time (``grad_decay_init`` > 1, :mod:`rnnbench.plugins.metrics.gradient_flow`) shows that
structural explosion, and ``weight_norm_growth`` the weights that grew with it.
"""

from __future__ import annotations

import math

import numpy as np

from rnnbench import RunOutcome, hookimpl

#: ``exploded``: the peak gradient norm, as a multiple of the reference norm, that counts as an
#: explosion (two orders of magnitude).
EXPLOSION_FACTOR = 100.0
#: ``exploded``: the reference norm is the median over this many first optimizer steps.
REFERENCE_STEPS = 10


def grad_norm_max(run: RunOutcome) -> float | None:
    norms = run.training.grad_norms
    return float(max(norms)) if norms else None


def grad_norm_median(run: RunOutcome) -> float | None:
    norms = run.training.grad_norms
    return float(np.median(norms)) if norms else None


def grad_norm_peak_ratio(run: RunOutcome) -> float | None:
    """The largest gradient norm over the median of the first :data:`REFERENCE_STEPS`."""
    norms = run.training.grad_norms
    if not norms:
        return None
    reference = float(np.median(norms[:REFERENCE_STEPS]))
    peak = float(max(norms))
    if reference > 0:
        return peak / reference
    return None if peak == 0 else math.inf


def exploded(run: RunOutcome) -> bool | None:
    if run.training.diverged:
        return True
    ratio = grad_norm_peak_ratio(run)
    return None if ratio is None else ratio >= EXPLOSION_FACTOR


def clipped_fraction(run: RunOutcome) -> float | None:
    steps = len(run.training.grad_norms)
    if run.spec.training.clip is None or not steps:
        return None
    return run.training.clipped_steps / steps


def recurrent_norm(params: dict[str, np.ndarray]) -> float | None:
    """The Frobenius norm of every recurrent matrix together: the square root of the summed
    squares of every ``weight_hh_l{k}`` (every layer and gate; any prefix, e.g. ``encoder.``);
    ``None`` for a cell without one (e.g. a minGRU)."""
    squares = [
        float(np.sum(np.square(np.asarray(value, dtype=np.float64))))
        for name, value in params.items()
        if name.rsplit(".", 1)[-1].startswith("weight_hh_l")
    ]
    return math.sqrt(sum(squares)) if squares else None


def weight_norm_growth(run: RunOutcome) -> float | None:
    before = recurrent_norm(run.initial_params)
    after = recurrent_norm(run.training.params)
    if before is None or after is None or before == 0:
        return None
    return after / before


@hookimpl
def rnnbench_register_metrics(register):
    per_step = "global L2 norm of all gradients before clipping, over every optimizer step"
    register("grad_norm_max", grad_norm_max, f"largest {per_step}", better=None)
    register("grad_norm_median", grad_norm_median, f"median {per_step}", better=None)
    register("grad_norm_peak_ratio", grad_norm_peak_ratio,
             f"grad_norm_max / the median norm of the first {REFERENCE_STEPS} steps "
             "(exploded's measure)", better=None)
    register("exploded", exploded,
             f"diverged, or grad_norm_max >= {EXPLOSION_FACTOR:g} x the median norm of the "
             f"first {REFERENCE_STEPS} steps: a large increase of the gradient norm during "
             "training (Pascanu et al. 2013)", better=None)
    register("clipped_fraction", clipped_fraction,
             "fraction of optimizer steps whose gradient norm exceeded clip (None without clip)",
             better=None)
    register("weight_norm_growth", weight_norm_growth,
             "Frobenius norm of all recurrent matrices (weight_hh_l*, every layer and gate) "
             "after training / before; None for cells without weight_hh", better=None)
