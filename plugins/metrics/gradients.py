"""Built-in metrics of the gradients and weights during training: explosions, clipping, growth.

They read the per-step record the training loop keeps (``TrainingResult.grad_norms``: the
global L2 norm of all gradients *before* clipping, at every optimizer step taken, and
``clipped_steps``) and the recurrent weights before and after training.

``exploded`` follows Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent
neural networks": "the exploding gradients problem refers to the large increase in the norm of
the gradient during training. Such events are caused by the explosion of the long term
components, which can grow exponentially more than short term ones" (section 2.1). The rule,
fixed so runs compare, reads both halves of that sentence with one factor,
:data:`EXPLOSION_FACTOR` (100: two orders of magnitude). A run exploded when

- it diverged (a non-finite loss or gradient: the explosion ran away); or
- *during training*: the largest gradient norm of the run is at least 100 times the reference
  norm, the median norm of the first :data:`REFERENCE_STEPS` (10) optimizer steps (a median,
  so one odd first batch does not set it): ``grad_norm_peak_ratio`` >= 100; or
- *through time*: the long-term component is at least 100 times the short-term one, i.e. the
  gradient-by-lag profile (:mod:`rnnbench.plugins.metrics.gradient_flow`) at the largest lag
  over lag 0, with the initial or the trained parameters (``grad_ratio_init`` /
  ``grad_ratio_trained`` >= 100), or a profile that overflowed. This catches gradients that are
  huge from the first step, where there is no increase during training to see (a recurrent
  matrix initialised with spectral radius 3, clipped at every step).

``None`` when none of the three can be judged (no step taken, no profile). The norms are taken
before clipping, so a run whose explosion clipping contained still reads ``exploded`` (and
``clipped_fraction`` says how often it was clipped; ``weight_norm_growth`` how much the
recurrent weights grew).
"""

from __future__ import annotations

import math

import numpy as np

from rnnbench import RunOutcome, hookimpl
from rnnbench.plugins.metrics import gradient_flow

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


def _lag_ratio(norms: list[float | None] | None) -> float | None:
    """Largest lag over lag 0 of a gradient-by-lag profile; inf where it overflowed."""
    if not norms or len(norms) < 2:
        return None
    if any(norm is None for norm in norms):  # a non-finite norm: the profile overflowed
        return math.inf
    return norms[-1] / norms[0] if norms[0] else None


def exploded(run: RunOutcome) -> bool | None:
    if run.training.diverged:
        return True
    measures = [
        grad_norm_peak_ratio(run),
        _lag_ratio(gradient_flow.grad_norm_by_lag_init(run)),
        _lag_ratio(gradient_flow.grad_norm_by_lag_trained(run)),
    ]
    known = [measure for measure in measures if measure is not None]
    if not known:
        return None
    return any(measure >= EXPLOSION_FACTOR for measure in known)


def clipped_fraction(run: RunOutcome) -> float | None:
    steps = len(run.training.grad_norms)
    if run.spec.training.clip is None or not steps:
        return None
    return run.training.clipped_steps / steps


def recurrent_norm(params: dict[str, np.ndarray]) -> float | None:
    """The Frobenius norm of every recurrent matrix together: the square root of the summed
    squares of every ``weight_hh_l{k}`` (every layer and gate; any prefix, e.g. ``encoder.``);
    ``None`` for a cell without one (e.g. a minGRU)."""
    with np.errstate(over="ignore", invalid="ignore"):  # weights of a diverged run: inf, said
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
             f"diverged; or grad_norm_peak_ratio >= {EXPLOSION_FACTOR:g} (the gradient norm "
             f"grew that much during training); or the gradient by lag, largest lag / lag 0, "
             f">= {EXPLOSION_FACTOR:g} at init or after training (long-term components "
             "exploding through time): Pascanu et al. 2013", better=None)
    register("clipped_fraction", clipped_fraction,
             "fraction of optimizer steps whose gradient norm exceeded clip (None without clip)",
             better=None)
    register("weight_norm_growth", weight_norm_growth,
             "Frobenius norm of all recurrent matrices (weight_hh_l*, every layer and gate) "
             "after training / before; None for cells without weight_hh", better=None)
