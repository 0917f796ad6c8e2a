"""The site's promises on the site in a box: the firewall (roles/firewall) refuses what its allow-list does not name,
seen from real hosts; the controller checks every node's SSH host key.

That the firewall lets through everything the site needs is shown by the rest of the integration tests, which run
through it: the site is built with the firewall on every node before any service listens."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from magellan import contract
from testbed.inventory import Inventory, ansible_command, ansible_env
from testbed.prom import PromClient
from tests.integration.conftest import INVENTORY, REPO, node_shell

pytestmark = pytest.mark.integration

PROBE = REPO / "tests" / "tcp_probe.py"  # prints "open" or the error's name


def probe_from(site: Inventory, source: str, address: str, port: int) -> str:
    out = node_shell(site, source, f"python3 -c {shlex.quote(PROBE.read_text())} {address} {port}")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def probe_from_controller(address: str, port: int) -> str:
    out = subprocess.run([sys.executable, str(PROBE), address, str(port)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


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


def host_key(node: str) -> str:
    """A podman node's SSH host key ("ssh-ed25519 AAAA..."), read through podman."""
    out = subprocess.run(
        ["podman", "exec", node, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"], capture_output=True, text=True, check=True
    )
    return " ".join(out.stdout.split()[:2])


def ping(host: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """ansible HOST -m ping on the local inventory, over a control socket of its own (a master connection that is
    already up would skip the host key check)."""
    env = ansible_env() | {"ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp"), "ANSIBLE_NOCOLOR": "1"}
    cmd = [ansible_command("ansible"), "-i", str(INVENTORY), host, "-m", "ping", *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=False, timeout=300)


def test_the_controller_knows_each_nodes_host_key(site: Inventory) -> None:
    known = {}
    for line in (REPO / ".testbed" / "ssh" / "known_hosts").read_text().splitlines():
        address, kind, key = line.split()[:3]
        known.setdefault(address, []).append(f"{kind} {key}")
    podman_nodes = [n for g in ("head_nodes", "compute", "hypervisors") for n in site.nodes(g)]
    assert {n.address: known.get(n.address) for n in podman_nodes} == {
        n.address: [host_key(n.name)] for n in podman_nodes
    }
    guest = site.node("vm1").address
    assert len(known.get(guest, [])) == 1 and known[guest][0].startswith("ssh-ed25519 "), known.get(guest)


def test_a_node_with_another_key_is_refused(site: Inventory, tmp_path: Path) -> None:
    """Ansible checks the host key: with a known_hosts that holds compute2's key for compute1's address, it refuses to
    talk to compute1; with the testbed's own known_hosts it talks."""
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{site.node('compute1').address} {host_key('compute2')}\n")
    refused = ping("compute1", tmp_path, "-e", f"ansible_ssh_common_args='-o UserKnownHostsFile={forged}'")
    assert refused.returncode != 0, refused.stdout
    assert "host key" in (refused.stdout + refused.stderr).lower(), refused.stdout + refused.stderr
    kept = ping("compute1", tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr


# The user each service runs as (systemd's MainPID): none of the exporters is root. The virtualisation exporter reads
# libvirt through its read-only socket, which polkit opens to any user (roles/virt_exporter/README.md, "Security");
# the storage exporter has group disk and CAP_SYS_RAWIO for smartctl, not root (roles/storage_exporter/README.md).
SERVICE_USERS = {
    ("head", "prometheus"): "prometheus",
    ("head", "magellan-accounting-exporter"): "slurm",
    ("compute1", "prometheus-node-exporter"): "prometheus",
    ("compute1", "magellan-job-exporter"): "magellan-exporter",
    ("vm1", "magellan-job-exporter"): "magellan-exporter",
    ("hv1", "magellan-virt-exporter"): "magellan-virt",
    ("storage1", "magellan-storage-exporter"): "magellan-storage",
}


def test_the_exporters_run_as_unprivileged_users(site: Inventory) -> None:
    got = {}
    for (host, unit), _ in SERVICE_USERS.items():
        out = node_shell(site, host, f'ps -o user= -p "$(systemctl show --property=MainPID --value {unit})"')
        got[host, unit] = out.stdout.strip()
    assert got == SERVICE_USERS


def test_the_storage_exporter_holds_only_what_smartctl_needs(site: Inventory) -> None:
    """roles/storage_exporter/README.md, "Security": on storage1 (virtual disks, no NVMe) the service's process has
    CAP_SYS_RAWIO and nothing else, effective, ambient and bounding, and group disk besides its own."""
    status = 'cat "/proc/$(systemctl show --property=MainPID --value magellan-storage-exporter)/status"'
    out = node_shell(site, "storage1", f"{status}; getent group disk | cut -d: -f3; id -g magellan-storage")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    rawio = f"{1 << 17:016x}"  # CAP_SYS_RAWIO is capability 17
    assert {k: fields[k].strip() for k in ("CapEff", "CapAmb", "CapBnd")} == dict.fromkeys(
        ("CapEff", "CapAmb", "CapBnd"), rawio
    )
    disk, own = lines[-2].strip(), lines[-1].strip()
    assert set(fields["Groups"].split()) - {own} == {disk}


def test_no_user_plants_a_file_that_another_users_job_reads(site: Inventory) -> None:
    """contract.user_dir: a user's jobs write their progress in a directory of the user's own, made by the first job;
    nobody else's job writes there; a progress file a user leaves at the top of the jobs directory (root's: the
    campaigns') is counted by the job exporter (owner), not read; a root job does not read an input a user left in
    the data directory."""
    jobs, data, workload = contract.JOBS_DIR, contract.DATA_DIR, contract.workload_command()

    def as_user(user: str, command: str) -> subprocess.CompletedProcess[str]:
        return node_shell(site, "compute1", f"cd /tmp && runuser -u {user} -- sh -c {shlex.quote(command)}")

    own = as_user("physicist", f"{workload} simulate --job-id it-own-dir --events 20")
    assert own.returncode == 0, own.stderr
    owner = node_shell(
        site, "compute1", f"stat -c '%U %a' {jobs}/physicist; stat -c %U {jobs}/physicist/it-own-dir.json"
    )
    assert owner.stdout.split() == ["physicist", "755", "physicist"], owner
    theirs = as_user("theorist", f"{workload} simulate --job-id it-theirs --events 5 --jobs-dir {jobs}/physicist")
    assert theirs.returncode == 2 and "owned by physicist, not by you (theorist)" in theirs.stderr, theirs.stderr

    exporter = f"http://{site.node('compute1').address}:{site.port('compute1', 'job_exporter')}/metrics"

    def scrape() -> subprocess.CompletedProcess[str]:  # from the Prometheus host, which the firewall lets in
        get = "import sys, urllib.request as u; sys.stdout.write(u.urlopen(sys.argv[1], timeout=10).read().decode())"
        out = node_shell(site, "head", f"python3 -c {shlex.quote(get)} {exporter}")
        assert out.returncode == 0, out.stderr
        return out

    def owner_errors() -> float:
        out = scrape()
        line = next(
            x
            for x in out.stdout.splitlines()
            if x.startswith("magellan_job_scrape_errors_total{") and 'reason="owner"' in x
        )
        return float(line.rsplit(" ", 1)[1])

    before = owner_errors()
    planted = as_user(
        "physicist",
        f"sed 's/it-own-dir/it-planted/' {jobs}/physicist/it-own-dir.json > {jobs}/it-planted.json && "
        f"echo 'not events' > {data}/it-planted.root",
    )
    try:
        assert planted.returncode == 0, planted.stderr
        out = scrape()
        assert 'job_id="it-own-dir"' in out.stdout and 'job_id="it-planted"' not in out.stdout
        assert owner_errors() > before
        root_job = node_shell(site, "compute1", f"cd /tmp && {workload} analyze --job-id it-root --duration 1 "
                              f"--input {data}/it-planted.root")  # fmt: skip
        assert root_job.returncode == 2 and "owned by physicist, not by root" in root_job.stderr, root_job.stderr
    finally:
        node_shell(site, "compute1", f"rm -f {jobs}/it-planted.json {data}/it-planted.root")
