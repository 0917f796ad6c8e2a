"""Network helpers for validate.yml: subnet membership and overlap, with Python's ipaddress."""

from __future__ import annotations

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


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "testbed_in_subnet": testbed_in_subnet,
            "testbed_valid_subnet": testbed_valid_subnet,
            "testbed_overlaps": testbed_overlaps,
        }
