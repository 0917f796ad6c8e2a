"""Verify the allow-list from both sides: a source the rules name gets through, any other is refused and counted."""

import json
from pathlib import Path

from magellan import contract

NODE, PROM, CTL = "molecule-fw-node", "molecule-fw-prom", "molecule-fw-ctl"
testinfra_hosts = [f"podman://{NODE}"]
NODE_EXPORTER = contract.PORTS["node_exporter"]
SLURMD = contract.PORTS["slurmd"]
REPO = Path(__file__).resolve().parents[5]
PROBE = (REPO / "tests" / "tcp_probe.py").read_text()  # prints "open" or the error's name


def address(host):
    return host.check_output("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -n1")


def connect(host, source, port):
    """What a TCP connection from host `source` to the node's port gives: open, or the error's name."""
    return host.get_host(f"podman://{source}").check_output("python3 -c %s %s %s", PROBE, address(host), str(port))


def listen(host, port):
    host.check_output(
        f"systemd-run --unit=fwtest-{port} --collect python3 -m http.server {port} --bind 0.0.0.0 || true"
    )
    wait = f"for i in $(seq 50); do ss -Hltn 'sport = :{port}' | grep -q . && exit 0; sleep 0.1; done; exit 1"
    host.check_output(wait)


def refused(host):
    table = json.loads(host.check_output("nft -j list counter inet magellan_firewall refused"))
    return next(e["counter"]["packets"] for e in table["nftables"] if "counter" in e)


def test_the_service_loads_the_rules_at_boot(host):
    assert host.service("magellan-firewall").is_enabled
    assert host.service("magellan-firewall").is_running
    assert host.run("nft list table inet magellan_firewall").rc == 0


def test_the_nodes_own_table_stays(host):
    assert host.run("nft list table inet site_own").rc == 0


def test_the_exporter_port_is_open_to_prometheus_only(host):
    listen(host, NODE_EXPORTER)
    before = refused(host)
    assert connect(host, PROM, NODE_EXPORTER) == "open"
    assert connect(host, CTL, NODE_EXPORTER) == "ConnectionRefusedError"
    assert refused(host) > before


def test_slurmd_is_open_to_the_cluster_only(host):
    listen(host, SLURMD)
    assert connect(host, CTL, SLURMD) == "open"
    assert connect(host, PROM, SLURMD) == "ConnectionRefusedError"


def test_a_port_no_rule_names_is_closed_to_everyone(host):
    listen(host, 8000)
    assert connect(host, PROM, 8000) == "ConnectionRefusedError"
    assert connect(host, CTL, 8000) == "ConnectionRefusedError"
    assert connect(host, NODE, 8000) == "open"  # the node itself, over loopback


def test_the_sites_own_rule_and_ssh_name_their_sources(host):
    rules = host.check_output("nft list chain inet magellan_firewall input")  # as the kernel holds them
    assert 'ip saddr 192.0.2.0/24 tcp dport 1094 accept comment "xrootd from the controller"' in rules
    assert 'ip saddr 192.0.2.1 tcp dport 22 accept comment "ssh from the controller"' in rules


def test_a_node_that_turns_it_off_has_no_table_and_no_service_left(host):
    ctl = host.get_host(f"podman://{CTL}")
    assert ctl.run("nft list table inet magellan_firewall").rc != 0
    assert not ctl.file("/etc/systemd/system/magellan-firewall.service").exists
    assert not ctl.file("/etc/magellan/firewall.nft").exists
    listen(ctl, 8001)
    assert connect(ctl, NODE, 8001) == "open"  # nothing refused any more
