"""Pure parsers of what the storage exporter reads: /proc/diskstats, /proc/mdstat, the md and queue files of sysfs,
and `smartctl --json` output. Each takes text and returns dataclasses; bad input raises ParseError (a ValueError)
or, for the line-oriented files, is returned as (line number, problem) pairs next to what could be used.

References: Linux Documentation/admin-guide/iostats.rst (diskstats), Documentation/admin-guide/md.rst (md sysfs),
drivers/md/md.c md_seq_show/status_resync (mdstat), smartctl(8) and its JSON output (smartmontools >= 7.0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from magellan.contract import COUNT_MAX, parse_count

SECTOR = 512  # diskstats and md count 512-byte sectors whatever the device's block size (iostats.rst, md.rst)
Problems = list[tuple[int, str]]  # (line number, what was wrong)


class ParseError(ValueError):
    """Storage input that cannot be used."""


def _count(text: str, what: str) -> int:
    try:
        return parse_count(text)
    except ValueError as exc:
        raise ParseError(f"{what}: {exc}") from None


# --- /proc/diskstats ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskStats:
    """One line of /proc/diskstats. `issued_only` is the 4-field partition form of Linux 2.6.0-2.6.24 (reads and
    writes issued, sectors read and written; iostats.rst "Disks vs Partitions"): the other figures are None then,
    and so are the discard (4.18+) and flush (5.5+) figures of an older kernel."""

    major: int
    minor: int
    device: str
    reads: int  # completed (issued, in the 4-field form)
    read_sectors: int
    writes: int
    write_sectors: int
    issued_only: bool = False
    reads_merged: int | None = None
    read_ms: int | None = None
    writes_merged: int | None = None
    write_ms: int | None = None
    in_flight: int | None = None
    io_ms: int | None = None
    weighted_io_ms: int | None = None  # field 11: the integral of the queue depth over time, in ms
    discards: int | None = None
    discards_merged: int | None = None
    discard_sectors: int | None = None
    discard_ms: int | None = None
    flushes: int | None = None
    flush_ms: int | None = None


_FULL = ("reads", "reads_merged", "read_sectors", "read_ms", "writes", "writes_merged", "write_sectors", "write_ms",
         "in_flight", "io_ms", "weighted_io_ms", "discards", "discards_merged", "discard_sectors", "discard_ms",
         "flushes", "flush_ms")  # fmt: skip
_SHORT = ("reads", "read_sectors", "writes", "write_sectors")
_FIELD_COUNTS = (4, 11, 15, 17)  # 2.6 partitions, 2.6+, 4.18+ (discards), 5.5+ (flushes); later kernels may add


def parse_diskstats_line(line: str) -> DiskStats:
    """`major minor name` and 4, 11, 15 or 17 or more figures (fields a newer kernel adds are ignored)."""
    parts = line.split()
    n = len(parts) - 3
    if n < 4 or (n not in _FIELD_COUNTS and n < 17):
        raise ParseError(f"{len(parts)} columns: expected 3 + 4, 11, 15 or 17 or more")
    major, minor = _count(parts[0], "major"), _count(parts[1], "minor")
    names = _SHORT if n == 4 else _FULL[: min(n, len(_FULL))]
    figures = {name: _count(parts[3 + i], name) for i, name in enumerate(names)}
    device = parts[2]
    if "\ufffd" in device or not device.isprintable():
        raise ParseError(f"device name {device[:40]!r} is not printable UTF-8")
    return DiskStats(major=major, minor=minor, device=device, issued_only=n == 4, **figures)


def parse_diskstats(text: str, skip: Callable[[str], bool] | None = None) -> tuple[list[DiskStats], Problems]:
    """Every usable line of /proc/diskstats, and the problems of the others (a device named twice keeps its first
    line); the lines of a device `skip` names are left unread (a scrape then costs what it reports)."""
    stats: list[DiskStats] = []
    problems: Problems = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if skip is not None:
            name = line.split(None, 3)[2:3]
            if name and skip(name[0]):
                continue
        try:
            s = parse_diskstats_line(line)
        except ParseError as exc:
            problems.append((number, str(exc)))
            continue
        if s.device in seen:
            problems.append((number, f"device {s.device!r} twice"))
            continue
        seen.add(s.device)
        stats.append(s)
    return stats, problems


# --- /sys/block/<dev>/queue -----------------------------------------------------------------------------------------


def parse_scheduler(text: str) -> str:
    """The active I/O scheduler of queue/scheduler: the one in [brackets] ("mq-deadline kyber [bfq] none" -> bfq,
    "[none] mq-deadline" -> none), or the only word of a queue that offers one."""
    words = text.split()
    active = [w[1:-1] for w in words if len(w) > 2 and w[0] == "[" and w[-1] == "]"]
    if len(active) == 1 and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", active[0]):
        return active[0]
    if not active and len(words) == 1 and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", words[0]):
        return words[0]
    raise ParseError(f"scheduler {text.strip()[:60]!r}: expected one name in [brackets]")


def parse_flag(text: str) -> bool:
    """A sysfs 0/1 file (queue/rotational)."""
    value = text.strip()
    if value not in ("0", "1"):
        raise ParseError(f"{value[:20]!r}: expected 0 or 1")
    return value == "1"


def parse_sysfs_count(text: str) -> int:
    """A sysfs file holding one unsigned integer."""
    return _count(text.strip(), "value")


# --- /sys/block/mdX/md (md.rst) ---------------------------------------------------------------------------------------

ARRAY_STATES = ("clear", "inactive", "suspended", "readonly", "read-auto", "clean", "active", "write-pending",
                "active-idle", "broken")  # fmt: skip
SYNC_ACTIONS = ("idle", "resync", "recover", "check", "repair", "reshape", "frozen")


def parse_array_state(text: str) -> str:
    value = text.strip()
    if value not in ARRAY_STATES:
        raise ParseError(f"array_state {value[:30]!r}: expected one of {', '.join(ARRAY_STATES)}")
    return value


def parse_sync_action(text: str) -> str:
    value = text.strip()
    if value not in SYNC_ACTIONS:
        raise ParseError(f"sync_action {value[:30]!r}: expected one of {', '.join(SYNC_ACTIONS)}")
    return value


@dataclass(frozen=True)
class SyncCompleted:
    """md/sync_completed: "none" (nothing running), "delayed" (waiting for another array on the same disks), or
    "done / total" in 512-byte sectors."""

    done: int | None = None
    total: int | None = None
    delayed: bool = False


def parse_sync_completed(text: str) -> SyncCompleted:
    value = text.strip()
    if value == "none":
        return SyncCompleted()
    if value == "delayed":
        return SyncCompleted(delayed=True)
    done, sep, total = value.partition("/")
    if not sep:
        raise ParseError(f"sync_completed {value[:40]!r}: expected none, delayed or 'done / total'")
    d, t = _count(done.strip(), "sync_completed done"), _count(total.strip(), "sync_completed total")
    if t == 0 or d > t:
        raise ParseError(f"sync_completed {value[:40]!r}: done must be at most a total above 0")
    return SyncCompleted(done=d, total=t)


def parse_raid_disks(text: str) -> int | None:
    """md/raid_disks: a number, "new (old)" while a reshape changes it (the new one is taken), or empty when not
    known yet (a container)."""
    value = text.strip()
    if not value:
        return None
    m = re.fullmatch(r"([0-9]{1,9})(?: \(([0-9]{1,9})\))?", value)
    if m is None:
        raise ParseError(f"raid_disks {value[:30]!r}: expected N or 'N (old)'")
    return int(m.group(1))


def parse_sync_speed(text: str) -> int | None:
    """md/sync_speed in KiB/s, or None when nothing runs ("none")."""
    value = text.strip()
    return None if value == "none" else _count(value, "sync_speed")


def parse_speed_limit(text: str) -> int:
    """md/sync_speed_min or _max: "KiB/s (system)" or "KiB/s (local)"."""
    m = re.fullmatch(r"([0-9]{1,19}) \((?:system|local)\)", text.strip())
    if m is None:
        raise ParseError(f"speed limit {text.strip()[:40]!r}: expected 'N (system)' or 'N (local)'")
    return _count(m.group(1), "speed limit")


MEMBER_FLAG = re.compile(r"[a-z_]{1,32}")  # faulty, in_sync, spare, write_mostly, blocked, ... (md.c state_show)


def parse_member_state(text: str) -> frozenset[str]:
    """md/dev-<member>/state: a comma-separated list of flags, e.g. "in_sync" or "faulty,write_error"; a member
    that is neither in_sync, faulty nor a journal shows "spare" (md.c state_show), a rebuilding one included."""
    flags = frozenset(f for f in text.strip().split(",") if f)
    if not flags or not all(MEMBER_FLAG.fullmatch(f) for f in flags):
        raise ParseError(f"member state {text.strip()[:40]!r}: expected comma-separated flags such as in_sync")
    return flags


def parse_member_slot(text: str) -> bool:
    """md/dev-<member>/slot: the position the member fills in the array, or "none" when it fills none (a spare, a
    failed member; md.rst): True when it fills one. A member neither in sync nor faulty that fills a slot is being
    rebuilt into it (its state file says "spare" all the same)."""
    value = text.strip()
    if value == "none":
        return False
    _count(value, "slot")
    return True


# --- /dev/md (udev's 63-md-raid-arrays.rules) -------------------------------------------------------------------------

_MD_DEVICE = re.compile(r"md[A-Za-z0-9_]{1,32}")  # a kernel md device (md127, md_home), or one's partition (md127p1)
MD_NAME_MAX = 64  # mdadm allows 32 characters; a <host>: prefix comes on top


def parse_md_links(links: Iterable[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """The md name of each array from udev's links in /dev/md, given as (link name, link target) pairs, and the
    problems of the links that could not be used: ("data", "../md127") and ("otherhost:data", "../md127") both give
    {"md127": "data"}. udev links /dev/md/<name> for an array of this host and /dev/md/<homehost>:<name> for another
    host's (mdadm's MD_DEVNAME; an array assembled before the host had its name comes up that way); the <host>: prefix
    is stripped. A link to anything but an md device names nothing; a partition's link (data1 -> ../md127p1) names
    the partition, which is not an array. A link whose name is not a printable name of at most MD_NAME_MAX characters
    is a problem, and so is a second name for the same device (the first in sorted order is kept)."""
    names: dict[str, str] = {}
    problems: list[str] = []
    for link, target in sorted(links):
        device = target.rstrip("/").rpartition("/")[2]
        if not _MD_DEVICE.fullmatch(device):
            continue
        name = link.partition(":")[2] if ":" in link else link
        if not name or len(name) > MD_NAME_MAX or not name.isprintable() or any(c.isspace() for c in name):
            problems.append(f"link {link[:80]!r} -> {target[:80]!r}: not an md name")
            continue
        if names.setdefault(device, name) != name:
            problems.append(f"{device} is named both {names[device]!r} and {name!r} (link {link[:80]!r})")
    return names, problems


# --- /proc/mdstat (drivers/md/md.c md_seq_show, status_resync) --------------------------------------------------------

PERSONALITIES = frozenset({"linear", "multipath", "raid0", "raid1", "raid4", "raid5", "raid6", "raid10", "faulty"})
# mdstat's progress words -> md/sync_action's (mdstat says "resync" for a repair and "recovery" for recover)
MDSTAT_ACTIONS = {"resync": "resync", "recovery": "recover", "check": "check", "reshape": "reshape"}
_DEVICE_LINE = re.compile(r"(md[A-Za-z0-9_]{1,32}) : (active|inactive)((?: \((?:auto-)?read-only\))?)(.*)")
_MEMBER = re.compile(r"([^\s\[\]()]{1,64})\[([0-9]{1,9})\]((?:\([A-Z]\))*)")
_STATUS = re.compile(r"([0-9]{1,19}) blocks(.*)")
_DISKS = re.compile(r"\[([0-9]{1,9})/([0-9]{1,9})\] \[([U_]{1,1024})\]")
_PROGRESS = re.compile(
    r"(?:\[[=>.]{1,64}\])?\s*(resync|recovery|check|reshape)\s*=\s*([0-9]{1,3}\.[0-9])%"
    r"\s*\(([0-9]{1,19})/([0-9]{1,19})\)(?:\s*finish=([0-9]{1,12}\.[0-9])min)?(?:\s*speed=([0-9]{1,19})K/sec)?"
)
_PENDING = re.compile(r"(resync|recovery)=(PENDING|DELAYED|REMOTE)")


@dataclass(frozen=True)
class MdMember:
    name: str
    role: int
    flags: str  # the letters of its (F)aulty (S)pare (W)rite-mostly (R)eplacement (J)ournal markers, e.g. "F"


@dataclass(frozen=True)
class MdProgress:
    """The progress line of a running sync: done and total in KiB of the same unit (their ratio is the progress;
    total is per member for a resync or check of a striped array, so `done` must not be divided by the array's
    size), the kernel's estimate of the time left and its speed."""

    action: str  # as md/sync_action names it: resync, recover, check, reshape
    done_kib: int
    total_kib: int
    percent: float
    finish_seconds: float | None
    speed_kib: int | None


