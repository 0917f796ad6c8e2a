"""Comparison results: ratios against a reference node, a rich table, and a report directory.

The expected ratio of a node is its configured CPU quota over the reference's; with CPU-bound work the
measured events/s ratio must follow it. The deviation between the two is the known-answer check.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to files only
import matplotlib.pyplot as plt
from rich.console import Console
from rich.table import Table

from testbed.stats import SINGLE, paired_ratio


@dataclass(frozen=True)
class NodeResult:
    node: str
    platform: str
    job_id: str
    configured_cpus: float | None
    events: int
    wall_seconds: float
    cpu_seconds: float
    events_per_second: float
    accel: str | None = None
    runs: list[float] = field(default_factory=list)  # events/s of each repetition, in order

    @property
    def cpu_efficiency(self) -> float:
        """CPU seconds per wall second (1.0 = one core busy all the time)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def events_per_cpu_second(self) -> float:
        return self.events / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


@dataclass(frozen=True)
class Row:
    result: NodeResult
    ratio: float
    expected: float | None
    deviation_pct: float | None
    spread: float | None = None
    verdict: str = SINGLE


@dataclass(frozen=True)
class Comparison:
    workload: str
    parameters: dict[str, Any]
    reference: str
    started: datetime
    finished: datetime
    results: list[NodeResult] = field(default_factory=list)

    def reference_result(self) -> NodeResult:
        for r in self.results:
            if r.node == self.reference:
                return r
        raise ValueError(f"reference node {self.reference} has no result")

    def rows(self) -> list[Row]:
        ref = self.reference_result()
        rows = []
        for r in self.results:
            ratio = r.events_per_second / ref.events_per_second if ref.events_per_second > 0 else 0.0
            spread, verdict = None, SINGLE
            if r.runs and ref.runs:  # paired repetitions: median ratio and its spread
                paired = paired_ratio(r.runs, ref.runs)
                ratio, spread, verdict = paired.median, paired.spread, paired.verdict()
            if r.node == ref.node:
                verdict = "reference"
            expected = None
            if r.configured_cpus and ref.configured_cpus:
                expected = r.configured_cpus / ref.configured_cpus
            deviation = (ratio / expected - 1.0) * 100.0 if expected else None
            rows.append(Row(r, ratio, expected, deviation, spread, verdict))
        return rows

    def known_answer_ok(self, tolerance_pct: float) -> bool:
        return all(row.deviation_pct is None or abs(row.deviation_pct) <= tolerance_pct for row in self.rows())

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "parameters": self.parameters,
            "reference": self.reference,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "results": [asdict(r) for r in self.results],
            "ratios": {
                row.result.node: {
                    "ratio": row.ratio,
                    "spread": row.spread,
                    "difference": row.verdict,
                    "expected": row.expected,
                    "deviation_pct": row.deviation_pct,
                }
                for row in self.rows()
            },
        }


def load_comparison(path: Path) -> Comparison:
    data = json.loads(path.read_text())
    return Comparison(
        workload=data["workload"],
        parameters=data["parameters"],
        reference=data["reference"],
        started=datetime.fromisoformat(data["started"]),
        finished=datetime.fromisoformat(data["finished"]),
        results=[NodeResult(**r) for r in data["results"]],
    )


def _fmt(value: float | None, spec: str, none: str = "—") -> str:
    return none if value is None else format(value, spec)


def _check(row: Row, tolerance_pct: float) -> str:
    if row.deviation_pct is None:
        return "—"
    return "ok" if abs(row.deviation_pct) <= tolerance_pct else "OFF"


def table(comparison: Comparison, tolerance_pct: float = 15.0) -> Table:
    t = Table(title=f"{comparison.workload}: events/s per node, relative to {comparison.reference}")
    for col in (
        "node",
        "platform",
        "accel",
        "CPUs",
        "events",
        "wall s",
        "CPU eff.",
        "ev/CPU-s",
        "events/s",
        "ratio",
        "±",
        "difference",
        "expected",
        "deviation",
        "check",
    ):
        t.add_column(col, justify="left" if col in ("node", "platform", "accel", "difference", "check") else "right")
    for row in comparison.rows():
        r = row.result
        t.add_row(
            r.node,
            r.platform,
            r.accel or "—",
            _fmt(r.configured_cpus, ".2f"),
            f"{r.events:,}",
            f"{r.wall_seconds:.1f}",
            f"{r.cpu_efficiency:.2f}",
            f"{r.events_per_cpu_second:,.0f}",
            f"{r.events_per_second:,.1f}",
            f"{row.ratio:.3f}",
            _fmt(row.spread, ".3f"),
            row.verdict,
            _fmt(row.expected, ".3f"),
            _fmt(row.deviation_pct, "+.1f") + ("" if row.deviation_pct is None else " %"),
            _check(row, tolerance_pct),
        )
    return t


