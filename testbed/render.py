"""A campaign as text: rich tables for the console and the report's Markdown."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from testbed import analysis
from testbed.analysis import Row
from testbed.model import Comparison, NodeResult

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
TEXT_COLUMNS = ("node", "platform", "accel", "profile", "difference", "check")
STORM_COLUMNS = ("node", "read throttle", "readers", "aggregate MB/s", "events/s", "CPU eff. per reader", "failed")
FORMAT_NAMES = {"rntuple": "RNTuple", "ttree": "TTree"}


def _fmt(value: float | None, spec: str, none: str = "—") -> str:
    return none if value is None else format(value, spec)


def _check(row: Row, tolerance_pct: float) -> str:
    if row.deviation_pct is None:
        return "—"
    return "ok" if abs(row.deviation_pct) <= tolerance_pct else "OFF"


def _mb(bps: float | None) -> str:
    return f"{bps / 1e6:.1f} MB/s" if bps else ""


def _profile(r: NodeResult) -> str:
    parts = [f"{r.configured_cpus:g} CPU" if r.configured_cpus else "", _mb(r.configured_read_bps)]
    return ", ".join(p for p in parts if p) or "—"


def title(c: Comparison) -> str:
    """What was compared, naming the event files' format of a workload that reads them."""
    files = f" ({FORMAT_NAMES.get(c.format, c.format)} event files)" if c.format else ""
    return f"{c.label}{files}: events/s per node, relative to {c.reference}"


def _cells(c: Comparison, row: Row, tolerance_pct: float) -> list[str]:
    r = row.result
    return [
        r.node,
        r.platform,
        r.accel or "—",
        _profile(r),
        f"{r.events_per_second:,.1f}",
        f"{r.read_mb_per_second:.2f}",
        f"{analysis.job_efficiency(c, r):.2f}",
        _fmt(analysis.score(c, r), ".1f"),
        f"{row.ratio:.3f}",
        _fmt(row.spread, ".3f"),
        row.verdict,
        _fmt(row.expected, ".3f"),
        _fmt(row.deviation_pct, "+.1f") + ("" if row.deviation_pct is None else " %"),
        _check(row, tolerance_pct),
        f"{len(r.failed)}/{len(r.runs) or 1}" if r.failed else "0",
    ]


def table(c: Comparison, tolerance_pct: float = 15.0) -> Table:
    t = Table(title=title(c))
    for col in COLUMNS:
        t.add_column(col, justify="left" if col in TEXT_COLUMNS else "right")
    for row in analysis.rows(c):
        t.add_row(*_cells(c, row, tolerance_pct))
    return t


def storm_points(storms: list[Comparison]) -> dict[str, list[tuple[int, Comparison, NodeResult]]]:
    """Per node, (readers, comparison, result) of each storm size, by readers."""
    points: dict[str, list[tuple[int, Comparison, NodeResult]]] = {}
    for c in sorted(storms, key=lambda c: c.readers):
        for r in c.results:
            points.setdefault(r.node, []).append((c.readers, c, r))
    return points


def _storm_cells(storms: list[Comparison]) -> list[list[str]]:
    return [
        [
            node,
            _mb(r.configured_read_bps) or "—",
            str(n),
            f"{r.read_mb_per_second:.2f}",
            f"{r.events_per_second:,.0f}",
            f"{analysis.job_efficiency(c, r):.2f}",
            str(len(r.failed)),
        ]
        for node, points in storm_points(storms).items()
        for n, c, r in points
    ]


def storm_table(storms: list[Comparison]) -> Table:
    """Aggregate storage MB/s and per-reader CPU efficiency against the number of readers, per node."""
    t = Table(title="storm: concurrent analyze readers on each node's storage")
    for col in STORM_COLUMNS:
        t.add_column(col, justify="left" if col == "node" else "right")
    for cells in _storm_cells(storms):
        t.add_row(*cells)
    return t


def storm_groups(comparisons: list[Comparison]) -> list[list[Comparison]]:
    """The storms of a campaign, one group per event-file format (a table and a plot each)."""
    groups: dict[str | None, list[Comparison]] = {}
    for c in comparisons:
        if c.is_storm:
            groups.setdefault(c.format, []).append(c)
    return list(groups.values())


def failed_lines(comparisons: list[Comparison]) -> list[str]:
    return [
        f"{c.label} on {r.node}, repetition {rep}: {why}"
        for c in comparisons
        for r in c.results
        for rep, why in r.failed.items()
    ]


