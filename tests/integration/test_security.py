"""The site's firewall (roles/firewall) on the site in a box: what the allow-list refuses, seen from real hosts.

That it lets through everything the site needs is shown by the rest of the integration tests, which run through it:
the site is built with the firewall on every node before any service listens."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess

import pytest

from testbed.inventory import Inventory
from testbed.prom import PromClient
from tests.integration.conftest import node_shell

pytestmark = pytest.mark.integration

# A TCP connection's outcome: "open" or the error's name (ConnectionRefusedError: the firewall's TCP reset).
PROBE = (
    "import socket,sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()\n"
    "    print('open')\n"
    "except OSError as e:\n"
    "    print(type(e).__name__)\n"
)


def probe_from(site: Inventory, source: str, address: str, port: int) -> str:
    out = node_shell(site, source, f"python3 -c {shlex.quote(PROBE)} {address} {port}")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def probe_from_controller(address: str, port: int) -> str:
    try:
        socket.create_connection((address, port), timeout=5).close()
    except OSError as e:
        return type(e).__name__
    return "open"


def refused(site: Inventory, host: str) -> int:
    out = node_shell(site, host, "nft -j list counter inet magellan_firewall refused")
    assert out.returncode == 0, out.stderr
    return next(e["counter"]["packets"] for e in json.loads(out.stdout)["nftables"] if "counter" in e)


def test_an_exporter_is_reachable_from_prometheus_only(site: Inventory, prom: PromClient) -> None:
    target, address = "compute2", site.node("compute2").address
    port = site.port(target, "node_exporter")
    before = refused(site, target)
    got = {
        "from head (Prometheus)": probe_from(site, "head", address, port),
        "from compute1": probe_from(site, "compute1", address, port),
        "from the controller": probe_from_controller(address, port),
    }
    assert got == {
        "from head (Prometheus)": "open",
        "from compute1": "ConnectionRefusedError",
        "from the controller": "ConnectionRefusedError",
    }
    assert refused(site, target) >= before + 2
    scraped = prom.query(f'up{{job="node",node="{target}"}}')
    assert [s.value for s in scraped] == [1.0], scraped


def test_slurm_is_reachable_within_the_cluster_only(site: Inventory) -> None:
    head = site.node("head").address
    slurmctld = site.port("head", "slurmctld")
    assert probe_from(site, "compute1", head, slurmctld) == "open"
    assert probe_from_controller(head, slurmctld) == "ConnectionRefusedError"
    # hv1 hosts the guest but is no Slurm node itself.
    assert probe_from(site, "hv1", head, slurmctld) == "ConnectionRefusedError"


def test_every_node_has_its_allow_list_loaded(site: Inventory) -> None:
    hosts = [n.name for g in ("head_nodes", "compute", "hypervisors", "virtual_nodes") for n in site.nodes(g)]
    missing = {}
    for host in hosts:
        out: subprocess.CompletedProcess[str] = node_shell(site, host, "nft list chain inet magellan_firewall input")
        if out.returncode != 0 or "policy drop" not in out.stdout:
            missing[host] = out.stdout + out.stderr
    assert not missing, missing
