"""Fixtures for the integration tests: the local site, brought up once and torn down at the end."""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from magellan.contract import JobSpec
from testbed.campaign import Campaign, Observer
from testbed.compare import Plan
from testbed.inventory import Inventory, ansible_command, ansible_env, load_inventory
from testbed.model import Comparison
from testbed.prom import PromClient
from testbed.results import publish

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "local"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that disturb the site (marker disruptive: a node restarted) run after all others, in their order."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


def ansible_playbook(
    playbook: str, *extra: str, check: bool = True, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = ansible_env() | {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"} | (env_extra or {})
    env.setdefault("CONTAINERS_CONF", str(REPO / "files" / "containers.conf"))
    proc = subprocess.run(
        [ansible_command("ansible-playbook"), "-i", str(INVENTORY), str(REPO / "playbooks" / playbook), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{playbook} failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}")
    return proc


@pytest.fixture(scope="session")
def site() -> Iterator[Inventory]:
    """The local site, up; torn down after the session (also when a test failed). TESTBED_SITE_CONVERGED=1 says that
    the caller has just converged it from this tree (make test runs site.yml beside the molecule scenarios)."""
    os.environ.setdefault("CONTAINERS_CONF", str(REPO / "files" / "containers.conf"))
    if os.environ.get("TESTBED_SITE_CONVERGED") != "1":
        ansible_playbook("site.yml")
    try:
        yield load_inventory(INVENTORY)
    finally:
        if os.environ.get("TESTBED_KEEP_SITE") != "1":
            ansible_playbook("teardown.yml", check=False)


@pytest.fixture(scope="session")
def prom(site: Inventory) -> PromClient:
    return PromClient(site.prometheus_url(), timeout=10.0)


class _Warn(Observer):
    """A comparison measured again is a pytest warning naming the starved nodes and their share of the CPU."""

    def measuring_again(self, plan: Plan, starved: dict[str, float]) -> None:
        warnings.warn(f"{plan.label} measured again: starved {starved}", stacklevel=1)


@pytest.fixture(scope="session")
def campaign(site: Inventory, prom: PromClient, tmp_path_factory: pytest.TempPathFactory) -> list[Comparison]:
    """A small campaign on the site (jobs submitted through Slurm), run once for the session by the Campaign that
    `testbed compare` runs, and published: simulate and cold analyze, two repetitions each, and storms of 1 and 4
    readers, each on both nodes at once (--concurrent, the other mode of `testbed compare`). Simulate's known answer
    is the CPU quotas (0.8 + 0.4 of the two cores here), and at once both nodes see the same host: this shared VM's
    speed per CPU-second moved by up to 40 % from one 20 s job to the next (in turn, compute2/compute1 paired ratios
    of 0.29 and 0.56 in one run; at once 0.48-0.53 in three). The I/O-bound workloads hold each node to its own read
    throttle. The Campaign's rule measures a starved comparison again (testbed.campaign)."""
    nodes = site.nodes("workload_nodes")

    def plan(spec: JobSpec, repeat: int = 1) -> Plan:
        return Plan(nodes, spec.check(), repeat=repeat, concurrent=True)

    campaign = Campaign(
        [
            plan(JobSpec("simulate", duration=20, seed=7), repeat=2),
            plan(JobSpec("analyze", duration=15, seed=7, cold=True), repeat=2),
            *(plan(JobSpec("storm", duration=10, seed=7, cold=True, readers=n)) for n in (1, 4)),
        ]
    )
    results = campaign.run(site, prom, tmp_path_factory.mktemp("logs"), _Warn())
    for c in results:
        publish(c, site, 15.0)
    return results


@pytest.fixture(scope="session")
def bare_vs_virtual(site: Inventory, prom: PromClient, tmp_path_factory: pytest.TempPathFactory) -> Comparison:
    """make testbed's second comparison: the CPU workload on compute1 and on the guest vm1, published (one
    repetition: the tests check the accelerator's labels and the ratio's range, not its spread)."""
    plan = Plan(site.nodes("bare_vs_virtual"), JobSpec("simulate", duration=20, seed=7), reference="compute1")
    c = Campaign([plan]).run(site, prom, tmp_path_factory.mktemp("logs"))[0]
    publish(c, site, 15.0, group="bare_vs_virtual")
    return c


@pytest.fixture(scope="session")
def comparison(campaign: list[Comparison]) -> Comparison:
    """The campaign's simulate comparison (CPU-bound: the CPU quotas are its known answer)."""
    return campaign[0]


def ssh_argv(site: Inventory, host: str) -> list[str]:
    """ssh to a local node as root, over the testbed's SSH key (the command to run follows)."""
    key = REPO / ".testbed" / "ssh" / "id_ed25519"
    known = REPO / ".testbed" / "ssh" / "known_hosts"  # the host keys the testbed read as it made the nodes
    ssh = ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}"]
    return [*ssh, "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", f"root@{site.node(host).address}"]


def node_shell(site: Inventory, host: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a local node as root, over the testbed's SSH key."""
    return subprocess.run([*ssh_argv(site, host), command], capture_output=True, text=True, check=False, timeout=300)
