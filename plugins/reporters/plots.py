"""Built-in plot reporter: learning curves and gradient norm by time lag, as PNG files.

Reads records only (never reruns anything), and draws with matplotlib's Agg canvas (no pyplot,
no display). Small multiples: one panel per combination of the settings that vary in the suite
(the task and its parameters, hidden size, training settings, ...), and in each panel one line
per cell (with its options) and backend, the mean over seeds with the seeds' min..max shaded.
When only one kind of setting varies, its values are the lines of one panel.

Every line keeps one colour and line style across panels (tab10 colours, then the same colours
dashed, dash-dotted, dotted: distinct pairs for 40 lines), and one legend stands right of the
panels, never over the data. Each panel draws its task's baseline (the trivial predictor's
loss, from the ``baseline_loss`` metric, or ``test_loss / loss_vs_baseline``) as a grey dotted
line, and a log scale when its values are positive and span more than a decade. Every point of
a curve is drawn, the step-0 evaluation before any update included. Files are written
atomically like the tables.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnbench import ResultTable, RunRecord, atomic_write_bytes, format_value, hookimpl

PLOTS = "plots"
#: Gradient-profile metrics drawn against ``grad_lags`` (see the gradient_flow metrics).
GRADIENT_PROFILES = (("grad_norm_by_lag_init", "at initialisation"),
                     ("grad_norm_by_lag_trained", "after training"))
#: Settings that tell lines apart within a panel (a cell's options are ``cell.NAME``).
LINE_KEYS = ("cell", "backend")
#: The most panels of one figure: beyond it, settings move from panels to lines.
MAX_PANELS = 12
#: Ten colours, then the same ten with each further line style.
COLOURS = tuple(f"tab:{name}" for name in (
    "blue", "orange", "green", "red", "purple", "brown", "pink", "gray", "olive", "cyan"))
LINE_STYLES = ("-", "--", "-.", ":")
#: Markers added beyond ``len(COLOURS) * len(LINE_STYLES)`` lines.
MARKERS = ("o", "s", "^", "v", "D", "x")
BASELINE_STYLE = {"color": "0.3", "linestyle": (0, (1, 1.5)), "linewidth": 1.6}
BASELINE_LABEL = "baseline (trivial predictor)"
#: Characters per line of a panel title: what fits above a 4.4-inch panel at medium size.
TITLE_WIDTH = 48
#: Values above this are not drawn (see :func:`_mean_band`).
PLOT_CEILING = 1e100


# --- grouping --------------------------------------------------------------------------------


@dataclass
class Layout:
    """Which settings make the panels and which the lines, and the runs of each."""

    panel_keys: list[str]
    line_keys: list[str]
    #: panel title -> line label -> the records (seeds) of that configuration, in suite order.
    panels: dict[str, dict[str, list[RunRecord]]] = field(default_factory=dict)
    #: Every line label, in the order first met: a label keeps its style in every panel.
    lines: list[str] = field(default_factory=list)

    def style(self, label: str) -> dict[str, Any]:
        """The colour and line style of one line (markers only beyond 40 lines)."""
        return line_style(self.lines.index(label))


def line_style(index: int) -> dict[str, Any]:
    """Colour and line style of the ``index``-th line: distinct pairs for 40 lines, then a
    marker on top."""
    colours, styles = len(COLOURS), len(LINE_STYLES)
    style: dict[str, Any] = {"color": COLOURS[index % colours],
                             "linestyle": LINE_STYLES[(index // colours) % styles]}
    if index >= colours * styles:
        style.update(marker=MARKERS[(index // (colours * styles) - 1) % len(MARKERS)],
                     markevery=0.2, markersize=4)
    return style


def _value(record: RunRecord, key: str) -> Any:
    if key == "task":
        return record.task_label or record.config.get("task")
    return record.flat_config().get(key)


def _shown(key: str, value: Any) -> str:
    """``lstm``, ``adding[length=100]``, ``lr=0.01``, ``nonlinearity=relu``, ``clip=null``."""
    if key in ("cell", "backend", "task"):
        return format_value(value)
    return f"{key.removeprefix('cell.')}={format_value(value) if value is not None else 'null'}"


def _joined(record: RunRecord, keys: list[str]) -> str:
    """The record's values of ``keys`` as a title or label, leaving out a cell option the
    record's cell does not have (``lstm``, not ``lstm, nonlinearity=``)."""
    shown = []
    for key in keys:
        value = _value(record, key)
        if value is None and key.startswith("cell."):
            continue
        shown.append(_shown(key, value))
    return ", ".join(shown)


