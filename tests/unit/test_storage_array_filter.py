"""The storage arrays' plan and the create/assemble/refuse decision (plugins/filter/storage_array.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "filter"))
import storage_array

DEFAULTS = {
    "spares": [],
    "chunk_kb": 512,
    "filesystem": "xfs",
    "mount_options": ["noatime"],
    "discard": "fstrim",
    "readahead_kb": 4096,
    "wipe": [],
    "mount_root": "/srv/arrays",
}
DISKS = [f"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_hdd{i}" for i in range(5)]
MD_MEMBER = "UUID=3c1c...\nUUID_SUB=9a...\nLABEL=storage1:hdd\nTYPE=linux_raid_member\nUSAGE=raid\n"


def plan(**array: Any) -> dict[str, Any]:
    return storage_array.storage_array_plan([{"name": "hdd", "level": 6, "members": DISKS[:4], **array}], DEFAULTS)[0]


def test_raid6_with_a_spare_is_created_aligned_to_its_stripe() -> None:
    a = plan(spares=DISKS[4:])
    assert a["device"] == "/dev/md/hdd" and a["data_disks"] == 2
    assert a["create_argv"] == [
        "mdadm", "--create", "/dev/md/hdd", "--run", "--metadata=1.2", "--name=hdd", "--level=6",
        "--raid-devices=4", "--chunk=512", "--spare-devices=1", *DISKS,
    ]  # fmt: skip
    assert a["mkfs_argv"] == ["mkfs.xfs", "-q", "-L", "hdd", "-d", "su=512k,sw=2", "/dev/md/hdd"]
    assert (a["mount_point"], a["mount_options"]) == ("/srv/arrays/hdd", "noatime,nofail")


@pytest.mark.parametrize(("level", "members", "data"), [(0, 3, 3), (1, 2, 1), (5, 4, 3), (6, 5, 3), (10, 4, 2)])
def test_data_disks_per_level(level: int, members: int, data: int) -> None:
    assert plan(level=level, members=DISKS[:members])["data_disks"] == data


def test_ext4_gets_stride_and_stripe_width_in_4k_blocks_and_raid1_no_chunk() -> None:
    a = plan(level=10, filesystem="ext4", chunk_kb=256)
    assert a["mkfs_argv"] == ["mkfs.ext4", "-q", "-L", "hdd", "-E", "stride=64,stripe_width=128", "/dev/md/hdd"]
    assert "--layout=n2" in a["create_argv"]
    mirror = plan(level=1, members=DISKS[:2], filesystem="ext4")
    assert not any(arg.startswith("--chunk") for arg in mirror["create_argv"])
    assert mirror["mkfs_argv"] == ["mkfs.ext4", "-q", "-L", "hdd", "/dev/md/hdd"]


def test_online_discard_is_a_mount_option_and_only_one_owner_of_trim() -> None:
    assert plan(discard="online", mount_point="/data/")["mount_options"] == "noatime,nofail,discard"
    assert plan(discard="online", mount_point="/data/")["mount_point"] == "/data"
    with pytest.raises(AnsibleFilterError, match="set discard: online instead"):
        plan(mount_options=["noatime", "discard"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"level": 4}, "level: 4 is not one of 0, 1, 5, 6, 10"),
        ({"level": True}, "level: True is not one of"),
        ({"members": DISKS[:3]}, "RAID 6 needs at least 4 members, got 3"),
        ({"members": "/dev/sdb"}, "members: '/dev/sdb' must be a list of device paths"),
        ({"members": ["sdb", "sdc", "sdd", "sde"]}, "must be a list of device paths"),
        ({"spares": [DISKS[0]]}, "a device is named twice"),
        ({"wipe": ["/dev/sdz"]}, r"wipe: \['/dev/sdz'\] are not members or spares"),
        ({"chunk_kb": 96}, "96 is not a power of two"),
        ({"chunk_kb": "big"}, "chunk_kb: 'big' is not a whole number >= 4"),
        ({"filesystem": "btrfs"}, "filesystem: 'btrfs' is not one of xfs, ext4"),
        ({"mount_point": "data"}, "not an absolute path below /"),
        ({"mount_point": "/"}, "not an absolute path below /"),
        ({"mount_options": "noatime"}, "must be a list of mount options"),
        ({"mount_options": ["noatime,ro"]}, "must be a list of mount options"),
        ({"discard": "weekly"}, "discard: 'weekly' is not one of fstrim, online, none"),
        ({"readahead_kb": -1}, "readahead_kb: -1 is not a whole number >= 0"),
        ({"stripe_cache_size": 8}, "stripe_cache_size: 8 is not a whole number >= 17"),
        ({"level": 10, "stripe_cache_size": 4096}, "only RAID 5 and 6 have a stripe cache"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"name": "Data Array"}, "name: must be 1-12 of a-z"),
    ],
)
def test_bad_arrays_are_named_with_the_field_and_the_fix(change: dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message) as caught:
        plan(**change)
    assert str(caught.value).startswith("roles/storage_array: storage_array_arrays: array '")


def test_names_mount_points_and_devices_are_each_used_once() -> None:
    one = {"name": "a", "level": 1, "members": DISKS[:2]}
    with pytest.raises(AnsibleFilterError, match=r"name \['a'\] is used by more than one array"):
        storage_array.storage_array_plan([one, {**one, "members": DISKS[2:4]}], DEFAULTS)
    with pytest.raises(AnsibleFilterError, match="belong to more than one array"):
        storage_array.storage_array_plan([one, {**one, "name": "b"}], DEFAULTS)
    with pytest.raises(AnsibleFilterError, match=r"mount_point .* is used by more than one array"):
        other = {**one, "name": "b", "members": DISKS[2:4], "mount_point": "/srv/arrays/a"}
        storage_array.storage_array_plan([one, other], DEFAULTS)
    with pytest.raises(AnsibleFilterError, match="must be a list of arrays"):
        storage_array.storage_array_plan({"hdd": {}}, DEFAULTS)


def probes(blkid: str = "", holders: int = 0, partitions: int = 0) -> dict[str, str]:
    return {d: f"HOLDERS={holders}\nPARTITIONS={partitions}\n{blkid}" for d in DISKS[:4]}


def actions(arrays: list[dict[str, Any]], found: dict[str, str]) -> list[dict[str, Any]]:
    """The decision on the probe's output for the devices of found, in its format (a header line per device)."""
    return storage_array.storage_array_actions(arrays, "".join(f"== {d}\n{text}" for d, text in found.items()))


