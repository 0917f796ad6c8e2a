"""The firewall's ruleset generator (plugins/filter/firewall.py): the rules it writes, and the errors it gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "filter"))
import firewall

TABLE = "magellan_unit_test"  # nft -c checks it against the kernel and loads nothing


def ruleset(*rules: dict) -> str:
    return firewall.firewall_ruleset(list(rules), TABLE)


def test_the_ruleset_is_one_replacing_transaction_the_kernel_accepts(tmp_path: Path) -> None:
    text = ruleset(
        {"name": "ssh from the controller", "ports": [22], "from": ["10.213.7.1", "fd00::1"]},
        {"name": "srun within the cluster", "ports": ["60001-61000", 6818], "from": ["10.213.7.0/24"]},
        {"name": "dns", "proto": "udp", "ports": [53], "from": ["10.213.7.10"]},
    )
    assert text.splitlines()[:3] == [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    assert 'ip saddr { 10.213.7.1 } tcp dport { 22 } accept comment "ssh from the controller"' in text
    assert 'ip6 saddr { fd00::1 } tcp dport { 22 } accept comment "ssh from the controller"' in text
    assert "tcp dport { 6818, 60001-61000 }" in text
    assert 'ip saddr { 10.213.7.10 } udp dport { 53 } accept comment "dns"' in text
    assert text.splitlines()[-3].endswith("reject with icmpx type admin-prohibited")  # the rest: refused
    path = tmp_path / "rules.nft"
    path.write_text(text)
    check = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def test_a_rule_without_sources_or_ports_lets_nothing_in() -> None:
    text = ruleset(
        {"name": "nobody", "ports": [9100], "from": []}, {"name": "nothing", "ports": [], "from": ["10.0.0.1"]}
    )
    assert "9100" not in text and "nothing" not in text


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": "x", "ports": [70000], "from": []}, "rule 'x': port 70000 is not a TCP/UDP port"),
        ({"name": "x", "ports": ["9-2"], "from": []}, "rule 'x': port '9-2' is not"),
        ({"name": "x", "ports": 22, "from": []}, "rule 'x': ports must be a list"),
        ({"name": "x", "ports": [22], "from": ["head01"]}, "rule 'x': source 'head01' is not an IP address"),
        ({"name": "x", "ports": [22], "from": "10.0.0.1"}, "rule 'x': from must be a list"),
        ({"name": "x", "proto": "sctp", "ports": [22], "from": []}, "rule 'x': proto must be tcp or udp"),
        ({"name": 'x"; flush ruleset', "ports": [22], "from": []}, "rule name"),
    ],
)
def test_bad_rules_are_named(rule: dict, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match="roles/firewall") as err:
        ruleset(rule)
    assert message in str(err.value)


def test_hosts_are_let_in_by_address() -> None:
    hostvars = {
        "head": {"magellan_site_address": "10.213.7.10"},
        "wn001.example.org": {
            "magellan_site_address": "wn001.example.org",
            "ansible_default_ipv4": {"address": "192.0.2.11"},
        },
    }
    assert firewall.firewall_addresses(["head", "wn001.example.org"], hostvars) == ["10.213.7.10", "192.0.2.11"]


def test_a_host_without_an_address_is_named() -> None:
    with pytest.raises(AnsibleFilterError, match=r"host wn002's site address .* set testbed_address"):
        firewall.firewall_addresses(["wn002"], {"wn002": {"magellan_site_address": "wn002"}})