def layout(table: ResultTable) -> Layout:
    """Panels by the varying settings, lines by cell, cell options and backend.

    The task and its parameters are one setting (``adding[length=100]``). Without varying cells
    or backends, the last varying setting makes the lines instead; settings move from panels to
    lines, last first, until at most :data:`MAX_PANELS` panels remain.
    """
    records = [r for r in table.records if r.status != "failed"]
    varying = [c for c in table.display_columns if c != "seed"]
    line_keys = [c for c in varying if c in LINE_KEYS or c.startswith("cell.")]
    # The task first: panels read "adding[length=100], lr=0.01".
    panel_keys = sorted((c for c in varying if c not in line_keys), key=lambda c: c != "task")
    if not line_keys and panel_keys and panel_keys[-1] != "task":
        line_keys.append(panel_keys.pop())

    def count(keys: list[str]) -> int:
        return len({tuple(format_value(_value(r, k)) for k in keys) for r in records})

    while panel_keys and count(panel_keys) > MAX_PANELS:
        line_keys.insert(0, panel_keys.pop())
    result = Layout(panel_keys, line_keys)
    for record in records:
        title = _joined(record, panel_keys) or str(_value(record, "task"))
        label = _joined(record, line_keys) or str(record.config.get("cell", "run"))
        result.panels.setdefault(title, {}).setdefault(label, []).append(record)
        if label not in result.lines:
            result.lines.append(label)
    return result


# --- numbers ---------------------------------------------------------------------------------


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


def baseline_of(records: Sequence[RunRecord]) -> float | None:
    """The mean baseline loss of ``records``' task: the ``baseline_loss`` metric, else
    ``test_loss / loss_vs_baseline``; None when no record says."""
    values = []
    for record in records:
        metrics = record.metrics
        value = _number(metrics.get("baseline_loss"))
        if not math.isfinite(value):
            ratio = _number(metrics.get("loss_vs_baseline"))
            loss = _number(metrics.get("test_loss"))
            value = loss / ratio if math.isfinite(ratio) and ratio > 0 else math.nan
        if math.isfinite(value):
            values.append(value)
    return float(np.mean(values)) if values else None


