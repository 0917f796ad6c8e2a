"""Campaign results: ratios against a reference node, rich tables, and a report directory.

The expected ratio of a node comes from the device profiles: for CPU-bound work (simulate) its CPU quota over the
reference's, for work that reads cold data (analyze and storm with --cold) its storage read throttle over the
reference's. The measured events/s ratio must follow it; the deviation between the two is the known-answer check.
"""

from __future__ import annotations

import contextlib
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
from workloads import db12

FAILED = "failed"
CPU_BOUND = {"simulate"}
JOB_CPUS = 1.0  # a simulate job is one process: one CPU at most, however many the node's quota gives
STARVED = 0.9  # a CPU-bound job that got less of the CPU it could use than this measured the host, not the node
IO_BOUND = {"analyze", "storm"}


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
    runs: list[float | None] = field(default_factory=list)  # events/s of each repetition in order; None: failed
    read_bytes: float = 0.0
    configured_read_bps: float | None = None
    failed: dict[str, str] = field(default_factory=dict)  # repetition -> why it failed

    @property
    def cpu_efficiency(self) -> float:
        """CPU seconds per wall second (1.0 = one core busy all the time)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def job_cpus(self) -> float | None:
        """The CPU one CPU-bound job can use on this node: its quota, one CPU at most (JOB_CPUS)."""
        return min(self.configured_cpus, JOB_CPUS) if self.configured_cpus else None

    @property
    def events_per_cpu_second(self) -> float:
        return self.events / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def read_mb_per_second(self) -> float:
        """Storage bytes read per wall second, in MB (10^6 bytes)."""
        return self.read_bytes / self.wall_seconds / 1e6 if self.wall_seconds > 0 else 0.0


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

    @property
    def readers(self) -> int:
        return int(self.parameters.get("readers", 1))

    @property
    def label(self) -> str:
        return f"{self.workload}-n{self.readers}" if self.workload == "storm" else self.workload

    def expected(self, r: NodeResult, ref: NodeResult) -> float | None:
        """The ratio the device profiles predict: CPU quotas for CPU-bound work, read throttles for cold reads. None
        against a virtual node: its accelerator's cost is what is measured, no profile predicts it."""
        if r.accel or ref.accel:
            return None
        if self.workload in CPU_BOUND and r.job_cpus and ref.job_cpus:
            return r.job_cpus / ref.job_cpus
        cold = self.parameters.get("cold", False)
        if self.workload in IO_BOUND and cold and r.configured_read_bps and ref.configured_read_bps:
            return r.configured_read_bps / ref.configured_read_bps
        return None

    def job_efficiency(self, r: NodeResult) -> float:
        """Mean CPU per wall second of one job (for a storm: of one reader)."""
        return r.cpu_efficiency / self.readers

    def score(self, r: NodeResult) -> float | None:
        """Per-core score in DB12 units (workloads/db12.py); a storm's readers score as analyze."""
        return db12.score("analyze" if self.workload == "storm" else self.workload, r.events, r.cpu_seconds)

    def rows(self) -> list[Row]:
        ref = self.reference_result()
        rows = []
        for r in self.results:
            expected = self.expected(r, ref)
            if not any(x is not None for x in r.runs) and r.events_per_second <= 0:
                rows.append(Row(r, 0.0, expected, None, None, FAILED))
                continue
            ratio = r.events_per_second / ref.events_per_second if ref.events_per_second > 0 else 0.0
            spread, verdict = None, SINGLE
            if r.runs and ref.runs:  # paired repetitions: median ratio and its spread
                with contextlib.suppress(ValueError):  # no pair where both ran
                    paired = paired_ratio(r.runs, ref.runs)
                    ratio, spread, verdict = paired.median, paired.spread, paired.verdict()
            if r.node == ref.node:
                verdict = "reference"
            deviation = (ratio / expected - 1.0) * 100.0 if expected else None
            rows.append(Row(r, ratio, expected, deviation, spread, verdict))
        return rows

    @property
    def failed_runs(self) -> int:
        return sum(len(r.failed) for r in self.results)

    def starved(self) -> dict[str, float]:
        """CPU-bound work on bare-metal nodes: the nodes whose jobs got less than STARVED of the CPU they could use
        (CPU eff. over the quota, at most JOB_CPUS), with that share. A quota is a ceiling, not a promise: the host
        had no more CPU to give (other load, or its own hypervisor's steal time), so ratios with such a node
        measure the host."""
        if self.workload not in CPU_BOUND:
            return {}
        shares = {
            r.node: r.cpu_efficiency / r.job_cpus
            for r in self.results
            if r.job_cpus and not r.accel and r.wall_seconds > 0  # a node that never ran failed, it did not starve
        }
        return {node: share for node, share in shares.items() if share < STARVED}

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
            "starved": self.starved(),
            "ratios": {
                row.result.node: {
                    "ratio": row.ratio,
                    "spread": row.spread,
                    "difference": row.verdict,
                    "failed_runs": row.result.failed,
                    "expected": row.expected,
                    "deviation_pct": row.deviation_pct,
                }
                for row in self.rows()
            },
        }


