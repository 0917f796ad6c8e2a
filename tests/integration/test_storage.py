"""The storage node's arrays (roles storage_array, virtual_node's data disks) on the live site: built as the inventory
says, and each delivering what its members' profiles and RAID level predict (testbed.storage: the known answers)."""

from __future__ import annotations

import json
import subprocess

import pytest
from rich.console import Console

from magellan import contract
from testbed.arrays import measure, table, wait_idle
from testbed.inventory import Inventory
from testbed.prom import PromClient
from testbed.storage import BY_ID, ArrayModel, site_arrays
from tests.integration.conftest import node_shell, ssh_argv
from tests.integration.test_security import probe_from

pytestmark = pytest.mark.integration
STORAGE = "storage1"
TOLERANCE = 0.10  # the known answer: fio within +-10 % of the model


def run(site: Inventory, command: str) -> str:
    proc = node_shell(site, STORAGE, command)
    assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def arrays(site: Inventory) -> list[ArrayModel]:
    """The storage node's arrays once their initial sync is over (testbed.arrays.wait_idle)."""
    models = site_arrays(site, STORAGE)
    assert {a.name for a in models} == {"hdd", "ssd"}
    for a in models:
        wait_idle(lambda command: run(site, command), a)
    return models


def test_the_arrays_are_the_inventorys_and_healthy(site: Inventory, arrays: list[ArrayModel]) -> None:
    for a in arrays:  # one round trip per array: each costs a TCG guest a second
        md = f"/sys/block/$(basename $(readlink -f {a.device}))/md"
        disks = " ".join(f"$(basename $(readlink -f {BY_ID}{m.name}))" for m in a.members)
        out = run(
            site,
            f"mdadm --detail --export {a.device}; echo STATE=$(cat {md}/array_state) DEGRADED=$(cat {md}/degraded);"
            f" echo MOUNT=$(findmnt -no FSTYPE,OPTIONS /srv/arrays/{a.name} | tr ' ' /);"
            f" for d in {disks}; do echo DISK=$(cat /sys/block/$d/queue/rotational)/$(cat /sys/block/$d/queue/scheduler"
            " | sed 's/.*\\[\\(.*\\)\\].*/\\1/'); done",
        )
        found = dict(line.split("=", 1) for line in out.replace(" DEGRADED=", "\nDEGRADED=").splitlines())
        assert found["MD_LEVEL"] == f"raid{a.level}" and found["MD_DEVICES"] == str(len(a.members)), found
        assert (found["STATE"], found["DEGRADED"]) == ("clean", "0"), a.name
        fs, options = found["MOUNT"].split("/", 1)
        assert fs == "xfs" and "noatime" in options.split(","), (a.name, fs, options)
        # the guest sees each member's class, and the role gave it its scheduler
        disks_seen = [line.removeprefix("DISK=") for line in out.splitlines() if line.startswith("DISK=")]
        assert disks_seen == [("1/mq-deadline" if m.rotational else "0/none") for m in a.members], a.name


def test_each_array_delivers_what_its_members_and_level_predict(site: Inventory, arrays: list[ArrayModel]) -> None:
    """`testbed arrays` (testbed.arrays.measure, as make testbed runs it): fio on each array device (O_DIRECT,
    read-only) within +-10 % of the model: sequential MiB/s the sum of the members' rates (RAID 6 reads skip parity),
    random 4-KiB reads/s the sum of their IOPS; each array priced by the role's catalogue."""
    found = measure(site, STORAGE, run=lambda command: run(site, command))
    console = Console(width=250, record=True)
    console.print(table(found))
    print(console.export_text())
    for m in found:
        for pattern in ("read", "randread"):
            assert abs(m.error(pattern)) <= TOLERANCE, f"{m.array.name} {pattern} on {m.accel}: {m.error(pattern):+.1%}"
        assert m.economics is not None, f"{m.array.name}: names no catalogue model"
    hdd, ssd = sorted(found, key=lambda m: m.array.name)
    assert ssd.read_bytes_per_s / hdd.read_bytes_per_s > 3 and ssd.read_iops / hdd.read_iops > 5  # 4x and 6.25x


def test_the_catalogue_figures_of_each_array_are_in_prometheus(site: Inventory, prom: PromClient) -> None:
    """Role storage_array's textfile: node_exporter exports each priced array's figures, the dashboard's source."""
    found = {s.labels["array"]: s.labels["model"] for s in prom.query(contract.STORAGE_CATALOGUE["info"])}
    models = {a["name"]: a["model"] for a in site.hostvars[STORAGE]["storage_array_arrays"]}
    assert found == models
    usable = {s.labels["array"]: s.value for s in prom.query(contract.STORAGE_CATALOGUE["usable"])}
    assert usable == {"hdd": 32e12, "ssd": 7.68e12}  # RAID 6 of four: two data disks of 16 TB and of 3.84 TB