@dataclass(frozen=True)
class MdStat:
    name: str
    active: bool
    read_only: str | None  # "readonly" or "read-auto" (md/array_state's words), None when writable
    level: str  # the personality ("raid1"); "" for an array without one (inactive, a container)
    members: tuple[MdMember, ...]
    blocks: int | None = None  # the array's size in KiB
    raid_disks: int | None = None  # [n/m]: n, the members the array has slots for
    in_sync: int | None = None  # [n/m]: m, the members in sync
    progress: MdProgress | None = None
    pending: str | None = None  # "PENDING", "DELAYED" (or "REMOTE"): a sync waiting to start, progress 0
    pending_action: str | None = None  # the action waiting: resync or recover

    @property
    def failed(self) -> int:
        return sum("F" in m.flags for m in self.members)

    @property
    def spare(self) -> int:
        return sum("S" in m.flags and "F" not in m.flags for m in self.members)


def _device_line(line: str) -> tuple[str, bool, str | None, str, tuple[MdMember, ...]]:
    m = _DEVICE_LINE.fullmatch(line.rstrip())
    if m is None:
        raise ParseError(f"not an md device line: {line[:80]!r}")
    words = m.group(4).split()
    level = words.pop(0) if words and words[0] in PERSONALITIES else ""
    members = []
    for w in words:
        mm = _MEMBER.fullmatch(w)
        if mm is None:
            raise ParseError(f"{m.group(1)}: member {w[:40]!r} is not NAME[ROLE](FLAGS)")
        members.append(MdMember(mm.group(1), int(mm.group(2)), mm.group(3).replace("(", "").replace(")", "")))
    read_only = {"": None, " (read-only)": "readonly", " (auto-read-only)": "read-auto"}[m.group(3)]
    return m.group(1), m.group(2) == "active", read_only, level, tuple(members)