def _comparison(data: dict[str, Any]) -> Comparison:
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


def _profile(r: NodeResult) -> str:
    parts = [f"{r.configured_cpus:g} CPU" if r.configured_cpus else "", _mb(r.configured_read_bps)]
    return ", ".join(p for p in parts if p) or "—"


def _mb(bps: float | None) -> str:
    return f"{bps / 1e6:.1f} MB/s" if bps else ""


COLUMNS = (
    "node",
    "platform",
    "accel",
    "profile",
    "events/s",
    "read MB/s",
    "CPU eff.",
    "DB12/core",
    "ratio",
    "±",
    "difference",
    "expected",
    "deviation",
    "check",
    "failed runs",
)


def _cells(c: Comparison, row: Row, tolerance_pct: float) -> list[str]:
    r = row.result
    return [
        r.node,
        r.platform,
        r.accel or "—",
        _profile(r),
        f"{r.events_per_second:,.1f}",
        f"{r.read_mb_per_second:.2f}",
        f"{c.job_efficiency(r):.2f}",
        _fmt(c.score(r), ".1f"),
        f"{row.ratio:.3f}",
        _fmt(row.spread, ".3f"),
        row.verdict,
        _fmt(row.expected, ".3f"),
        _fmt(row.deviation_pct, "+.1f") + ("" if row.deviation_pct is None else " %"),
        _check(row, tolerance_pct),
        f"{len(r.failed)}/{len(r.runs) or 1}" if r.failed else "0",
    ]


def table(comparison: Comparison, tolerance_pct: float = 15.0) -> Table:
    t = Table(title=f"{comparison.label}: events/s per node, relative to {comparison.reference}")
    for col in COLUMNS:
        t.add_column(
            col, justify="left" if col in ("node", "platform", "accel", "profile", "difference", "check") else "right"
        )
    for row in comparison.rows():
        t.add_row(*_cells(comparison, row, tolerance_pct))
    return t


def storm_table(storms: list[Comparison]) -> Table:
    """Aggregate storage MB/s and per-reader CPU efficiency against the number of readers, per node."""
    t = Table(title="storm: concurrent analyze readers on each node's storage")
    for col in ("node", "read throttle", "readers", "aggregate MB/s", "events/s", "CPU eff. per reader", "failed"):
        t.add_column(col, justify="left" if col == "node" else "right")
    for node, points in _storm_points(storms).items():
        for n, c, r in points:
            t.add_row(
                node,
                _mb(r.configured_read_bps) or "—",
                str(n),
                f"{r.read_mb_per_second:.2f}",
                f"{r.events_per_second:,.0f}",
                f"{c.job_efficiency(r):.2f}",
                str(len(r.failed)),
            )
    return t


