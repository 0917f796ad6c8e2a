"""Network helpers for the playbooks: subnet membership and overlap, hosts of a subnet, guests' MAC addresses, the
connection that moves big files, where a node reaches its own service."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any


def testbed_in_subnet(address: str, subnet: str) -> bool:
    """True when address (an IP) lies inside subnet (a CIDR)."""
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        return False


def testbed_valid_subnet(subnet: str) -> bool:
    """True for a CIDR such as 10.213.7.0/24 (host bits must be zero)."""
    try:
        ipaddress.ip_network(subnet, strict=True)
    except ValueError:
        return False
    return "/" in subnet


def testbed_overlaps(subnet: str, others: list[Any]) -> list[str]:
    """The CIDRs in others that overlap subnet; non-CIDR entries such as 'default' are ignored."""
    mine = ipaddress.ip_network(subnet, strict=False)
    found = []
    for other in others:
        try:
            net = ipaddress.ip_network(str(other), strict=False)
        except ValueError:
            continue
        if net.version == mine.version and net.overlaps(mine) and net.prefixlen > 0:
            found.append(str(other))
    return found


def testbed_subnet_host(subnet: str, index: int) -> str:
    """The index-th address of subnet (1 is the first host), for example the bridge address of a guest network."""
    return str(ipaddress.ip_network(subnet, strict=True)[int(index)])


def testbed_subnet_prefix(subnet: str) -> int:
    """The prefix length of subnet: 24 for 10.213.8.0/24."""
    return ipaddress.ip_network(subnet, strict=True).prefixlen


def testbed_mac(name: str) -> str:
    """A stable, locally administered MAC in QEMU's 52:54:00 range, from a guest's name."""
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def testbed_bulk_connection(host_vars: Any) -> str:
    """The connection to copy big files (images, archives) to a host: Ansible's own SSH connection for a host reached
    over SSH, its own connection otherwise. Mitogen (the project's strategy) moves files at ~8 MB/s here: the 1 GB
    guest image took 125 s, against 44 s by Ansible's SSH connection with a site converge running beside it."""
    connection = str(host_vars.get("ansible_connection") or "ssh")
    return "ansible.builtin.ssh" if connection in ("ssh", "mitogen_ssh") else connection


def testbed_local_endpoint(listen_address: str) -> str:
    """host:port at which a node reaches its own service listening on listen_address ([host]:port): the host it
    listens on, or 127.0.0.1 when that is every interface (empty, 0.0.0.0, [::])."""
    host, _, port = listen_address.rpartition(":")
    return f"{'127.0.0.1' if host in ('', '0.0.0.0', '[::]') else host}:{port}"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "testbed_in_subnet": testbed_in_subnet,
            "testbed_valid_subnet": testbed_valid_subnet,
            "testbed_overlaps": testbed_overlaps,
            "testbed_subnet_host": testbed_subnet_host,
            "testbed_subnet_prefix": testbed_subnet_prefix,
            "testbed_mac": testbed_mac,
            "testbed_bulk_connection": testbed_bulk_connection,
            "testbed_local_endpoint": testbed_local_endpoint,
        }