def _md_block(header: str, lines: list[str]) -> tuple[MdStat, list[str]]:
    """One array: its device line and its indented lines (status, bitmap, progress or pending)."""
    name, active, read_only, level, members = _device_line(header)
    fields: dict[str, Any] = {}
    problems = []
    for line in lines:
        text = line.strip()
        status, progress, pending = _STATUS.fullmatch(text), _PROGRESS.fullmatch(text), _PENDING.fullmatch(text)
        if status and "blocks" not in fields:
            fields["blocks"] = _count(status.group(1), "blocks")
            disks = _DISKS.search(status.group(2))
            if disks:
                fields["raid_disks"], fields["in_sync"] = int(disks.group(1)), int(disks.group(2))
        elif progress and "progress" not in fields:
            done, total = _count(progress.group(3), "done"), _count(progress.group(4), "total")
            finish, speed = progress.group(5), progress.group(6)
            fields["progress"] = MdProgress(
                MDSTAT_ACTIONS[progress.group(1)], done, total, float(progress.group(2)),
                None if finish is None else float(finish) * 60, None if speed is None else _count(speed, "speed"),
            )  # fmt: skip
        elif pending and "pending" not in fields:
            fields["pending"], fields["pending_action"] = pending.group(2), MDSTAT_ACTIONS[pending.group(1)]
        elif not text.startswith("bitmap:"):
            problems.append(f"{name}: unexpected line {text[:80]!r}")
    return MdStat(name, active, read_only, level, members, **fields), problems


