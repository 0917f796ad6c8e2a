"""The storage exporter's SMART collector: `smartctl --json --all DEVICE` for each disk, bounded in time and bytes
(exporters/command.py); a device smartctl reports no SMART data for (a virtual disk) is reported as such."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exporters import command
from exporters.common import Families, Family, Figure
from exporters.paths import Paths
from exporters.storage_io import DEVICE_LABELS, Problems
from exporters.storage_parsers import ParseError, SmartData, parse_smartctl

SMART_MAX = 1 << 20  # --smart.max-bytes: smartctl --json --all prints 3-60 KiB
# a smartctl run that gave no usable output; its exit status is not one (smartctl reports through its bits)
SMART_REASONS = tuple(f"smart_{r}" for r in (*command.REASONS, "parse") if r != "exit_status")


@dataclass(frozen=True)
class SmartReading:
    reason: str  # ok, no_smart, or why the smartctl run gave no usable output (not_found, exec, timeout, ...)
    data: SmartData | None = None


class SmartCollector:
    """SMART/NVMe health from `smartctl --json --all DEVICE`, each device read again after --smart.interval; all
    the runs of one scrape share --smart.timeout. A device smartctl reports no SMART data for is no_smart (0)."""

    name = "smart"

    def __init__(self, paths: Paths, node: str, problem: Problems, options: SmartOptions,
                 timer: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.paths, self.node, self.problem, self.options, self.timer = paths, node, problem, options, timer
        self._cache: dict[str, tuple[float, SmartReading]] = {}

    def devices(self) -> list[tuple[str, str]]:
        """(label, path) of the devices to read: --smart.devices, else each /sys/block entry backed by a device
        (a disk, not a loop, RAM, md or dm device)."""
        if self.options.devices:
            return [(os.path.basename(d.rstrip("/")) or d, d) for d in self.options.devices]
        block = self.paths.sysfs / "block"
        try:
            names = sorted(e.name for e in os.scandir(block) if os.path.lexists(Path(e.path) / "device"))
        except OSError as exc:
            self.problem("sysfs", f"cannot list {block} to find the disks: {exc}")
            return []
        return [(n, str(self.paths.dev / n)) for n in names]

    def _run(self, path: str, deadline: float) -> SmartReading:
        o = self.options
        remaining = deadline - self.timer()
        try:
            if remaining <= 0:
                raise command.CommandError("timeout", f"no time left for smartctl {path} within {o.timeout:g} s")
            status, out, err = command.run_status([o.smartctl, "--json", "--all", path], remaining, f"smartctl {path}",
                                                  "install smartmontools or set --smart.path", o.max_bytes,
                                                  "--smart.max-bytes")  # fmt: skip
        except command.CommandError as exc:
            self.problem(f"smart_{exc.reason}", str(exc))
            return SmartReading(exc.reason)
        try:
            data = parse_smartctl(out)
        except ParseError as exc:
            detail = f"; stderr: {err[:200]}" if err else ""
            self.problem("smart_parse", f"smartctl {path} exited {status}: {exc}{detail}")
            return SmartReading("parse")
        for p in data.problems:
            self.problem("smart_parse", f"smartctl {path}: {p}")
        if not data.available:
            self.problem.note(f"{path} has no SMART data (smartctl exit status {status}: "
                              f"{'; '.join(data.messages) or 'no message'})")  # fmt: skip
            return SmartReading("no_smart", data)
        return SmartReading("ok", data)

    def read(self) -> tuple[list[Family], bool]:
        deadline = self.timer() + self.options.timeout
        families = Families(DEVICE_LABELS)
        ok = True
        devices = self.devices()
        for label, path in devices:
            cached = self._cache.get(path)
            if cached is None or self.timer() - cached[0] >= self.options.interval or cached[1].reason not in (
                    "ok", "no_smart"):  # fmt: skip
                cached = (self.timer(), self._run(path, deadline))
                self._cache[path] = cached
            reading = cached[1]
            ok = ok and reading.reason in ("ok", "no_smart")
            labels = [self.node, label]
            doc = "1 when smartctl read the device's SMART data; 0 with the reason: no_smart (the device has none, "
            doc += "e.g. a virtual disk), or the failure of the smartctl run (not_found, timeout, parse, ...)."
            families.add([("gauge", "magellan_storage_smart_available", doc, float(reading.reason == "ok"))],
                         [*labels, reading.reason], ("reason",))  # fmt: skip
            if reading.data is not None:
                families.add(_smart_figures(reading.data), labels)
                d = reading.data
                if d.available:
                    doc = "1 for each device with SMART data; protocol: ATA, NVMe or SCSI; model: its model name."
                    families.add([("gauge", "magellan_storage_smart_info", doc, 1.0)], [*labels, d.protocol, d.model],
                                 ("protocol", "model"))  # fmt: skip
        present = {p for _, p in devices}
        self._cache = {k: v for k, v in self._cache.items() if k in present}
        return list(families), ok


def _smart_figures(d: SmartData) -> list[Figure]:
    def flag(value: bool | None) -> float | None:
        return None if value is None else float(value)

    pct = d.nvme_percentage_used
    return [
        ("gauge", "magellan_storage_smart_exit_status", "smartctl's exit status: bits 3-7 report a failing disk, "
         "attributes past their threshold, and errors in its logs (smartctl(8)).", d.exit_status),
        ("gauge", "magellan_storage_smart_status_passed", "1 when the device's SMART overall health self-assessment "
         "passed, 0 when it failed.", flag(d.passed)),
        ("gauge", "magellan_storage_smart_temperature_celsius", "Current temperature of the device.",
         d.temperature_celsius),
        ("counter", "magellan_storage_smart_power_on_seconds_total", "Time the device has been powered on.",
         None if d.power_on_hours is None else d.power_on_hours * 3600.0),
        ("gauge", "magellan_storage_smart_reallocated_sectors", "ATA attribute 5 (Reallocated_Sector_Ct), raw.",
         d.reallocated_sectors),
        ("gauge", "magellan_storage_smart_pending_sectors", "ATA attribute 197 (Current_Pending_Sector), raw.",
         d.pending_sectors),
        ("gauge", "magellan_storage_smart_nvme_percentage_used_ratio", "NVMe estimate of the life used, 1 = the "
         "rated endurance (may exceed 1).", None if pct is None else pct / 100),
        ("counter", "magellan_storage_smart_nvme_media_errors_total", "NVMe unrecovered data integrity errors.",
         d.nvme_media_errors),
        ("gauge", "magellan_storage_smart_nvme_critical_warning", "NVMe critical warning bits (0: none).",
         d.nvme_critical_warning),
    ]  # fmt: skip


@dataclass
class SmartOptions:
    smartctl: str = "smartctl"
    devices: tuple[str, ...] = ()
    timeout: float = 10.0
    max_bytes: int = SMART_MAX
    interval: float = 60.0
