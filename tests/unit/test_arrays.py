"""`testbed arrays` (testbed/arrays.py) on the local inventory's storage node, the node answering as fio and md did
in the storage guest: the arrays measured in turn once in sync, priced by the role's catalogue, and printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from testbed import arrays
from testbed.inventory import Inventory
from testbed.storage import MIB

REPO = Path(__file__).resolve().parents[2]
FIO = json.loads((REPO / "tests" / "fixtures" / "fio" / "randread-md-ssd.json").read_text())
HOST_VARS = yaml.safe_load((REPO / "inventories" / "local" / "host_vars" / "storage1.yml").read_text())
SITE = Inventory(REPO / "inventories" / "local", {"storage_nodes": ["storage1"]}, {"storage1": HOST_VARS})


def fio_answer(bw_mib: float, iops: float) -> str:
    job = FIO["jobs"][0]
    return json.dumps({**FIO, "jobs": [{**job, "read": {**job["read"], "bw_bytes": bw_mib * MIB, "iops": iops}}]})


class Node:
    """storage1 answering the commands of arrays.measure: the hdd array still resyncing at the first look."""

    def __init__(self, fact: str = '{"virtual": {"accel": "tcg"}}') -> None:
        self.fact, self.commands, self.syncs = fact, [], ["resync", "idle", "idle"]

    def __call__(self, command: str) -> str:
        self.commands.append(command)
        if command.startswith("cat /etc/ansible"):
            return self.fact
        if "sync_action" in command:
            return self.syncs.pop(0) + "\n"
        hdd = "md-name-storage1" in command and "hdd" in command
        if "--rw=read" in command:
            return fio_answer(39.0 if hdd else 158.0, 39.0 if hdd else 158.0)
        return fio_answer(0.6 if hdd else 3.8, 150.0 if hdd else 980.0)


def test_the_arrays_are_measured_once_in_sync_and_priced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arrays.time, "sleep", lambda _: None)
    node = Node()
    found = arrays.measure(SITE, "storage1", run=node)
    assert [(m.array.name, m.accel) for m in found] == [("hdd", "tcg"), ("ssd", "tcg")]
    assert [c.split()[0] for c in node.commands] == ["cat", "cat", "cat", "fio", "fio", "cat", "fio", "fio"]
    hdd, ssd = found
    assert hdd.read_bytes_per_s == 39 * MIB and hdd.read_iops == 150.0
    assert hdd.error("read") == pytest.approx(39 / 40 - 1) and ssd.error("randread") == pytest.approx(-0.02)
    assert hdd.economics is not None and ssd.economics is not None
    assert (hdd.economics.model.key, ssd.economics.model.key) == ("hdd_16tb", "ssd_3_84tb")
    # a real RAID 6 of four: two data disks of the model's capacity
    assert (hdd.economics.usable_bytes, ssd.economics.usable_bytes) == (32e12, 7.68e12)

    console = Console(width=300, record=True)
    console.print(arrays.table(found))
    text = console.export_text()
    assert "158.0 / 160 (-1%)" in text and "980 / 1000 (-2%)" in text and "$34.00" in text  # RAID 6 of 4: 2x


def test_a_node_whose_fact_is_not_role_virtual_nodes_is_named() -> None:
    with pytest.raises(arrays.ArraysError, match="is not role virtual_node's fact"):
        arrays.measure(SITE, "storage1", run=Node(fact="accel=tcg"))


def test_an_array_that_never_comes_in_sync_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr(arrays.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(arrays.time, "sleep", lambda _: None)
    node = Node()
    node.syncs = ["recover"] * 50
    with pytest.raises(arrays.ArraysError, match="array hdd is still in recover after 600 s"):
        arrays.measure(SITE, "storage1", run=node)