def parse_mdstat(text: str) -> tuple[list[MdStat], Problems]:
    """The arrays of /proc/mdstat, and the problems of the lines that could not be used (an array whose device
    line is unusable is left out; an unusable indented line is a problem, its array is kept). Indented lines may
    start with blanks or tabs."""
    arrays: list[MdStat] = []
    problems: Problems = []
    current: tuple[int, str, list[str]] | None = None
    seen: set[str] = set()

    def close() -> None:
        if current is None:
            return
        number, header, lines = current
        try:
            array, found = _md_block(header, lines)
        except ParseError as exc:
            problems.append((number, str(exc)))
            return
        if array.name in seen:
            problems.append((number, f"{array.name} twice"))
            return
        seen.add(array.name)
        arrays.append(array)
        problems.extend((number, p) for p in found)

    for number, line in enumerate(text.splitlines(), 1):
        if "\ufffd" in line:
            problems.append((number, "not UTF-8"))
        elif not line.strip():
            close()
            current = None
        elif line[0] in " \t":
            if current is None:
                problems.append((number, f"indented line outside an array: {line.strip()[:80]!r}"))
            else:
                current[2].append(line)
        elif line.startswith(("Personalities :", "unused devices:")):
            close()
            current = None
        else:
            close()
            current = (number, line, [])
    close()
    return arrays, problems


