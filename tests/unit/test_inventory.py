"""The CLI reads the same inventory as the playbooks, through ansible-inventory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from magellan import contract
from testbed.inventory import InventoryError, ansible_env, load_inventory

REPO = Path(__file__).resolve().parents[2]


def test_local_inventory() -> None:
    inv = load_inventory(REPO / "inventories" / "local")
    assert [n.name for n in inv.nodes("workload_nodes")] == ["compute1", "compute2"]
    c2 = inv.node("compute2")
    assert (c2.address, c2.platform, c2.profile) == (
        "10.213.7.12",
        "bare-metal-halfcpu",
        {"cpus": 0.4, "read_bps": "10mb"},
    )
    assert inv.prometheus_url() == "http://10.213.7.10:9090"
    assert set(inv.groups["podman_nodes"]) == {"head", "compute1", "compute2", "hv1"}
    # The guest is no podman node; its platform is the accelerator found at build time, not an inventory value.
    vm1 = inv.node("vm1")
    assert (vm1.address, vm1.platform) == ("10.213.7.21", "unknown")
    assert [n.name for n in inv.nodes("bare_vs_virtual")] == ["compute1", "vm1"]


def test_example_site_inventory_parses() -> None:
    inv = load_inventory(REPO / "inventories" / "example-site")
    assert "podman_nodes" not in inv.groups or not inv.groups["podman_nodes"]
    assert len(inv.nodes("workload_nodes")) == 3


def test_prometheus_url_follows_the_sites_port(tmp_path: Path) -> None:
    """A site that moves Prometheus (magellan_ports in its group_vars, as the roles read it) is reached there."""
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    prometheus:\n      hosts:\n        p1: {ansible_host: 10.0.0.5}\n"
    )
    (tmp_path / "group_vars").mkdir()
    ports = {**contract.PORTS, "prometheus": 19090}
    (tmp_path / "group_vars" / "all.yml").write_text(f"magellan_ports: {json.dumps(ports)}\n")
    assert load_inventory(tmp_path).prometheus_url() == "http://10.0.0.5:19090"
    (tmp_path / "group_vars" / "all.yml").write_text("magellan_ports: {prometheus: ninety}\n")
    with pytest.raises(InventoryError, match=r"magellan_ports.prometheus of p1 .* is 'ninety': give a TCP port"):
        load_inventory(tmp_path).prometheus_url()


def test_prometheus_url_is_https_where_the_site_has_web_security() -> None:
    """inventories/example-site turns magellan_web_security on: Prometheus serves HTTPS there; the local site: off."""
    assert load_inventory(REPO / "inventories" / "example-site").prometheus_url().startswith("https://")
    assert load_inventory(REPO / "inventories" / "local").prometheus_url() == "http://10.213.7.10:9090"


def test_unknown_group_lists_the_known_ones() -> None:
    inv = load_inventory(REPO / "inventories" / "local")
    with pytest.raises(InventoryError, match=r"group .nope. is not in inventory .* its groups are: .*compute"):
        inv.nodes("nope")


def test_broken_inventory(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text("all: [this is: not an inventory\n")
    with pytest.raises(InventoryError, match="ansible-inventory failed"):
        load_inventory(tmp_path)


def test_empty_group_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    n1:\n  children:\n    empty_platform:\n      hosts: {}\n")
    inv = load_inventory(tmp_path)
    with pytest.raises(InventoryError, match=r"has no hosts|is not in inventory"):
        inv.nodes("empty_platform")


def test_ad_hoc_runs_use_ansibles_own_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANSIBLE_STRATEGY", raising=False)
    assert ansible_env(one_task=True)["ANSIBLE_STRATEGY"] == "linear"
    playbook = ansible_env(json_result=True)
    assert "ANSIBLE_STRATEGY" not in playbook  # ansible.cfg's (Mitogen) for playbooks
    assert playbook["ANSIBLE_STDOUT_CALLBACK"] == "ansible.posix.json"


def test_an_inventory_that_does_not_parse_is_an_error_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from outside the repository (no ansible.cfg found, none named): Ansible's defaults read a broken
    inventory as an empty one and the command then said the group was missing; the repository's ansible.cfg makes
    it the parse error it is."""
    broken = tmp_path / "inv"
    broken.mkdir()
    (broken / "hosts.yml").write_text("all:\n  children:\n    workload_nodes:\n      hosts: [unclosed\n")
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError, match="ansible-inventory failed on"):
        load_inventory(broken)
