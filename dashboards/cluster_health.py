""" "Cluster health": is everything the comparisons rely on up — every scrape target, each exporter's own reading of
its source (its _up and its errors by reason), the Slurm nodes' states, and Prometheus itself."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import RATE, SELECTOR, magellan_dashboard, stat_panel, target, timeseries_panel
from magellan import contract

UID = "magellan-cluster-health"
LEGEND = "{{job}} on {{node}}"


def each_exporter(query: str) -> str:
    """query (with {up}/{errors} for an exporter's series) for every exporter of ours, joined with `or`: each name
    stays a plain name (the lint checks it), and the exporters not deployed on a site add nothing."""
    return " or ".join(
        query.format(up=contract.exporter_up(e), errors=contract.exporter_scrape_errors(e) + "_total")
        for e in contract.EXPORTERS
    )


SLURM = 'slurm_node=~"$node"'  # the Slurm node a state is about (the series' node is the exporter's host)
TROUBLE = 'state=~".*(down|drain|fail).*"'  # sinfo's down, drained, draining, fail, failing, idle+drain, ...
UP = each_exporter(f"{{up}}{{{{{SELECTOR}}}}}")
ERRORS = each_exporter(f"sum by (job, node, reason) (rate({{errors}}{{{{{SELECTOR}}}}}[{RATE}]))")


def build() -> dashboard.Dashboard:
    d = magellan_dashboard(
        "Cluster health",
        UID,
        "Whether the site's monitoring sees everything: scrape targets up, each magellan exporter reading its "
        "source (its own _up and errors by reason), scrape times and Prometheus' own load.",
        "health",
        "up",
    )
    d = d.with_row(dashboard.Row("Targets and exporters"))
    d = d.with_panel(
        stat_panel(
            "Targets down",
            "Scrape targets whose last scrape failed (up = 0): an exporter or node that is down or unreachable. "
            "0 is good.",
            "short",
            [target(f"sum(1 - up{{{SELECTOR}}})", "down")],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Exporters failing their source",
            "Magellan exporters that answer but could not read their source at the last scrape (their _up = 0: "
            "sacct failing, no jobs directory, virsh unreachable). 0 is good.",
            "short",
            [target(f"sum(1 - ({UP}))", "failing")],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Targets",
            "Scrape targets Prometheus has, up or not, per scrape job.",
            "short",
            [target(f"count by (job) (up{{{SELECTOR}}})", "{{job}}")],
            width=12,
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Scrape targets up",
            "1 while Prometheus' scrapes of the target succeed, 0 while they fail, per scrape job and node.",
            "short",
            [target(f"up{{{SELECTOR}}}", LEGEND)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Exporters reading their source",
            "Each magellan exporter's own _up: 1 while it reads its source (progress files, sacct, virsh, "
            "/proc and /sys), 0 while it cannot and serves what it last read.",
            "short",
            [target(UP, LEGEND)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Exporter errors",
            "Unusable inputs per second by reason and exporter (an invalid progress file, a sacct timeout, a "
            "virsh failure, an unreadable device): each counted, while the rest is still exported.",
            "short",
            [target(ERRORS, "{{reason}}: " + LEGEND)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Scrape duration",
            "How long each target's scrape took: an exporter close to the scrape timeout is about to be seen down.",
            "s",
            [target(f"scrape_duration_seconds{{{SELECTOR}}}", LEGEND)],
        )
    )
    d = d.with_row(dashboard.Row("Slurm nodes"))
    d = d.with_panel(
        stat_panel(
            "Nodes down, drained or failing",
            "Slurm nodes (per partition) in a down, drain or fail state, as sinfo reports them on the accounting "
            "host: they take no jobs. 0 is good; `sinfo -R` says why.",
            "short",
            [target(f"sum(magellan_accounting_node_state{{{TROUBLE}, {SLURM}}}) or vector(0)", "nodes")],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Nodes not responding",
            "Slurm nodes slurmctld no longer hears from (sinfo's * suffix): slurmd stopped, the node or its network "
            "down. 0 is good.",
            "short",
            [target(f"sum(1 - magellan_accounting_node_responding{{{SLURM}}})", "not responding")],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Slurm nodes by state",
            "How many nodes of each partition are idle, mixed (some CPUs allocated), allocated, down or drained, "
            "over time: jobs moving in and out, and nodes lost or returned.",
            "short",
            [
                target(
                    f"count by (partition, state) (magellan_accounting_node_state{{{SLURM}}})",
                    "{{state}} in {{partition}}",
                )
            ],
        )
    )
    d = d.with_row(dashboard.Row("Prometheus"))
    d = d.with_panel(
        timeseries_panel(
            "Series in memory",
            "Series in Prometheus' head block: grows with nodes, jobs and label values; its memory follows it.",
            "short",
            [target('prometheus_tsdb_head_series{node=~"$node"}', "{{node}}")],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Samples ingested",
            "Samples Prometheus appends per second, from all its scrapes (float and native-histogram samples summed).",
            "ops",
            [
                target(
                    f'sum by (node) (rate(prometheus_tsdb_head_samples_appended_total{{node=~"$node"}}[{RATE}]))',
                    "{{node}}",
                )
            ],
        )
    )
    return d
