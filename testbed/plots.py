"""A campaign's figures as PNG files (matplotlib, no display)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to files only
import matplotlib.pyplot as plt
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MultipleLocator

from testbed import analysis
from testbed.model import Comparison
from testbed.panels import Panel, format_value
from testbed.render import storm_points, title


def comparison(c: Comparison, path: Path) -> None:
    """Events/s per node with the range of its repetitions, and the profiles' expectation as a dashed line."""
    rows = analysis.rows(c)
    ref = c.reference_result().events_per_second
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    names = [f"{r.result.node}\n{r.result.platform}" for r in rows]
    heights = [r.result.events_per_second for r in rows]
    ranges = [[x for x in r.result.runs if x is not None] or [h] for h, r in zip(heights, rows, strict=True)]
    whiskers = [(h - min(rr), max(rr) - h) for h, rr in zip(heights, ranges, strict=True)]
    ax.bar(
        names,
        heights,
        color="#3b75af",
        label="measured (range of repetitions)",
        yerr=list(zip(*whiskers, strict=True)),
        capsize=6,
    )
    marked = [(i, r.expected * ref) for i, r in enumerate(rows) if r.expected is not None]
    for n, (i, value) in enumerate(marked):
        label = "expected from the device profile" if n == 0 else "_nolegend_"
        ax.hlines(value, i - 0.4, i + 0.4, colors="#d62728", linestyles="dashed", label=label)
    ax.set_ylabel("events / s")
    ax.set_title(title(c).split(":")[0] + ": events/s per node")
    ax.legend()
    _save(fig, path)


def storm_scaling(storms: list[Comparison], path: Path) -> None:
    """Aggregate MB/s (dashed: each node's throttle) and CPU efficiency per reader against the readers."""
    fig, (mb, eff) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for node, points in storm_points(storms).items():
        n = [p[0] for p in points]
        line = mb.plot(n, [r.read_mb_per_second for _, _, r in points], marker="o", label=node)[0]
        throttle = points[0][2].configured_read_bps
        if throttle:
            mb.axhline(throttle / 1e6, color=line.get_color(), linestyle="dashed", linewidth=1)
        eff.plot(n, [analysis.job_efficiency(c, r) for _, c, r in points], marker="o", label=node)
    sizes = sorted({c.readers for c in storms})
    for ax, name in ((mb, "aggregate read MB/s (dashed: throttle)"), (eff, "CPU efficiency per reader")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set_xlabel("concurrent readers")
        ax.set_ylim(bottom=0)
        ax.set_title(name)
        ax.legend()
    _save(fig, path)


# A panel's series colours, in order: its chart and its HTML legend (testbed.pages) use the same.
PALETTE = [to_hex(c) for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]]
TICKS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)  # seconds between time ticks


def panel_chart(panel: Panel, path: Path) -> None:
    """A time-series panel: one line per series, the y axis in the panel's unit, UTC times on the x axis."""
    fig, ax = plt.subplots(figsize=(max(4.0, 12 * panel.width / 24), 2.8), dpi=100)
    for i, s in enumerate(panel.series):
        ax.plot(s.times, s.values, color=PALETTE[i % len(PALETTE)], linewidth=1.4)
    span = max((s.times[-1] - s.times[0] for s in panel.series if s.times), default=0)
    ax.xaxis.set_major_locator(MultipleLocator(next((t for t in TICKS if span / t <= 6), TICKS[-1])))
    clock = "%H:%M:%S" if span < 600 else "%H:%M"
    ax.xaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{datetime.fromtimestamp(t, UTC):{clock}}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, panel.unit)))
    if not any(v < 0 for s in panel.series for v in s.values):  # NaN < 0 is False
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _save(fig, path)


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