def starved_lines(comparisons: list[Comparison]) -> list[str]:
    return [
        f"{c.label} on {node}: its jobs got {share:.0%} of the CPU its quota gives (under {analysis.STARVED:.0%}); "
        "the host had no more to give (other load, or its hypervisor's steal time), so ratios with this node "
        "measure the host. Run the comparison again on a quieter host."
        for c in comparisons
        for node, share in analysis.starved(c).items()
    ]


def print_campaign(console: Console, comparisons: list[Comparison], tolerance: float = 15.0) -> None:
    for c in comparisons:
        if not c.is_storm:
            console.print(table(c, tolerance))
    for storms in storm_groups(comparisons):
        console.print(storm_table(storms))
    for line in failed_lines(comparisons):
        console.print(f"[red]failed:[/] {line}")
    for line in starved_lines(comparisons):
        console.print(f"[yellow]starved:[/] {line}")


def _markdown_table(columns: tuple[str, ...], text: tuple[str, ...], cells: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" if col in text else "---:" for col in columns) + "|",
        *("| " + " | ".join(row) + " |" for row in cells),
    ]


def storm_plot_name(storms: list[Comparison]) -> str:
    fmt = storms[0].format
    return "storm_scaling.png" if fmt in (None, "rntuple") else f"storm_scaling-{fmt}.png"


def markdown(comparisons: list[Comparison], tolerance: float, missing: list[str] | None = None) -> str:
    """The report. missing: comparisons the campaign planned but did not measure (it was interrupted)."""
    first = comparisons[0]
    lines = [
        "# Platform comparison campaign",
        "",
        f"{first.started:%Y-%m-%d %H:%M:%S} – {comparisons[-1].finished:%H:%M:%S} UTC; "
        f"{', '.join(c.label for c in comparisons)}.",
    ]
    for c in comparisons:
        if c.is_storm:
            continue
        lines += [
            "",
            f"## {title(c)}",
            "",
            f"Run {c.parameters.get('run_id', '')}. Parameters: "
            + ", ".join(f"{k}={v}" for k, v in sorted(c.parameters.items()))
            + f". Reference node: {c.reference}.",
            "",
            *_markdown_table(COLUMNS, TEXT_COLUMNS, [_cells(c, row, tolerance) for row in analysis.rows(c)]),
            "",
            f"![{c.label}: events per second]({c.label}.png)",
        ]
    for storms in storm_groups(comparisons):
        fmt = storms[0].format
        lines += [
            "",
            f"## storm: many readers on shared storage ({FORMAT_NAMES.get(fmt or '', fmt)} event files)",
            "",
            *_markdown_table(STORM_COLUMNS, ("node",), _storm_cells(storms)),
            "",
            f"![storm scaling]({storm_plot_name(storms)})",
        ]
    if failed := failed_lines(comparisons):
        lines += ["", "## Failed runs", "", "Left out of the figures above; the campaign went on.", ""]
        lines += [f"- {line}" for line in failed]
    if starved := starved_lines(comparisons):
        lines += ["", "## Starved nodes", ""] + [f"- {line}" for line in starved]
    if missing:
        lines += [
            "",
            "## Not measured",
            "",
            "The campaign ended before these comparisons; `testbed compare --resume "
            "<this directory>` (with the campaign's options) measures them.",
            "",
        ]
        lines += [f"- {label}" for label in missing]
    lines += [
        "",
        "## How these numbers were measured",
        "",
        f"- The same job (same seed) ran {first.parameters.get('repeat', 1)} time(s) on every node, "
        f"{first.parameters.get('mode', 'interleaved')} (A B A B …), submitted through Slurm by "
        "`playbooks/run_workload.yml` and pinned to its node. analyze and storm read a ROOT file of simulated "
        "events made once per node, in the format named in each section (RNTuple or TTree); with cold=True they "
        "evict it from the page cache before every pass, so they read the node's storage.",
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
        f"eff. stayed under {analysis.STARVED:.0%} of its quota is listed as starved, and its ratios are off by "
        "as much; the campaign measures such a comparison again (twice at most) and keeps the least starved try.",
        "- A storm with N readers runs N analyze processes at once on one node: aggregate MB/s is what the "
        "node's storage delivered to all of them, CPU eff. per reader how busy each could keep its CPU.",
        "- accel: the accelerator a virtual node ran on (kvm, tcg); a dash for bare-metal nodes, which have none.",
        "- A failed run (its job failed, or its submission did) is listed under Failed runs and left out.",
        "",
    ]
    return "\n".join(lines)
