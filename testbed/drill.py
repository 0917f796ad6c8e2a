"""The disk-failure drill's figures (playbooks/drill_disk_failure.yml, `testbed drill`): what the node recorded, turned
into rebuild times and rates, the exposure window of a real disk, and whether the alert fired.

The playbook records raw: md's sysfs files (sync_action, sync_completed, sync_speed, degraded, array_state) sampled on
the storage node every half second, each phase's times on the node's clock (the sampler's), the readers' counts and
the checksums. `summarize(raw)` (also the playbook's filter drill_disk_failure_summary) turns them into the result:
- degraded at: the first sample of the phase with md/degraded > 0 (the member is gone);
- rebuild: from the first sample md recovers in after mdadm --add to the first after it that is idle with degraded 0.
  Its rate is the member's size (sync_completed's total, 512-byte sectors per member for a recovery) over that time.
  Beside it: the slope of sync_completed over the recovery's samples, and md's own sync_speed (KiB/s, md's average
  since its last mark), as a median: its first reading of a recovery covers a fraction of a second and was 20x the
  device's rate here;
- time degraded: from degraded at to clean again (pull, detection, the replacement's attach, the rebuild);
- exposure window at a real disk: a real member of the catalogue's capacity rebuilt at the measured rate. Not scaled:
  the time to notice and to fit the replacement (a site's process, minutes to days).
"""

from __future__ import annotations

import json
import statistics
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporters.storage_parsers import (
    SECTOR,
    ParseError,
    parse_array_state,
    parse_sync_action,
    parse_sync_completed,
    parse_sync_speed,
    parse_sysfs_count,
)
from testbed.inventory import REPO, ansible_command, ansible_env

if TYPE_CHECKING:
    from rich.table import Table

KIB = 1024
TB = 1e12  # a catalogue terabyte (10^12 bytes, as disks are sold)
ALERT = "MagellanArrayDegraded"  # roles/prometheus/files/magellan.rules.yml: magellan_storage_md_degraded_disks > 0
LOADS = ("idle", "readers")  # a rebuild with nothing else on the array, and one under a storm of readers
CLEAN_GRACE = 5.0  # s after the playbook saw the array whole that the sampler (0.5 s beat, a loaded guest) may take
DEFAULT_CAPACITY_TB = 16.0  # the exposure window's capacity when the array names no catalogue model


class DrillError(ValueError):
    """The drill's record lacks what a figure needs; the message says which phase and what."""


@dataclass(frozen=True)
class MdSample:
    """One reading of /sys/block/mdX/md on the node's clock; None where the file could not be read or parsed."""

    t: float
    action: str | None
    done_sectors: int | None
    total_sectors: int | None
    speed_kib: int | None
    degraded: int | None
    array_state: str | None


