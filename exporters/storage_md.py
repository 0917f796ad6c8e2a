"""One md array's figures from its two sources: /proc/mdstat and /sys/block/mdX/md (md.rst).

Which source wins: sysfs, whenever it has the figure. It is the kernel's machine-readable interface: its
sync_action names a repair, a frozen array and an idle one (mdstat prints "resync" for a repair and nothing for
idle), its sync_completed counts 512-byte sectors (mdstat rounds the percentage to 0.1 % and counts KiB) and its
member states name each disk. mdstat fills what sysfs lacks (an older kernel, a tree without md sysfs files) and
is the only source of the kernel's own time estimate (finish=).

- progress: done / total of sysfs sync_completed, else of mdstat's progress line. Both are of the same unit and
  per member for a resync or check of a striped array; the array's size ("blocks") is not their total, which is
  the wrong percentage node_exporter users compute from node_md_blocks_synced / node_md_blocks.
- a sync waiting to start (mdstat resync=PENDING or =DELAYED, sysfs sync_completed "delayed") is pending with
  progress 0.
- speed: sysfs sync_speed (KiB/s), else mdstat's speed= (the same counters in md.c, averaged the same way).
- time remaining: from sysfs (sectors left / sync_speed) when it has both, else mdstat's finish= (md.c computes it
  from the same counters, rounded to 6 s).
- the array's md name (label `array`, what role storage_array and its catalogue call it): from udev's links in
  /dev/md (--collector.md.links-directory), /dev/md/<name> or /dev/md/<host>:<name> -> ../mdN; "" when no link names
  the array (no udev, an array without a name).
- each member's state (MEMBER_DOC): from its md/dev-<member>/state flags (and, for one sysfs calls a spare, its
  md/dev-<member>/slot: a spare filling a slot is being rebuilt into it), else from mdstat's markers; a member only
  one source lists is reported from that one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from exporters.common import Families, Family, Figure
from exporters.paths import Paths
from exporters.storage_io import DEVICE_LABELS, Problems, T, read_sysfs, read_text
from exporters.storage_parsers import (
    ARRAY_STATES,
    SECTOR,
    SYNC_ACTIONS,
    MdStat,
    ParseError,
    SyncCompleted,
    parse_array_state,
    parse_md_links,
    parse_mdstat,
    parse_member_slot,
    parse_member_state,
    parse_raid_disks,
    parse_speed_limit,
    parse_sync_action,
    parse_sync_completed,
    parse_sync_speed,
    parse_sysfs_count,
)

MDSTAT_MAX = 1 << 20
LINKS_MAX = 512  # entries of /dev/md read: each array's link and one a partition of it, for 256 arrays
# The state and the sync action are one series each (value 1, the current one as a label), not state sets with a
# 0 for each other value: 10 + 7 series an array would be 40 % of a scrape's series, and a scrape's cost is mostly
# the exposition of each series (issue 16: at most twice node_exporter's). magellan_storage_md_state{state=
# "inactive"} selects an inactive array as with a state set; a change of state shows as a new series.

KIB = 1024
REDUNDANT = frozenset({"raid1", "raid4", "raid5", "raid6", "raid10"})  # levels with a sync_action
RUNNING = frozenset({"resync", "recover", "check", "repair", "reshape"})
MEMBER_STATES = ("in_sync", "rebuilding", "spare", "faulty", "journal")
MEMBER_DOC = (
    "1 for each member device of the array; member: its block device, state: one of in_sync, rebuilding, spare, "
    "faulty, journal. From md/dev-<member>/state: faulty, else journal, else in_sync; a member it calls a spare is "
    "rebuilding when md/dev-<member>/slot names a slot, spare when it says none (no slot file: mdstat's (S) marks "
    "a spare, its absence a rebuilding member). A member mdstat alone lists: (F) faulty, (J) journal, (S) spare, "
    "else in_sync (mdstat does not tell a rebuilding member from an in-sync one)."
)


@dataclass(frozen=True)
class MdSysfs:
    """What /sys/block/mdX/md said; None where a file is absent (an older kernel, a level without it)."""

    name: str
    array_state: str | None = None
    level: str | None = None
    uuid: str | None = None
    raid_disks: int | None = None
    degraded: int | None = None
    sync_action: str | None = None
    sync_completed: SyncCompleted | None = None
    sync_speed_kib: int | None = None
    speed_min_kib: int | None = None
    speed_max_kib: int | None = None
    size_sectors: int | None = None  # /sys/block/mdX/size
    members: dict[str, frozenset[str]] = field(default_factory=dict)  # dev-<name>/state flags
    slots: dict[str, bool] = field(default_factory=dict)  # dev-<name>/slot of a "spare": True when it fills a slot


@dataclass(frozen=True)
class MdArray:
    """What is exported for one array; None where neither source says."""

    name: str
    state: str  # md/array_state's word (mdstat gives active, inactive, readonly or read-auto)
    level: str
    uuid: str
    sources: str  # mdstat, sysfs or mdstat+sysfs
    md_name: str = ""  # the array's md name from /dev/md ("" when no link names it)
    size_bytes: int | None = None
    active: int | None = None
    failed: int | None = None
    spare: int | None = None
    required: int | None = None
    degraded: int | None = None
    action: str | None = None
    pending: bool = False
    progress: float | None = None
    speed_bytes: float | None = None
    remaining_seconds: float | None = None
    speed_min_bytes: float | None = None
    speed_max_bytes: float | None = None
    members: tuple[tuple[str, str], ...] = ()  # (member device, its state in MEMBER_STATES), by device name


_WORD = re.compile(r"[A-Za-z0-9_.:/-]{0,64}")


def _word(text: str) -> str:
    """md/level or md/uuid: a name."""
    value = text.strip()
    if not _WORD.fullmatch(value):
        raise ParseError(f"{value[:40]!r} is not a name")
    return value


def _mdstat_state(m: MdStat) -> str:
    if not m.active:
        return "inactive"
    return m.read_only or "active"


def _mdstat_action(m: MdStat) -> str | None:
    if m.pending:
        return m.pending_action
    if m.progress:
        return m.progress.action
    return "idle" if m.active and m.level in REDUNDANT else None


def _kib(value: int | None) -> float | None:
    return None if value is None else float(value * KIB)


def _disks(m: MdStat | None, s: MdSysfs) -> tuple[int | None, ...]:
    """(active, failed, spare, required, degraded) member counts."""
    if s.members:
        flags = list(s.members.values())
        active: int | None = sum("in_sync" in f and "faulty" not in f for f in flags)
        failed: int | None = sum("faulty" in f for f in flags)
        spare: int | None = sum("spare" in f and "faulty" not in f for f in flags)
    elif m:
        failed, spare = m.failed, m.spare
        if not m.active:
            active = 0
        elif m.in_sync is not None:
            active = m.in_sync
        else:  # raid0, linear: no [n/m], every listed member that is not failed or spare works
            active = len(m.members) - failed - spare
    else:
        active = failed = spare = None
    required = s.raid_disks if s.raid_disks is not None else m.raid_disks if m else None
    if required is None and m and m.active and m.level:  # raid0, linear: every member is required
        required = len(m.members) - m.spare
    degraded = s.degraded
    if degraded is None and m and m.active and m.raid_disks is not None and m.in_sync is not None:
        degraded = max(0, m.raid_disks - m.in_sync)
    return active, failed, spare, required, degraded


def _mdstat_member(flags: str) -> str:
    """A member's state from mdstat's markers: (F)aulty, (J)ournal, (S)pare (md.c: a member without a slot)."""
    for marker, state in (("F", "faulty"), ("J", "journal"), ("S", "spare")):
        if marker in flags:
            return state
    return "in_sync"  # or rebuilding: mdstat marks neither


def _sysfs_member(flags: frozenset[str], slot: bool | None, mdstat_flags: str | None) -> str:
    """A member's state from its md/dev-<member>/state flags; md.c's state_show writes "spare" for every member
    neither faulty, in_sync nor a journal, so a spare's slot (else mdstat's (S)) tells a rebuilding one apart."""
    for state in ("faulty", "journal", "in_sync"):
        if state in flags:
            return state
    if "spare" not in flags:
        return min(flags)  # no kernel writes this: the flags name it
    if slot is None and mdstat_flags is not None:
        slot = "S" not in mdstat_flags
    return "rebuilding" if slot else "spare"


def _members(m: MdStat | None, s: MdSysfs) -> tuple[tuple[str, str], ...]:
    """(member, state) of every member either source lists, sysfs's state where it has one; a member mdstat lists
    twice (procfs's md3) counts once, as first listed."""
    listed: dict[str, str] = {}
    for member in m.members if m else ():
        listed.setdefault(member.name, member.flags)
    states = {name: _mdstat_member(flags) for name, flags in listed.items()}
    for name, flags in s.members.items():
        states[name] = _sysfs_member(flags, s.slots.get(name), listed.get(name))
    return tuple(sorted(states.items()))


def _sync(m: MdStat | None, s: MdSysfs) -> tuple[str | None, bool, float | None, float | None, float | None]:
    """(action, pending, progress, speed in bytes/s, seconds remaining) of the array's sync."""
    sc = s.sync_completed
    pending = bool(m and m.pending) or bool(sc and sc.delayed)
    action = s.sync_action or (_mdstat_action(m) if m else None)
    if pending:
        if action in (None, "idle"):
            action = (m.pending_action if m else None) or "resync"
        return action, True, 0.0, None, None
    if action not in RUNNING:
        return action, False, None, None, None
    mp = m.progress if m else None
    progress = speed = remaining = None
    if sc and sc.done is not None and sc.total:
        progress = sc.done / sc.total
    elif mp and mp.total_kib:
        progress = min(1.0, mp.done_kib / mp.total_kib)
    speed = _kib(s.sync_speed_kib) if s.sync_speed_kib is not None else _kib(mp.speed_kib) if mp else None
    if sc and sc.done is not None and sc.total and s.sync_speed_kib:
        remaining = (sc.total - sc.done) * SECTOR / (s.sync_speed_kib * KIB)
    elif mp and mp.finish_seconds is not None:
        remaining = mp.finish_seconds
    return action, False, progress, speed, remaining


def merge(mdstat: MdStat | None, sysfs: MdSysfs | None, md_name: str = "") -> MdArray:
    """The array's figures; at least one source must be given (the module's docstring says which wins); md_name: the
    array's name from /dev/md."""
    if mdstat is None and sysfs is None:
        raise ValueError("merge needs mdstat or sysfs figures")
    s = sysfs or MdSysfs(name=mdstat.name if mdstat else "")
    active, failed, spare, required, degraded = _disks(mdstat, s)
    action, pending, progress, speed, remaining = _sync(mdstat, s)
    if mdstat and mdstat.blocks is not None:
        size: int | None = mdstat.blocks * KIB
    else:
        size = None if s.size_sectors is None else s.size_sectors * SECTOR
    return MdArray(
        name=mdstat.name if mdstat else s.name,
        state=s.array_state or (_mdstat_state(mdstat) if mdstat else "inactive"),
        level=s.level or (mdstat.level if mdstat else ""),
        uuid=s.uuid or "",
        sources="+".join(k for k, v in (("mdstat", mdstat), ("sysfs", sysfs)) if v is not None), md_name=md_name,
        size_bytes=size, active=active, failed=failed, spare=spare, required=required, degraded=degraded,
        action=action, pending=pending, progress=progress, speed_bytes=speed, remaining_seconds=remaining,
        speed_min_bytes=_kib(s.speed_min_kib), speed_max_bytes=_kib(s.speed_max_kib), members=_members(mdstat, s),
    )  # fmt: skip


class MdCollector:
    """Per md array: /proc/mdstat and /sys/block/mdX/md merged, named from the links in `links` (default /dev/md;
    exporters/storage_md.py)."""

    name = "md"

    def __init__(self, paths: Paths, node: str, problem: Problems, links: Path | None = None) -> None:
        self.paths, self.node, self.problem = paths, node, problem
        self.links = paths.dev / "md" if links is None else links
        self._ok = True

    def _file(self, path: str, parse: Callable[[str], T]) -> T | None:
        before = self.problem.count
        value = read_sysfs(path, parse, self.problem, "md_sysfs")
        self._ok = self._ok and self.problem.count == before
        return value

    def sysfs(self, name: str) -> MdSysfs:
        """The files of md.rst the exporter uses, by name (paths as strings: a Path for each costs more than its
        read), and the state of each member (and the slot of a spare); the directory is listed for its dev-* members
        only."""
        block = str(self.paths.block(name))
        md = f"{block}/md"
        members: dict[str, frozenset[str]] = {}
        slots: dict[str, bool] = {}
        try:
            with os.scandir(md) as listing:
                entries = sorted(e.name for e in listing if e.name.startswith("dev-") and e.is_dir(
                    follow_symlinks=False))  # fmt: skip
        except OSError as exc:
            self.problem("md_sysfs", f"cannot list {md}: {exc}")
            self._ok, entries = False, []
        for entry in entries:
            flags = self._file(f"{md}/{entry}/state", parse_member_state)
            if flags is not None:
                members[entry[4:]] = flags
            if flags is not None and "spare" in flags:  # only then: a scrape of in-sync members reads no more
                slot = self._file(f"{md}/{entry}/slot", parse_member_slot)
                if slot is not None:
                    slots[entry[4:]] = slot
        return MdSysfs(
            name=name, array_state=self._file(f"{md}/array_state", parse_array_state),
            level=self._file(f"{md}/level", _word) or None, uuid=self._file(f"{md}/uuid", _word),
            raid_disks=self._file(f"{md}/raid_disks", parse_raid_disks),
            degraded=self._file(f"{md}/degraded", parse_sysfs_count),
            sync_action=self._file(f"{md}/sync_action", parse_sync_action),
            sync_completed=self._file(f"{md}/sync_completed", parse_sync_completed),
            sync_speed_kib=self._file(f"{md}/sync_speed", parse_sync_speed),
            speed_min_kib=self._file(f"{md}/sync_speed_min", parse_speed_limit),
            speed_max_kib=self._file(f"{md}/sync_speed_max", parse_speed_limit),
            size_sectors=self._file(f"{block}/size", parse_sysfs_count), members=members, slots=slots,
        )  # fmt: skip

    def _mdstat(self) -> dict[str, MdStat]:
        path = self.paths.procfs / "mdstat"
        try:
            text = read_text(path, MDSTAT_MAX)
        except (OSError, ValueError) as exc:
            self.problem("mdstat", f"cannot read {path}: {exc}", logging.ERROR)
            self._ok = False
            return {}
        if text is None:
            return {}  # no md driver loaded: no arrays
        arrays, problems = parse_mdstat(text)
        for number, problem in problems:
            self.problem("mdstat", f"{path} line {number}: {problem}")
        self._ok = self._ok and not problems
        return {a.name: a for a in arrays}

    def names(self) -> dict[str, str]:
        """md device -> the array's md name, from the first LINKS_MAX entries of the links directory (listed and
        readlink'ed, nothing opened); none when it does not exist (no udev, no named array). A failure is a problem
        of reason md_links, and the arrays are still reported, unnamed."""
        links: list[tuple[str, str]] = []
        try:
            with os.scandir(self.links) as entries:
                for count, entry in enumerate(entries):
                    if count == LINKS_MAX:
                        self.problem("md_links", f"{self.links} holds more than {LINKS_MAX} entries: the rest unread")
                        self._ok = False
                        break
                    if entry.is_symlink():
                        with contextlib.suppress(FileNotFoundError):  # removed since the listing: names nothing
                            links.append((entry.name, os.readlink(entry.path)))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self.problem("md_links", f"cannot read the links of {self.links}: {exc}")
            self._ok = False
            return {}
        names, problems = parse_md_links(links)
        for problem in problems:
            self.problem("md_links", f"{self.links}: {problem}")
        self._ok = self._ok and not problems
        return names

    def arrays(self) -> list[MdArray]:
        self._ok = True
        mdstat = self._mdstat()
        block = self.paths.sysfs / "block"
        try:
            with os.scandir(block) as listing:
                names = {e.name for e in listing if e.name.startswith("md") and os.path.isdir(f"{e.path}/md")}
        except FileNotFoundError:
            names = set()
        except OSError as exc:
            self.problem("md_sysfs", f"cannot list {block}: {exc}")
            self._ok, names = False, set()
        sysfs = {n: self.sysfs(n) for n in sorted(names)}
        md_names = self.names()
        return [merge(mdstat.get(n), sysfs.get(n), md_names.get(n, "")) for n in sorted(set(mdstat) | set(sysfs))]

    def read(self) -> tuple[list[Family], bool]:
        families = Families(DEVICE_LABELS)
        for a in self.arrays():
            labels = [self.node, a.name]
            doc = "1 for each md array; array: its md name (/dev/md/<name>; empty: no link names it), level: its RAID "
            doc += "level, uuid: its md uuid (empty: unknown), sources: where its figures come from."
            families.add([("gauge", "magellan_storage_md_info", doc, 1.0)], [*labels, a.md_name, a.level, a.uuid,
                         a.sources], ("array", "level", "uuid", "sources"))  # fmt: skip
            doc = f"1, with the array's state ({', '.join(ARRAY_STATES)}: md/array_state; mdstat tells active, "
            doc += "inactive, readonly and read-auto only). One series, not a state set."
            families.add([("gauge", "magellan_storage_md_state", doc, 1.0)], [*labels, a.state], ("state",))
            for state, value in (("active", a.active), ("failed", a.failed), ("spare", a.spare)):
                families.add([("gauge", "magellan_storage_md_disks", "Member disks by state: active (in sync), "
                               "failed, spare (a rebuilding member is one in sysfs, not in mdstat).", value)],
                             [*labels, state], ("state",))  # fmt: skip
            families.add(_md_figures(a), labels)
            if a.action is not None:
                doc = f"1, with the array's sync action ({', '.join(SYNC_ACTIONS)}: md/sync_action; a pending sync "
                doc += "is the action it waits to do); absent for a level without one (raid0, linear)."
                families.add([("gauge", "magellan_storage_md_sync_action", doc, 1.0)], [*labels, a.action], ("action",))
            for member, state in a.members:
                families.add([("gauge", "magellan_storage_md_member_info", MEMBER_DOC, 1.0)], [*labels, member, state],
                             ("member", "state"))  # fmt: skip
        return list(families), self._ok


def _md_figures(a: MdArray) -> list[Figure]:
    return [
        ("gauge", "magellan_storage_md_size_bytes", "Size of the array.", a.size_bytes),
        ("gauge", "magellan_storage_md_disks_required", "Member disks the array has slots for (md/raid_disks).",
         a.required),
        ("gauge", "magellan_storage_md_degraded_disks", "Slots without an in-sync member (md/degraded).", a.degraded),
        ("gauge", "magellan_storage_md_sync_pending", "1 while a sync waits to start (resync=PENDING or DELAYED).",
         None if a.action is None else float(a.pending)),
        ("gauge", "magellan_storage_md_sync_progress_ratio", "Done part of the running sync, 0 to 1 (absent when "
         "idle).", a.progress),
        ("gauge", "magellan_storage_md_sync_speed_bytes_per_second", "Speed of the running sync.", a.speed_bytes),
        ("gauge", "magellan_storage_md_sync_remaining_seconds", "Time the running sync needs at its current speed.",
         a.remaining_seconds),
        ("gauge", "magellan_storage_md_sync_speed_min_bytes_per_second", "Speed md keeps a sync at, whatever the "
         "other I/O (md/sync_speed_min).", a.speed_min_bytes),
        ("gauge", "magellan_storage_md_sync_speed_max_bytes_per_second", "Speed md holds a sync under "
         "(md/sync_speed_max).", a.speed_max_bytes),
    ]  # fmt: skip
