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
from typing import TYPE_CHECKING, Any

from magellan import contract
from testbed.exposition import text_exposition
from testbed.inventory import Inventory, InventoryError

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily

BY_ID = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_"  # QEMU's SCSI disk with serial <name>, as the guest's udev names it
MIN_MEMBERS = {0: 2, 1: 2, 5: 3, 6: 4, 10: 2}  # md RAID level -> the fewest members mdadm accepts
MIB = 1 << 20


def raid_level(value: Any) -> int:
    """An md RAID level as an inventory gives it (6, "6" or "raid6"); ValueError when it is not one md has."""
    text = str(value).removeprefix("raid")
    if isinstance(value, bool) or text not in {str(k) for k in MIN_MEMBERS}:
        raise ValueError(f"{value!r} is not one of {', '.join(str(k) for k in MIN_MEMBERS)} (md RAID levels)")
    return int(text)


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
        arrays.append(ArrayModel(host, str(raw["name"]), raid_level(raw["level"]), tuple(members)))
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


# ---------------------------------------------------------------------------------------------------------------
# Cost, power and reliability: role storage_array's device catalogue (storage_array_catalogue) applied to an array

DEVICE_CLASSES = ("hdd", "ssd", "nvme")
FIGURES = ("capacity_tb", "watts_active", "watts_idle", "afr_percent", "price_per_tb")  # each needs a source
HOURS_PER_YEAR = 8766.0  # 365.25 days
CATALOGUE_VAR = "storage_array_catalogue"


@dataclass(frozen=True)
class DeviceModel:
    """One model of the catalogue: capacity (TB, 10^12 bytes), power (W) busy and idle, annualised failure rate (%),
    price (US dollars per TB, as of price_date)."""

    key: str
    device_class: str
    capacity_tb: float
    watts_active: float
    watts_idle: float
    afr_percent: float
    price_per_tb: float
    price_date: str


def parse_catalogue(raw: Any) -> dict[str, DeviceModel]:
    """The catalogue checked: every model names its class, each figure (a number) and a source for each figure. An
    error names the model, the field, what was wrong and what to set."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{CATALOGUE_VAR} must be a mapping of model name to its figures, got {raw!r}")
    models = {}
    for key, entry in raw.items():
        where = f"{CATALOGUE_VAR}.{key}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: {entry!r} is not a mapping of the model's figures")
        if entry.get("device_class") not in DEVICE_CLASSES:
            raise ValueError(f"{where}.device_class: {entry.get('device_class')!r} is not one of {DEVICE_CLASSES}")
        values = {}
        for field in FIGURES:
            value = entry.get(field)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (
                    field != "afr_percent" and value == 0):  # fmt: skip
                raise ValueError(f"{where}.{field}: {value!r} is not a positive number")
            values[field] = float(value)
        sources = entry.get("sources")
        missing = [f for f in FIGURES if not isinstance(sources, dict) or not str(sources.get(f, "")).strip()]
        if missing:
            raise ValueError(f"{where}.sources: no source for {', '.join(missing)} (a datasheet, a published "
                             "statistic, a dated price: say where each figure comes from)")  # fmt: skip
        if not str(entry.get("price_date", "")).strip():
            raise ValueError(f"{where}.price_date: a price is only meaningful with its date (YYYY-MM)")
        models[str(key)] = DeviceModel(str(key), str(entry["device_class"]), price_date=str(entry["price_date"]),
                                       **values)  # fmt: skip
    return models


@dataclass(frozen=True)
class Economics:
    """An array of one model's devices over its service life: usable capacity, purchase price, power busy and idle,
    expected failed devices a year and their replacement, and the cost of ownership (price, the energy of running
    busy all the time at the energy price, the replacements). Not counted: enclosures, controllers, cooling (PUE),
    labour."""

    model: DeviceModel
    level: int
    devices: int  # members and spares
    usable_bytes: float
    price: float
    watts_active: float
    watts_idle: float
    failures_per_year: float
    replacement_per_year: float
    life_years: float
    cost_of_ownership: float

    def per_tb(self, value: float) -> float:
        """value per TB (10^12 bytes) usable."""
        return value / (self.usable_bytes / 1e12)


def array_economics(
    level: int, members: int, spares: int, model: DeviceModel, life_years: float, energy_price_per_kwh: float
) -> Economics:
    devices = members + spares
    price = devices * model.capacity_tb * model.price_per_tb
    failures = devices * model.afr_percent / 100
    replacement = failures * model.capacity_tb * model.price_per_tb
    energy = devices * model.watts_active * HOURS_PER_YEAR / 1000 * energy_price_per_kwh
    return Economics(
        model=model,
        level=level,
        devices=devices,
        usable_bytes=data_disks(level, members) * model.capacity_tb * 1e12,
        price=price,
        watts_active=devices * model.watts_active,
        watts_idle=devices * model.watts_idle,
        failures_per_year=failures,
        replacement_per_year=replacement,
        life_years=life_years,
        cost_of_ownership=price + life_years * (energy + replacement),
    )


def catalogue_exposition(node: str, platform: str, arrays: list[tuple[str, Economics]]) -> str:
    """The arrays' catalogue figures as Prometheus text exposition (node_exporter's textfile collector): the
    series of magellan.contract.STORAGE_CATALOGUE, labelled node, platform and array."""
    from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415 - the filter plugins import this module

    names = contract.STORAGE_CATALOGUE
    base = ["node", "platform", "array"]

    def family(role: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(names[role], doc, labels=[*base, *extra])

    info = family("info", "1 for each array the catalogue prices: its devices' model, class and RAID level.",
                  ("model", "device_class", "level"))  # fmt: skip
    usable = family("usable", "Usable bytes of the array built of the model's real devices (data disks x capacity).")
    price = family("price", "Purchase price of the array's members and spares at the catalogue's dated price (USD).")
    watts = family("watts", "Power of the array's devices by the datasheets (W), busy (active) or idle.", ("state",))
    failures = family("failures", "Expected failed devices a year: devices x annualised failure rate.")
    replacement = family("replacement", "Expected replacement cost a year (USD): failed devices x their price.")
    tco = family("tco", "Cost of ownership over the service life (USD): price, energy busy, replacements.")
    life = family("life", "Service life the cost of ownership assumes (years).")
    for name, e in arrays:
        labels = [node, platform, name]
        info.add_metric([*labels, e.model.key, e.model.device_class, f"raid{e.level}"], 1.0)
        usable.add_metric(labels, e.usable_bytes)
        price.add_metric(labels, e.price)
        watts.add_metric([*labels, "active"], e.watts_active)
        watts.add_metric([*labels, "idle"], e.watts_idle)
        failures.add_metric(labels, e.failures_per_year)
        replacement.add_metric(labels, e.replacement_per_year)
        tco.add_metric(labels, e.cost_of_ownership)
        life.add_metric(labels, e.life_years)
    return text_exposition([info, usable, price, watts, failures, replacement, tco, life])
