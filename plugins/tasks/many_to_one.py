"""Many-to-one tasks: read a whole sequence, answer once at the end."""

from __future__ import annotations

import csv
import importlib.resources
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnbench import (
    SolvedCriterion,
    Split,
    Task,
    TaskData,
    Topology,
    check_sizes,
    hookimpl,
    mse,
    param,
)
from rnnbench.plugins.tasks.generated import GeneratedTask


@dataclass
class AddingProblem(GeneratedTask):
    """The adding problem in its modern form (Le et al. 2015; Arjovsky et al. 2016).

    Two input channels of length T: values uniform on [0, 1], and a marker channel with exactly
    two ones, the first in the first half of the sequence and the second in the second half.
    The target is the sum of the two marked values; the loss is MSE. Predicting the constant 1
    scores MSE 1/6 (about 0.167), so a model that has learned nothing sits near there.
    """

    name = "adding"
    topology = Topology.MANY_TO_ONE
    readout = "last"
    standard_loss = "mse"
    description = "sum of the two marked values in a length-T sequence (Le et al. 2015)"

    length: int = param(50, "sequence length T (the distance the memory must span)")
    train_size: int = param(2000, "training sequences")
    validation_size: int = param(500, "validation sequences")
    test_size: int = param(1000, "test sequences")

    def __post_init__(self) -> None:
        if self.length < 2:
            raise ValueError(f"length must be at least 2 (two markers), got {self.length}")
        check_sizes(self)

    def _split(self, rng: np.random.Generator, count: int) -> Split:
        length = self.length
        half = length // 2
        values = rng.uniform(0.0, 1.0, size=(length, count))
        first = rng.integers(0, half, size=count)
        second = rng.integers(half, length, size=count)
        markers = np.zeros((length, count))
        columns = np.arange(count)
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        inputs = np.stack([values, markers], axis=-1)
        targets = (values[first, columns] + values[second, columns])[:, None]
        return Split(inputs, targets)

    def sizes(self) -> dict[str, int]:
        return dict(input_size=2, output_size=1)

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return mse(predictions, targets)

    def baseline_loss(self, data: TaskData) -> float:
        """Test MSE of the best constant predictor fitted on the training targets."""
        constant = float(np.mean(data.train.targets))
        return float(np.mean((data.test.targets - constant) ** 2))

    def solved_criterion(self, data: TaskData) -> SolvedCriterion:
        return SolvedCriterion(
            "loss", "<", 0.01,
            "test MSE < 0.01 (RMS error 0.1; the constant predictor's MSE is 1/6, Le et al. "
            "2015, Arjovsky et al. 2016): about Hochreiter & Schmidhuber's 1997 criterion, "
            "|error| < 0.04 on targets scaled by 1/4 (0.16 here), met by ~90% of sequences",
        )


#: Series shipped with the package (``plugins/tasks/data``), by ``source`` name.
SHIPPED_SERIES = {"sunspots": "sunspots.csv"}
NORMALISATIONS = ("auto", "ratio", "difference")


def shipped_csv_text(file_name: str) -> str:
    """The text of a CSV file shipped in ``plugins/tasks/data`` (works from a wheel too)."""
    data = importlib.resources.files("rnnbench.plugins.tasks").joinpath("data")
    return data.joinpath(file_name).read_text(encoding="utf-8")


