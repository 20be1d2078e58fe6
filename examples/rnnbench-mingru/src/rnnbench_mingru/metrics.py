"""The generalisation gap of a run: how much worse the trained model does on unseen data."""

from __future__ import annotations

from rnnbench import MetricRegistrar, RunOutcome, hookimpl

#: The version of rnnbench's plugin contract this module was written for.
RNNBENCH_CONTRACT = 2


def generalisation_gap(run: RunOutcome) -> float | None:
    """Test loss minus training loss, both of the final parameters on their whole split.

    The training loss is recomputed here on the whole training split, with the final parameters
    and the task's own loss, exactly as the test loss is: the ``train_loss`` the training curve
    records is a mean over the last evaluation interval's mini-batches, taken *before* each
    update, so it mixes parameters of different ages and would bias the gap. A difference rather
    than a ratio: a model that memorises its training split drives the training loss to zero, and
    a ratio then explodes exactly where the gap matters most; a difference stays in the task's
    own loss units, comparable with ``test_loss`` in the same table. ``None`` for a diverged run,
    which has no final test loss.
    """
    if run.training.diverged:
        return None
    train = run.model.evaluate(run.params, run.data.train)
    return run.test.loss - train.loss


@hookimpl
def rnnbench_register_metrics(register: MetricRegistrar) -> None:
    register(
        "generalisation_gap",
        generalisation_gap,
        "test loss - loss on the whole training split, both with the final parameters: near 0 "
        "generalises, large overfits (an untrained model has a gap near 0 too: read with "
        "test_loss)",
        better=None,
    )