def test_blank_members_are_created_ours_assembled_a_running_array_left_alone() -> None:
    a = plan()
    assert actions([a], probes()) == [{"name": "hdd", "action": "create", "device": "/dev/md/hdd", "wipe": []}]
    assert actions([a], probes(MD_MEMBER))[0]["action"] == "assemble"
    # md runs it, under the name it got at boot (before the host had its name): found by its md name, left alone
    running = {"md:hdd": "MD_DEVICE=/dev/md126\nMD_STATE=active\n", **probes(MD_MEMBER, holders=1)}
    assert actions([a], running) == [{"name": "hdd", "action": "exists", "device": "/dev/md126", "wipe": []}]


def test_an_inactive_or_doubly_assembled_array_is_an_error_with_the_way_out() -> None:
    inactive = {"md:hdd": "MD_DEVICE=/dev/md127\nMD_STATE=inactive\n", **probes(MD_MEMBER, holders=1)}
    with pytest.raises(AnsibleFilterError, match=r"assembled at /dev/md127 but inactive .* `mdadm --run /dev/md127`"):
        actions([plan()], inactive)
    twice = {"md:hdd": "MD_DEVICE=/dev/md126\nMD_STATE=clean\nMD_DEVICE=/dev/md127\nMD_STATE=clean\n"}
    with pytest.raises(AnsibleFilterError, match="assembled twice"):
        actions([plan()], twice)


@pytest.mark.parametrize(
    ("probe", "shown"),
    [
        ("HOLDERS=0\nPARTITIONS=0\nUUID=1\nTYPE=ext4\nLABEL=home\n", "TYPE=ext4, LABEL=home"),
        ("HOLDERS=0\nPARTITIONS=2\nPTUUID=x\nPTTYPE=gpt\n", "PTTYPE=gpt partitioned"),
        ("HOLDERS=0\nPARTITIONS=0\nUUID=2\nLABEL=other:scratch\nTYPE=linux_raid_member\n", "LABEL=other:scratch"),
        ("HOLDERS=1\nPARTITIONS=0\n", "in use"),
    ],
)
def test_a_member_holding_data_is_refused_naming_it_and_the_variable(probe: str, shown: str) -> None:
    found = {**probes(), DISKS[2]: probe}
    with pytest.raises(AnsibleFilterError) as caught:
        actions([plan()], found)
    message = str(caught.value)
    assert f"refusing to write on {DISKS[2]} (" in message and shown in message
    assert "list it in that array's `wipe`" in message and "Nothing was changed" in message


