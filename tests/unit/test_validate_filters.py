"""The network filters validate.yml relies on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "testbed_net", Path(__file__).resolve().parents[2] / "plugins" / "filter" / "testbed_net.py"
)
assert spec and spec.loader
net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(net)


def test_in_subnet() -> None:
    assert net.testbed_in_subnet("10.213.7.11", "10.213.7.0/24")
    assert not net.testbed_in_subnet("10.213.8.11", "10.213.7.0/24")
    assert not net.testbed_in_subnet("not-an-ip", "10.213.7.0/24")


def test_valid_subnet() -> None:
    assert net.testbed_valid_subnet("10.213.7.0/24")
    assert not net.testbed_valid_subnet("10.213.7.1/24")  # host bits set
    assert not net.testbed_valid_subnet("10.213.7.0")
    assert not net.testbed_valid_subnet("nonsense")


def test_overlaps_ignores_default_route_and_junk() -> None:
    routes = ["default", "10.0.0.0/8", "192.168.1.0/24", "10.213.7.128/25", "fe80::/64", "garbage"]
    assert net.testbed_overlaps("10.213.7.0/24", routes) == ["10.0.0.0/8", "10.213.7.128/25"]
    assert net.testbed_overlaps("172.31.0.0/24", routes) == []


def test_subnet_host_and_prefix() -> None:
    assert net.testbed_subnet_host("10.213.8.0/24", 1) == "10.213.8.1"
    assert net.testbed_subnet_prefix("10.213.8.0/24") == 24


def test_mac_is_stable_and_in_qemus_range() -> None:
    mac = net.testbed_mac("vm1")
    assert mac == net.testbed_mac("vm1") != net.testbed_mac("vm2")
    assert mac.startswith("52:54:00:") and len(mac.split(":")) == 6


def test_big_files_go_by_ansibles_own_ssh() -> None:
    assert net.testbed_bulk_connection({}) == "ansible.builtin.ssh"
    assert net.testbed_bulk_connection({"ansible_connection": "ssh"}) == "ansible.builtin.ssh"
    assert net.testbed_bulk_connection({"ansible_connection": "podman"}) == "podman"
    assert net.testbed_bulk_connection({"ansible_connection": "local"}) == "local"


def test_local_endpoint_is_where_the_node_reaches_its_own_service() -> None:
    assert net.testbed_local_endpoint("10.213.7.11:9810") == "10.213.7.11:9810"  # the site address it listens on
    assert net.testbed_local_endpoint(":9810") == "127.0.0.1:9810"  # every interface
    assert net.testbed_local_endpoint("0.0.0.0:9100") == "127.0.0.1:9100"
    assert net.testbed_local_endpoint("[::]:9090") == "127.0.0.1:9090"
    assert net.testbed_local_endpoint("[fd00::5]:9812") == "[fd00::5]:9812"
    assert net.testbed_local_endpoint("head:9811") == "head:9811"
