"""Built-in claims reporter: one figure, ``plots/claims.png``, a panel per claim of the suite.

Each panel shows the selected runs' values (points, one per run) and their mean (a bar) for the
claim's group(s), against the threshold line(s) of ``expect``; the title gives the verdict. For
a claim with ``compare_to`` every value is divided by the mean of the ``compare_to`` group, so
that group sits at 1 and the ``where`` group's mean is the ratio the thresholds apply to. For
``aggregate: solved_fraction`` the thresholds apply run by run (points green when a run meets
``expect``, red when not; no mean) and the title gives the fraction against ``at_least``.
Nothing is written when the suite states no claims. Reads the evaluated claims on
``ResultTable.claims`` only; the file is written atomically like the tables.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np

from rnnbench import ClaimResult, ResultTable, atomic_write_bytes, hookimpl

PLOTS = "plots"
#: Title colour of each verdict.
VERDICT_COLOURS = {"holds": "tab:green", "fails": "tab:red", "inconclusive": "tab:orange",
                   "known failure": "tab:purple", "known failure now holds": "tab:olive"}


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _panel(axis, result: ClaimResult) -> None:
    claim = result.claim
    groups = result.groups
    scale = 1.0
    ylabel = claim.metric
    if claim.compare_to is not None and len(groups) > 1:
        base = groups[1].mean
        if base is not None and math.isfinite(base) and base != 0:
            scale = base
            ylabel = f"{claim.metric} / mean of compare_to"
    names = ["where", "compare_to"][: len(groups)]
    rng = np.random.default_rng(0)  # the same jitter every time: the figure is reproducible
    drawn: list[float] = []
    for position, (name, group) in enumerate(zip(names, groups, strict=False)):
        values = np.array(_finite([v / scale for v in group.values]), dtype=float)
        if values.size:
            jitter = rng.uniform(-0.12, 0.12, size=values.size)
            if claim.aggregate:  # judged run by run: each point says whether it met expect
                colours = ["tab:green" if claim.expect.met(v) else "tab:red" for v in values]
            else:
                colours = ["tab:blue"] * values.size
            axis.scatter(position + jitter, values, s=18, alpha=0.7, c=colours, zorder=3)
            if not claim.aggregate:
                axis.hlines(float(np.mean(values)), position - 0.3, position + 0.3,
                            color="black", linewidth=2, zorder=4)
            drawn.extend(values.tolist())
        label = f"{name}\n" + textwrap.fill(_selector_text(group.selector), 28)
        label += f"\nn={group.n}" + (f" ({len(group.missing)} missing)" if group.missing else "")
        axis.text(position, -0.02, label, transform=axis.get_xaxis_transform(), ha="center",
                  va="top", fontsize="x-small")
    expect = claim.expect
    bounds = [expect.bound] + ([expect.upper] if expect.upper is not None else [])
    for bound in bounds:
        axis.axhline(bound, color="tab:red", linestyle="--", linewidth=1, zorder=2)
    if expect.op == "between":
        axis.axhspan(expect.bound, expect.upper, color="tab:green", alpha=0.08)
    positive = [v for v in [*drawn, *bounds] if v > 0]
    if positive and len(positive) == len(drawn) + len(bounds) and \
            max(positive) / min(positive) > 100:
        axis.set_yscale("log")
    axis.set_xlim(-0.6, len(groups) - 0.4)
    axis.set_xticks([])
    axis.set_ylabel(ylabel, fontsize="small")
    verdict = result.verdict
    heading = f"{claim.id}: {verdict}"
    if result.value is not None and claim.aggregate:
        heading += f" (fraction {result.value:.3g} of runs {expect}; at least {claim.at_least:g})"
    elif verdict == "inconclusive":
        heading += f" ({result.reason})"
    elif result.value is not None:
        heading += f" ({'ratio' if claim.compare_to else 'mean'} {result.value:.3g}, " \
            f"expect {expect})"
    axis.set_title(heading + "\n" + textwrap.fill(claim.claim, 60), fontsize="small",
                   color=VERDICT_COLOURS.get(verdict, "black"))


def _selector_text(selector: dict) -> str:
    return ", ".join(f"{k}=" + "|".join(str(v) for v in values) for k, values in selector.items())


def plot_claims(table: ResultTable, out_dir: Path) -> Path | None:
    """``plots/claims.png``: one panel per claim; None (nothing written) without claims."""
    if not table.claims:
        return None
    # A bare Figure (no pyplot): no global backend state, no display, safe in any process.
    from matplotlib.figure import Figure

    count = len(table.claims)
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(5 * columns, 4.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for extra in axes.flat[count:]:
        extra.set_visible(False)
    for axis, result in zip(axes.flat, table.claims, strict=False):
        _panel(axis, result)
    figure.suptitle(f"{table.suite}: claims (points: runs, bar: mean, dashed: expect)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(out_dir / PLOTS / "claims.png", buffer.getvalue())


def write_claims_figure(table: ResultTable, out_dir: Path) -> list[Path]:
    path = plot_claims(table, out_dir)
    return [path] if path is not None else []


@hookimpl
def rnnbench_register_reporters(register):
    register("claims", write_claims_figure,
             "plots/claims.png: each claim's runs and mean against its threshold (matplotlib)")
