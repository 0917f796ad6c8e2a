"""The node firewall's allow-list (roles/firewall) as an nftables ruleset, and the site addresses it is made of.

`firewall_addresses(hosts, hostvars)` gives the addresses hosts send from: nftables matches packets by address, and
a name resolved when the rules load would silently go stale.
`firewall_ruleset(rules)` turns the role's rules ({name, ports, from, proto}) into one nft script that replaces the
table as a whole in one transaction (create, delete, define): other tables (podman's, libvirt's, a site's own)
are left alone, and a load that fails leaves the previous rules in force.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

COUNTER = "refused"  # packets refused by the allow-list, named so that tests and admins can read it
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ,._-]{0,63}")
_RANGE = re.compile(r"([0-9]{1,5})-([0-9]{1,5})")


def firewall_addresses(hosts: list[str], hostvars: Mapping[str, Any]) -> list[str]:
    """The address each host in hosts sends from on the site network: its site address (magellan_site_address) when
    that is an IP, else (a name) the addresses of its default interfaces from its facts; an error names a host that
    has neither."""
    found = []
    for host in hosts:
        host_vars = hostvars[host]
        address = str(host_vars.get("magellan_site_address", "")).strip()
        try:
            found.append(str(ipaddress.ip_address(address)))
            continue
        except ValueError:
            pass
        facts = [(host_vars.get(f"ansible_default_{v}") or {}).get("address") for v in ("ipv4", "ipv6")]
        if not any(facts):
            raise AnsibleFilterError(
                f"roles/firewall: host {host}'s site address (magellan_site_address) is {address!r}, not an IP, and"
                " its facts give no default address (are they gathered?). The firewall lets hosts in by address: set"
                " testbed_address (or ansible_host) of that host to its IP on the site network."
            )
        found += [str(ipaddress.ip_address(a)) for a in facts if a]
    return found


def _ports(rule: str, ports: Any) -> list[str]:
    if not isinstance(ports, list):
        raise AnsibleFilterError(f"roles/firewall: rule '{rule}': ports must be a list, got {ports!r}")
    out = []
    for port in ports:
        text = str(port).strip()
        bounds = [int(b) for b in _RANGE.fullmatch(text).groups()] if _RANGE.fullmatch(text) else None
        if bounds is None and text.isdigit():
            bounds = [int(text)] * 2
        if bounds is None or not 1 <= bounds[0] <= bounds[1] <= 65535:
            raise AnsibleFilterError(
                f"roles/firewall: rule '{rule}': port {port!r} is not a TCP/UDP port (1-65535) or a range FIRST-LAST"
            )
        out.append(text)
    return sorted(set(out), key=lambda p: int(p.split("-")[0]))


def _sources(rule: str, sources: Any) -> dict[str, list[str]]:
    if not isinstance(sources, list):
        raise AnsibleFilterError(f"roles/firewall: rule '{rule}': from must be a list of addresses, got {sources!r}")
    by_family: dict[str, list[str]] = {"ip": [], "ip6": []}
    for source in sources:
        try:
            net = ipaddress.ip_network(str(source).strip(), strict=False)
        except ValueError:
            raise AnsibleFilterError(
                f"roles/firewall: rule '{rule}': source {source!r} is not an IP address or network (CIDR)"
            ) from None
        text = str(net.network_address) if net.num_addresses == 1 else str(net)
        family = by_family["ip" if net.version == 4 else "ip6"]
        if text not in family:
            family.append(text)
    return by_family


def firewall_ruleset(rules: list[Mapping[str, Any]], table: str) -> str:
    """The nft script of the allow-list: each rule lets its sources reach its ports; a rule without ports or without
    sources lets nothing in and is left out. Everything else is refused (counted in counter `refused`). table is
    the role's own (family inet)."""
    accept = []
    for rule in rules:
        name = str(rule.get("name", ""))
        if not _NAME.fullmatch(name):
            raise AnsibleFilterError(f"roles/firewall: rule name {name!r} must be 1-64 letters, digits, ' ,._-'")
        proto = rule.get("proto", "tcp")
        if proto not in ("tcp", "udp"):
            raise AnsibleFilterError(f"roles/firewall: rule '{name}': proto must be tcp or udp, got {proto!r}")
        ports = _ports(name, rule.get("ports", []))
        sources = _sources(name, rule.get("from", []))
        if not ports:
            continue
        for family, addresses in sources.items():
            if addresses:
                accept.append(
                    f"\t\t{family} saddr {{ {', '.join(addresses)} }} {proto} dport {{ {', '.join(ports)} }} "
                    f'accept comment "{name}"'
                )
    lines = [
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        f"\tcounter {COUNTER} {{",
        "\t}",
        "",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        '\t\tiifname "lo" accept',
        '\t\tmeta l4proto { 1, 58 } accept comment "ICMP, ICMPv6"',  # by number: minimal images lack /etc/protocols
        '\t\tudp sport 67 udp dport 68 accept comment "DHCP answers"',
        '\t\tudp sport 547 udp dport 546 accept comment "DHCPv6 answers"',
        *accept,
        f'\t\tmeta l4proto tcp counter name "{COUNTER}" reject with tcp reset',
        f'\t\tcounter name "{COUNTER}" reject with icmpx type admin-prohibited',
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"firewall_addresses": firewall_addresses, "firewall_ruleset": firewall_ruleset}
