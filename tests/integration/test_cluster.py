"""The local batch cluster: the comparison's jobs in Slurm's accounting and in Prometheus; CHOS and MUNGE errors."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from magellan.contract import JobRef
from testbed import cli
from testbed.inventory import Inventory
from testbed.model import Comparison
from testbed.prom import PromClient
from tests.integration.conftest import INVENTORY, REPO, ansible_playbook, node_shell

pytestmark = pytest.mark.integration


def node_of(job_id: str, run_id: str) -> str:
    ref = JobRef.parse(job_id, run_id)
    assert ref is not None, f"{job_id} is not a job of {run_id}"
    return ref.node


def test_comparison_jobs_are_in_slurm_accounting(site: Inventory, comparison: Comparison) -> None:
    run_id = comparison.parameters["run_id"]
    names = [job for r in comparison.results for job in r.job_id.split(",")]
    assert len(names) == 4, names  # two repetitions on each of two nodes
    # --name alone looks from midnight on: a campaign before midnight and this test after it found nothing.
    query = f"--starttime=now-1days --name={','.join(names)} --allocations --format=JobName,Partition,NodeList,State"
    out = node_shell(site, "head", f"sacct --allusers --noheader --parsable2 {query}")
    rows = sorted(line.split("|") for line in out.stdout.splitlines())
    expected = sorted([name, "chos", node_of(name, run_id), "COMPLETED"] for name in names)
    assert rows == expected, out.stdout + out.stderr


def test_accounting_metrics_in_prometheus(comparison: Comparison, prom: PromClient) -> None:
    # Four 20 s jobs (two per node) ran as root in partition chos: ~2 × (20 + 10) CPU-seconds.
    sel = 'user="root",partition="chos"'

    def counted() -> bool:
        done = prom.query(f'sum(magellan_accounting_jobs_total{{{sel},state="COMPLETED"}})')
        return bool(done) and done[0].value >= 4

    assert prom.wait_until(counted, timeout=90, interval=3), "the accounting exporter's jobs never reached Prometheus"
    cpu = prom.query(f"sum(magellan_accounting_cpu_seconds_total{{{sel}}})")[0].value
    wall = prom.query(f"sum(magellan_accounting_wall_seconds_total{{{sel}}})")[0].value
    assert cpu >= 50, f"cpu seconds {cpu}"
    assert wall >= 70, f"wall seconds {wall}"
    assert prom.query("magellan_accounting_up")[0].value == 1


def test_accounting_report_of_the_campaign(comparison: Comparison, tmp_path: Path) -> None:
    """`testbed accounting report` runs sacct on the head through Ansible: the campaign's jobs (root, in account
    root) are there with their CPU time, in the table and in the CSV."""
    out = tmp_path / "usage.csv"
    assert cli.main(["accounting", "report", "--inventory", str(INVENTORY), "--since", "3h", "--csv", str(out)]) == 0
    rows = {(r["account"], r["user"]): r for r in csv.DictReader(out.read_text().splitlines())}
    root = rows[("root", "root")]
    assert int(root["jobs"]) >= 4 and float(root["cpu_hours"]) > 40 / 3600, root  # 4+ jobs of 20 s, half a CPU+


def test_slurm_node_states_in_prometheus(site: Inventory, prom: PromClient) -> None:
    """The accounting exporter's sinfo: every Slurm node of the site, in its partition, responding."""
    states = prom.query("magellan_accounting_node_state")
    assert {s.labels["slurm_node"] for s in states} >= set(site.groups["slurm_compute"]), states
    assert all(s.labels["state"] for s in states)
    responding = {s.labels["slurm_node"]: s.value for s in prom.query("magellan_accounting_node_responding")}
    assert all(responding[n] == 1 for n in site.groups["slurm_compute"]), responding


def test_nodes_and_their_jobs_may_use_every_host_cpu(site: Inventory) -> None:
    """A container node's CPU is its podman quota, not a CPU set. Two things pinned them: Mitogen's CPU policy, which
    every process of a container inherited from the Ansible run that started it (all on CPU 1), and Slurm's
    task/affinity (each node's first job on CPU 0: a concurrent comparison's jobs shared one core)."""
    host = Path("/sys/devices/system/cpu/online").read_text().strip()
    for node in ("compute1", "compute2"):
        init = node_shell(site, node, "grep Cpus_allowed_list /proc/1/status").stdout.split()
        job = node_shell(site, "head", f"srun -p chos -w {node} grep Cpus_allowed_list /proc/self/status")
        assert job.returncode == 0, job.stderr
        assert init[-1:] == [host], f"{node}: its init may use CPUs {init[-1:]}, the host has {host}"
        assert job.stdout.split()[-1:] == [host], f"{node}: a job may use CPUs {job.stdout.strip()}, the host {host}"