# --- smartctl --json --------------------------------------------------------------------------------------------------

TEMPERATURE_RANGE = (-60.0, 200.0)  # degrees Celsius a drive can report; outside: not a temperature
ATA_REALLOCATED, ATA_PENDING = 5, 197  # SMART attribute ids: Reallocated_Sector_Ct, Current_Pending_Sector


@dataclass(frozen=True)
class SmartData:
    """What the exporter takes from one `smartctl --json --all DEVICE`. `available` is False when smartctl printed
    no SMART data at all (a virtual disk, a device it cannot identify); `messages` are smartctl's own."""

    exit_status: int
    messages: tuple[str, ...] = ()
    protocol: str = ""
    model: str = ""
    available: bool = False
    passed: bool | None = None
    temperature_celsius: float | None = None
    power_on_hours: int | None = None
    reallocated_sectors: int | None = None
    pending_sectors: int | None = None
    nvme_percentage_used: int | None = None
    nvme_media_errors: int | None = None
    nvme_critical_warning: int | None = None
    problems: tuple[str, ...] = field(default=())


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _label_text(value: Any) -> str:
    return value[:128] if isinstance(value, str) and value.isprintable() else ""


def parse_smartctl(text: str) -> SmartData:
    """`smartctl --json` output -> SmartData. ParseError when it is not a smartctl JSON object (no
    smartctl.exit_status); a field of the wrong type or out of range is left out and named in `problems`."""
    try:
        data = json.loads(text, parse_constant=lambda c: None)  # NaN/Infinity are not smartctl's
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"not JSON: {str(exc)[:80]}") from None
    exit_status = _get(data, "smartctl", "exit_status")
    if type(exit_status) is not int or not 0 <= exit_status <= 255:
        raise ParseError("not smartctl --json output: no smartctl.exit_status from 0 to 255")
    problems: list[str] = []

    def count(value: Any, what: str) -> int | None:
        if value is None:
            return None
        if type(value) is not int or not 0 <= value <= COUNT_MAX:
            problems.append(f"{what}: {str(value)[:40]!r} is not a count")
            return None
        return value

    messages = _get(data, "smartctl", "messages")
    texts = tuple(_label_text(_get(m, "string")) for m in messages if _get(m, "string")) if isinstance(
        messages, list) else ()  # fmt: skip
    passed = _get(data, "smart_status", "passed")
    if passed is not None and type(passed) is not bool:
        problems.append(f"smart_status.passed: {str(passed)[:40]!r} is not true or false")
        passed = None
    temperature = _get(data, "temperature", "current")
    # a range check, not math.isfinite: an integer too large for a float would raise there; NaN fails it too
    if temperature is not None and not (
        type(temperature) in (int, float) and TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]
    ):
        problems.append(f"temperature.current: {str(temperature)[:40]!r} is not a temperature")
        temperature = None
    attributes: dict[int, Any] = {}
    table = _get(data, "ata_smart_attributes", "table")
    for row in table if isinstance(table, list) else ():
        if isinstance(row, dict) and type(row.get("id")) is int:
            attributes.setdefault(row["id"], _get(row, "raw", "value"))
    nvme = _get(data, "nvme_smart_health_information_log")
    if nvme is not None and not isinstance(nvme, dict):
        problems.append("nvme_smart_health_information_log is not an object")
        nvme = None
    available = passed is not None or bool(attributes) or nvme is not None
    return SmartData(
        exit_status=exit_status,
        messages=texts,
        protocol=_label_text(_get(data, "device", "protocol")),
        model=_label_text(_get(data, "model_name")),
        available=available,
        passed=passed,
        temperature_celsius=None if temperature is None else float(temperature),
        power_on_hours=count(_get(data, "power_on_time", "hours"), "power_on_time.hours"),
        reallocated_sectors=count(attributes.get(ATA_REALLOCATED), "attribute 5 raw"),
        pending_sectors=count(attributes.get(ATA_PENDING), "attribute 197 raw"),
        nvme_percentage_used=count(_get(nvme, "percentage_used"), "percentage_used"),
        nvme_media_errors=count(_get(nvme, "media_errors"), "media_errors"),
        nvme_critical_warning=count(_get(nvme, "critical_warning"), "critical_warning"),
        problems=tuple(problems),
    )
