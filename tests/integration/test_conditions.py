"""The conditions database on the site in a box (roles/conditions_db): each user's jobs read it with their own
account, from a compute node through the firewall, and the accounting exporter serves what each user was served
(MariaDB's user statistics) in Prometheus, per user and project."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from magellan import contract
from testbed.inventory import Inventory
from testbed.prom import PromClient
from tests.integration.conftest import node_shell
from tests.integration.test_security import probe_from, probe_from_controller

pytestmark = pytest.mark.integration

WORKLOAD = contract.workload_command()
OPTIONS = contract.CONDITIONS_FILE
EVENTS = 3000  # runs FIRST_RUN .. FIRST_RUN + 2: one IOV of the local site's tag (5 runs each)
SELECTS = 'magellan_accounting_db_commands_total{{kind="select",user="{user}"}}'


def on_node(site: Inventory, node: str, user: str, command: str) -> subprocess.CompletedProcess[str]:
    return node_shell(site, node, f"cd /tmp && runuser -u {user} -- sh -c {shlex.quote(command)}")


def test_each_user_has_private_client_options(site: Inventory) -> None:
    for node in ("compute1", "compute2"):
        for user in ("physicist", "theorist"):
            out = on_node(site, node, user, f"stat -c '%U %a' {OPTIONS}")
            assert out.stdout.split() == [user, "600"], (node, user, out.stdout, out.stderr)
        other = on_node(site, node, "theorist", "cat ~physicist/" + OPTIONS.removeprefix("~/"))
        assert other.returncode != 0 and "Permission denied" in other.stderr, other


def test_the_database_is_reachable_from_the_compute_nodes_only(site: Inventory) -> None:
    head, port = site.node("head").address, site.port("head", "mariadb")
    assert probe_from(site, "compute1", head, port) == "open"
    assert probe_from(site, "hv1", head, port) == "ConnectionRefusedError"
    assert probe_from_controller(head, port) == "ConnectionRefusedError"


def selects(prom: PromClient, user: str) -> float:
    return sum(s.value for s in prom.query(SELECTS.format(user=user)))


def analyze_with_conditions(site: Inventory, user: str, jobs: int) -> list[dict[str, object]]:
    """`jobs` analyze jobs of `user` through Slurm on compute1, each reading the conditions of its runs."""
    prefix = f"it-cond-{user}"
    command = (
        f"srun -p chos -w compute1 -t 5 {WORKLOAD} simulate --job-id {prefix}-sim --events {EVENTS} "
        f"--output /tmp/{prefix}.root"
    )
    for i in range(jobs):
        command += (
            f" && srun -p chos -w compute1 -t 5 {WORKLOAD} analyze --job-id {prefix}-{i} --input /tmp/{prefix}.root"
            " --conditions"
        )
    out = on_node(site, "head", user, command)
    assert out.returncode == 0, out.stdout + out.stderr
    summaries = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return summaries[1:]


def test_each_users_database_access_is_accounted(site: Inventory, prom: PromClient) -> None:
    """physicist runs two jobs and theorist one; each job asks for its tag and for the one IOV of its runs (two
    SELECTs): MariaDB counts them per user, the accounting exporter serves them, with the user's project."""
    before = {user: selects(prom, user) for user in ("physicist", "theorist")}
    jobs = {
        "physicist": analyze_with_conditions(site, "physicist", 2),
        "theorist": analyze_with_conditions(site, "theorist", 1),
    }
    for user, summaries in jobs.items():
        for s in summaries:
            assert s["events"] == EVENTS and s["conditions_queries"] == 2 and s["conditions_rows"] == 3, (user, s)
            assert s["conditions_tag"] == "MAGELLAN-COND-2026-01"
    expected = {"physicist": before["physicist"] + 4, "theorist": before["theorist"] + 2}

    def counted() -> bool:
        return {user: selects(prom, user) for user in expected} == expected

    assert prom.wait_until(counted, timeout=120), {user: selects(prom, user) for user in expected}
    projects = {
        s.labels["user"]: s.labels["account"]
        for s in prom.query('magellan_accounting_db_rows_sent_total{user=~"physicist|theorist"}')
    }
    assert projects == {"physicist": "atlas", "theorist": "theory"}
    sent = {s.labels["user"]: s.value for s in prom.query("magellan_accounting_db_bytes_sent_total")}
    assert sent["physicist"] > sent["theorist"] > 0, sent