def test_unknown_chos_environment_is_a_clear_job_error(site: Inventory) -> None:
    res = node_shell(site, "head", "CHOS=nosuch srun -p chos -w compute1 cat /etc/debian_version")
    assert res.returncode == 2
    assert "unknown CHOS environment 'nosuch'" in res.stderr
    assert "available: bookworm, bullseye" in res.stderr


def _verify() -> str:
    proc = ansible_playbook("cluster.yml", "--tags", "verify", "--limit", "compute2,head", check=False)
    assert proc.returncode != 0, "the munge verify accepted a broken key"
    return proc.stdout


def test_munge_wrong_or_missing_key_names_the_node_and_the_fix(site: Inventory) -> None:
    key = "/etc/munge/munge.key"
    try:
        wrong = f"dd if=/dev/urandom of={key} bs=1024 count=1 2>/dev/null && systemctl restart munge"
        assert node_shell(site, "compute2", wrong).returncode == 0
        out = _verify()
        assert "Host compute2: its munge credential is rejected by head" in out
        assert "Fix: run playbooks/cluster.yml" in out

        assert node_shell(site, "compute2", f"rm -f {key}").returncode == 0
        out = _verify()
        assert f"Host compute2: {key} is missing" in out
        assert "Fix: run playbooks/cluster.yml" in out
    finally:
        # the fix the messages give, as they give it: the broken host and the key host only
        ansible_playbook("cluster.yml", "--tags", "munge_configure,munge_run", "--limit", "compute2,head")
    assert node_shell(site, "head", "srun -p chos -w compute2 true").returncode == 0