def _parsed(parse: Any, text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return parse(text)
    except ParseError:
        return None


def parse_sample(row: Mapping[str, Any] | str) -> MdSample:
    """A sampler line (JSON: t and the raw text of each sysfs file) parsed with the storage exporter's parsers."""
    if isinstance(row, str):
        row = json.loads(row)
    if not isinstance(row, Mapping) or not isinstance(row.get("t"), int | float):
        raise DrillError(f"not a sampler line: {row!r:.200}")
    completed = _parsed(parse_sync_completed, row.get("sync_completed"))
    return MdSample(
        t=float(row["t"]),
        action=_parsed(parse_sync_action, row.get("sync_action")),
        done_sectors=completed.done if completed else None,
        total_sectors=completed.total if completed else None,
        speed_kib=_parsed(parse_sync_speed, row.get("sync_speed")),
        degraded=_parsed(parse_sysfs_count, row.get("degraded")),
        array_state=_parsed(parse_array_state, row.get("array_state")),
    )


def parse_samples(lines: Iterable[str]) -> list[MdSample]:
    """Every well-formed sampler line, in time order (a line cut short by the sampler's stop is skipped)."""
    samples = []
    for line in lines:
        if line.strip():
            try:
                samples.append(parse_sample(line))
            except (DrillError, ValueError):
                continue
    return sorted(samples, key=lambda s: s.t)


@dataclass(frozen=True)
class Rebuild:
    """One phase of the drill: a member pulled, replaced and rebuilt, with or without readers."""

    load: str
    degraded_at: float  # node clock
    recovery_started: float
    clean_at: float
    member_bytes: int
    md_speed_median: float  # bytes/s, md's sync_speed over the recovery's samples
    md_speed_peak: float  # md's first reading of a recovery can be far above the device's rate (a short window)
    completed_rate: float  # bytes/s, the slope of sync_completed from the recovery's first sample to its last
    samples: int  # samples taken while md recovered

    @property
    def seconds(self) -> float:
        return self.clean_at - self.recovery_started

    @property
    def rate(self) -> float:
        """Bytes/s of the rebuild: the member's size over the time md recovered."""
        return self.member_bytes / self.seconds if self.seconds > 0 else 0.0

    @property
    def degraded_seconds(self) -> float:
        return self.clean_at - self.degraded_at


def _slope(during: Sequence[MdSample]) -> float:
    """Bytes/s of sync_completed between the first and the last sample of a recovery that has a 'done' figure."""
    done = [s for s in during if s.done_sectors is not None]
    if len(done) < 2 or done[-1].t <= done[0].t:
        return 0.0
    return (done[-1].done_sectors - done[0].done_sectors) * SECTOR / (done[-1].t - done[0].t)  # type: ignore[operator]


def rebuild(
    samples: Sequence[MdSample],
    load: str,
    start: float,
    end: float,
    until: float | None = None,
    added: float | None = None,
) -> Rebuild:
    """The rebuild of one phase from the samples taken between start and end (node clock): end is when the playbook
    saw the array whole and idle again. The sampler reads md on its own beat, so its first sample that shows it may
    come a little later: that sample is looked for up to `until` (default end), and the array counts as whole again
    at the earlier of the two. added: when mdadm --add was started; the rebuild cannot begin before it, and md shows
    sync_action 'recover' for a moment when a member fails too (the kernel reports a pending recovery check as
    'recover' before it finds no spare to recover onto), which is no rebuild."""
    until = end if until is None else max(until, end)
    phase = [s for s in samples if start <= s.t <= end]
    degraded = next((s for s in phase if s.degraded), None)
    if degraded is None:
        raise DrillError(f"{load}: no sample between {start:.1f} and {end:.1f} saw the array degraded")
    since = degraded.t if added is None else max(degraded.t, added)
    recovering = [s for s in phase if s.t >= since and s.action == "recover"]
    if not recovering:
        raise DrillError(f"{load}: md never showed sync_action 'recover' after the member was added")
    first = recovering[0]
    later = [s for s in samples if first.t < s.t <= until]
    clean = next((s for s in later if s.action == "idle" and s.degraded == 0), None)
    if clean is None:
        raise DrillError(f"{load}: the array was not idle and whole again by {until:.1f}")
    during = [s for s in phase if first.t <= s.t < clean.t]
    totals = [s.total_sectors for s in during if s.total_sectors]
    if not totals:
        raise DrillError(f"{load}: no sync_completed 'done / total' while md recovered")
    speeds = [s.speed_kib * KIB for s in during if s.speed_kib is not None]
    return Rebuild(
        load=load,
        degraded_at=degraded.t,
        recovery_started=first.t,
        clean_at=min(clean.t, end),
        member_bytes=max(totals) * SECTOR,
        md_speed_median=statistics.median(speeds) if speeds else 0.0,
        md_speed_peak=max(speeds, default=0.0),
        completed_rate=_slope(during),
        samples=len(during),
    )


def exposure_seconds(capacity_tb: float, rate: float) -> float:
    """Seconds a real member of capacity_tb (10^12 bytes) takes to rebuild at rate bytes/s."""
    if capacity_tb <= 0 or rate <= 0:
        raise DrillError(f"an exposure window needs a capacity and a rate above 0 (got {capacity_tb} TB, {rate} B/s)")
    return capacity_tb * TB / rate


def readers_rate(lines: Iterable[str]) -> dict[str, Any]:
    """The readers' lines of one phase: their count, bytes, errors and aggregate rate (bytes/s, over the longest)."""
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    seconds = max((float(r.get("seconds", 0)) for r in rows), default=0.0)
    total = sum(int(r.get("bytes", 0)) for r in rows)
    return {
        "readers": len(rows),
        "bytes": total,
        "errors": sum(int(r.get("error_count", 0)) for r in rows),
        "seconds": seconds,
        "rate": total / seconds if seconds > 0 else 0.0,
    }


def _phase(
    samples: Sequence[MdSample], raw: Mapping[str, Any], capacity_tb: float | None, until: float
) -> dict[str, Any]:
    load = str(raw["load"])
    added = float(raw["added"])
    r = rebuild(samples, load, float(raw["start"]), float(raw["end"]), until, added)
    return {
        "load": load,
        "degraded_at": r.degraded_at,
        "added_at": added,
        "recovery_started": r.recovery_started,
        "clean_at": r.clean_at,
        "rebuild_seconds": r.seconds,
        "rebuild_wall_seconds": r.clean_at - added,  # from mdadm --add to whole again
        "rebuild_bytes": r.member_bytes,
        "rebuild_rate": r.rate,
        "md_speed_median": r.md_speed_median,
        "md_speed_peak": r.md_speed_peak,
        "completed_rate": r.completed_rate,
        "samples": r.samples,
        "degraded_seconds": r.degraded_seconds,
        "exposure_seconds": exposure_seconds(capacity_tb, r.rate) if capacity_tb else None,
        "readers": readers_rate(raw.get("readers") or []),
        "verify_degraded": raw.get("verify_degraded"),
        "controller_degraded": raw.get("controller_degraded"),
        "controller_clean": raw.get("controller_clean"),
    }


def summarize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The drill's result from the playbook's record (module docstring: what each figure is)."""
    samples = parse_samples(raw.get("samples") or [])
    capacity = raw.get("capacity_tb")
    capacity_tb = float(capacity) if isinstance(capacity, int | float) and not isinstance(capacity, bool) else None
    raws = list(raw.get("phases") or [])
    if not raws:
        raise DrillError("the drill recorded no phase (no member was pulled)")
    # a phase's clean sample may come up to CLEAN_GRACE after its end, never after the next phase's start
    starts = [float(p["start"]) for p in raws[1:]] + [float("inf")]
    untils = [min(float(p["end"]) + CLEAN_GRACE, n) for p, n in zip(raws, starts, strict=True)]
    phases = [_phase(samples, p, capacity_tb, u) for p, u in zip(raws, untils, strict=True)]
    final = raw.get("verify") or {}
    written = int((raw.get("data") or {}).get("bytes", 0))
    verified = int(final.get("bytes", 0))
    result = {k: raw.get(k) for k in ("node", "array", "member", "disk", "pull", "hypervisor", "accel", "model",
                                      "device", "sync_speed_min_kib", "started", "finished")}  # fmt: skip
    result.update(
        capacity_tb=capacity_tb,
        data_bytes=written,
        data_files=int((raw.get("data") or {}).get("files", 0)),
        bytes_verified=verified,
        bad_files=final.get("bad", []),
        bytes_lost=written - verified,
        phases=phases,
        members_after=raw.get("members_after"),
        clean_after=bool(raw.get("clean_after")),
    )
    return result


@dataclass(frozen=True)
class AlertSeen:
    """MagellanArrayDegraded in one degraded window: seconds from the pull to its firing (a new firing: it was not
    firing the moment before), and whether it was still firing when the member was pulled (a previous rebuild's
    alert, not resolved yet: Prometheus evaluates every 15 s)."""

    fired_after: float | None
    already_firing: bool


def alert_fired(prom: Any, node: str, start: float, end: float, step: float = 1.0) -> AlertSeen:
    """The alert for node between start and end (controller clock, epoch s), from Prometheus' ALERTS series at
    every step. prom: a testbed.prom.PromClient."""
    expr = f'ALERTS{{alertname="{ALERT}",alertstate="firing",node="{node}"}}'
    first = start - step
    firing = {round((s.timestamp - first) / step) for s in prom.query_range(expr, first, end, step) if s.value > 0}
    rising = sorted(k for k in firing if k >= 1 and k - 1 not in firing)
    return AlertSeen(first + rising[0] * step - start if rising else None, 0 in firing)


def capacity(result: Mapping[str, Any], given: float | None) -> tuple[float, str]:
    """The real member's capacity for the exposure window, and where it comes from: the one given, else the
    catalogue's for the array's model (the playbook records it), else DEFAULT_CAPACITY_TB."""
    if given is not None:
        if given <= 0:
            raise DrillError(f"--capacity-tb {given}: give a capacity above 0")
        return given, "as given"
    if result.get("capacity_tb"):
        return float(result["capacity_tb"]), f"catalogue model {result.get('model')}"
    return DEFAULT_CAPACITY_TB, f"the array names no catalogue model: {DEFAULT_CAPACITY_TB:g} TB assumed"


def duration(seconds: float | None) -> str:
    """A duration in words a reader takes in at once: 42 s, 3.5 min, 6.1 h, 2.3 d."""
    if seconds is None:
        return "n/a"
    for limit, unit, div in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / div:.0f} {unit}" if unit == "s" else f"{seconds / div:.1f} {unit}"
    return f"{seconds / 86400:.1f} d"


# ---------------------------------------------------------------------------------------------------------------------
# Running the drill and showing its result (`testbed drill`)

PLAYBOOK = "drill_disk_failure.yml"
ALERT_DELAY = 45.0  # s after a window an alert may still first fire: a scrape (5 s) and a rule evaluation (15 s) late


def run_playbook(inventory: str, extra: Mapping[str, Any], log: Path) -> int:
    """playbooks/drill_disk_failure.yml with these variables; its output to log (a path). The exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ansible_command("ansible-playbook"), "-i", inventory, str(REPO / "playbooks" / PLAYBOOK)]
    cmd += ["-e", json.dumps(dict(extra))]
    env = ansible_env() | {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    env.setdefault("CONTAINERS_CONF", str(REPO / "files" / "containers.conf"))
    with log.open("w") as out:
        return subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def alerts(prom: Any, result: Mapping[str, Any]) -> list[AlertSeen]:
    """Per phase: the alert over the time the array was degraded (controller clock) and ALERT_DELAY after."""
    seen = []
    for p in result["phases"]:
        start, end = p.get("controller_degraded"), p.get("controller_clean")
        if not isinstance(start, int | float) or not isinstance(end, int | float):
            seen.append(AlertSeen(None, False))
            continue
        seen.append(alert_fired(prom, str(result["node"]), float(start), float(end) + ALERT_DELAY))
    return seen


def passed(result: Mapping[str, Any], alerts: Sequence[AlertSeen] | None) -> bool:
    """0 bytes lost, the array whole afterwards, every rebuild measured, and (when looked up) the alert fired."""
    ok = result["bytes_lost"] == 0 and not result["bad_files"] and bool(result["clean_after"])
    ok = ok and all(p["rebuild_seconds"] > 0 and p["rebuild_rate"] > 0 for p in result["phases"])
    return ok and (alerts is None or any(a.fired_after is not None for a in alerts))


def _alert(seen: AlertSeen | None) -> str:
    if seen is None:
        return "not checked"
    if seen.fired_after is not None:
        return f"{seen.fired_after:.0f} s"
    return "still firing (rebuild before)" if seen.already_firing else "[red]did not fire[/]"


def table(
    result: Mapping[str, Any], capacity_tb: float, capacity_from: str, alerts: Sequence[AlertSeen] | None
) -> Table:
    """The drill's result as a rich table, a row per rebuild."""
    from rich.table import Table  # noqa: PLC0415 - the drill filter plugin imports this module

    mib = float(1 << 20)
    t = Table(
        title=f"Disk failure drill: array {result['array']} on {result['node']}, member "
        f"{result['disk'] or result['member']} pulled ({result['pull']}), accel {result['accel']}",
        caption=f"{result['bytes_verified'] / mib:.0f} MiB verified, {result['bytes_lost']} bytes lost; "
        f"exposure: a {capacity_tb:g}-TB member ({capacity_from}) rebuilt at the measured rate; md's rebuild floor "
        f"{result.get('sync_speed_min_kib') or 'the system'} KiB/s",
    )
    for name in ("rebuild", "time degraded", "rebuild time", "rebuild MiB/s", "sync_completed / sync_speed MiB/s",
                 "readers MiB/s (errors)", "exposure at real capacity", "alert fired after"):  # fmt: skip
        t.add_column(name, justify="left" if name == "rebuild" else "right")
    for i, p in enumerate(result["phases"]):
        readers = p["readers"]
        t.add_row(
            "idle" if p["load"] == "idle" else f"under {readers['readers']} readers",
            duration(p["degraded_seconds"]),
            f"{p['rebuild_seconds']:.1f} s",
            f"{p['rebuild_rate'] / mib:.1f}",
            f"{p['completed_rate'] / mib:.1f} / {p['md_speed_median'] / mib:.1f}",
            f"{readers['rate'] / mib:.1f} ({readers['errors']})" if readers["readers"] else "-",
            duration(exposure_seconds(capacity_tb, p["rebuild_rate"])),
            _alert(alerts[i] if alerts is not None else None),
        )
    return t
