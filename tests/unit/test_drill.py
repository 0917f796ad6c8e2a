"""testbed.drill: md sysfs samples parsed, rebuild times and rates, the exposure window, the result; and the drill
playbook's filters (plugins/filter/drill.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from rich.console import Console

from testbed import cli, drill
from testbed.prom import Sample

REPO = Path(__file__).resolve().parents[2]
BY_ID = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_"
MEMBER_SECTORS = 1046528  # a 512-MiB member's data area (md 1.2 superblock and bitmap space taken off)


def _filters() -> Any:
    spec = importlib.util.spec_from_file_location("drill_filter", REPO / "plugins" / "filter" / "drill.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def line(t: float, action: str = "idle", completed: str = "none", speed: str = "none", degraded: str = "0") -> str:
    return json.dumps({"t": t, "sync_action": action + "\n", "sync_completed": completed + "\n",
                       "sync_speed": speed + "\n", "degraded": degraded + "\n", "array_state": "clean\n"})  # fmt: skip


def phase_lines(start: float, rebuild_s: float, speed_kib: int = 40000) -> list[str]:
    """A member pulled at start+1, added at start+5, recovered for rebuild_s, clean after."""
    rows = [line(start), line(start + 0.5), line(start + 1.0, degraded="1"), line(start + 3.0, degraded="1")]
    t, steps = start + 5.0, int(rebuild_s / 0.5)
    for i in range(steps):
        done = MEMBER_SECTORS * i // steps
        rows.append(line(t + 0.5 * i, "recover", f"{done} / {MEMBER_SECTORS}", str(speed_kib), "1"))
    rows.append(line(t + rebuild_s, "idle", "none", "none", "0"))
    rows.append(line(t + rebuild_s + 0.5))
    return rows


def test_a_sample_is_parsed_with_the_exporters_parsers() -> None:
    s = drill.parse_sample(line(10.0, "recover", "2048 / 1046528", "41000", "1"))
    assert (s.t, s.action, s.done_sectors, s.total_sectors, s.speed_kib, s.degraded) == (
        10.0, "recover", 2048, 1046528, 41000, 1)  # fmt: skip
    idle = drill.parse_sample(line(11.0))
    assert (idle.action, idle.done_sectors, idle.speed_kib, idle.degraded) == ("idle", None, None, 0)


def test_unreadable_files_are_none_and_broken_lines_are_skipped() -> None:
    s = drill.parse_sample({"t": 1.0, "sync_action": None, "sync_completed": "garbage", "degraded": "x"})
    assert (s.action, s.total_sectors, s.degraded) == (None, None, None)
    samples = drill.parse_samples([line(2.0), '{"t": 3.0, "sync_act', "", line(1.0)])
    assert [x.t for x in samples] == [1.0, 2.0]
    with pytest.raises(drill.DrillError):
        drill.parse_sample({"sync_action": "idle"})


def test_rebuild_time_and_rate_from_the_samples() -> None:
    samples = drill.parse_samples(phase_lines(100.0, rebuild_s=12.5))
    r = drill.rebuild(samples, "idle", 100.0, 200.0)
    assert r.degraded_at == 101.0 and r.recovery_started == 105.0
    assert r.seconds == pytest.approx(12.5)
    assert r.member_bytes == MEMBER_SECTORS * 512
    assert r.rate == pytest.approx(MEMBER_SECTORS * 512 / 12.5)
    assert r.md_speed_median == r.md_speed_peak == 40000 * 1024
    # sync_completed's slope: the synthetic recovery advances a 1/25 of the member every half second
    assert r.completed_rate == pytest.approx(MEMBER_SECTORS * 512 / 12.5, rel=0.01)
    assert r.degraded_seconds == pytest.approx(16.5)
    assert r.samples == 25


def test_each_phase_takes_its_own_window() -> None:
    samples = drill.parse_samples(phase_lines(100.0, 10.0) + phase_lines(200.0, 30.0, speed_kib=15000))
    idle, loaded = drill.rebuild(samples, "idle", 100, 199), drill.rebuild(samples, "readers", 200, 300)
    assert idle.seconds == pytest.approx(10.0) and loaded.seconds == pytest.approx(30.0)
    assert loaded.md_speed_median == 15000 * 1024


def test_a_recover_shown_at_the_pull_is_not_the_rebuild() -> None:
    """md reads 'recover' for a moment when the member fails (a recovery check that finds no spare): the rebuild is
    the one that starts once the replacement is added (CI saw a rebuild as long as the whole degraded time)."""
    rows = phase_lines(100.0, rebuild_s=10.0)
    rows.insert(3, line(101.5, "recover", "none", "none", "1"))
    r = drill.rebuild(drill.parse_samples(rows), "idle", 100.0, 200.0, added=104.8)
    assert (r.degraded_at, r.recovery_started, r.seconds) == (101.0, 105.0, pytest.approx(10.0))
    assert r.degraded_seconds > r.seconds
    idle = drill.summarize({**raw(), "samples": rows + phase_lines(200.0, 20.0)})["phases"][0]
    assert idle["rebuild_seconds"] == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([line(1.0), line(2.0)], "degraded"),
        ([line(1.0, degraded="1"), line(2.0)], "recover"),
        ([line(1.0, degraded="1"), line(2.0, "recover", "0 / 100", "1", "1")], "not idle and whole"),
        ([line(1.0, degraded="1"), line(2.0, "recover", "none", "1", "1"), line(3.0)], "sync_completed"),
    ],
)
def test_a_phase_that_did_not_happen_says_what_is_missing(lines: list[str], message: str) -> None:
    with pytest.raises(drill.DrillError, match=message):
        drill.rebuild(drill.parse_samples(lines), "idle", 0, 10)


def test_exposure_window_of_a_real_disk() -> None:
    # a 16-TB disk rebuilt at 40 MiB/s: 16e12 / 41943040 s = 4.4 days
    assert drill.exposure_seconds(16, 40 * 1024 * 1024) == pytest.approx(16e12 / 41943040)
    assert drill.duration(drill.exposure_seconds(16, 40 * 1024 * 1024)) == "4.4 d"
    assert [drill.duration(s) for s in (42, 210, 22000, None)] == ["42 s", "3.5 min", "6.1 h", "n/a"]
    with pytest.raises(drill.DrillError):
        drill.exposure_seconds(16, 0)


def raw(capacity: Any = 3.84) -> dict[str, Any]:
    return {
        "node": "storage1", "array": "ssd", "member": BY_ID + "ssd3", "disk": "ssd3", "pull": "detach",
        "hypervisor": "hv1", "accel": "tcg", "model": "ssd_3_84tb", "capacity_tb": capacity, "device": "/dev/md127",
        "data": {"files": 8, "bytes": 128 << 20},
        "verify": {"files": 8, "bytes": 128 << 20, "bad": []},
        "samples": phase_lines(100.0, 10.0) + phase_lines(200.0, 20.0),
        "phases": [
            {"load": "idle", "start": 100.0, "added": 104.8, "end": 120.0, "readers": []},
            {"load": "readers", "start": 200.0, "added": 204.9, "end": 230.0, "readers": [
                json.dumps({"reader": i, "bytes": 100 << 20, "error_count": 0, "seconds": 25.0}) for i in range(4)]},
        ],
        "members_after": [BY_ID + f"ssd{i}" for i in range(4)], "clean_after": True,
    }  # fmt: skip


def test_the_result_has_every_figure() -> None:
    result = drill.summarize(raw())
    assert result["bytes_lost"] == 0 and result["bytes_verified"] == 128 << 20 and result["clean_after"]
    idle, loaded = result["phases"]
    assert idle["rebuild_seconds"] == pytest.approx(10.0) and loaded["rebuild_seconds"] == pytest.approx(20.0)
    assert idle["rebuild_wall_seconds"] == pytest.approx(10.2)
    assert loaded["exposure_seconds"] == pytest.approx(3.84e12 / loaded["rebuild_rate"])
    assert loaded["readers"] == {"readers": 4, "bytes": 400 << 20, "errors": 0, "seconds": 25.0,
                                 "rate": (400 << 20) / 25.0}  # fmt: skip
    assert json.loads(json.dumps(result)) == result  # what the playbook writes


def test_lost_bytes_and_a_missing_capacity_show() -> None:
    r = raw(capacity=None)
    r["verify"] = {"files": 7, "bytes": 112 << 20, "bad": [{"file": "data-003.bin", "error": "checksum differs"}]}
    result = drill.summarize(r)
    assert result["bytes_lost"] == 16 << 20 and result["bad_files"][0]["file"] == "data-003.bin"
    assert result["capacity_tb"] is None and result["phases"][0]["exposure_seconds"] is None
    with pytest.raises(drill.DrillError, match="no phase"):
        drill.summarize({**raw(), "phases": []})


class FakeProm:
    """Prometheus' ALERTS series: firing at the given seconds (query_range's steps of 1 s)."""

    def __init__(self, firing: list[float]) -> None:
        self.firing = firing
        self.asked: list[str] = []

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Sample]:
        self.asked.append(expr)
        return [Sample({"alertname": drill.ALERT}, 1.0, t) for t in self.firing if start <= t <= end]


def test_the_alert_is_looked_up_over_the_window() -> None:
    prom = FakeProm([float(t) for t in range(115, 140)] + [400.0])
    assert drill.alert_fired(prom, "storage1", 100.0, 200.0) == drill.AlertSeen(15.0, False)
    assert 'alertname="MagellanArrayDegraded"' in prom.asked[0] and 'node="storage1"' in prom.asked[0]
    assert drill.alert_fired(FakeProm([]), "storage1", 100.0, 200.0) == drill.AlertSeen(None, False)


def test_an_alert_still_firing_from_the_rebuild_before_is_not_a_new_one() -> None:
    still = FakeProm([float(t) for t in range(90, 150)])
    assert drill.alert_fired(still, "storage1", 100.0, 200.0) == drill.AlertSeen(None, True)
    again = FakeProm([float(t) for t in range(90, 104)] + [float(t) for t in range(112, 150)])
    assert drill.alert_fired(again, "storage1", 100.0, 200.0) == drill.AlertSeen(12.0, True)
    windows = [{"controller_degraded": 100.0, "controller_clean": 150.0},
               {"controller_degraded": 160.0, "controller_clean": 190.0}]  # fmt: skip
    result = {**drill.summarize(raw()), "phases": windows}
    assert drill.alerts(still, result) == [drill.AlertSeen(None, True), drill.AlertSeen(None, False)]


ARRAYS = [
    {"name": "hdd", "level": 6, "members": [f"{BY_ID}hdd{i}" for i in range(4)]},
    {"name": "ssd", "level": 6, "model": "ssd_3_84tb", "members": [f"{BY_ID}ssd{i}" for i in range(4)]},
    {"name": "fast", "level": 0, "members": [f"{BY_ID}ssd0", f"{BY_ID}ssd1"]},
    {"name": "real", "level": 1, "members": ["/dev/sdb", "/dev/sdc"]},
]
DISKS = [{"name": f"ssd{i}", "size_mb": 512, "rotational": False,
          "profile": {"total_bytes_sec": 41943040, "total_iops_sec": 250}} for i in range(4)]  # fmt: skip


def test_the_plan_takes_the_last_member_and_detaches_a_virtual_disk() -> None:
    plan = _filters().drill_disk_failure_plan(ARRAYS, DISKS, "ssd", "", "", True)
    assert plan["member"] == f"{BY_ID}ssd3" and plan["disk"] == "ssd3" and plan["pull"] == "detach"
    assert plan["size_mb"] == 512 and plan["profile"] == {"total_bytes_sec": 41943040, "total_iops_sec": 250}
    assert plan["model"] == "ssd_3_84tb" and plan["level"] == 6
    chosen = _filters().drill_disk_failure_plan(ARRAYS, DISKS, "ssd", f"{BY_ID}ssd1", "fail", True)
    assert (chosen["member"], chosen["pull"]) == (f"{BY_ID}ssd1", "fail")


def test_a_real_sites_member_is_failed_with_mdadm() -> None:
    plan = _filters().drill_disk_failure_plan(ARRAYS, [], "real", "", "", False)
    assert (plan["member"], plan["pull"], plan["disk"]) == ("/dev/sdc", "fail", None)


@pytest.mark.parametrize(
    ("array", "member", "pull", "message"),
    [
        ("nope", "", "", "drill_array='nope' is not an array"),
        ("fast", "", "", "RAID 0"),
        ("ssd", "/dev/sdz", "", "drill_member='/dev/sdz' is not a member"),
        ("ssd", "", "yank", "drill_pull='yank'"),
        ("real", "", "detach", "set drill_pull=fail"),
    ],
)
def test_the_plan_refuses_what_it_cannot_drill(array: str, member: str, pull: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        _filters().drill_disk_failure_plan(ARRAYS, DISKS, array, member, pull, True)


def test_the_summary_filter_names_the_drill() -> None:
    with pytest.raises(AnsibleFilterError, match="drill_disk_failure: the drill recorded no phase"):
        _filters().drill_disk_failure_summary({**raw(), "phases": []})


def test_the_capacity_comes_from_the_option_the_catalogue_or_the_default() -> None:
    assert drill.capacity({"capacity_tb": 3.84, "model": "ssd_3_84tb"}, None) == (3.84, "catalogue model ssd_3_84tb")
    assert drill.capacity({"capacity_tb": 3.84}, 8.0) == (8.0, "as given")
    assert drill.capacity({"capacity_tb": None}, None)[0] == drill.DEFAULT_CAPACITY_TB
    with pytest.raises(drill.DrillError):
        drill.capacity({}, 0.0)


def test_the_table_and_the_verdict() -> None:
    result = drill.summarize(raw())
    console = Console(width=250, record=True)
    fired, still, none = drill.AlertSeen(14.0, False), drill.AlertSeen(None, True), drill.AlertSeen(None, False)
    console.print(drill.table(result, 3.84, "catalogue model ssd_3_84tb", [fired, still]))
    text = console.export_text()
    assert "under 4 readers" in text and "14 s" in text and "still firing" in text and "0 bytes lost" in text
    assert drill.passed(result, [fired, still]) and not drill.passed(result, [none, still])
    assert drill.passed(result, None)
    assert not drill.passed({**result, "bytes_lost": 1}, None)


def test_testbed_drill_parses_its_options() -> None:
    args = cli._parser().parse_args(["drill", "--loads", "readers", "--capacity-tb", "8"])
    assert (args.array, args.loads, args.capacity_tb, args.readers) == ("ssd", ["readers"], 8.0, 4)
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["drill", "--loads", "busy"])


FIXTURES = REPO / "tests" / "fixtures" / "drill"


def test_a_recorded_drill_gives_the_result_it_gave_on_the_site() -> None:
    """The record of a drill on the live site (tests/fixtures/drill/README.md) summarized again: the same result,
    figure for figure, as the playbook wrote there."""
    record = json.loads((FIXTURES / "ssd-detach-tcg.record.json").read_text())
    golden = json.loads((FIXTURES / "ssd-detach-tcg.result.json").read_text())
    assert json.loads(json.dumps(drill.summarize(record))) == golden
    idle, loaded = golden["phases"]
    assert golden["bytes_lost"] == 0 and golden["accel"] == "tcg"
    assert 15 < idle["rebuild_seconds"] < loaded["rebuild_seconds"] < 120
    assert idle["completed_rate"] == pytest.approx(idle["rebuild_rate"], rel=0.1)


def test_the_samplers_clean_sample_may_come_just_after_the_playbook_saw_it() -> None:
    # CI: the playbook saw the array whole at 117.3; the sampler's last sample before was still recovering
    rows = phase_lines(100.0, rebuild_s=12.5)
    samples = drill.parse_samples(rows)
    r = drill.rebuild(samples, "idle", 100.0, 117.3, until=122.3)
    assert r.clean_at == pytest.approx(117.3) and r.seconds == pytest.approx(12.3)
    with pytest.raises(drill.DrillError, match=r"not idle and whole again by 117\.3"):
        drill.rebuild(samples, "idle", 100.0, 117.3)
    # in a drill's record: the grace reaches past the phase's end, never into the next phase
    phases = [{"load": "idle", "start": 100.0, "added": 105.0, "end": 117.3},
              {"load": "readers", "start": 117.4, "added": 205.0, "end": 236.0}]  # fmt: skip
    raw = {"samples": rows + phase_lines(200.0, 30.0), "phases": phases, "data": {"bytes": 1}, "verify": {"bytes": 1}}
    with pytest.raises(drill.DrillError, match=r"idle: the array was not idle and whole again by 117\.4"):
        drill.summarize(raw)
    phases[1]["start"] = 130.0
    assert [p["rebuild_seconds"] for p in drill.summarize(raw)["phases"]] == pytest.approx([12.3, 30.0])
