"""Built-in metrics of how a run trained: losses, accuracy, cost and outcome."""

from __future__ import annotations

import math

import numpy as np

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


def _step_seconds(run: RunOutcome) -> list[float]:
    return list(getattr(run.training, "step_seconds", []) or [])


def step_ms(run: RunOutcome) -> float | None:
    """Median milliseconds of the timed optimizer steps: one slow step (a page fault, another
    process taking the core) moves it little, where it would move a mean."""
    times = _step_seconds(run)
    if times:
        return 1000.0 * float(np.median(times))
    done = run.training.steps_done
    return 1000.0 * run.training.train_seconds / done if done else None


def step_ms_spread(run: RunOutcome) -> float | None:
    """Interquartile range (75th minus 25th percentile) of the step times, in milliseconds:
    how steady the timing was. None without timed steps."""
    times = _step_seconds(run)
    if not times:
        return None
    q25, q75 = np.percentile(times, [25, 75])
    return 1000.0 * float(q75 - q25)


def _split_steps(run: RunOutcome) -> tuple[np.ndarray, np.ndarray] | None:
    """Per timed step: (seconds in the cells, seconds of the harness's own work); None when the
    run's model kept no cell clock."""
    cells = list(getattr(run.training, "cell_seconds", []) or [])
    steps = _step_seconds(run)
    if not cells or len(cells) != len(steps):
        return None
    cell = np.asarray(cells)
    return cell, np.asarray(steps) - cell


def cell_ms(run: RunOutcome) -> float | None:
    """Median milliseconds per step inside the cells' forward and backward (with their
    host-backend copies)."""
    split = _split_steps(run)
    return None if split is None else 1000.0 * float(np.median(split[0]))


def overhead_ms(run: RunOutcome) -> float | None:
    """Median milliseconds per step outside the cells: readout, loss, gradient norm and
    clipping, optimizer update. What the harness adds to the cells' own time."""
    split = _split_steps(run)
    return None if split is None else 1000.0 * float(np.median(split[1]))


def overhead_share(run: RunOutcome) -> float | None:
    """The harness's median share of a step's time (0 to 1): ``overhead / step`` per step."""
    split = _split_steps(run)
    if split is None:
        return None
    total = split[0] + split[1]
    return float(np.median(split[1] / np.where(total > 0, total, 1.0)))


def sequences_per_second(run: RunOutcome) -> float | None:
    """Training sequences per second at the median step: batch size / median step time, so it
    agrees with ``step_ms`` (``1000 * batch_size / step_ms``)."""
    ms = step_ms(run)
    if not ms:
        return None
    return 1000.0 * run.spec.training.batch_size / ms


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
    register("step_ms", step_ms,
             "median milliseconds per optimizer step (forward+backward+update)", timing=True)
    register("step_ms_spread", step_ms_spread,
             "interquartile range of the step times in milliseconds (75th - 25th percentile)",
             better=None, timing=True)
    register("cell_ms", cell_ms,
             "median milliseconds per step inside the cells' forward and backward (with their "
             "host-backend copies)", timing=True)
    register("overhead_ms", overhead_ms,
             "median milliseconds per step outside the cells (readout, loss, clipping, "
             "optimizer): the harness's own cost", timing=True)
    register("overhead_share", overhead_share,
             "median share of a step's time outside the cells (overhead_ms / step_ms, per "
             "step)", timing=True)
    register("sequences_per_second", sequences_per_second,
             "training throughput at the median step (1000 * batch_size / step_ms)",
             better="higher", timing=True)
