"""A comparison's ratios against its reference node, the known-answer checks, and starved nodes.

The expected ratio of a node comes from the device profiles: for CPU-bound work its CPU quota over the
reference's (one CPU at most per one-process job), for I/O-bound work that reads cold data its storage read
throttle over the reference's. The measured events/s ratio must follow it; the deviation between the two is the
known-answer check. Which workload is which comes from the contract's catalogue.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from magellan import contract
from testbed.model import Comparison, NodeResult
from testbed.stats import SINGLE, paired_ratio

FAILED = "failed"
REFERENCE = "reference"
JOB_CPUS = 1.0  # a job (a storm's reader) is one process: one CPU at most, however many the node's quota gives
STARVED = 0.9  # a CPU-bound job that got less of the CPU it could use than this measured the host, not the node


@dataclass(frozen=True)
class Row:
    result: NodeResult
    ratio: float
    expected: float | None
    deviation_pct: float | None
    spread: float | None = None
    verdict: str = SINGLE


def job_cpus(r: NodeResult) -> float | None:
    """The CPU one job can use on this node: its quota, one CPU at most (JOB_CPUS)."""
    return min(r.configured_cpus, JOB_CPUS) if r.configured_cpus else None


def cpu_bound(c: Comparison) -> bool:
    return contract.workload(c.workload).bound == "cpu"


def expected(c: Comparison, r: NodeResult, ref: NodeResult) -> float | None:
    """The ratio the device profiles predict: CPU quotas for CPU-bound work, read throttles for cold reads. None
    against a virtual node: its accelerator's cost is what is measured, no profile predicts it."""
    if r.accel or ref.accel:
        return None
    mine, theirs = job_cpus(r), job_cpus(ref)
    if cpu_bound(c) and mine and theirs:
        return mine / theirs
    cold = c.parameters.get("cold", False)
    if not cpu_bound(c) and cold and r.configured_read_bps and ref.configured_read_bps:
        return r.configured_read_bps / ref.configured_read_bps
    return None


def job_efficiency(c: Comparison, r: NodeResult) -> float:
    """Mean CPU per wall second of one job (for a storm: of one reader)."""
    return r.cpu_efficiency / c.readers


def score(c: Comparison, r: NodeResult) -> float | None:
    """Per-core score in DB12 units (contract.db12_score)."""
    return contract.db12_score(c.workload, r.events, r.cpu_seconds)


def rows(c: Comparison) -> list[Row]:
    ref = c.reference_result()
    out = []
    for r in c.results:
        exp = expected(c, r, ref)
        if not any(x is not None for x in r.runs) and r.events_per_second <= 0:
            out.append(Row(r, 0.0, exp, None, None, FAILED))
            continue
        ratio = r.events_per_second / ref.events_per_second if ref.events_per_second > 0 else 0.0
        spread, verdict = None, SINGLE
        if r.runs and ref.runs:  # paired repetitions: median ratio and its spread
            with contextlib.suppress(ValueError):  # no pair where both ran
                paired = paired_ratio(r.runs, ref.runs)
                ratio, spread, verdict = paired.median, paired.spread, paired.verdict()
        if r.node == ref.node:
            verdict = REFERENCE
        deviation = (ratio / exp - 1.0) * 100.0 if exp else None
        out.append(Row(r, ratio, exp, deviation, spread, verdict))
    return out


def starved(c: Comparison) -> dict[str, float]:
    """CPU-bound work on bare-metal nodes: the nodes whose jobs got less than STARVED of the CPU they could use
    (CPU eff. over the quota, at most JOB_CPUS), with that share. A quota is a ceiling, not a promise: the host had
    no more CPU to give (other load, or its own hypervisor's steal time), so ratios with such a node measure the
    host."""
    if not cpu_bound(c):
        return {}
    shares = {
        r.node: r.cpu_efficiency / cpus
        for r in c.results
        if (cpus := job_cpus(r)) and not r.accel and r.wall_seconds > 0  # a node that never ran failed, not starved
    }
    return {node: share for node, share in shares.items() if share < STARVED}


def least_starved_share(c: Comparison) -> float:
    """The smallest share of its CPU a node got (1.0 when none starved): how well a try measured the nodes."""
    return min(starved(c).values(), default=1.0)


def known_answer_ok(c: Comparison, tolerance_pct: float) -> bool:
    return all(row.deviation_pct is None or abs(row.deviation_pct) <= tolerance_pct for row in rows(c))


def campaign_data(comparisons: list[Comparison]) -> dict[str, Any]:
    """campaign.json: each comparison's data, with its ratios and starved nodes for readers of the file."""
    out = []
    for c in comparisons:
        ratios = {
            row.result.node: {
                "ratio": row.ratio,
                "spread": row.spread,
                "difference": row.verdict,
                "failed_runs": row.result.failed,
                "expected": row.expected,
                "deviation_pct": row.deviation_pct,
            }
            for row in rows(c)
        }
        out.append({**c.data(), "starved": starved(c), "ratios": ratios})
    return {"comparisons": out}