def _storm_points(storms: list[Comparison]) -> dict[str, list[tuple[int, Comparison, NodeResult]]]:
    points: dict[str, list[tuple[int, Comparison, NodeResult]]] = {}
    for c in sorted(storms, key=lambda c: c.readers):
        for r in c.results:
            points.setdefault(r.node, []).append((c.readers, c, r))
    return points


def print_campaign(console: Console, comparisons: list[Comparison], tolerance: float = 15.0) -> None:
    for c in comparisons:
        if c.workload != "storm":
            console.print(table(c, tolerance))
    storms = [c for c in comparisons if c.workload == "storm"]
    if storms:
        console.print(storm_table(storms))
    for c in comparisons:
        for r in c.results:
            for rep, why in r.failed.items():
                console.print(f"[red]failed:[/] {c.label} on {r.node}, repetition {rep}: {why}")
        for line in _starved_lines(c):
            console.print(f"[yellow]starved:[/] {line}")


def _starved_lines(c: Comparison) -> list[str]:
    return [
        f"{c.label} on {node}: its jobs got {share:.0%} of the CPU its quota gives (under {STARVED:.0%}); the host "
        "had no more to give (other load, or its hypervisor's steal time), so ratios with this node measure the "
        "host. Run the comparison again on a quieter host."
        for node, share in c.starved().items()
    ]


def _markdown_rows(c: Comparison, tolerance: float) -> list[str]:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|"
        + "|".join(
            "---" if col in ("node", "platform", "accel", "profile", "difference", "check") else "---:"
            for col in COLUMNS
        )
        + "|",
    ]
    lines += ["| " + " | ".join(_cells(c, row, tolerance)) + " |" for row in c.rows()]
    return lines