def _csv_rows(text: str) -> list[list[str]]:
    """The rows of a CSV text; blank lines and lines starting with ``#`` are skipped."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [[cell.strip() for cell in row] for row in csv.reader(io.StringIO("\n".join(lines)))]


def csv_column(text: str, column: str, where: str) -> np.ndarray:
    """The values of ``column`` (the last column when empty) of a CSV text with a header row,
    as float64; ``where`` names the file in error messages."""
    rows = _csv_rows(text)
    if not rows:
        raise ValueError(f"{where} is empty: a CSV file with a header row is expected")
    header = rows[0]
    name = column or header[-1]
    if name not in header:
        raise ValueError(
            f"{where} has no column {name!r}; available columns: {', '.join(header)}"
        )
    index = header.index(name)
    values = []
    for number, row in enumerate(rows[1:], start=2):
        cell = row[index] if index < len(row) else ""
        try:
            value = float(cell)
        except ValueError:
            raise ValueError(
                f"{where}, data row {number}, column {name!r}: {cell!r} is not a number"
            ) from None
        if not math.isfinite(value):
            raise ValueError(f"{where}, data row {number}, column {name!r}: {cell!r} is not finite")
        values.append(value)
    return np.asarray(values, dtype=np.float64)


@dataclass
class Forecast(Task):
    """One-step-ahead forecasting: predict the next value of a series from a window of its
    past values (the "stock price" use of recurrent nets).

    **Series** (``source``): ``"synthetic"`` (default), a seeded geometric random walk with
    drift plus a seasonal part::

        price_t = 100 * exp(sum_{s<=t} (drift + volatility * eps_s)
                            + seasonal_amplitude * sin(2π (t / seasonal_period + u)))

    with eps_s ~ N(0, 1) and the season's phase u ~ U[0, 1) drawn from the seed;
    ``"sunspots"``, the yearly sunspot numbers 1700-2008 shipped with the package (public
    domain; see ``plugins/tasks/data/README.md``); or the path of a CSV file with a header row
    (``column`` picks the column, the last one when empty; lines starting with ``#`` are
    skipped; in a suite, a relative path is taken from the suite file's folder, and the run id
    covers the file's content, not its path). A shipped or CSV series is the same for every
    seed: there the seed only changes the model's initialisation.

    **Splits**, chronological and without leakage: the series is cut into three consecutive
    segments (train: the earliest ``1 - validation_fraction - test_fraction``, then validation,
    then test), and windows of ``window + 1`` points (``window`` inputs, then the target) are cut
    from within each segment, stride 1. No window of a later split contains a point of an
    earlier one, so no test input was ever a training target.

    **Normalisation**, per window, so the model sees scale-free numbers:

    - ``"ratio"``: inputs ``window / last - 1`` and target ``next / last - 1``, where ``last``
      is the window's last value: the relative change (a return, for prices). The last input is
      therefore always 0. Needs a strictly positive series.
    - ``"difference"``: inputs ``(window - last) / scale`` and target ``(next - last) /
      scale``, where ``scale`` is the standard deviation of the one-step differences of the
      training segment: for series that can be 0 or negative (sunspot counts are sometimes 0).
    - ``"auto"`` (default): ``"ratio"`` when every value of the series is positive, else
      ``"difference"``.

    The loss is MSE in that normalised space. **Baseline** (computed): the test MSE of the
    naive last-value forecast ("tomorrow equals today", i.e. predicting 0 in both
    normalisations). For prices that is the honest baseline: a random walk's best forecast *is*
    the last value, so beating it at all is the result, and a model that does not, learned
    nothing usable.

    **No online data** (``online`` is False, so ``training: {data: online}`` is refused): the
    task is one series, and its validation and test windows are that series' later segments;
    fresh windows would have to come from other series (a shipped or CSV series has no others,
    and a new synthetic walk is another series, not more of this one) or from the held-out
    segments (leakage).
    """

    name = "forecast"
    topology = Topology.MANY_TO_ONE
    readout = "last"
    standard_loss = "mse"
    description = "predict a series' next value from a window (synthetic prices, sunspots, CSV)"

    source: str = param(
        "synthetic", "series: 'synthetic', 'sunspots' (shipped) or a CSV path", path=True
    )
    column: str = param("", "CSV column to forecast (source = a CSV path); '' = the last column")
    window: int = param(20, "past values the model reads per forecast")
    validation_fraction: float = param(0.15, "fraction of the series (after train) to validate")
    test_fraction: float = param(0.15, "fraction of the series (the latest) to test on")
    normalisation: str = param("auto", "'ratio' (next/last - 1), 'difference' or 'auto'")
    series_length: int = param(2000, "synthetic: number of points in the series")
    drift: float = param(0.0002, "synthetic: mean log-return per step")
    volatility: float = param(0.01, "synthetic: standard deviation of the log-return per step")
    seasonal_amplitude: float = param(0.05, "synthetic: amplitude of the seasonal part (log)")
    seasonal_period: float = param(20.0, "synthetic: period of the seasonal part, in steps")

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be at least 1, got {self.window}")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                "validation_fraction + test_fraction must leave something to train on, got "
                f"{self.validation_fraction} + {self.test_fraction}"
            )
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}"
            )
        if self.source == "synthetic":
            if self.volatility < 0:
                raise ValueError(f"volatility must be at least 0, got {self.volatility}")
            if not self.seasonal_period > 0:
                raise ValueError(f"seasonal_period must be positive, got {self.seasonal_period}")
            length = self.series_length
        else:
            # Reads (and so checks) the file and the column now, where a suite is validated.
            length = self.series(0).size
        for segment, (start, stop) in zip(
            ("train", "validation", "test"), self.segments(length), strict=True
        ):
            if stop - start < self.window + 1:
                raise ValueError(
                    f"the {segment} part of the series has {stop - start} points, fewer than "
                    f"window + 1 = {self.window + 1}: use a longer series, larger fractions or "
                    "a shorter window"
                )

    def series(self, seed: int) -> np.ndarray:
        """The raw series (float64): synthetic from ``seed``, else loaded (seed unused)."""
        if self.source == "synthetic":
            rng = np.random.default_rng(seed)
            n = self.series_length
            steps = self.drift + self.volatility * rng.standard_normal(n - 1)
            walk = np.concatenate([[0.0], np.cumsum(steps)])
            phase = rng.uniform()
            season = self.seasonal_amplitude * np.sin(
                2.0 * np.pi * (np.arange(n) / self.seasonal_period + phase)
            )
            return 100.0 * np.exp(walk + season)
        if self.source in SHIPPED_SERIES:
            file_name = SHIPPED_SERIES[self.source]
            return csv_column(shipped_csv_text(file_name), self.column, f"shipped {file_name}")
        path = Path(self.source)
        if not path.is_file():
            raise ValueError(
                f"source {self.source!r} is neither 'synthetic', one of the shipped series "
                f"{sorted(SHIPPED_SERIES)} nor an existing CSV file"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read CSV file {str(path)!r}: {exc}") from exc
        return csv_column(text, self.column, f"CSV file {str(path)!r}")

    def segments(self, length: int) -> list[tuple[int, int]]:
        """The ``(start, stop)`` point ranges of the train, validation and test segments of a
        series of ``length`` points, in time order."""
        test = round(self.test_fraction * length)
        validation = round(self.validation_fraction * length)
        train = length - validation - test
        return [(0, train), (train, train + validation), (train + validation, length)]

    def _split(self, segment: np.ndarray, ratio: bool, scale: float) -> Split:
        w = self.window
        count = segment.size - w
        index = np.arange(count)[None, :] + np.arange(w + 1)[:, None]  # (w + 1, count)
        points = segment[index]
        last = points[w - 1]
        if ratio:
            normalised = points / last - 1.0
        else:
            normalised = (points - last) / scale
        return Split(normalised[:w, :, None], normalised[w][:, None])

    def make_data(self, seed: int) -> TaskData:
        series = self.series(seed)
        ratio = self.normalisation == "ratio" or (
            self.normalisation == "auto" and bool(np.all(series > 0))
        )
        if ratio and not np.all(series > 0):
            raise ValueError(
                f"normalisation 'ratio' needs a strictly positive series; source {self.source!r} "
                f"has values <= 0 (minimum {series.min()}): use 'difference' or 'auto'"
            )
        (a, b), (_, c), (_, d) = self.segments(series.size)
        scale = float(np.std(np.diff(series[a:b]))) or 1.0
        return TaskData(
            train=self._split(series[a:b], ratio, scale),
            validation=self._split(series[b:c], ratio, scale),
            test=self._split(series[c:d], ratio, scale),
            input_size=1,
            output_size=1,
        )

    def loss(self, predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        return mse(predictions, targets)

    def baseline_loss(self, data: TaskData) -> float:
        """Test MSE of the naive last-value forecast, which predicts a normalised change of 0."""
        return float(np.mean(np.square(data.test.targets)))

    def solved_criterion(self, data: TaskData) -> SolvedCriterion:
        return SolvedCriterion(
            "loss_vs_baseline", "<", 1.0,
            "beats the naive last-value forecast on the test period (the standard forecasting "
            "benchmark; Hyndman & Athanasopoulos, Forecasting: Principles and Practice, 3rd ed., "
            "5.2 and 5.8: a scaled error below 1)",
        )


@hookimpl
def rnnbench_register_tasks(register):
    register(AddingProblem)
    register(Forecast)
