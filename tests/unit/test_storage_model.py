"""The storage arrays' known answers (testbed/storage.py): the model per RAID level, the arrays and profiles it reads
from the local inventory, and fio's output as a real run in the storage guest wrote it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from magellan import contract
from testbed.inventory import InventoryError, load_inventory
from testbed.storage import (
    BY_ID,
    CATALOGUE_VAR,
    FIGURES,
    MIB,
    ArrayModel,
    Member,
    array_economics,
    catalogue_exposition,
    fio_command,
    fio_read,
    parse_catalogue,
    site_arrays,
)

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


# Cost, power and reliability: role storage_array's catalogue applied to an array


def catalogue_defaults() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "roles" / "storage_array" / "defaults" / "main.yml").read_text()))


MODEL = {
    "device_class": "hdd", "capacity_tb": 16, "watts_active": 10.0, "watts_idle": 5.0, "afr_percent": 2.0,
    "price_per_tb": 20.0, "price_date": "2024-06", "sources": dict.fromkeys(FIGURES, "a data sheet"),
}  # fmt: skip


def test_the_roles_catalogue_names_a_source_for_every_figure_and_the_local_arrays_models() -> None:
    defaults = catalogue_defaults()
    models = parse_catalogue(defaults[CATALOGUE_VAR])
    assert {m.device_class for m in models.values()} == {"hdd", "ssd"}
    local = yaml.safe_load((REPO / "inventories" / "local" / "host_vars" / "storage1.yml").read_text())
    assert {a["model"] for a in local["storage_array_arrays"]} <= set(models)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"device_class": "tape"}, "hdd_x.device_class: 'tape' is not one of"),
        ({"capacity_tb": 0}, "hdd_x.capacity_tb: 0 is not a positive number"),
        ({"watts_idle": "5 W"}, "hdd_x.watts_idle: '5 W' is not a positive number"),
        ({"afr_percent": True}, "hdd_x.afr_percent: True is not a positive number"),
        ({"sources": {"capacity_tb": "x"}}, "hdd_x.sources: no source for watts_active, watts_idle, afr_percent"),
        ({"price_date": ""}, "hdd_x.price_date: a price is only meaningful with its date"),
    ],
)
def test_a_bad_catalogue_entry_is_named_with_its_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{CATALOGUE_VAR}.{message}")):
        parse_catalogue({"hdd_x": {**MODEL, **change}})


def test_an_arrays_economics_add_up_its_devices() -> None:
    model = parse_catalogue({"hdd_x": MODEL})["hdd_x"]
    e = array_economics(6, 4, 1, model, life_years=5, energy_price_per_kwh=0.10)
    assert e.devices == 5 and e.usable_bytes == 2 * 16e12  # RAID 6 of four: two data disks; the spare holds nothing
    assert e.price == 5 * 16 * 20.0 and e.per_tb(e.price) == 50.0  # 1,600 USD for 32 TB usable
    assert (e.watts_active, e.watts_idle, e.per_tb(e.watts_active)) == (50.0, 25.0, 50 / 32)
    assert e.failures_per_year == pytest.approx(0.1) and e.replacement_per_year == pytest.approx(0.1 * 320)
    energy = 50.0 * 8766 / 1000 * 0.10  # busy all year: 438.3 USD
    assert e.cost_of_ownership == pytest.approx(1600 + 5 * (energy + 32))


def test_the_catalogue_exposition_parses_and_carries_the_arrays_figures() -> None:
    model = parse_catalogue({"hdd_x": MODEL})["hdd_x"]
    text = catalogue_exposition("storage1", "tcg", [("hdd", array_economics(6, 4, 0, model, 5, 0.1))])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == set(contract.STORAGE_CATALOGUE.values())
    info = families[contract.STORAGE_CATALOGUE["info"]].samples[0]
    assert info.labels == {"node": "storage1", "platform": "tcg", "array": "hdd", "model": "hdd_x",
                           "device_class": "hdd", "level": "raid6"}  # fmt: skip
    watts = {s.labels["state"]: s.value for s in families[contract.STORAGE_CATALOGUE["watts"]].samples}
    assert watts == {"active": 40.0, "idle": 20.0}
