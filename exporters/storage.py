"""magellan-storage-exporter: block devices, md arrays, file systems and SMART health of a storage node.

Four collectors, each switched by --[no-]collector.<name>: diskstats (/proc/diskstats, with each device's
rotational flag and active I/O scheduler from /sys/block/<dev>/queue), md (/proc/mdstat and /sys/block/mdX/md;
exporters/storage_md.py says which source wins), filesystem (statvfs of the mount points it is given) and smart
(`smartctl --json --all DEVICE`, bounded in time and bytes). Every read is bounded (exporters.job.read_regular); a
source that cannot be used is counted in magellan_storage_scrape_errors_total{reason} and the rest is still
reported. A device without SMART data (a virtual disk) is reported as such, with a reason, and is not an error.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters import common, web
from exporters.common import Families, Family, Figure, Health
from exporters.paths import Paths
from exporters.storage_io import DEVICE_LABELS, LOG, Problems, Subsystem, read_sysfs, read_text
from exporters.storage_md import MdCollector
from exporters.storage_parsers import SECTOR, DiskStats, parse_diskstats, parse_flag, parse_scheduler
from exporters.storage_smart import SMART_REASONS, SmartCollector, SmartOptions
from magellan import contract

COLLECTORS = ("diskstats", "md", "filesystem", "smart")
# diskstats, mdstat: the file unreadable or a line unusable; md_sysfs, queue: a sysfs file unusable (an absent one
# is not an error); md_links: /dev/md unreadable, too large, or a link that names no array right; sysfs: /sys/block
# could not be listed to find the disks; filesystem(_timeout): statvfs failed (or did not return); smart_*: a smartctl
# run that gave no usable output (not_found, exec, timeout, too_large, parse)
ERROR_REASONS = ("diskstats", "mdstat", "md_sysfs", "md_links", "queue", "sysfs", "filesystem", "filesystem_timeout",
                 *SMART_REASONS)  # fmt: skip
DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"  # node_exporter 1.5's default: partitions
DISKSTATS_MAX = 4 << 20  # ~100 bytes a device
MS = 1e-3
ROTATIONAL_HELP = "1 for a rotational device (a disk with heads), 0 for one without (SSD, NVMe, RAM, most virtual)."
INFO_HELP = ("1 for each device; scheduler: its active I/O scheduler (none, mq-deadline, bfq, ...; empty: the device "
             "has no queue of its own, e.g. a partition).")  # fmt: skip
T = TypeVar("T")


def sysfs_name(device: str) -> str | None:
    """The /sys/block entry of a diskstats device ("cciss/c0d0" is cciss!c0d0), None for a name that is not one."""
    name = device.replace("/", "!")
    return None if name in (".", "..") or not name else name


def _disk_figures(s: DiskStats) -> list[Figure]:
    def ms(v: int | None) -> float | None:
        return None if v is None else v * MS

    completed = not s.issued_only
    return [
        ("counter", "magellan_storage_disk_reads_completed_total", "Reads completed.", s.reads if completed else None),
        ("counter", "magellan_storage_disk_writes_completed_total", "Writes completed.",
         s.writes if completed else None),
        ("counter", "magellan_storage_disk_reads_issued_total", "Reads issued to a partition (Linux < 2.6.25 keeps "
         "4 figures per partition).", None if completed else s.reads),
        ("counter", "magellan_storage_disk_writes_issued_total", "Writes issued to a partition (Linux < 2.6.25).",
         None if completed else s.writes),
        ("counter", "magellan_storage_disk_read_bytes_total", "Bytes read (512-byte sectors).",
         s.read_sectors * SECTOR),
        ("counter", "magellan_storage_disk_written_bytes_total", "Bytes written (512-byte sectors).",
         s.write_sectors * SECTOR),
        ("counter", "magellan_storage_disk_reads_merged_total", "Adjacent reads merged into one.", s.reads_merged),
        ("counter", "magellan_storage_disk_writes_merged_total", "Adjacent writes merged into one.", s.writes_merged),
        ("counter", "magellan_storage_disk_read_time_seconds_total", "Time all reads took, summed over them.",
         ms(s.read_ms)),
        ("counter", "magellan_storage_disk_write_time_seconds_total", "Time all writes took, summed over them.",
         ms(s.write_ms)),
        ("gauge", "magellan_storage_disk_in_flight_requests", "I/O requests in progress.", s.in_flight),
        ("counter", "magellan_storage_disk_io_time_seconds_total", "Time the device had I/O in progress (its rate is "
         "the utilisation).", ms(s.io_ms)),
        ("counter", "magellan_storage_disk_io_time_weighted_seconds_total", "Time integral of the requests in "
         "progress (its rate is the average queue depth; diskstats field 11).", ms(s.weighted_io_ms)),
        ("counter", "magellan_storage_disk_discards_completed_total", "Discards completed (Linux 4.18+).", s.discards),
        ("counter", "magellan_storage_disk_discards_merged_total", "Discards merged (Linux 4.18+).",
         s.discards_merged),
        ("counter", "magellan_storage_disk_discarded_bytes_total", "Bytes discarded (Linux 4.18+).",
         None if s.discard_sectors is None else s.discard_sectors * SECTOR),
        ("counter", "magellan_storage_disk_discard_time_seconds_total", "Time all discards took (Linux 4.18+).",
         ms(s.discard_ms)),
        ("counter", "magellan_storage_disk_flush_requests_total", "Flush requests completed (Linux 5.5+).",
         s.flushes),
        ("counter", "magellan_storage_disk_flush_time_seconds_total", "Time all flushes took (Linux 5.5+).",
         ms(s.flush_ms)),
    ]  # fmt: skip


class DiskstatsCollector:
    """Per block device: /proc/diskstats, and from sysfs its rotational flag and active scheduler."""

    name = "diskstats"

    def __init__(self, paths: Paths, node: str, problem: Problems, exclude: re.Pattern[str]) -> None:
        self.paths, self.node, self.problem, self.exclude = paths, node, problem, exclude

    def _queue(self, queue: str | None, attr: str, parse: Callable[[str], T]) -> T | None:
        """queue/<attr> of a device, `queue` its queue directory (None: a device name that has none)."""
        return None if queue is None else read_sysfs(f"{queue}/{attr}", parse, self.problem, "queue")

    def read(self) -> tuple[list[Family], bool]:
        path = self.paths.procfs / "diskstats"
        try:
            text = read_text(path, DISKSTATS_MAX)
        except (OSError, ValueError) as exc:
            self.problem("diskstats", f"cannot read {path}: {exc}", logging.ERROR)
            return [], False
        if text is None:
            self.problem("diskstats", f"{path} does not exist: is --path.procfs a procfs?", logging.ERROR)
            return [], False
        stats, problems = parse_diskstats(text, skip=lambda device: self.exclude.search(device) is not None)
        for number, problem in problems:
            self.problem("diskstats", f"{path} line {number}: {problem}")
        families = Families(DEVICE_LABELS)
        for s in stats:
            labels = [self.node, s.device]
            name = sysfs_name(s.device)
            queue = None if name is None else str(self.paths.block(name, "queue"))
            rotational = self._queue(queue, "rotational", parse_flag)
            families.add([*_disk_figures(s), ("gauge", "magellan_storage_disk_rotational", ROTATIONAL_HELP,
                          None if rotational is None else float(rotational))], labels)  # fmt: skip
            scheduler = self._queue(queue, "scheduler", parse_scheduler) or ""
            families.add([("gauge", "magellan_storage_disk_info", INFO_HELP, 1.0)],
                         [*labels, str(s.major), str(s.minor), scheduler], ("major", "minor", "scheduler"))  # fmt: skip
        return list(families), not problems


class FilesystemCollector:
    """statvfs of each mount point it is told about, each within a timeout: a mount whose statvfs does not return
    (a dead NFS server) is skipped until it does, so a scrape never hangs on it."""

    name = "filesystem"

    def __init__(
        self,
        node: str,
        problem: Problems,
        mounts: Sequence[str],
        timeout: float,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    ) -> None:
        self.node, self.problem, self.mounts, self.timeout, self.statvfs = node, problem, list(mounts), timeout, statvfs
        self._stuck: set[str] = set()
        self._lock = threading.Lock()

    def _statvfs(self, mount: str) -> os.statvfs_result | None:
        result: list[os.statvfs_result | OSError] = []

        def run() -> None:
            try:
                result.append(self.statvfs(mount))
            except OSError as exc:
                result.append(exc)
            with self._lock:
                self._stuck.discard(mount)

        with self._lock:
            if mount in self._stuck:
                self.problem("filesystem_timeout", f"statvfs({mount}) has not returned yet: skipped")
                return None
            self._stuck.add(mount)
        worker = threading.Thread(target=run, name=f"statvfs {mount}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not result:
            self.problem("filesystem_timeout", f"statvfs({mount}) did not return within {self.timeout:g} s")
            return None
        if isinstance(result[0], OSError):
            self.problem("filesystem", f"statvfs({mount}): {result[0]}")
            return None
        return result[0]

    def read(self) -> tuple[list[Family], bool]:
        families = Families(("node", "mountpoint"))
        ok = True
        for mount in self.mounts:
            st = self._statvfs(mount)
            if st is None:
                ok = False
                continue
            size = st.f_blocks * st.f_frsize
            families.add([
                ("gauge", "magellan_storage_filesystem_size_bytes", "Size of the file system.", size),
                ("gauge", "magellan_storage_filesystem_free_bytes", "Free space, the part only root may use included.",
                 st.f_bfree * st.f_frsize),
                ("gauge", "magellan_storage_filesystem_avail_bytes", "Free space an unprivileged user may use.",
                 st.f_bavail * st.f_frsize),
                ("gauge", "magellan_storage_filesystem_files", "Inodes of the file system.", st.f_files),
                ("gauge", "magellan_storage_filesystem_files_free", "Free inodes.", st.f_ffree),
            ], [self.node, mount])  # fmt: skip
        return list(families), ok


class Collector:
    """What each enabled collector read at this scrape, and the exporter's health: up is 1 when every one read
    its sources without a problem (a device without SMART data is not one)."""

    def __init__(
        self,
        node: str,
        build: Callable[[Problems], Sequence[Subsystem]],
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.node, self.clock, self.timer = node, clock, timer
        self.health = Health(
            "storage", {"node": node}, ERROR_REASONS, "the storage sources",
            "Unusable storage sources since the exporter started, by reason: diskstats, mdstat, md_sysfs and queue "
            "(a file unreadable or a line unusable), md_links (/dev/md unreadable or a link naming no array right), "
            "sysfs (/sys/block not listable), filesystem (statvfs failed) and filesystem_timeout, smart_* (a "
            "smartctl run without usable output).",
        )  # fmt: skip
        self.problem = Problems(self.health)
        self.subsystems = list(build(self.problem))
        self.lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self.lock:  # one scrape at a time: the caches and counters are shared
            metrics = list(self._collect())
        yield from metrics

    def _collect(self) -> Iterator[Metric]:
        start = self.timer()
        self.problem.next_scrape()
        success = GaugeMetricFamily("magellan_storage_collector_success", "1 when the collector read its sources "
                                    "without a problem at this scrape.", labels=["node", "collector"])  # fmt: skip
        duration = GaugeMetricFamily("magellan_storage_collector_duration_seconds", "Time the collector took.",
                                     labels=["node", "collector"])  # fmt: skip
        all_ok = True
        for sub in self.subsystems:
            began = self.timer()
            try:
                families, ok = sub.read()
            except Exception as exc:  # a bug must not take the other collectors down; it shows as a failure
                LOG.exception("collector %s failed", sub.name)
                families, ok = [], False
                self.problem.note(f"collector {sub.name}: {exc!r}", logging.ERROR)
            yield from families
            success.add_metric([self.node, sub.name], float(ok))
            duration.add_metric([self.node, sub.name], self.timer() - began)
            all_ok = all_ok and ok
        self.health.read(all_ok, self.clock())
        yield success
        yield duration
        yield from self.health.metrics()
        yield self.health.gauge("scrape_duration_seconds", "Time this scrape took.", self.timer() - start)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="magellan-storage-exporter", description=__doc__.splitlines()[0])
    web.add_common_flags(p, contract.PORTS["storage_exporter"])
    d, s = Paths(), SmartOptions()
    p.add_argument("--path.procfs", dest="procfs", type=Path, default=d.procfs, help="(default: %(default)s)")
    p.add_argument("--path.sysfs", dest="sysfs", type=Path, default=d.sysfs, help="(default: %(default)s)")
    for name in COLLECTORS:
        p.add_argument(f"--collector.{name}", dest=f"collector_{name}", action=argparse.BooleanOptionalAction,
                       default=True, help=f"the {name} collector (default: on)")  # fmt: skip
    p.add_argument("--collector.md.links-directory", dest="md_links", type=Path, default=d.dev / "md", metavar="DIR",
                   help="udev's links naming the md arrays, <name> -> ../mdN (default: %(default)s)")  # fmt: skip
    p.add_argument("--collector.diskstats.device-exclude", dest="exclude", type=_regex, default=DEVICE_EXCLUDE,
                   metavar="REGEX", help="devices not reported (default, node_exporter's: %(default)s)")  # fmt: skip
    p.add_argument("--collector.filesystem.mount-points", dest="mounts", type=_list, default=[], action="extend",
                   metavar="PATH,...", help="mount points to report (comma-separated, repeatable)")  # fmt: skip
    p.add_argument("--collector.filesystem.timeout", dest="fs_timeout", type=web.seconds(60), default=5.0,
                   help="time a statvfs may take (s, default %(default)s)")  # fmt: skip
    p.add_argument("--smart.path", dest="smartctl", default=s.smartctl, help="smartctl command (default: %(default)s)")
    p.add_argument("--smart.devices", dest="devices", type=_list, default=[], action="extend", metavar="DEV,...",
                   help="devices to read (comma-separated, repeatable; default: each disk of /sys/block)")  # fmt: skip
    p.add_argument("--smart.timeout", dest="smart_timeout", type=web.seconds(600), default=s.timeout,
                   help="time all smartctl runs of one scrape may take together (s, default %(default)s)")  # fmt: skip
    p.add_argument("--smart.max-bytes", dest="smart_max_bytes", type=web.count(1 << 30), default=s.max_bytes,
                   help="refuse a smartctl run that prints more (default %(default)s)")  # fmt: skip
    p.add_argument("--smart.interval", dest="smart_interval", type=web.seconds(86400), default=s.interval,
                   help="read a device's SMART data again after this long (s, default %(default)s)")  # fmt: skip
    web.add_node_flag(p)
    return p


def _regex(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: not a regular expression: {exc}") from None


def _list(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{value!r}: expected one or more comma-separated values")
    return items


def main(argv: list[str] | None = None) -> int:
    args = web.parse_args(_parser(), argv)
    paths = Paths(procfs=args.procfs, sysfs=args.sysfs)
    smart = SmartOptions(args.smartctl, tuple(args.devices), args.smart_timeout, args.smart_max_bytes,
                         args.smart_interval)  # fmt: skip

    def build(problem: Problems) -> list[Subsystem]:
        chosen: dict[str, Subsystem] = {
            "diskstats": DiskstatsCollector(paths, args.node, problem, args.exclude),
            "md": MdCollector(paths, args.node, problem, args.md_links),
            "filesystem": FilesystemCollector(args.node, problem, args.mounts, args.fs_timeout),
            "smart": SmartCollector(paths, args.node, problem, smart),
        }
        return [c for name, c in chosen.items() if getattr(args, f"collector_{name}")]

    collector = Collector(args.node, build)
    LOG.info("procfs %s, sysfs %s, node=%s, collectors: %s", paths.procfs, paths.sysfs, args.node,
             ", ".join(s.name for s in collector.subsystems) or "none")  # fmt: skip
    return web.serve(common.registry([collector], paths.self_procfs), args.listen, LOG, args.web_config)


if __name__ == "__main__":
    sys.exit(main())