def print_comparison(console: Console, comparison: Comparison, tolerance: float = 15.0) -> None:
    console.print(table(comparison, tolerance))


def _markdown(c: Comparison, tolerance: float) -> str:
    lines = [
        f"# {c.workload}: platform comparison",
        "",
        f"Run {c.parameters.get('run_id', '')}, {c.started:%Y-%m-%d %H:%M:%S} – {c.finished:%H:%M:%S} UTC. "
        "Parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(c.parameters.items())) + ".",
        f"Reference node: {c.reference}.",
        "",
        "| node | platform | accel | CPUs | events | wall s | CPU eff. | events/CPU-s | events/s | ratio | ± "
        "| difference | expected | deviation | check |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in c.rows():
        r = row.result
        lines.append(
            f"| {r.node} | {r.platform} | {r.accel or '—'} | {_fmt(r.configured_cpus, '.2f')} | {r.events} | "
            f"{r.wall_seconds:.1f} | {r.cpu_efficiency:.2f} | {r.events_per_cpu_second:.0f} | "
            f"{r.events_per_second:.1f} | {row.ratio:.3f} | {_fmt(row.spread, '.3f')} | {row.verdict} | "
            f"{_fmt(row.expected, '.3f')} | {_fmt(row.deviation_pct, '+.1f')} | {_check(row, tolerance)} |"
        )
    lines += [
        "",
        "![events per second](events_per_second.png)",
        "",
        "## How these numbers were measured",
        "",
        f"- The same job (same seed) ran {c.parameters.get('repeat', 1)} time(s) on every node, "
        f"{c.parameters.get('mode', 'interleaved')} (A B A B …), submitted through Slurm by "
        "`playbooks/run_workload.yml` and pinned to its node.",
        "- Every figure was read back from Prometheus: `magellan_job_events_processed_total`, "
        "`magellan_job_wall_seconds` and `magellan_job_cpu_seconds_total` as the job exporter on each node last "
        "reported them (the job's progress file and its /proc accounting), and `magellan_node_profile_cpus` for the "
        "configured CPU quota.",
        "- events/s = events / wall seconds; CPU eff. = CPU seconds / wall seconds; ratio = events/s over the "
        "reference's — with repetitions, the median of the ratios of repetitions run next to each other, ± half "
        "their range; difference says whether the ratio differs from 1 by more than that spread (real) or not "
        "(within noise); expected = configured CPUs over the reference's; deviation = ratio / expected − 1. "
        f"Check is ok within ±{tolerance:g} %.",
        "- accel: the accelerator a virtual node ran on (kvm, tcg); a dash for bare-metal nodes, which have none.",
        "",
    ]
    return "\n".join(lines)


def _plot(c: Comparison, path: Path) -> None:
    rows = c.rows()
    ref = c.reference_result().events_per_second
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    names = [f"{r.result.node}\n{r.result.platform}" for r in rows]
    heights = [r.result.events_per_second for r in rows]
    whiskers = [
        (h - min(r.result.runs or [h]), max(r.result.runs or [h]) - h) for h, r in zip(heights, rows, strict=True)
    ]
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
        label = "expected from CPU profile" if n == 0 else "_nolegend_"
        ax.hlines(value, i - 0.4, i + 0.4, colors="#d62728", linestyles="dashed", label=label)
    ax.set_ylabel("events / s")
    ax.set_title(f"{c.workload}: events/s per node")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def write_report(c: Comparison, reports_dir: Path, tolerance: float = 15.0) -> Path:
    """Write reports_dir/<UTC time>-<workload>/ with report.md, comparison.json and events_per_second.png."""
    out = reports_dir / f"{c.started.astimezone(UTC):%Y%m%dT%H%M%SZ}-{c.workload}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(c.to_json(), indent=2, sort_keys=True) + "\n")
    (out / "report.md").write_text(_markdown(c, tolerance))
    _plot(c, out / "events_per_second.png")
    return out
