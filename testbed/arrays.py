"""`testbed arrays`: each storage node's arrays measured side by side with fio against their known answers (what
their members' profiles and RAID level predict, testbed.storage), next to what a real array of each costs, draws
and loses to failures (role storage_array's device catalogue), with the accelerator the node runs on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from magellan import contract
from testbed.inventory import Inventory, ad_hoc
from testbed.storage import (
    CATALOGUE_VAR,
    MIB,
    ArrayModel,
    Economics,
    array_economics,
    fio_command,
    fio_read,
    parse_catalogue,
    raid_level,
    site_arrays,
)

REPO = Path(__file__).resolve().parent.parent
ROLE_DEFAULTS = REPO / "roles" / "storage_array" / "defaults" / "main.yml"  # the catalogue's owner
GROUP = "storage_nodes"
SYNC_PATIENCE = 600.0  # seconds an array's initial sync may still take before it is measured
MAGELLAN_FACT = "/etc/ansible/facts.d/magellan.fact"  # role virtual_node's local fact: {"virtual": {"accel": ...}}


class ArraysError(RuntimeError):
    """An array could not be measured (the node, fio or md said why)."""


@dataclass(frozen=True)
class Measured:
    array: ArrayModel
    accel: str
    read_bytes_per_s: float
    read_iops: float
    economics: Economics | None  # None: the array names no catalogue model

    def error(self, pattern: str) -> float:
        """Measured / predicted - 1 of a pattern (read: MiB/s, randread: IOPS)."""
        if pattern == "read":
            return self.read_bytes_per_s / self.array.seq_read_bytes_per_s() - 1
        return self.read_iops / self.array.random_read_iops() - 1


def shell(inventory: Inventory, host: str, command: str) -> str:
    """A shell command's stdout on a node (through Ansible, as every command of the testbed); ArraysError with the
    node's answer when it fails."""
    result, stderr = ad_hoc(str(inventory.path), host, "ansible.builtin.shell", command)
    if result is None or result.get("rc") != 0:
        answer = (result or {}).get("stderr") or (result or {}).get("msg") or stderr
        raise ArraysError(f"{host}: {command[:120]}: {str(answer).strip()[-600:]}")
    return str(result.get("stdout", ""))


def accelerator(run: Callable[[str], str]) -> str:
    """The accelerator the node runs on (role virtual_node's fact), or none on bare metal."""
    text = run(f"cat {MAGELLAN_FACT} 2>/dev/null || true").strip()
    try:
        return str(json.loads(text)["virtual"]["accel"]) if text else contract.BARE_METAL_ACCEL
    except (ValueError, KeyError, TypeError) as exc:
        raise ArraysError(f"{MAGELLAN_FACT} is not role virtual_node's fact: {text[:200]!r}") from exc


def wait_idle(run: Callable[[str], str], array: ArrayModel, patience: float = SYNC_PATIENCE) -> None:
    """Wait until md is done syncing the array (a resync reads every member: a measurement during it would share the
    members' budgets)."""
    deadline = time.monotonic() + patience
    while (action := run(f"cat /sys/block/$(basename $(readlink -f {array.device}))/md/sync_action").strip()) != "idle":
        if time.monotonic() > deadline:
            raise ArraysError(f"{array.host}: array {array.name} is still in {action} after {patience:.0f} s")
        time.sleep(5)


def catalogue_of(inventory: Inventory, host: str) -> dict[str, Economics]:
    """The economics of the node's arrays that name a model: the inventory's catalogue and economy, else the role's
    defaults (its owner)."""
    defaults = yaml.safe_load(ROLE_DEFAULTS.read_text())
    hv = inventory.hostvars.get(host, {})

    def var(name: str) -> Any:
        return hv.get(name, defaults[name])

    models = parse_catalogue(var(CATALOGUE_VAR))
    life, price = float(var("storage_array_service_life_years")), float(var("storage_array_energy_price_per_kwh"))
    out = {}
    for raw in hv.get("storage_array_arrays", []):
        if raw.get("model"):
            if raw["model"] not in models:
                raise ArraysError(f"{host}: array {raw['name']}: model {raw['model']!r} is not in {CATALOGUE_VAR}")
            level, spares = raid_level(raw["level"]), len(raw.get("spares", []))
            out[str(raw["name"])] = array_economics(
                level, len(raw["members"]), spares, models[raw["model"]], life, price
            )
    return out


def measure(
    inventory: Inventory,
    host: str,
    progress: Callable[[str], None] = lambda _: None,
    run: Callable[[str], str] | None = None,
) -> list[Measured]:
    """fio's sequential and random reads on each array of a storage node, one array at a time."""
    run = run or (lambda command: shell(inventory, host, command))
    accel = accelerator(run)
    priced = catalogue_of(inventory, host)
    found = []
    for a in site_arrays(inventory, host):
        progress(f"{host}: waiting for array {a.name} to be in sync")
        wait_idle(run, a)
        figures = []
        for pattern in ("read", "randread"):
            progress(f"{host}: fio {pattern} on array {a.name} ({accel})")
            try:
                figures.append(fio_read(run(fio_command(a.device, pattern))))
            except ValueError as exc:
                raise ArraysError(f"{host}: array {a.name}: {exc}") from exc
        found.append(Measured(a, accel, figures[0][0], figures[1][1], priced.get(a.name)))
    return found


def _money(value: float) -> str:
    return f"${value:,.2f}" if value < 100 else f"${value:,.0f}"


def table(found: list[Measured]) -> Table:
    t = Table(
        title="Storage arrays side by side: fio on the arrays (measured vs their members' profiles and RAID level), "
        "and a real array of each: cost, power, failures",
        caption="A local member is a throttled model of its class (rate and IOPS; not seeks, not firmware caches); "
        "$ per MB/s and per IOPS divide a real array's price by what the modelled array delivered. Energy at the "
        "active power all year; enclosures, controllers, cooling and labour are not counted.",
    )
    for col in ("node", "array", "accel", "level", "model", "seq read MiB/s", "random 4k IOPS", "$/TB", "$ per MB/s",
                "$ per IOPS", "W/TB busy", "W/TB idle", "failed/yr", "replace $/yr", "cost of ownership"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("node", "array", "accel", "model") else "right")
    for m in found:
        a, e = m.array, m.economics
        seq = f"{m.read_bytes_per_s / MIB:.1f} / {a.seq_read_bytes_per_s() / MIB:.0f} ({m.error('read'):+.0%})"
        rnd = f"{m.read_iops:.0f} / {a.random_read_iops():.0f} ({m.error('randread'):+.0%})"
        cost = ["-"] * 8
        if e is not None:
            cost = [_money(e.per_tb(e.price)), _money(e.price / (m.read_bytes_per_s / 1e6)),
                    _money(e.price / m.read_iops), f"{e.per_tb(e.watts_active):.2f}", f"{e.per_tb(e.watts_idle):.2f}",
                    f"{e.failures_per_year:.3f}", _money(e.replacement_per_year),
                    f"{_money(e.cost_of_ownership)} / {e.life_years:g} y"]  # fmt: skip
        t.add_row(a.host, a.name, m.accel, f"raid{a.level}", e.model.key if e else "-", seq, rnd, *cost)
    return t