def test_wipe_lets_the_role_clear_a_named_member_but_never_one_in_use() -> None:
    found = {**probes(), DISKS[2]: "HOLDERS=0\nPARTITIONS=0\nTYPE=ext4\n"}
    wiped = [{"name": "hdd", "action": "create", "device": "/dev/md/hdd", "wipe": [DISKS[2]]}]
    assert actions([plan(wipe=[DISKS[2]])], found) == wiped
    found[DISKS[2]] = "HOLDERS=1\nPARTITIONS=0\nTYPE=ext4\n"
    with pytest.raises(AnsibleFilterError, match="in use"):
        actions([plan(wipe=[DISKS[2]])], found)


def test_a_missing_or_partly_replaced_member_is_an_error_with_the_way_out() -> None:
    found = probes(MD_MEMBER)
    found[DISKS[3]] = "missing\n"
    with pytest.raises(AnsibleFilterError, match=f"member {DISKS[3]} does not exist on this host"):
        actions([plan()], found)
    found[DISKS[3]] = "HOLDERS=0\nPARTITIONS=0\n"
    with pytest.raises(AnsibleFilterError, match="mdadm --assemble --run"):
        actions([plan()], found)


def test_the_probe_script_speaks_the_format_the_decision_reads() -> None:
    """The role's probe (roles/storage_array/files) on devices this host surely lacks: a header line per device, then
    `missing` (a character device is not a disk either)."""
    probe = Path(__file__).resolve().parents[2] / "roles" / "storage_array" / "files" / "storage-array-probe"
    args = ["md:magellan-no-such-array", "/dev/disk/by-id/magellan-no-such-disk", "/dev/null"]
    out = subprocess.run([probe, *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "== md:magellan-no-such-array\n== /dev/disk/by-id/magellan-no-such-disk\nmissing\n== /dev/null\nmissing\n"
    )
    parts = storage_array.split_probes(out.stdout)
    assert parts.pop("md:magellan-no-such-array") == ""
    assert {d: storage_array.parse_probe(t) for d, t in parts.items()} == {
        "/dev/disk/by-id/magellan-no-such-disk": {"missing": True},
        "/dev/null": {"missing": True},
    }


CATALOGUE = {
    "hdd_x": {"device_class": "hdd", "capacity_tb": 16, "watts_active": 10.0, "watts_idle": 5.0, "afr_percent": 1.5,
              "price_per_tb": 17.0, "price_date": "2024-06",
              "sources": dict.fromkeys(["capacity_tb", "watts_active", "watts_idle", "afr_percent", "price_per_tb"],
                                       "a data sheet")},
}  # fmt: skip
ECONOMY = {"life_years": 5, "energy_price_per_kwh": 0.13}


def test_the_catalogue_textfile_prices_the_arrays_that_name_a_model() -> None:
    unpriced = storage_array.storage_array_catalogue([plan()], CATALOGUE, ECONOMY, "s1", "tcg", "/var/lib/x/")
    assert unpriced == {"path": "/var/lib/x/magellan_storage_arrays.prom", "content": ""}  # the role removes the file
    found = storage_array.storage_array_catalogue([plan(model="hdd_x")], CATALOGUE, ECONOMY, "s1", "tcg", "/d")
    assert (
        'magellan_storage_array_catalogue_usable_bytes{array="hdd",node="s1",platform="tcg"} 3.2e+13'
        in (found["content"])
    )


@pytest.mark.parametrize(
    ("model", "economy", "message"),
    [
        ("ssd_y", ECONOMY, "array 'hdd': model: 'ssd_y' is not in storage_array_catalogue (hdd_x): add it there"),
        ("hdd_x", {**ECONOMY, "life_years": 0}, "storage_array_life_years: 0 is not a positive number"),
    ],
)
def test_a_model_or_an_economy_the_catalogue_cannot_price_is_named(
    model: str, economy: dict[str, Any], message: str
) -> None:
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        storage_array.storage_array_catalogue([plan(model=model)], CATALOGUE, economy, "s1", "tcg", "/d")
