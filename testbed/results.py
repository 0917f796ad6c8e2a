"""A comparison's results as Prometheus metrics, next to their reference values and thresholds.

`testbed compare` writes them into the node_exporter textfile directory of the Prometheus host, so that the
latest result of each workload stays in Prometheus and the rule MagellanPlatformRegression
(roles/prometheus/files/magellan.rules.yml) fires when a platform falls below its expected ratio by more than
the tolerance and by more than the run's own spread.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from magellan import contract
from testbed import analysis
from testbed.exposition import text_exposition
from testbed.inventory import Inventory, ansible_command, ansible_env
from testbed.model import Comparison

REPO = Path(__file__).resolve().parent.parent
# group: the inventory group compared (one comparison per group and workload: the campaign of workload_nodes, the
# bare-metal vs virtual one of bare_vs_virtual); a node in both has one series in each.
# format: the event files' format of a workload that reads them (rntuple, ttree), "none" for simulate.
LABELS = ["group", "workload", "readers", "format", "node", "platform", "accel", "reference"]
DEFAULT_GROUP = "workload_nodes"


class PublishError(RuntimeError):
    """The results could not be written on the Prometheus host."""


def exposition(c: Comparison, tolerance_pct: float, group: str = DEFAULT_GROUP) -> str:
    """The comparison as Prometheus text exposition: one series per node and figure."""

    def family(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{contract.COMPARISON_PREFIX}{name}", doc, labels=LABELS)

    ratio = family("ratio", "Events/s relative to the reference node (median of the paired repetitions).")
    spread = family("ratio_spread", "Half the range of the paired ratios (absent with one repetition).")
    expected = family(
        "ratio_expected",
        "Reference value: the ratio the device profiles predict (CPU quotas, or read throttles for cold reads).",
    )
    tolerance = family("tolerance_ratio", "Threshold: allowed relative shortfall of ratio below ratio_expected.")
    eps = family("events_per_second", "Events per wall second over the repetitions that ran.")
    read = family("read_bytes_per_second", "Storage bytes read per wall second (a storm: by all its readers).")
    eff = family("job_cpu_efficiency", "CPU seconds per wall second of one job (a storm: of one reader).")
    repeats = family("repetitions", "Repetitions per node.")
    failed = family("failed_runs", "Repetitions that failed and were left out of the figures.")
    fmt = c.format or "none"
    for row in analysis.rows(c):
        r = row.result
        accel = r.accel or contract.BARE_METAL_ACCEL
        labels = [group, c.workload, str(c.readers), fmt, r.node, r.platform, accel, c.reference]
        failed.add_metric(labels, len(r.failed))
        if row.verdict == analysis.FAILED:  # no figures: every repetition failed
            continue
        ratio.add_metric(labels, row.ratio)
        eps.add_metric(labels, r.events_per_second)
        read.add_metric(labels, r.read_mb_per_second * 1e6)
        eff.add_metric(labels, analysis.job_efficiency(c, r))
        repeats.add_metric(labels, max(len(r.runs), 1))
        tolerance.add_metric(labels, tolerance_pct / 100.0)
        if row.spread is not None:
            spread.add_metric(labels, row.spread)
        if row.expected is not None:
            expected.add_metric(labels, row.expected)
    finished = GaugeMetricFamily(
        f"{contract.COMPARISON_PREFIX}finished_timestamp_seconds",
        "Unix time the comparison ended.",
        labels=LABELS[:4],
    )
    finished.add_metric([group, c.workload, str(c.readers), fmt], c.finished.timestamp())

    return text_exposition([ratio, spread, expected, tolerance, eps, read, eff, repeats, failed, finished])


def publish(
    c: Comparison,
    inventory: Inventory,
    tolerance_pct: float,
    group: str = DEFAULT_GROUP,
    textfile_dir: str | None = None,
) -> str:
    """Write the metrics as <textfile_dir>/magellan_comparison_<label>.prom on the Prometheus host (label: the
    workload, with the readers of a storm: storm-n16; prefixed by the group unless it is workload_nodes),
    replacing the previous result of that group and label."""
    hosts = inventory.groups.get("prometheus", [])
    if len(hosts) != 1:
        raise PublishError(f"the inventory's group 'prometheus' has {len(hosts)} hosts; publishing needs exactly one")
    name = c.label if group == DEFAULT_GROUP else f"{group}_{c.label}"
    host = inventory.hostvars.get(hosts[0], {})
    textfile_dir = textfile_dir or str(host.get(contract.site_var("textfile_dir"), contract.TEXTFILE_DIR))
    dest = f"{textfile_dir}/{contract.COMPARISON_PREFIX}{name}.prom"
    args = {"content": exposition(c, tolerance_pct, group), "dest": dest, "mode": "0644"}
    cmd = [ansible_command("ansible"), "-i", str(inventory.path), hosts[0], "-m", "ansible.builtin.copy"]
    cmd += ["-a", json.dumps(args)]
    proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(one_task=True), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PublishError(f"could not write {dest} on {hosts[0]}: {(proc.stdout + proc.stderr)[-1500:]}")
    return f"{hosts[0]}:{dest}"