XROOTD_DIR = "/srv/arrays/ssd/magellan-xrootd-test"  # on the SSD array, under the storage node's export


def test_an_analysis_job_on_a_compute_node_reads_the_array_over_xrootd(site: Inventory) -> None:
    """Role xrootd: analyze on compute1 (a podman node, through the firewall) reads an events file on the SSD array as
    root://storage1/... and gets the same events and selection as from the same file read locally; head, not a node
    that runs jobs, is refused the port."""
    workload = contract.workload_command()
    local = "/tmp/magellan-xrootd-test/events.root"
    out = node_shell(site, "compute1", f"rm -rf {local.rsplit('/', 1)[0]} && mkdir -p {local.rsplit('/', 1)[0]} && "
                     f"{workload} simulate --job-id xrd-sim --jobs-dir /tmp/magellan-xrootd-test --events 2000 "
                     f"--seed 7 --output {local}")  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = subprocess.run([*ssh_argv(site, "compute1"), f"cat {local}"], capture_output=True, check=True).stdout
    served = f"{XROOTD_DIR}/events.root"
    subprocess.run([*ssh_argv(site, STORAGE), f"mkdir -p {XROOTD_DIR} && cat > {served}.partial && "
                    f"mv {served}.partial {served}"], input=data, check=True, timeout=120)  # fmt: skip
    try:
        url = f"root://{site.node(STORAGE).address}:{contract.PORTS['xrootd']}/{served}"
        figures = {}
        for name, path in (("local", local), ("xrootd", url)):
            job = node_shell(site, "compute1", f"{workload} analyze --job-id xrd-{name} "
                             f"--jobs-dir /tmp/magellan-xrootd-test --input {path}")  # fmt: skip
            assert job.returncode == 0, f"analyze --input {path}: {job.stderr[-1500:]}"
            summary = json.loads(job.stdout)
            figures[name] = (summary["events"], summary["selected"], summary["input_bytes"])
        assert figures["xrootd"] == figures["local"] and figures["local"][0] == 2000, figures
        assert figures["xrootd"][2] == len(data)
        port = contract.PORTS["xrootd"]
        assert probe_from(site, "head", site.node(STORAGE).address, port) == "ConnectionRefusedError"
    finally:
        run(site, f"rm -rf {XROOTD_DIR}")


NFS_MOUNT = "/mnt/magellan-nfs-test"


def test_a_client_guest_reads_the_array_over_nfs(site: Inventory) -> None:
    """Role nfs_export: vm1 (group nfs_clients, a guest: the host kernel has no NFS client) mounts storage1's export
    over NFSv4 through the firewall and reads a file of the SSD array with the same checksum; the export is read-only
    (a write is refused by the server, even on a read-write mount); compute1, not a client, is refused the port."""
    served = "/srv/arrays/ssd/magellan-nfs-test.bin"
    local = run(site, f"head -c 8388608 /dev/urandom > {served}.partial && mv {served}.partial {served} && "
                      f"sha256sum < {served}")  # fmt: skip
    address = site.node(STORAGE).address
    try:
        mount = node_shell(site, "vm1", f"mkdir -p {NFS_MOUNT} && mount -t nfs4 -o rw,vers=4.2 "
                           f"{address}:/srv/arrays {NFS_MOUNT} && findmnt -no FSTYPE {NFS_MOUNT}")  # fmt: skip
        assert mount.returncode == 0 and mount.stdout.split() == ["nfs4"], mount.stderr
        remote = node_shell(site, "vm1", f"sha256sum < {NFS_MOUNT}/ssd/{served.rsplit('/', 1)[1]}")
        assert remote.returncode == 0 and remote.stdout.strip() == local, remote.stderr
        write = node_shell(site, "vm1", f"touch {NFS_MOUNT}/ssd/written-over-nfs")
        assert write.returncode != 0 and "Read-only file system" in write.stderr, write
        assert run(site, "test -e /srv/arrays/ssd/written-over-nfs; echo $?") == "1"
        assert probe_from(site, "compute1", address, contract.PORTS["nfs"]) == "ConnectionRefusedError"
    finally:
        node_shell(site, "vm1", f"umount {NFS_MOUNT}")
        run(site, f"rm -f {served}")
