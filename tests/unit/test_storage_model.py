"""The storage arrays' known answers (testbed/storage.py): the model per RAID level, the arrays and profiles it reads
from the local inventory, and fio's output as a real run in the storage guest wrote it."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.inventory import InventoryError, load_inventory
from testbed.storage import BY_ID, MIB, ArrayModel, Member, fio_command, fio_read, site_arrays

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "fio"
HDD = Member("hdd", 10 * MIB, 30, True)


@pytest.mark.parametrize(
    ("level", "n", "read", "write"), [(0, 4, 40, 40), (1, 2, 10, 10), (5, 4, 40, 30), (6, 4, 40, 20), (10, 4, 40, 20)]
)
def test_each_level_adds_up_its_members(level: int, n: int, read: int, write: int) -> None:
    array = ArrayModel("s1", "a", level, (HDD,) * n)
    assert array.seq_read_bytes_per_s() == read * MIB  # throttled members spend nothing skipping parity
    assert array.seq_write_bytes_per_s() == write * MIB  # only the data disks' share carries data
    assert array.random_read_iops() == 30 * n
    assert array.rotational and array.device == "/dev/disk/by-id/md-name-s1:a"


def test_the_slowest_member_sets_the_pace() -> None:
    array = ArrayModel("s1", "mixed", 5, (HDD, HDD, Member("ssd", 40 * MIB, 300, False)))
    assert (array.seq_read_bytes_per_s(), array.random_read_iops(), array.rotational) == (30 * MIB, 90, False)


def test_the_local_storage_node_has_an_hdd_and_an_ssd_raid6() -> None:
    arrays = {a.name: a for a in site_arrays(load_inventory(REPO / "inventories" / "local"), "storage1")}
    assert sorted(arrays) == ["hdd", "ssd"]
    hdd, ssd = arrays["hdd"], arrays["ssd"]
    assert (hdd.level, len(hdd.members), hdd.rotational) == (6, 4, True)
    assert (ssd.level, len(ssd.members), ssd.rotational) == (6, 4, False)
    assert (hdd.seq_read_bytes_per_s() / MIB, hdd.random_read_iops()) == (40, 160)
    assert (ssd.seq_read_bytes_per_s() / MIB, ssd.random_read_iops()) == (160, 1000)


def test_a_member_without_a_profile_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    s1:\n      virtual_node_data_disks: [{name: d0, size_mb: 64}]\n"
        f"      storage_array_arrays: [{{name: a, level: 1, members: ['{BY_ID}d0', /dev/sdz]}}]\n"
    )
    with pytest.raises(InventoryError, match="s1: array a: member /dev/sdz is not one of the node's"):
        site_arrays(load_inventory(tmp_path), "s1")


def test_fio_reads_read_only_and_its_json_is_read() -> None:
    command = fio_command("/dev/disk/by-id/md-name-s1:hdd", "randread", seconds=5)
    assert "'--filename=/dev/disk/by-id/md-name-s1\\:hdd'" in command  # a colon would split it in two files
    assert "--readonly" in command and "--direct=1" in command and "--bs=4k" in command and "--runtime=5" in command
    rate, iops = fio_read((FIXTURES / "randread-md-ssd.json").read_text())
    assert rate > 0 and iops > 0 and abs(rate / iops - 4096) < 1
    with pytest.raises(ValueError, match="not fio's JSON output"):
        fio_read("fio: failed to open /dev/md/x")
