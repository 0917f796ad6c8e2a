"""The storage node's arrays (roles storage_array, virtual_node's data disks) on the live site: built as the inventory
says, and each delivering what its members' profiles and RAID level predict (testbed.storage: the known answers)."""

from __future__ import annotations

import json
import time

import pytest

from testbed.inventory import Inventory
from testbed.storage import BY_ID, MIB, ArrayModel, fio_command, fio_read, site_arrays
from tests.integration.conftest import node_shell

pytestmark = pytest.mark.integration
STORAGE = "storage1"
TOLERANCE = 0.10  # the known answer: fio within +-10 % of the model


def run(site: Inventory, command: str) -> str:
    proc = node_shell(site, STORAGE, command)
    assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def arrays(site: Inventory) -> list[ArrayModel]:
    """The storage node's arrays once their initial sync is over (a resync reads every member: a measurement during
    it would share the members' budgets)."""
    models = site_arrays(site, STORAGE)
    assert {a.name for a in models} == {"hdd", "ssd"}
    deadline = time.monotonic() + 600
    for a in models:
        while (action := run(site, f"cat /sys/block/$(basename $(readlink -f {a.device}))/md/sync_action")) != "idle":
            assert time.monotonic() < deadline, f"{a.name}: still {action} after 10 min"
            time.sleep(5)
    return models


@pytest.fixture(scope="module")
def accel(site: Inventory) -> str:
    """The accelerator the storage node runs on (its local fact, written by role virtual_node): next to every figure."""
    return str(json.loads(run(site, "cat /etc/ansible/facts.d/magellan.fact"))["virtual"]["accel"])


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


@pytest.mark.parametrize("pattern", ["read", "randread"])
def test_each_array_delivers_what_its_members_and_level_predict(
    site: Inventory, arrays: list[ArrayModel], accel: str, pattern: str
) -> None:
    """fio on the array device (O_DIRECT, read-only) within +-10 % of the model: sequential MiB/s the sum of the
    members' rates (RAID 6 reads skip parity), random 4-KiB reads/s the sum of their IOPS."""
    found = {}
    for a in arrays:
        rate, iops = fio_read(run(site, fio_command(a.device, pattern)))
        measured, predicted = (rate / MIB, a.seq_read_bytes_per_s() / MIB) if pattern == "read" else (
            iops, a.random_read_iops())  # fmt: skip
        found[a.name] = (round(measured, 1), round(predicted, 1))
        assert abs(measured / predicted - 1) <= TOLERANCE, f"{a.name} {pattern} on {accel}: {found[a.name]}"
    hdd, ssd = found["hdd"], found["ssd"]
    unit = "MiB/s" if pattern == "read" else "IOPS"
    ratios = f"ssd/hdd {ssd[0] / hdd[0]:.2f} vs {ssd[1] / hdd[1]:.2f}"
    print(f"{pattern} on {accel} ({unit}, measured/predicted): {found}; {ratios}")
