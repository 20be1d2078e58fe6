"""Built-in plot reporter: learning curves and gradient norm by time lag, as PNG files.

Reads records only (never reruns anything). One panel per task; one line per configuration
(everything but the seed), the mean over seeds with the runs' spread shaded. Files are written
atomically like the tables.
"""

from __future__ import annotations

import io
import math
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rnnbench import ResultTable, RunRecord, atomic_write_bytes, hookimpl

PLOTS = "plots"
#: Gradient-profile metrics drawn against ``grad_lags`` (see the gradient_flow metrics).
GRADIENT_PROFILES = (("grad_norm_by_lag_init", "at initialisation"),
                     ("grad_norm_by_lag_trained", "after training"))


def _label(record: RunRecord, varying: list[str]) -> str:
    config = record.flat_config()
    shown = [c for c in varying if c not in ("seed", "task")]
    return ", ".join(f"{config.get(c)}" if c in ("cell", "backend") else f"{c}={config.get(c)}"
                     for c in shown) or record.config.get("cell", "run")


def _groups(table: ResultTable) -> dict[str, dict[str, list[RunRecord]]]:
    """task -> line label -> the records (seeds) of that configuration."""
    grouped: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    varying = table.display_columns
    for record in table.records:
        if record.status == "failed":
            continue
        task = record.task_label or str(record.config.get("task"))
        grouped[task][_label(record, varying)].append(record)
    return grouped


def _number(value: Any) -> float:
    """A recorded number as a float; NaN (not drawn) for anything else, so a hand-edited or
    foreign record (a point without ``val_loss``, a string) never stops the plots."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range
            return math.nan
    return math.nan


def _point(point: Any, key: str) -> float:
    return _number(point.get(key)) if isinstance(point, dict) else math.nan


def _save(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def _panels(count: int):
    # A bare Figure (no pyplot): no global backend state, no display, safe in any process.
    from matplotlib.figure import Figure

    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(5 * columns, 3.8 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    return figure, list(axes.flat)


#: Values above this are not drawn (see :func:`_mean_band`).
PLOT_CEILING = 1e100


def _mean_band(axis: Any, x: np.ndarray, ys: list[np.ndarray], label: str) -> None:
    stacked = np.vstack(ys)
    # An exploding run's inf, or a value beyond PLOT_CEILING, says only "diverged" (the run's
    # status says it too) and breaks matplotlib's log-axis ticks: leave them out of the plot.
    with np.errstate(invalid="ignore"):
        stacked[~(np.abs(stacked) <= PLOT_CEILING)] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a lag where every seed has no value
        mean = np.nanmean(stacked, axis=0)
        low, high = np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)
    (line,) = axis.plot(x, mean, label=label)
    if len(ys) > 1:
        axis.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


def plot_learning_curves(table: ResultTable, out_dir: Path) -> Path | None:
    """Validation loss against optimizer steps, one panel per task."""
    groups = _groups(table)
    if not any(r.curve for lines in groups.values() for rs in lines.values() for r in rs):
        return None
    figure, axes = _panels(len(groups))
    for axis, (task, lines) in zip(axes, sorted(groups.items()), strict=False):
        for label, records in lines.items():
            curves = [r.curve for r in records if r.curve]
            if not curves:
                continue
            steps = np.array([_point(p, "step") for p in max(curves, key=len)])
            ys = [np.pad(np.array([_point(p, "val_loss") for p in c], dtype=float),
                         (0, len(steps) - len(c)), constant_values=np.nan) for c in curves]
            _mean_band(axis, steps, ys, label)
        axis.set(title=task, xlabel="optimizer steps", ylabel="validation loss", yscale="log")
        if axis.get_legend_handles_labels()[0]:  # every run may have diverged before a point
            axis.legend(fontsize="small")
    figure.suptitle(f"{table.suite}: learning curves (mean over seeds, band = min..max)")
    return _save(figure, out_dir / PLOTS / "learning_curves.png")


def plot_gradient_by_lag(table: ResultTable, out_dir: Path) -> Path | None:
    """Norm of dLoss/dh_t against the lag T-1-t, before and after training, one panel per task
    and state: a straight falling line on the log scale is a vanishing gradient."""
    groups = _groups(table)
    panels = [
        (task, metric, when)
        for task, lines in sorted(groups.items())
        for metric, when in GRADIENT_PROFILES
        if any(isinstance(r.metrics.get(metric), list) for rs in lines.values() for r in rs)
    ]
    if not panels:
        return None
    figure, axes = _panels(len(panels))
    for axis, (task, metric, when) in zip(axes, panels, strict=False):
        for label, records in groups[task].items():
            usable = [r for r in records if isinstance(r.metrics.get(metric), list)
                      and isinstance(r.metrics.get("grad_lags"), list)]
            if not usable:
                continue
            lags = np.array([_number(v) for v in usable[0].metrics["grad_lags"]], dtype=float)
            ys = [np.array([_number(v) for v in r.metrics[metric]], dtype=float)
                  for r in usable if len(r.metrics[metric]) == len(lags)]
            if ys:
                _mean_band(axis, lags, ys, label)
        axis.set(title=f"{task}: {when}", xlabel="lag (steps back from the last)",
                 ylabel="|dLoss/dh_t|", yscale="log")
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize="small")
    figure.suptitle(f"{table.suite}: gradient norm by time lag (mean over seeds)")
    return _save(figure, out_dir / PLOTS / "gradient_by_lag.png")


def write_plots(table: ResultTable, out_dir: Path) -> list[Path]:
    written = [plot_learning_curves(table, out_dir), plot_gradient_by_lag(table, out_dir)]
    return [path for path in written if path is not None]


@hookimpl
def rnnbench_register_reporters(register):
    register("plots", write_plots,
             "plots/learning_curves.png and plots/gradient_by_lag.png (matplotlib)")