def _markdown(comparisons: list[Comparison], tolerance: float) -> str:
    first = comparisons[0]
    lines = [
        "# Platform comparison campaign",
        "",
        f"{first.started:%Y-%m-%d %H:%M:%S} – {comparisons[-1].finished:%H:%M:%S} UTC; "
        f"{', '.join(c.label for c in comparisons)}.",
    ]
    for c in comparisons:
        if c.workload == "storm":
            continue
        lines += [
            "",
            f"## {c.label}",
            "",
            f"Run {c.parameters.get('run_id', '')}. Parameters: "
            + ", ".join(f"{k}={v}" for k, v in sorted(c.parameters.items()))
            + f". Reference node: {c.reference}.",
            "",
            *_markdown_rows(c, tolerance),
            "",
            f"![{c.label}: events per second]({c.label}.png)",
        ]
    storms = [c for c in comparisons if c.workload == "storm"]
    if storms:
        lines += [
            "",
            "## storm: many readers on shared storage",
            "",
            "| node | read throttle | readers | aggregate MB/s | events/s | CPU eff. per reader | failed runs |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for node, points in _storm_points(storms).items():
            lines += [
                f"| {node} | {_mb(r.configured_read_bps) or '—'} | {n} | {r.read_mb_per_second:.2f} | "
                f"{r.events_per_second:.0f} | {sc.job_efficiency(r):.2f} | {len(r.failed)} |"
                for n, sc, r in points
            ]
        lines += ["", "![storm scaling](storm_scaling.png)"]
    failures = [(c, r, rep, why) for c in comparisons for r in c.results for rep, why in r.failed.items()]
    if failures:
        lines += ["", "## Failed runs", "", "Left out of the figures above; the campaign went on.", ""]
        lines += [f"- {c.label} on {r.node}, repetition {rep}: {why}" for c, r, rep, why in failures]
    starved = [line for c in comparisons for line in _starved_lines(c)]
    if starved:
        lines += ["", "## Starved nodes", ""] + [f"- {line}" for line in starved]
    lines += [
        "",
        "## How these numbers were measured",
        "",
        f"- The same job (same seed) ran {first.parameters.get('repeat', 1)} time(s) on every node, "
        f"{first.parameters.get('mode', 'interleaved')} (A B A B …), submitted through Slurm by "
        "`playbooks/run_workload.yml` and pinned to its node. analyze and storm read a ROOT file of simulated "
        "events made once per node; with cold=True they evict it from the page cache before every pass, so they "
        "read the node's storage.",
        "- Every figure was read back from Prometheus: `magellan_job_events_processed_total`, "
        "`magellan_job_wall_seconds`, `magellan_job_cpu_seconds_total` and `magellan_job_read_bytes_total` as the "
        "job exporter on each node last reported them (the job's progress file and its /proc accounting), and "
        "`magellan_node_profile_cpus` / `magellan_node_profile_read_bytes_per_second` for the device profile.",
        "- events/s = events / wall seconds; read MB/s = storage bytes read / wall seconds; CPU eff. = CPU seconds "
        "/ wall seconds of one job (of one reader in a storm); DB12/core = events per CPU second in DB12 units "
        "(workloads/README.md); ratio = events/s over the reference's — with repetitions, the median of the "
        "ratios of repetitions run next to each other, ± half their range; difference says whether the ratio "
        "differs from 1 by more than that spread (real) or not (within noise); expected = the profiles' ratio "
        "(CPU quotas for simulate, read throttles for cold analyze and storm); deviation = ratio / expected − 1. "
        f"Check is ok within ±{tolerance:g} %. A CPU quota is a ceiling, not a promise: a simulate node whose CPU "
        f"eff. stayed under {STARVED:.0%} of its quota is listed as starved, and its ratios are off by as much.",
        "- A storm with N readers runs N analyze processes at once on one node: aggregate MB/s is what the "
        "node's storage delivered to all of them, CPU eff. per reader how busy each could keep its CPU.",
        "- accel: the accelerator a virtual node ran on (kvm, tcg); a dash for bare-metal nodes, which have none.",
        "- A failed run (its job failed, or its submission did) is listed under Failed runs and left out.",
        "",
    ]
    return "\n".join(lines)


def _plot(c: Comparison, path: Path) -> None:
    rows = c.rows()
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
    ax.set_title(f"{c.label}: events/s per node")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _plot_storm(storms: list[Comparison], path: Path) -> None:
    fig, (mb, eff) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for node, points in _storm_points(storms).items():
        n = [p[0] for p in points]
        line = mb.plot(n, [r.read_mb_per_second for _, _, r in points], marker="o", label=node)[0]
        throttle = points[0][2].configured_read_bps
        if throttle:
            mb.axhline(throttle / 1e6, color=line.get_color(), linestyle="dashed", linewidth=1)
        eff.plot(n, [c.job_efficiency(r) for _, c, r in points], marker="o", label=node)
    sizes = sorted({c.readers for c in storms})
    for ax, title in ((mb, "aggregate read MB/s (dashed: throttle)"), (eff, "CPU efficiency per reader")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.set_xlabel("concurrent readers")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def write_report(comparisons: list[Comparison], reports_dir: Path, tolerance: float = 15.0) -> Path:
    """Write reports_dir/<UTC time>-campaign/: report.md, campaign.json, a PNG per workload and the storm's."""
    if not comparisons:
        raise ValueError("a report needs at least one comparison")
    out = reports_dir / f"{comparisons[0].started.astimezone(UTC):%Y%m%dT%H%M%SZ}-campaign"
    out.mkdir(parents=True, exist_ok=True)
    data = {"comparisons": [c.to_json() for c in comparisons]}
    (out / "campaign.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (out / "report.md").write_text(_markdown(comparisons, tolerance))
    for c in comparisons:
        if c.workload != "storm":
            _plot(c, out / f"{c.label}.png")
    storms = [c for c in comparisons if c.workload == "storm"]
    if storms:
        _plot_storm(storms, out / "storm_scaling.png")
    return out


def load_campaign(path: Path) -> list[Comparison]:
    """The comparisons of a campaign.json."""
    return [_comparison(d) for d in json.loads(path.read_text())["comparisons"]]
