"""The local site end to end: targets up, a workload on two CPU profiles, the known answer, dashboards."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboards.queries import check_dashboards
from testbed.inventory import Inventory
from testbed.prom import PromClient
from testbed.report import Comparison, write_report
from tests.integration.conftest import REPO, ansible_playbook, recap

pytestmark = pytest.mark.integration

TOLERANCE = 0.15


def test_every_prometheus_target_is_up(site: Inventory, prom: PromClient) -> None:
    prom.wait_until(lambda: all(t.health == "up" for t in prom.targets()), timeout=60, interval=3)
    targets = prom.targets()
    down = [f"{t.job}/{t.labels.get('node')}: {t.health} {t.last_error}" for t in targets if t.health != "up"]
    assert not down, down
    nodes = {t.labels.get("node") for t in targets if t.labels.get("job") == "node"}
    assert nodes == {"head", "compute1", "compute2"}
    jobs = {t.labels.get("node") for t in targets if t.labels.get("job") == "magellan_job"}
    assert jobs == {"compute1", "compute2"}
    accounting = {t.labels.get("node") for t in targets if t.labels.get("job") == "magellan_accounting"}
    assert accounting == {"head"}


def test_reduced_node_matches_its_profile(comparison: Comparison) -> None:
    by_node = {r.node: r for r in comparison.results}
    full, half = by_node["compute1"], by_node["compute2"]
    assert full.configured_cpus == 1.0 and half.configured_cpus == 0.5
    assert full.events > 0 and half.events > 0
    measured = half.events_per_second / full.events_per_second
    expected = half.configured_cpus / full.configured_cpus
    assert abs(measured / expected - 1) <= TOLERANCE, (
        f"compute2/compute1 events/s ratio {measured:.3f}, expected {expected:.3f} ±{TOLERANCE:.0%}"
    )
    # CPU efficiency follows the quota too: the half node got about half a CPU per wall second.
    assert abs(half.cpu_seconds / half.wall_seconds - 0.5) <= 0.5 * TOLERANCE


def test_every_dashboard_query_returns_data(comparison: Comparison, prom: PromClient) -> None:
    failures = check_dashboards(prom, REPO / "dashboards" / "generated")
    assert failures == [], "\n".join(failures)


def test_second_converge_changes_nothing(comparison: Comparison) -> None:
    proc = ansible_playbook("site.yml")
    counters = recap(proc.stdout)
    assert counters, proc.stdout[-2000:]
    changed = {host: c["changed"] for host, c in counters.items() if c.get("changed")}
    assert changed == {}, f"second converge changed something: {changed}\n{proc.stdout[-4000:]}"


def test_report_is_written(comparison: Comparison, tmp_path: Path) -> None:
    out = write_report(comparison, tmp_path)
    assert (out / "report.md").read_text().count("compute") >= 2
    assert (out / "events_per_second.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_mode_on_a_converged_site_changes_nothing(comparison: Comparison) -> None:
    proc = ansible_playbook("site.yml", "--check", "--diff")
    changed = {host: c["changed"] for host, c in recap(proc.stdout).items() if c.get("changed")}
    assert changed == {}, f"--check --diff reported changes: {changed}\n{proc.stdout[-4000:]}"