def _aligned(series: list[dict[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """x values (the union over seeds, sorted) and one row per seed, NaN where a seed has no
    point (an early stop, a different evaluation schedule)."""
    xs = sorted({x for points in series for x in points if math.isfinite(x)})
    rows = np.full((len(series), len(xs)), np.nan)
    where = {x: i for i, x in enumerate(xs)}
    for row, points in zip(rows, series, strict=True):
        for x, y in points.items():
            if x in where:
                row[where[x]] = y
    return np.array(xs, dtype=float), rows


def _mean_band(axis: Any, x: np.ndarray, stacked: np.ndarray, style: dict[str, Any],
               label: str) -> np.ndarray:
    """The mean over seeds as a line, their min..max shaded; returns the values drawn."""
    # An exploding run's inf, or a value beyond PLOT_CEILING, says only "diverged" (the run's
    # status says it too) and breaks matplotlib's log-axis ticks: leave them out of the plot.
    with np.errstate(invalid="ignore"):
        stacked[~(np.abs(stacked) <= PLOT_CEILING)] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an x where every seed has no value
        mean = np.nanmean(stacked, axis=0)
        low, high = np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)
    few = np.count_nonzero(np.isfinite(mean)) <= 15
    extra = {"marker": "o", "markersize": 3} if few and "marker" not in style else {}
    axis.plot(x, mean, label=label, linewidth=1.5, **style, **extra)
    if len(stacked) > 1:
        axis.fill_between(x, low, high, color=style["color"], alpha=0.15, linewidth=0)
    return stacked[np.isfinite(stacked)]


def _scale(axis: Any, values: list[float], always_log: bool = False) -> None:
    """Log scale when every value is positive and they span more than a decade (or when
    ``always_log``, non-positive values then left undrawn); else linear."""
    finite = [v for v in values if math.isfinite(v)]
    positive = [v for v in finite if v > 0]
    if always_log and positive:
        axis.set_yscale("log")
    elif finite and len(positive) == len(finite) and max(finite) > 10 * min(finite):
        axis.set_yscale("log")


# --- figures ---------------------------------------------------------------------------------


def _figure(count: int, lines: int) -> tuple[Any, list[Any]]:
    """A figure of ``count`` panels on an Agg canvas (no pyplot: no global state, no display),
    with room right of them for a legend of ``lines`` entries."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(count, 3 if count <= 9 else 4)
    rows = math.ceil(count / columns)
    legend_width = 2.2 if lines <= 20 else 4.2
    figure = Figure(figsize=(4.4 * columns + legend_width, 3.4 * rows + 0.6),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    return figure, list(axes.flat[:count])


def _legend(figure: Any, plan: Layout, drawn: set[str], baseline: bool) -> None:
    """One legend for every panel, right of them (constrained layout keeps it off the data)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linewidth=1.5, **plan.style(label))
               for label in plan.lines if label in drawn]
    labels = [label for label in plan.lines if label in drawn]
    if baseline:
        handles.append(Line2D([], [], **BASELINE_STYLE))
        labels.append(BASELINE_LABEL)
    if handles:
        figure.legend(handles, labels, loc="outside right upper", fontsize="small",
                      title=", ".join(k.removeprefix("cell.") for k in plan.line_keys) or None,
                      title_fontsize="small", ncols=1 if len(handles) <= 20 else 2,
                      frameon=False)


def _wrapped(title: str) -> str:
    """A panel title in lines that fit above its panel (a long one would run over the next),
    broken after a comma (``adding[length=100,train_size=...]`` has no spaces) or a space."""
    lines: list[str] = []
    for piece in re.split(r"(?<=,)", title):
        if lines and len(lines[-1]) + len(piece) <= TITLE_WIDTH:
            lines[-1] += piece
        else:
            lines.append(piece.lstrip())
    return "\n".join(line.rstrip() for line in lines)


def _title(table: ResultTable, what: str) -> str:
    variant = (table.environment or {}).get("variant")
    name = table.suite + (f" (variant {variant})" if isinstance(variant, str) else "")
    return f"{name}: {what}"


def learning_curves_figure(table: ResultTable) -> Any | None:
    """Validation loss against optimizer steps: one panel per group of varying settings, the
    task's baseline drawn; None when no record has a curve."""
    plan = layout(table)
    panels = [(title, lines) for title, lines in plan.panels.items()
              if any(r.curve for records in lines.values() for r in records)]
    if not panels:
        return None
    figure, axes = _figure(len(panels), len(plan.lines))
    drawn: set[str] = set()
    any_baseline = False
    for axis, (title, lines) in zip(axes, panels, strict=True):
        values: list[float] = []
        for label, records in lines.items():
            curves = [r.curve for r in records if isinstance(r.curve, list) and r.curve]
            if not curves:
                continue
            x, stacked = _aligned([{_point(p, "step"): _point(p, "val_loss") for p in curve}
                                   for curve in curves])
            if not x.size:
                continue
            values += list(_mean_band(axis, x, stacked, plan.style(label), label))
            drawn.add(label)
        baseline = baseline_of([r for records in lines.values() for r in records])
        if baseline is not None:
            axis.axhline(baseline, gid="baseline", label=BASELINE_LABEL, **BASELINE_STYLE)
            values.append(baseline)
            any_baseline = True
        _scale(axis, values)
        axis.set_title(_wrapped(title), fontsize="medium")
        axis.set(xlabel="optimizer steps", ylabel="validation loss")
        axis.grid(alpha=0.3)
    _legend(figure, plan, drawn, any_baseline)
    figure.suptitle(_title(table, "learning curves (mean over seeds, band: min..max)"))
    return figure


