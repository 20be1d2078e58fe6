"""Built-in metrics of how a run trained: losses, accuracy, cost and outcome."""

from __future__ import annotations

import math

from rnnbench import RunOutcome, hookimpl


def test_loss(run: RunOutcome) -> float | None:
    return None if run.training.diverged else run.test.loss


def test_accuracy(run: RunOutcome) -> float | None:
    return run.test.accuracy


def _trained_points(run: RunOutcome) -> list:
    """The curve's points after at least one update (the step-0 point is the initial model)."""
    return [point for point in run.training.curve if point["step"] > 0]


def train_loss(run: RunOutcome) -> float | None:
    curve = _trained_points(run)
    return curve[-1]["train_loss"] if curve else None


def best_val_loss(run: RunOutcome) -> float | None:
    losses = [p["val_loss"] for p in _trained_points(run) if math.isfinite(p["val_loss"])]
    return min(losses) if losses else None


def baseline_loss(run: RunOutcome) -> float:
    return run.baseline_loss


def loss_vs_baseline(run: RunOutcome) -> float | None:
    loss = test_loss(run)
    if loss is None or run.baseline_loss <= 0:
        return None
    return loss / run.baseline_loss


def steps(run: RunOutcome) -> int:
    return run.training.steps_done


def train_seconds(run: RunOutcome) -> float:
    return run.training.train_seconds


def step_ms(run: RunOutcome) -> float | None:
    done = run.training.steps_done
    return 1000.0 * run.training.train_seconds / done if done else None


def sequences_per_second(run: RunOutcome) -> float | None:
    seconds = run.training.train_seconds
    if not seconds:
        return None
    return run.training.steps_done * run.spec.training.batch_size / seconds


def param_count(run: RunOutcome) -> int:
    return run.parameter_count


def diverged(run: RunOutcome) -> bool:
    return run.training.diverged


def stopped_early(run: RunOutcome) -> bool:
    return run.training.stopped_early


def solved(run: RunOutcome) -> bool | None:
    """Whether the run met its task's :meth:`~rnnbench.Task.solved_criterion` on the test
    split: ``None`` when the task defines none (or the quantity it compares is missing),
    ``False`` for a diverged run (it has solved nothing, whatever its last weights score)."""
    criterion = run.task.solved_criterion(run.data)
    if criterion is None:
        return None
    if run.training.diverged:
        return False
    test = run.test
    return criterion.holds(
        criterion.value(test.loss, test.accuracy, test.scores, run.baseline_loss)
    )


@hookimpl
def rnnbench_register_metrics(register):
    register("test_loss", test_loss, "loss on the test split after training")
    register("test_accuracy", test_accuracy, "accuracy on the test split (classification tasks)",
             better="higher")
    register("train_loss", train_loss, "mean training loss over the last evaluation interval")
    register("best_val_loss", best_val_loss,
             "lowest validation loss seen during training (after the first update)")
    register("baseline_loss", baseline_loss,
             "test loss of the task's trivial predictor (computed from the data)", better=None)
    register("loss_vs_baseline", loss_vs_baseline,
             "test loss / baseline loss: below 1 means the model learned something")
    register("steps", steps, "optimizer steps taken", better=None)
    register("param_count", param_count, "trainable parameters (cell and readout)", better=None)
    register("diverged", diverged, "loss or gradient became NaN/inf", better=None)
    register("stopped_early", stopped_early, "a plugin stopped training early", better=None)
    register("solved", solved,
             "the test split meets the task's solved criterion (Task.solved_criterion; README, "
             "Tasks); a diverged run is not solved; blank when the task defines none",
             better="higher")
    register("train_seconds", train_seconds, "wall-clock seconds in optimizer steps",
             timing=True)
    register("step_ms", step_ms, "milliseconds per optimizer step (forward+backward+update)",
             timing=True)
    register("sequences_per_second", sequences_per_second, "training throughput",
             better="higher", timing=True)
