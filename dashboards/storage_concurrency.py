""" "Storage concurrency": many readers on one storage — what it delivers, and what each job gets."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, timeseries

from dashboards.common import (
    JOB,
    RATE,
    SELECTOR,
    magellan_dashboard,
    running_jobs,
    stat_panel,
    target,
    timeseries_panel,
)
from dashboards.platform_comparison import per_node_rate
from magellan import contract

UID = "magellan-storage-concurrency"
RUNNING = running_jobs()
STORM = f'workload="storm", {SELECTOR}'


def concurrent_jobs() -> timeseries.Panel:
    """Jobs running on each node (also on "Storage arrays": the readers of the arrays)."""
    return timeseries_panel(
        "Concurrent jobs",
        "Jobs running on each node: a storm of N readers shows as N.",
        "short",
        [target(RUNNING, "{{node}} ({{platform}})")],
    )


def read_per_job() -> timeseries.Panel:
    """Each running job's share of its node's storage reads (also on "Storage arrays")."""
    return timeseries_panel(
        "Storage read per running job",
        "The node's job read rate divided by its running jobs: each reader's share of the storage. It falls as "
        "1/N once the storage is saturated.",
        "Bps",
        [target(f"{per_node_rate(JOB['read'])} / clamp_min({RUNNING}, 1)", "{{node}}")],
    )


def build() -> dashboard.Dashboard:
    d = magellan_dashboard(
        "Storage concurrency",
        UID,
        "Concurrent analyze readers on each node's storage: aggregate throughput and per-job efficiency.",
        "storage",
        JOB["read"],
    )
    d = d.with_row(dashboard.Row("Live: what the storage delivers"))
    d = d.with_panel(
        timeseries_panel(
            "Jobs' storage reads vs the node's read throttle",
            "Bytes per second all jobs of a node read from storage (/proc/<pid>/io read_bytes), next to the read "
            "throttle of the node's device profile. Readers that saturate the storage keep the line at the "
            "throttle however many they are.",
            "Bps",
            [
                target(per_node_rate(JOB["read"]), "{{node}} jobs", "A"),
                target(f"{contract.NODE_PROFILE_READ_BPS}{{{SELECTOR}}}", "{{node}} throttle", "B"),
            ],
        )
    )
    d = d.with_panel(concurrent_jobs())
    d = d.with_panel(read_per_job())
    d = d.with_panel(
        timeseries_panel(
            "CPU efficiency per running job",
            "CPU seconds per wall second of each running job. Readers waiting for storage sit well below 1 even "
            "when the CPU is free: the storage, not the CPU, limits them.",
            "percentunit",
            [
                target(
                    f"{per_node_rate(JOB['cpu'])} / clamp_min({RUNNING}, 1)",
                    "{{node}} ({{platform}})",
                )
            ],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Disk reads seen by node_exporter",
            "Bytes per second read from each block device, from node_exporter's diskstats. On container nodes this "
            "is the shared host disk: all nodes' readers together.",
            "Bps",
            [
                target(
                    f"sum by (node, device) (rate(node_disk_read_bytes_total{{{SELECTOR}}}[{RATE}]))",
                    "{{node}} {{device}}",
                )
            ],
            width=24,
        )
    )
    d = d.with_row(dashboard.Row("Latest storm (published by testbed compare)"))
    d = d.with_panel(
        timeseries_panel(
            "Aggregate read throughput by readers",
            "What each node's storage delivered to all N readers of the latest storm of each size, per node and N.",
            "Bps",
            [target(f"magellan_comparison_read_bytes_per_second{{{STORM}}}", "{{node}} {{readers}} readers")],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "CPU efficiency per reader by readers",
            "Mean CPU per wall second of one reader in the latest storm of each size: how much of its time a job "
            "could compute instead of waiting for the storage.",
            "percentunit",
            [target(f"magellan_comparison_job_cpu_efficiency{{{STORM}}}", "{{node}} {{readers}} readers")],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Storm runs that failed",
            "Repetitions of the latest storms that failed and were left out of the figures. Should be 0.",
            "short",
            [target(f"sum(magellan_comparison_failed_runs{{{STORM}}})", "failed")],
            width=12,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Read throttles",
            "The storage read throttle of each node's device profile (blkio): the known answer a saturated storm's "
            "aggregate throughput must come back to.",
            "Bps",
            [target(f"{contract.NODE_PROFILE_READ_BPS}{{{SELECTOR}}}", "{{node}}")],
            width=12,
        )
    )
    return d