def gradient_by_lag_figure(table: ResultTable) -> Any | None:
    """Norm of dLoss/dh_t against the lag T-1-t, before and after training, one panel per
    group and state: a straight falling line on the log scale is a vanishing gradient."""
    plan = layout(table)
    panels = [
        (title, lines, metric, when)
        for title, lines in plan.panels.items()
        for metric, when in GRADIENT_PROFILES
        # a profile is drawn against its lags: without grad_lags recorded there is no x axis
        if any(isinstance(r.metrics.get(metric), list)
               and isinstance(r.metrics.get("grad_lags"), list)
               for rs in lines.values() for r in rs)
    ]
    if not panels:
        return None
    figure, axes = _figure(len(panels), len(plan.lines))
    drawn: set[str] = set()
    for axis, (title, lines, metric, when) in zip(axes, panels, strict=True):
        values: list[float] = []
        for label, records in lines.items():
            series = []
            for record in records:
                profile, lags = record.metrics.get(metric), record.metrics.get("grad_lags")
                if isinstance(profile, list) and isinstance(lags, list) and \
                        len(profile) == len(lags):
                    series.append({_number(lag): _number(v) for lag, v in zip(lags, profile,
                                                                               strict=True)})
            if not series:
                continue
            x, stacked = _aligned(series)
            with np.errstate(invalid="ignore"):
                stacked[~(stacked > 0)] = np.nan  # a zero norm has no place on a log axis
            values += list(_mean_band(axis, x, stacked, plan.style(label), label))
            drawn.add(label)
        _scale(axis, values, always_log=True)
        axis.set_title(_wrapped(f"{title}: {when}"), fontsize="medium")
        axis.set(xlabel="lag (steps back from the last)", ylabel="|dLoss/dh_t|")
        axis.grid(alpha=0.3)
    _legend(figure, plan, drawn, baseline=False)
    figure.suptitle(_title(table, "gradient norm by time lag (mean over seeds, band: min..max)"))
    return figure


def _save(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def _write(make: Callable[[ResultTable], Any], table: ResultTable, path: Path) -> Path | None:
    figure = make(table)
    return None if figure is None else _save(figure, path)


def plot_learning_curves(table: ResultTable, out_dir: Path) -> Path | None:
    """``plots/learning_curves.png`` (see :func:`learning_curves_figure`)."""
    return _write(learning_curves_figure, table, out_dir / PLOTS / "learning_curves.png")


def plot_gradient_by_lag(table: ResultTable, out_dir: Path) -> Path | None:
    """``plots/gradient_by_lag.png`` (see :func:`gradient_by_lag_figure`)."""
    return _write(gradient_by_lag_figure, table, out_dir / PLOTS / "gradient_by_lag.png")


def write_plots(table: ResultTable, out_dir: Path) -> list[Path]:
    written = [plot_learning_curves(table, out_dir), plot_gradient_by_lag(table, out_dir)]
    return [path for path in written if path is not None]


@hookimpl
def rnnbench_register_reporters(register):
    register("plots", write_plots,
             "plots/learning_curves.png and plots/gradient_by_lag.png (matplotlib)")
