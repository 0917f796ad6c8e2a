""" "Campaign history": every comparison `testbed compare` published, over time, next to the value it should have
(the device profiles' expected ratio) and the tolerance of its known-answer check."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import NODE_FILTERS, magellan_dashboard, selector, stat_panel, target, timeseries_panel
from magellan import contract

UID = "magellan-campaign-history"
FILTERS = (("group", "Group"), ("workload", "Workload"), *NODE_FILTERS)
SELECTOR = selector(FILTERS)
P = contract.COMPARISON_PREFIX


def series(name: str) -> str:
    return f"{P}{name}{{{SELECTOR}}}"


LEGEND = "{{node}}: {{workload}} {{format}} ×{{readers}} ({{group}})"
# Deviation of each measured ratio from its expected one; the series of the published families share their labels.
DEVIATION = f"{series('ratio')} / {series('ratio_expected')} - 1"


def build() -> dashboard.Dashboard:
    d = magellan_dashboard(
        "Campaign history",
        UID,
        "Every comparison the campaigns published (testbed compare, magellan_comparison_*), over time: measured "
        "and expected ratios, their deviation against the known-answer tolerance, throughput and failed runs.",
        "campaigns",
        f"{P}ratio",
        FILTERS,
        since="now-7d",
    )
    d = d.with_row(dashboard.Row("Known answers"))
    d = d.with_panel(
        stat_panel(
            "Checks off",
            "Published comparisons whose ratio deviates from the expected one by more than the tolerance (the "
            "known-answer check of the report and of the alert rules). 0 is good.",
            "short",
            [target(f"sum(abs({DEVIATION}) > bool {series('tolerance_ratio')})", "checks off")],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Age of the last comparison",
            "Time since each published comparison ended, per group, workload, storm size and file format.",
            "s",
            [
                target(
                    "time() - max by (group, workload, readers, format) "
                    f'({P}finished_timestamp_seconds{{group=~"$group", workload=~"$workload"}})',
                    "{{workload}} {{format}} ×{{readers}} ({{group}})",
                )
            ],
            width=18,
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Measured and expected ratio",
            "Each node's events/s relative to its comparison's reference node (A, solid), and the ratio its device "
            "profile predicts (B: CPU quotas for simulate, read throttles for cold reads). A new step is a new "
            "campaign.",
            "short",
            [
                target(series("ratio"), LEGEND + " measured", "A"),
                target(series("ratio_expected"), LEGEND + " expected", "B"),
            ],
            width=24,
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Deviation from the expected ratio",
            "Measured ratio / expected ratio − 1 for each node (A), between the tolerance of the check above and "
            "below zero (B, C): a line outside them is a check that is off.",
            "percentunit",
            [
                target(DEVIATION, LEGEND, "A"),
                target(f"max({series('tolerance_ratio')})", "+ tolerance", "B"),
                target(f"-max({series('tolerance_ratio')})", "− tolerance", "C"),
            ],
            width=24,
        )
    )
    d = d.with_row(dashboard.Row("Throughput"))
    d = d.with_panel(
        timeseries_panel(
            "Events per second",
            "Events per wall second of each node in each published comparison (a storm: of all its readers).",
            "ops",
            [target(series("events_per_second"), LEGEND)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Storage read rate",
            "Bytes per second each node's jobs read from storage in each comparison (a storm: all its readers).",
            "Bps",
            [target(series("read_bytes_per_second"), LEGEND)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Ratio spread",
            "Half the range of the paired repetitions' ratios: how far the ratio moved between repetitions. A "
            "difference smaller than this is within noise.",
            "short",
            [target(series("ratio_spread"), LEGEND)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Failed runs",
            "Repetitions that failed (their job or their submission) and were left out of each comparison.",
            "short",
            [target(series("failed_runs"), LEGEND)],
        )
    )
    return d