def test_root_workloads_run_through_slurm_inside_chos(site: Inventory) -> None:
    run = "srun -p chos -w compute1 /opt/magellan/venv/bin/magellan-workload"
    res = node_shell(
        site,
        "head",
        f"cd /tmp && {run} simulate --job-id it-root-sim --events 300 --output /tmp/it-root.root && "
        f"{run} analyze --job-id it-root-ana --input /tmp/it-root.root && {run} storm --job-id it-root-storm "
        "--readers 2 --input /tmp/it-root.root",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    sim, ana, *readers, storm = (json.loads(line) for line in res.stdout.splitlines() if line.startswith("{"))
    assert sorted(r["job_id"] for r in readers) == ["it-root-storm_0", "it-root-storm_1"]
    assert sim["events"] == 300 and sim["output"] == "/tmp/it-root.root"
    assert ana["events"] == 300 and ana["input_bytes"] > 0
    assert storm["readers"] == 2 and storm["failed"] == 0 and storm["events"] == 600


def test_old_chos_archives_are_pruned(site: Inventory, tmp_path: Path) -> None:
    """The CHOS environments' archives on the controller are pruned like their trees: per environment the current
    one and the newest os_tree_keep - 1 (1) others stay; an environment whose name only starts with another's
    (bookworm-x) is not touched."""
    cache = REPO / ".testbed" / "cache" / "os-trees" / "chos"
    names = ("bookworm-000000000001", "bookworm-000000000002", "bookworm-x-000000000003")  # 1, 2 and 3 days old
    planted = [cache / f"{name}.tar.zst" for name in names]
    for days, path in enumerate(planted, start=1):
        path.write_bytes(b"")
        os.utime(path, (time.time() - 86400 * days,) * 2)
    before = {p: p.stat().st_mtime for p in cache.iterdir() if re.fullmatch(r"bookworm-[0-9a-f]{12}\.tar\.zst", p.name)}
    book, current = tmp_path / "chos-archives.yml", tmp_path / "current"
    book.write_text(
        "- hosts: localhost\n  gather_facts: false\n"
        f"  vars_files: [{REPO / 'roles' / 'chos' / 'defaults' / 'main.yml'}]\n  tasks:\n"
        f"    - ansible.builtin.include_tasks: {REPO / 'roles' / 'chos' / 'tasks' / 'trees.yml'}\n"
        f"    - ansible.builtin.copy: {{content: '{{{{ _chos_archives.bookworm }}}}', dest: {current}, mode: '0644'}}\n"
    )
    try:
        ansible_playbook(str(book))
        kept = Path(current.read_text())
        others = sorted((p for p in before if p != kept), key=before.__getitem__, reverse=True)
        assert kept.exists() and not set(others[1:]) & set(cache.iterdir()), others
        assert others[0].exists() and planted[2].exists()  # the newest other, and bookworm-x's
    finally:
        for path in planted:
            path.unlink(missing_ok=True)


# Each node's monitoring services, by their key in magellan_ports (inventories/local/hosts.yml's groups).
SERVICES = {
    "head": ("prometheus", "node_exporter", "accounting_exporter"),
    "compute1": ("node_exporter", "job_exporter"),
    "hv1": ("node_exporter", "virt_exporter"),
    "vm1": ("node_exporter", "job_exporter"),
    "storage1": ("node_exporter", "storage_exporter"),
}


def test_monitoring_listens_on_the_site_address_only(site: Inventory) -> None:
    """Prometheus and every exporter listen on their node's site address (magellan_site_address), not on every
    interface: `ss` on the node lists exactly that one listener for each port."""
    wrong = {}
    for host, services in SERVICES.items():
        out = node_shell(site, host, "ss -Hltn")
        assert out.returncode == 0, (host, out.stderr)
        listening = [line.split()[3] for line in out.stdout.splitlines() if len(line.split()) > 3]
        for service in services:
            port = site.port(host, service)
            found = sorted(a for a in listening if a.rsplit(":", 1)[1] == str(port))
            if found != [f"{site.node(host).address}:{port}"]:
                wrong[f"{host} {service}"] = found
    assert not wrong, f"listeners not (only) on the site address: {wrong}"


def as_user(site: Inventory, user: str, command: str) -> subprocess.CompletedProcess[str]:
    return node_shell(site, "head", f"cd /tmp && runuser -u {user} -- sh -c {shlex.quote(command)}")


def test_the_projects_share_the_cluster_two_to_one(site: Inventory) -> None:
    """slurm_projects of the local inventory: atlas has fair share 2, theory 1, in slurmdbd as Slurm reads them."""
    out = node_shell(site, "head", "sshare --noheader --parsable2 --format=Account,User,RawShares,NormShares")
    assert out.returncode == 0, out.stderr
    shares = {
        r[0].strip(): (r[2], float(r[3])) for r in (line.split("|") for line in out.stdout.splitlines()) if not r[1]
    }
    assert shares["atlas"][0] == "2" and shares["theory"][0] == "1", shares
    assert shares["atlas"][1] == pytest.approx(2 * shares["theory"][1], rel=0.01), shares


def test_a_job_beyond_its_projects_qos_is_refused_when_submitted(site: Inventory) -> None:
    refused = as_user(site, "theorist", "sbatch -p chos --time=00:20:00 --wrap true")
    assert refused.returncode != 0
    assert "Job violates accounting/QOS policy" in refused.stderr, refused.stderr
    held = as_user(site, "theorist", "sbatch --parsable --hold -p chos --time=00:05:00 --wrap true")
    assert held.returncode == 0, held.stderr
    node_shell(site, "head", f"scancel {held.stdout.strip()}")


def test_the_project_below_its_share_goes_first(site: Inventory) -> None:
    """Fair share at work: once atlas has used the cluster and theory has not, a theory job waiting beside an atlas
    job gets the higher fair-share priority, so the scheduler starts it first. Repeated, this is what brings each
    project's usage to its share."""
    # 15 s of CPU as an atlas user (timeout ends the loop; exit 0, so that srun reports no failed task).
    burn = as_user(
        site, "physicist", "srun -p chos -w compute1 -t 2 sh -c 'timeout 15 sh -c \"while :; do :; done\"; exit 0'"
    )
    assert burn.returncode == 0, burn.stderr
    # Pending but not yet eligible (--begin): each gets its priority, and neither runs. sprio lists no such job, and
    # no held one (priority 0); squeue's %Q is the priority the scheduler orders them by. slurmctld counts the usage
    # and computes the priorities of waiting jobs again every PriorityCalcPeriod (1 minute here): allow three.
    jobs = {}
    for user in ("physicist", "theorist"):
        out = as_user(site, user, "sbatch --parsable --begin=now+1hour -p chos -t 1 --wrap true")
        assert out.returncode == 0, out.stderr
        jobs[user] = out.stdout.strip()
    queue = f"squeue --noheader --jobs={','.join(jobs.values())} --format='%i %Q'"

    def theory_first() -> bool:
        priority = {
            k: int(v) for k, v in (line.split() for line in node_shell(site, "head", queue).stdout.splitlines())
        }
        return priority[jobs["theorist"]] > priority[jobs["physicist"]]

    try:
        deadline = time.monotonic() + 200
        while not theory_first():
            shares = node_shell(site, "head", "sshare --all --noheader --parsable2").stdout
            assert time.monotonic() < deadline, node_shell(site, "head", queue).stdout + shares
            time.sleep(5)
    finally:
        node_shell(site, "head", f"scancel {' '.join(jobs.values())}")
