""" "Platform comparison": the same workload on several platforms, side by side."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

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
from magellan import contract

UID = "magellan-platform-comparison"


def per_node_rate(metric: str, matchers: str = "") -> str:
    """Per-second rate of a counter, summed per node and platform, for the selected nodes."""
    selector = f"{matchers}, {SELECTOR}" if matchers else SELECTOR
    return f"sum by (node, platform) (rate({metric}{{{selector}}}[{RATE}]))"


EVENTS_RATE = per_node_rate(JOB["events"])
CPU_RATE = per_node_rate(JOB["cpu"])
EVENTS = f"{JOB['events']}{{{SELECTOR}}}"


def build() -> dashboard.Dashboard:
    d = magellan_dashboard(
        "Platform comparison",
        UID,
        "ATLAS-like workloads on several platforms: throughput, CPU efficiency, I/O, health.",
        "comparison",
        JOB["events"],
    )
    d = d.with_row(dashboard.Row("Throughput"))
    d = d.with_panel(
        timeseries_panel(
            "Events per second",
            "How many events the jobs on each node process per second, summed over the node's jobs. "
            "The same workload on two platforms: the higher line is the faster platform.",
            "ops",
            [target(EVENTS_RATE, "{{node}} ({{platform}})")],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Events per second relative to the fastest node",
            "Each node's event rate divided by the highest rate among the selected nodes (1 = fastest). "
            "Read it as the platform's speed ratio.",
            "percentunit",
            [
                target(
                    f"{EVENTS_RATE} / scalar(max(sum by (node) (rate({EVENTS}[{RATE}]))))",
                    "{{node}} ({{platform}})",
                )
            ],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Events per CPU second",
            "Events processed per second of CPU the jobs used: the work done per unit of CPU, independent of how "
            "much CPU a node gives. Equal values mean the platforms differ only in how much CPU they hand out.",
            "short",
            [
                target(
                    f"{EVENTS_RATE} / {CPU_RATE}",
                    "{{node}} ({{platform}})",
                )
            ],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "CPU efficiency per running job",
            "CPU seconds per wall second of the node's running jobs, per job (1 = each job had a full core). "
            "Below the configured CPU quota means the job waited for something else than CPU.",
            "percentunit",
            [
                target(
                    f"{CPU_RATE} / clamp_min({running_jobs()}, 1)",
                    "{{node}} ({{platform}})",
                )
            ],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Per-core score (DB12 units)",
            "Each job's events per CPU second expressed in DB12 (DIRAC Benchmark 2012) units per core, averaged "
            "per node and workload (workloads/README.md). Per CPU second: a platform that hands out less CPU "
            "scores the same; one whose cores run the workload worse scores lower.",
            "short",
            [
                target(
                    f"avg by (node, platform, workload) ({JOB['score']}{{{SELECTOR}}})",
                    "{{node}} {{workload}}",
                )
            ],
            width=24,
        )
    )
    d = d.with_row(dashboard.Row("Configured vs measured"))
    d = d.with_panel(
        timeseries_panel(
            "CPU profile: configured vs used",
            "The CPU quota each node was given (dashed in Grafana's legend as 'configured') next to the CPU its "
            "jobs actually used. A platform that delivers its quota shows the two lines together while jobs run.",
            "short",
            [
                target(f"{contract.NODE_PROFILE_CPUS}{{{SELECTOR}}}", "{{node}} configured", "A"),
                target(CPU_RATE, "{{node}} used by jobs", "B"),
            ],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Node CPU busy",
            "CPU time per second the whole node spent outside idle, from node_exporter (all processes, not only "
            "jobs). On container nodes this is the host's view: compare it with the jobs' own figure.",
            "short",
            [target(per_node_rate("node_cpu_seconds_total", 'mode!="idle"'), "{{node}} ({{platform}})")],
        )
    )
    d = d.with_row(dashboard.Row("I/O"))
    d = d.with_panel(
        timeseries_panel(
            "Job read rate",
            "Bytes per second the node's jobs read from storage (from /proc/<pid>/io read_bytes).",
            "Bps",
            [target(per_node_rate(JOB["read"]), "{{node}}")],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Job write rate",
            "Bytes per second the node's jobs wrote to storage (from /proc/<pid>/io write_bytes).",
            "Bps",
            [target(per_node_rate(JOB["written"]), "{{node}}")],
        )
    )
    d = d.with_row(dashboard.Row("Latest comparison (published by testbed compare)"))
    d = d.with_panel(
        timeseries_panel(
            "Measured vs expected ratio",
            "Each node's events/s relative to the reference node in the latest `testbed compare` of the workload "
            "(median of the paired repetitions), next to the ratio its device profile predicts (CPU quota for "
            "simulate, read throttle for cold analyze and storm). The alert "
            "MagellanPlatformRegression fires when measured falls below expected by more than the tolerance and "
            "the run's spread.",
            "short",
            [
                target(f"magellan_comparison_ratio{{{SELECTOR}}}", "{{node}} measured ({{workload}})", "A"),
                target(f"magellan_comparison_ratio_expected{{{SELECTOR}}}", "{{node}} expected ({{workload}})", "B"),
            ],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Spread of the ratio",
            "Half the range of the ratios of the repetitions run side by side. A difference smaller than this is "
            "noise, not a platform difference.",
            "short",
            [target(f"magellan_comparison_ratio_spread{{{SELECTOR}}}", "{{node}} ({{workload}})")],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Events per second by workload",
            "Events per wall second of each node in the latest comparison of each workload (storms per number of "
            "readers), over the repetitions that ran.",
            "ops",
            [
                target(
                    f"magellan_comparison_events_per_second{{{SELECTOR}}}",
                    "{{node}} {{workload}} n={{readers}}",
                )
            ],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Failed runs in the latest comparisons",
            "Repetitions that failed (their job, or its submission) and were left out of the published figures. "
            "The report under reports/ says why. Should be 0.",
            "short",
            [target(f"sum(magellan_comparison_failed_runs{{{SELECTOR}}})", "failed")],
            width=12,
        )
    )
    d = d.with_row(dashboard.Row("Batch accounting (Slurm)"))
    d = d.with_panel(
        timeseries_panel(
            "CPU time of finished jobs per partition and user",
            "CPU seconds per second of the jobs that finished, from Slurm's accounting (sacct) through the "
            "accounting exporter: which partition and user the cluster worked for.",
            "short",
            [
                target(
                    f"sum by (partition, user) (rate(magellan_accounting_cpu_seconds_total[{RATE}]))",
                    "{{partition}} {{user}}",
                )
            ],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Finished jobs by partition and state",
            "Jobs Slurm recorded as finished, by final state (COMPLETED, FAILED, CANCELLED, TIMEOUT, ...).",
            "short",
            [target("sum by (partition, state) (magellan_accounting_jobs_total)", "{{partition}} {{state}}")],
            width=8,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Jobs running or pending",
            "Jobs Slurm has not finished yet, over all partitions.",
            "short",
            [target("sum(magellan_accounting_active_jobs) or vector(0)", "active")],
            width=4,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Accounting exporter up",
            "1 when the accounting exporter's last sacct run succeeded. 0: Slurm's accounting is not being read.",
            "short",
            [target(f"min({contract.exporter_up('accounting')})", "up")],
            width=4,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Largest job memory peak",
            "The largest MaxRSS of a finished job, over users and partitions.",
            "bytes",
            [target("max(magellan_accounting_memory_peak_bytes)", "peak")],
            width=8,
        )
    )
    d = d.with_row(dashboard.Row("Jobs and health"))
    d = d.with_panel(
        timeseries_panel(
            "Jobs by state",
            "How many jobs each node reports as running, finished or failed.",
            "short",
            [target(f"sum by (node, state) ({JOB['state']}{{{SELECTOR}}})", "{{node}} {{state}}")],
            width=8,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Job exporters up",
            "Nodes whose job exporter could read its jobs directory (1 each). Fewer than nodes means a broken "
            "exporter: its jobs are missing from every other panel.",
            "short",
            [target(f'sum({contract.exporter_up("job")}{{node=~"$node"}})', "up")],
            width=4,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Unreadable progress files",
            "Progress files the job exporters could not parse at their last scrape (corrupt or half-written). "
            "Should be 0.",
            "short",
            [target('sum(magellan_job_progress_invalid_files{node=~"$node"})', "invalid")],
            width=4,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Scrape targets down",
            "Prometheus targets (exporters on the nodes) that did not answer the last scrape. Should be 0.",
            "short",
            [target("count(up == 0) or vector(0)", "down")],
            width=4,
        )
    )
    d = d.with_panel(
        stat_panel(
            "Scrape targets up",
            "Prometheus targets that answered the last scrape.",
            "short",
            [target("count(up == 1)", "up")],
            width=4,
        )
    )
    return d
