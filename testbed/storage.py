"""The storage arrays' known answers: what an md array of throttled members must deliver, and fio to measure it.

A member's profile (role virtual_node's QEMU throttles: a rate and an IOPS budget) and the array's RAID level predict
the array's limits, as a model of throttled devices (not of seeks or caches):
- sequential reads: md reads data chunks only, and a throttled member spends nothing skipping parity, so large
  reads that keep every member busy add up all members' rates (RAID 0, 5, 6, 10); a mirror's one stream reads from
  one member (RAID 1). This holds while a member's IOPS budget does not bind first: md reads whole chunks, so a
  member needs rate / chunk IOPS (the inventory's profiles leave room);
- random reads: every member serves its own IOPS (mirrors balance reads), so they add up at every level;
- sequential full-stripe writes: only the data disks' share of each member's rate carries data (parity and mirror
  copies take the rest).
`site_arrays` reads the arrays and their members' profiles from the inventory (roles storage_array, virtual_node).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from testbed.inventory import Inventory, InventoryError

BY_ID = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_"  # QEMU's SCSI disk with serial <name>, as the guest's udev names it
MIN_MEMBERS = {0: 2, 1: 2, 5: 3, 6: 4, 10: 2}  # md RAID level -> the fewest members mdadm accepts
MIB = 1 << 20


def data_disks(level: int, members: int) -> int:
    """Members' worth of data in a stripe of an md array (RAID 10: the near-2 layout): what its file system aligns
    to (roles/storage_array) and how many members' rates a full-stripe write carries."""
    return {0: members, 1: 1, 5: members - 1, 6: members - 2, 10: members // 2}[level] if members else 0


@dataclass(frozen=True)
class Member:
    name: str
    bytes_per_s: float
    iops: float
    rotational: bool


@dataclass(frozen=True)
class ArrayModel:
    host: str
    name: str
    level: int
    members: tuple[Member, ...]

    @property
    def data_disks(self) -> int:
        return data_disks(self.level, len(self.members))

    @property
    def device(self) -> str:
        """The array's device by its md name (<host>:<name>, as role storage_array created it), which udev links
        whatever md numbers it and whether it came up as /dev/md/<name> or /dev/md/<host>:<name>."""
        return f"/dev/disk/by-id/md-name-{self.host}:{self.name}"

    @property
    def rotational(self) -> bool:
        return all(m.rotational for m in self.members)

    def seq_read_bytes_per_s(self) -> float:
        slowest = min(m.bytes_per_s for m in self.members)
        return slowest if self.level == 1 else slowest * len(self.members)

    def random_read_iops(self) -> float:
        return min(m.iops for m in self.members) * len(self.members)

    def seq_write_bytes_per_s(self) -> float:
        return min(m.bytes_per_s for m in self.members) * self.data_disks


def _limit(profile: dict[str, Any], kind: str) -> float:
    """A member's read limit of one kind (bytes or iops) from its QEMU throttles: read_* or total_*."""
    for key in (f"read_{kind}_sec", f"total_{kind}_sec"):
        if key in profile:
            return float(profile[key])
    return float("inf")


def site_arrays(inventory: Inventory, host: str) -> list[ArrayModel]:
    """The arrays of a storage node (storage_array_arrays) with their members' profiles (virtual_node_data_disks),
    members named by their /dev/disk/by-id path."""
    hv = inventory.hostvars.get(host, {})
    disks = {d["name"]: d for d in hv.get("virtual_node_data_disks", [])}
    arrays = []
    for raw in hv.get("storage_array_arrays", []):
        members = []
        for path in raw["members"]:
            disk = disks.get(str(path).removeprefix(BY_ID))
            if not str(path).startswith(BY_ID) or disk is None:
                raise InventoryError(
                    f"{host}: array {raw['name']}: member {path} is not one of the node's virtual_node_data_disks"
                    f" ({BY_ID}<name>): its profile, and so the array's known answer, is unknown"
                )
            profile = disk.get("profile", {})
            members.append(
                Member(disk["name"], _limit(profile, "bytes"), _limit(profile, "iops"), bool(disk.get("rotational")))
            )
        arrays.append(ArrayModel(host, str(raw["name"]), int(str(raw["level"]).removeprefix("raid")), tuple(members)))
    return arrays


def fio_command(device: str, pattern: str, seconds: int | None = None) -> str:
    """fio reading a device directly (O_DIRECT: no page cache), read-only: sequential 1-MiB reads 16 deep for 10 s, or
    random 4-KiB reads 32 deep for 20 s (QEMU's IOPS throttle starts slow: a 10-s run of the HDD array gave 9.5 % less
    than a 30-s one's 5 %); JSON on stdout."""
    block, depth, default = {"read": ("1M", 16, 10), "randread": ("4k", 32, 20)}[pattern]
    seconds = seconds or default
    filename = device.replace(":", "\\:")  # fio splits --filename at colons (several files) unless escaped
    args = ["fio", f"--name={pattern}", f"--filename={filename}", f"--rw={pattern}", f"--bs={block}", "--direct=1",
            "--ioengine=libaio", f"--iodepth={depth}", f"--runtime={seconds}", "--time_based", "--readonly",
            "--output-format=json"]  # fmt: skip
    return shlex.join(args)


def fio_read(output: str) -> tuple[float, float]:
    """(bytes/s, IOPS) of the read job in fio's JSON output; ValueError when it is not there."""
    try:
        read = json.loads(output)["jobs"][0]["read"]
        return float(read["bw_bytes"]), float(read["iops"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"not fio's JSON output of a read job: {output[:200]!r}") from exc
