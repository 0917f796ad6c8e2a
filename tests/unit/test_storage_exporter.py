"""The storage exporter: parsers on recorded trees, md source precedence, SMART through a fake smartctl, health,
golden expositions, and agreement with node_exporter 1.5 on the same trees."""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters import storage
from exporters.common import Health
from exporters.paths import Paths
from exporters.storage_io import Problems, Subsystem
from exporters.storage_md import LINKS_MAX, MEMBER_STATES, MdArray, MdCollector, MdSysfs, merge
from exporters.storage_parsers import (
    ParseError,
    parse_diskstats,
    parse_md_links,
    parse_mdstat,
    parse_member_slot,
    parse_member_state,
    parse_raid_disks,
    parse_scheduler,
    parse_smartctl,
    parse_speed_limit,
    parse_sync_completed,
)
from exporters.storage_smart import SmartCollector, SmartOptions

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "storage"
SMART = FIX / "smartctl"
NODE_EXPORTER = Path("/usr/bin/prometheus-node-exporter")
EXCLUDE = re.compile(storage.DEVICE_EXCLUDE)
NOW = 1796307954.0  # the fixed clock of the golden files


def mdstat(tree: str) -> dict[str, object]:
    arrays, problems = parse_mdstat((FIX / tree / "proc" / "mdstat").read_text())
    assert problems == []
    return {a.name: a for a in arrays}


# --- diskstats --------------------------------------------------------------------------------------------------------


def test_diskstats_of_every_kernel_layout() -> None:
    stats, problems = parse_diskstats((FIX / "node_exporter" / "proc" / "diskstats").read_text())
    assert problems == [] and len(stats) == 51
    by = {s.device: s for s in stats}
    sda = by["sda"]  # 11 figures (before 4.18)
    assert (sda.reads, sda.reads_merged, sda.read_sectors, sda.read_ms) == (25354637, 34367663, 1003346126, 18492372)
    assert (sda.writes, sda.write_sectors, sda.in_flight, sda.io_ms, sda.weighted_io_ms) == (
        28444756, 505697032, 0, 9653880, 82621804)  # fmt: skip
    assert sda.discards is None and sda.flushes is None
    assert (by["sdb"].discards, by["sdb"].discard_sectors, by["sdb"].discard_ms, by["sdb"].flushes) == (
        68851, 1925173784, 11130, None)  # 4.18+: 15 figures  # fmt: skip
    assert (by["sdc"].flushes, by["sdc"].flush_ms) == (1555, 1944)  # 5.5+: 17 figures
    host = {s.device: s for s in parse_diskstats((FIX / "host" / "proc" / "diskstats").read_text())[0]}
    assert (host["vda"].reads, host["vda"].flushes, host["vda"].flush_ms) == (1454373, 691942, 200537)


def test_diskstats_short_partition_form_and_bad_lines() -> None:
    (disk, part), problems = parse_diskstats((FIX / "kernel-doc" / "proc" / "diskstats").read_text())
    assert problems == [] and not disk.issued_only and disk.weighted_io_ms == 23705160
    assert part.issued_only and (part.reads, part.read_sectors, part.writes, part.write_sectors) == (
        35486, 38030, 38030, 38030)  # fmt: skip
    assert part.read_ms is None and part.io_ms is None
    text = "8 0 sda 1 2 3\n8 0 sda 1 2 3 4\n8 1 sda 1 2 3 4\n8 2 sdb -1 2 3 4\n8 3 sd٣ 1 2 3 4\n8 4 sdz 1 2 3 4 5\n"
    stats, problems = parse_diskstats(text)
    assert [s.device for s in stats] == ["sda", "sd٣"]  # a name is a name; its figures must be ASCII digits
    assert [n for n, _ in problems] == [1, 3, 4, 6]
    assert "twice" in problems[1][1] and "5 +" not in problems[3][1]


@pytest.mark.parametrize(
    ("text", "active"),
    [("mq-deadline kyber [bfq] none\n", "bfq"), ("[none] mq-deadline kyber bfq \n", "none"),
     ("none [mq-deadline] kyber bfq \n", "mq-deadline"), ("none\n", "none")],
)  # fmt: skip
def test_scheduler(text: str, active: str) -> None:
    assert parse_scheduler(text) == active


@pytest.mark.parametrize("text", ["", "[a] [b]", "mq-deadline bfq", "[x y]", "[]"])
def test_scheduler_refuses_what_is_not_one(text: str) -> None:
    with pytest.raises(ParseError):
        parse_scheduler(text)


# --- md ---------------------------------------------------------------------------------------------------------------


def test_mdstat_in_every_state() -> None:
    a = mdstat("procfs")
    assert len(a) == 18
    arrays = {n: merge(m, None) for n, m in a.items()}  # type: ignore[arg-type]
    clean, degraded = arrays["md127"], arrays["md7"]
    assert (clean.state, clean.action, clean.active, clean.required, clean.degraded) == ("active", "idle", 2, 2, 0)
    assert (degraded.level, degraded.active, degraded.failed, degraded.required, degraded.degraded) == (
        "raid6", 3, 1, 4, 1)  # fmt: skip
    rec = arrays["md6"]  # recovering: the data node_exporter users miss
    assert (rec.action, rec.active, rec.failed, rec.spare, rec.degraded) == ("recover", 1, 1, 1, 1)
    assert rec.progress == 16775552 / 195310144 and rec.speed_bytes == 259783 * 1024 and rec.remaining_seconds == 1020
    assert arrays["md8"].action == "resync" and arrays["md201"].action == "check"
    assert arrays["md201"].progress == 114176 / 1993728 and arrays["md201"].remaining_seconds == 12
    reshape = arrays["md42"]
    assert (reshape.action, reshape.degraded, reshape.remaining_seconds) == ("reshape", 1, 1868.1 * 60)
    assert reshape.progress == 1096879076 / 1953381440
    for name in ("md9", "md11"):  # resync=DELAYED, resync=PENDING: no parse failure, pending with progress 0
        assert (arrays[name].action, arrays[name].pending, arrays[name].progress) == ("resync", True, 0.0)
        assert arrays[name].speed_bytes is None and arrays[name].remaining_seconds is None
    assert arrays["md11"].state == "read-auto" and arrays["md101"].state == "readonly"
    container = arrays["md219"]
    assert (container.state, container.level, container.action, container.active, container.spare) == (
        "inactive", "", None, 0, 3)  # fmt: skip
    assert (arrays["md10"].action, arrays["md10"].required, arrays["md120"].level) == (None, 2, "linear")


def test_mdstat_tab_indented_lines_of_node_exporters_fixture() -> None:
    a = mdstat("node_exporter")  # node_exporter 1.5 rejects this whole file over md8's tab-indented lines
    md8 = merge(a["md8"], None)  # type: ignore[arg-type]
    assert (md8.action, md8.progress, md8.size_bytes) == ("resync", 16775552 / 195310144, 195310144 * 1024)


def test_progress_is_not_divided_by_the_array_size() -> None:
    """A resync or check of a striped array counts per member: node_md_blocks_synced / node_md_blocks is wrong by
    the number of data disks. A 6-member raid6 (4 data disks) a quarter through its check (numbers synthetic)."""
    text = ("md5 : active raid6 sdf[5] sde[4] sdd[3] sdc[2] sdb[1] sda[0]\n"
            "      16000000 blocks super 1.2 level 6, 512k chunk, algorithm 2 [6/6] [UUUUUU]\n"
            "      [====>......]  check = 25.0% (1000000/4000000) finish=10.0min speed=1666K/sec\n")  # fmt: skip
    (array,), problems = parse_mdstat(text)
    m = merge(array, None)
    assert problems == [] and m.progress == 0.25
    assert array.progress is not None and array.progress.done_kib / array.blocks != m.progress  # type: ignore[operator]


def test_md_sysfs_in_every_state() -> None:
    problem = Problems(storage_health())
    collector = MdCollector(Paths(procfs=FIX / "none", sysfs=FIX / "procfs-md-sysfs" / "sys"), "n1", problem)
    arrays = {a.name: a for a in collector.arrays()}
    assert sorted(arrays) == ["md0", "md1", "md10", "md4", "md5", "md6", "md7", "md8"] and problem.count == 0
    md5, md6, md7, md8 = arrays["md5"], arrays["md6"], arrays["md7"], arrays["md8"]
    assert (md5.state, md5.active, md5.failed, md5.spare, md5.degraded, md5.action) == ("clean", 2, 1, 1, 1, "idle")
    assert (md6.action, md6.degraded, md6.spare) == ("recover", 1, 1)  # the rebuilding member is a spare in sysfs
    assert md6.progress == 1569888 / 2093056 and md6.speed_bytes is None  # this tree has no sync_speed file
    assert (md7.state, md7.level, md7.required, md7.active) == ("inactive", "container", None, None)
    assert (md8.action, md8.required, md8.uuid) == ("reshape", 11, "a1b2c3d4-e5f6-7890-abcd-ef1234567890")
    assert arrays["md0"].action is None and arrays["md0"].sources == "sysfs"


def test_sysfs_wins_over_mdstat() -> None:
    (m,), _ = parse_mdstat("md1 : active raid1 sdb[1] sda[0]\n      1000 blocks [2/2] [UU]\n"
                           "      [=>...]  resync = 10.0% (100/1000) finish=1.5min speed=1K/sec\n")  # fmt: skip
    s = MdSysfs(name="md1", array_state="clean", sync_action="repair", sync_completed=parse_sync_completed(
        "400 / 2000"), sync_speed_kib=2, speed_min_kib=parse_speed_limit("1000 (system)"),
        speed_max_kib=parse_speed_limit("200000 (local)"))  # fmt: skip
    a = merge(m, s)
    assert (a.state, a.action, a.sources) == ("clean", "repair", "mdstat+sysfs")  # mdstat says resync for a repair
    assert a.progress == 0.2 and a.speed_bytes == 2048 and a.remaining_seconds == 1600 * 512 / 2048
    assert (a.speed_min_bytes, a.speed_max_bytes) == (1000 * 1024, 200000 * 1024)
    delayed = merge(None, MdSysfs(name="md2", sync_action="idle", sync_completed=parse_sync_completed("delayed\n")))
    assert (delayed.action, delayed.pending, delayed.progress) == ("resync", True, 0.0)
    with pytest.raises(ValueError, match="mdstat or sysfs"):
        merge(None, None)


def test_member_states_sysfs_wins_and_a_member_of_one_source_still_counts() -> None:
    """magellan_storage_md_member_info's state: sysfs's flags where it knows the member (a spare's slot telling a
    rebuilding one apart, else mdstat's (S)), mdstat's markers for a member only mdstat lists (synthetic arrays)."""
    (m,), problems = parse_mdstat("md1 : active raid5 sde[4] sdd[3](S) sdc[2] sdb[1](F) sda[0] sda[5](S)\n"
                                  "      2000 blocks level 5, 512k chunk, algorithm 2 [3/2] [U_U]\n")  # fmt: skip
    assert problems == []
    s = MdSysfs(name="md1", members={"sda": frozenset({"in_sync"}), "sdb": frozenset({"faulty", "write_error"}),
                                     "sdc": frozenset({"spare"}), "sdd": frozenset({"spare"}),
                                     "sdf": frozenset({"in_sync", "write_mostly"}), "sdg": frozenset({"spare"})},
                slots={"sdc": True, "sdd": False})  # fmt: skip
    a = merge(m, s)
    assert dict(a.members) == {
        "sda": "in_sync",  # mdstat lists it twice (as procfs's md3 does): one member, sysfs's state
        "sdb": "faulty",
        "sdc": "rebuilding",  # a spare in sysfs that fills a slot; mdstat lists it unmarked
        "sdd": "spare",  # its slot is none
        "sde": "in_sync",  # only mdstat lists it, unmarked
        "sdf": "in_sync",  # only sysfs lists it; write-mostly is not a state
        "sdg": "spare",  # only sysfs, no slot file: a spare
    }
    assert [name for name, _ in a.members] == sorted(dict(a.members))
    no_slot = merge(m, MdSysfs(name="md1", members={"sdc": frozenset({"spare"}), "sdd": frozenset({"spare"})}))
    assert dict(no_slot.members)["sdc"] == "rebuilding"  # no slot file: mdstat lists it without (S)
    assert dict(no_slot.members)["sdd"] == "spare"  # mdstat's (S)
    alone = dict(merge(m, None).members)  # mdstat only: (F) faulty, (S) spare, else in_sync (a rebuilding one too)
    assert alone == {"sda": "in_sync", "sdb": "faulty", "sdc": "in_sync", "sdd": "spare", "sde": "in_sync"}
    (j,), _ = parse_mdstat("md2 : active raid5 sdk[3](J) sdj[2](J)(F) sdi[1] sdh[0]\n      10 blocks [2/2] [UU]\n")
    assert dict(merge(j, None).members) == {"sdh": "in_sync", "sdi": "in_sync", "sdj": "faulty", "sdk": "journal"}
    journal = MdSysfs(name="md2", members={"sdk": frozenset({"journal"}), "sdl": frozenset({"blocked"})})
    assert dict(merge(None, journal).members) == {"sdk": "journal", "sdl": "blocked"}  # no kernel writes the last
    assert merge(None, MdSysfs(name="md3")).members == ()


def test_md_names_from_udevs_links() -> None:
    """/dev/md/<name> and /dev/md/<host>:<name> (an array of another host, or assembled before the host had its name)
    name the array; a partition's link, a link to another device and a directory name none (63-md-raid-arrays.rules)."""
    names, problems = parse_md_links([("hdd", "../md127"), ("otherhost:ssd", "../md126"), ("ssd1", "../md126p1"),
                                      ("boot", "/dev/md_boot"), ("disk", "../sda"), ("md", "../")])  # fmt: skip
    assert names == {"md127": "hdd", "md126": "ssd", "md126p1": "ssd1", "md_boot": "boot"} and problems == []
    assert parse_md_links([("storage1:hdd", "../md127"), ("hdd", "../md127")]) == ({"md127": "hdd"}, [])
    names, problems = parse_md_links([("b", "../md1"), ("a", "../md1"), ("host:", "../md2"), ("x y", "../md3"),
                                      ("\udcff", "../md4"), ("n" * 65, "../md5")])  # fmt: skip
    assert names == {"md1": "a"} and len(problems) == 5
    assert "md1 is named both 'a' and 'b' (link 'b')" in problems


def test_md_names_on_a_recorded_tree() -> None:
    problem = Problems(storage_health())
    collector = MdCollector(Paths(procfs=FIX / "procfs" / "proc", sysfs=FIX / "none"), "n1", problem,
                            FIX / "procfs" / "dev" / "md")  # fmt: skip
    names = {a.name: a.md_name for a in collector.arrays()}
    assert (names["md127"], names["md7"], names["md6"], names["md42"]) == ("root", "hdd", "ssd", "")
    assert problem.count == 0 and "md6p1" not in names
    assert MdCollector(Paths(dev=FIX / "none"), "n1", problem).names() == {} and problem.count == 0  # no /dev/md


def test_unreadable_md_links_are_a_problem_not_a_crash(tmp_path: Path) -> None:
    links = tmp_path / "md"
    links.write_text("not a directory\n")
    problem = Problems(storage_health())
    collector = MdCollector(Paths(procfs=FIX / "procfs" / "proc", sysfs=FIX / "none"), "n1", problem, links)
    families, ok = collector.read()
    assert not ok and problem.count == 1 and problem.health.errors["md_links"] == 1
    info = next(f for f in families if f.name == "magellan_storage_md_info")
    assert len(info.samples) == 18 and {s.labels["array"] for s in info.samples} == {""}  # still reported, unnamed
    links.unlink()
    links.mkdir()
    for i in range(LINKS_MAX + 10):
        (links / f"a{i}").symlink_to(f"../md{i}")
    problem.next_scrape()
    names = collector.names()
    assert problem.count == 1 and len(names) == LINKS_MAX  # bounded: the first LINKS_MAX entries only
    (links / "a0").unlink()
    (links / "a0").symlink_to("../md1")  # md1 named twice
    for i in range(20, LINKS_MAX + 10):
        (links / f"a{i}").unlink()
    problem.next_scrape()
    assert collector.names()["md1"] in ("a0", "a1") and problem.count == 1


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [(parse_raid_disks, "11 (10)\n", 11), (parse_raid_disks, "\n", None), (parse_raid_disks, "4\n", 4),
     (parse_member_state, "faulty,write_error\n", frozenset({"faulty", "write_error"})),
     (parse_speed_limit, "1000 (system)\n", 1000), (parse_member_slot, "none\n", False),
     (parse_member_slot, "1\n", True)],
)  # fmt: skip
def test_md_sysfs_values(parse: Callable[[str], object], text: str, value: object) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text"),
    [(parse_sync_completed, "5 / 4"), (parse_sync_completed, "1 / 0"), (parse_sync_completed, "busy"),
     (parse_raid_disks, "four"), (parse_member_state, ""), (parse_member_state, "In_Sync"), (parse_speed_limit, "9"),
     (parse_member_slot, ""), (parse_member_slot, "-1")],
)  # fmt: skip
def test_md_sysfs_refuses(parse: Callable[[str], object], text: str) -> None:
    with pytest.raises(ParseError):
        parse(text)


# --- SMART ------------------------------------------------------------------------------------------------------------


def test_smartctl_outputs_of_three_device_kinds() -> None:
    hdd = parse_smartctl((SMART / "sata-hdd-wdc-wd20efrx.json").read_text())
    assert (hdd.protocol, hdd.passed, hdd.temperature_celsius, hdd.power_on_hours) == ("ATA", True, 34.0, 47657)
    assert (hdd.reallocated_sectors, hdd.pending_sectors, hdd.nvme_media_errors) == (0, 0, None)
    ssd = parse_smartctl((SMART / "sata-ssd-samsung-mz7wd240.json").read_text())
    assert (ssd.model, ssd.power_on_hours, ssd.reallocated_sectors, ssd.pending_sectors) == (
        "SAMSUNG MZ7WD240HAFV-00003", 84619, 0, None)  # it has no attribute 197  # fmt: skip
    nvme = parse_smartctl((SMART / "nvme-samsung-970-evo-plus.json").read_text())
    assert (nvme.protocol, nvme.nvme_percentage_used, nvme.nvme_media_errors, nvme.nvme_critical_warning) == (
        "NVMe", 0, 0, 0)  # fmt: skip
    assert (nvme.temperature_celsius, nvme.power_on_hours, nvme.problems) == (35.0, 3149, ())
    for name in ("nosmart-virtio-vda.json", "nosmart-dev-null.json"):
        none = parse_smartctl((SMART / name).read_text())
        assert (none.available, none.exit_status) == (False, 1) and "Unable to detect device type" in none.messages[0]


def test_smartctl_bad_output() -> None:
    for text in ("", "smartctl 6.6: unrecognized option --json", "[]", '{"smartctl": {"exit_status": true}}'):
        with pytest.raises(ParseError):
            parse_smartctl(text)
    odd = parse_smartctl('{"smartctl": {"exit_status": 4}, "temperature": {"current": 9000}, "smart_status": '
                         '{"passed": 1}, "power_on_time": {"hours": -5}}')  # fmt: skip
    assert (odd.temperature_celsius, odd.passed, odd.power_on_hours, odd.available) == (None, None, None, False)
    assert len(odd.problems) == 3


def fake_smartctl(tmp_path: Path, extra: str = "") -> str:
    """A smartctl that prints the recorded output of each fixture device, with the status smartctl exited with."""
    script = tmp_path / "smartctl"
    script.write_text(
        f'#!/bin/sh\nfor a in "$@"; do dev=$a; done\necho "$*" >> {tmp_path}/calls\ncase "$dev" in\n{extra}'
        f"  /dev/sda) cat {SMART}/sata-hdd-wdc-wd20efrx.json ;;\n"
        f"  /dev/sdb) cat {SMART}/sata-ssd-samsung-mz7wd240.json ;;\n"
        f"  /dev/nvme0n1) cat {SMART}/nvme-samsung-970-evo-plus.json ;;\n"
        f"  /dev/vda) cat {SMART}/nosmart-virtio-vda.json; exit 1 ;;\n  *) echo nonsense; exit 2 ;;\nesac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


SMART_DEVICES = ("/dev/sda", "/dev/sdb", "/dev/nvme0n1", "/dev/vda")


def test_a_virtual_disk_has_no_smart_data_and_is_not_an_error(tmp_path: Path) -> None:
    text = scrape(tmp_path, "procfs", smart=SmartOptions(fake_smartctl(tmp_path), SMART_DEVICES))
    assert 'magellan_storage_smart_available{device="vda",node="n1",reason="no_smart"} 0.0' in text
    assert 'magellan_storage_smart_exit_status{device="vda",node="n1"} 1.0' in text
    assert 'magellan_storage_smart_available{device="sda",node="n1",reason="ok"} 1.0' in text
    assert 'magellan_storage_up{node="n1"} 1.0' in text
    assert 'magellan_storage_collector_success{collector="smart",node="n1"} 1.0' in text
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [f"--json --all {d}" for d in SMART_DEVICES]


def test_smart_is_read_again_only_after_its_interval(tmp_path: Path) -> None:
    now = [100.0]
    options = SmartOptions(fake_smartctl(tmp_path), ("/dev/sda",), interval=60)
    c = SmartCollector(Paths(), "n1", Problems(storage_health()), options, timer=lambda: now[0])
    c.read()
    now[0] += 59
    c.read()
    now[0] += 1
    c.read()
    assert len((tmp_path / "calls").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [("  /dev/sda) sleep 5 ;;\n", "timeout"), ("  /dev/sda) echo '{not json' ;;\n", "parse"),
     ("  /dev/sda) head -c 3000 /dev/zero ;;\n", "too_large"), (None, "not_found")],
)  # fmt: skip
def test_a_bad_smartctl_is_a_metric_not_a_crash(tmp_path: Path, body: str | None, reason: str) -> None:
    path = fake_smartctl(tmp_path, body) if body is not None else str(tmp_path / "missing")
    started = time.monotonic()
    text = scrape(tmp_path, "procfs", smart=SmartOptions(path, ("/dev/sda", "/dev/nvme0n1"), timeout=0.5,
                                                         max_bytes=2048))  # fmt: skip
    assert time.monotonic() - started < 3
    assert f'magellan_storage_smart_available{{device="sda",node="n1",reason="{reason}"}} 0.0' in text
    assert f'magellan_storage_scrape_errors_total{{node="n1",reason="smart_{reason}"}} ' in text
    assert 'magellan_storage_up{node="n1"} 0.0' in text
    assert 'magellan_storage_disk_reads_completed_total{device="sda",node="n1"}' in text  # the rest still reported


def test_smart_discovery_takes_disks_only(tmp_path: Path) -> None:
    for name, device in (("sda", True), ("loop0", False), ("md0", False), ("nvme0n1", True)):
        (tmp_path / "block" / name).mkdir(parents=True)
        if device:
            (tmp_path / "block" / name / "device").symlink_to("../../devices/x")
    c = SmartCollector(Paths(sysfs=tmp_path, dev=Path("/dev")), "n1", Problems(storage_health()), SmartOptions())
    assert c.devices() == [("nvme0n1", "/dev/nvme0n1"), ("sda", "/dev/sda")]


# --- the collector: health, filesystem, golden ------------------------------------------------------------------------


def storage_health() -> Health:
    return Health("storage", {"node": "n1"}, storage.ERROR_REASONS, "x", "y")


def statvfs_of(path: str) -> os.statvfs_result:
    """A fixed file system for the golden file: 1 TiB of 4 KiB blocks, a quarter used, 5 % reserved (synthetic)."""
    blocks = 1 << 28
    return os.statvfs_result((4096, 4096, blocks, blocks * 3 // 4, blocks * 7 // 10, 1 << 26, 1 << 25, 1 << 25, 0,
                              255))  # fmt: skip


def collector(
    tree: str,
    only: tuple[str, ...] = storage.COLLECTORS,
    smart: SmartOptions | None = None,
    mounts: tuple[str, ...] = (),
    statvfs: Callable[[str], os.statvfs_result] = statvfs_of,
) -> storage.Collector:
    paths = Paths(procfs=FIX / tree / "proc", sysfs=FIX / tree / "sys", dev=FIX / tree / "dev")

    def build(problem: Problems) -> list[Subsystem]:
        chosen: dict[str, Subsystem] = {
            "diskstats": storage.DiskstatsCollector(paths, "n1", problem, EXCLUDE),
            "md": MdCollector(paths, "n1", problem),
            "filesystem": storage.FilesystemCollector("n1", problem, mounts, 1.0, statvfs),
            "smart": SmartCollector(paths, "n1", problem, smart or SmartOptions(devices=())),
        }
        return [chosen[n] for n in only]

    return storage.Collector("n1", build, clock=lambda: NOW, timer=lambda: 0.0)


def exposition(c: storage.Collector) -> str:
    registry = CollectorRegistry()
    registry.register(c)
    return generate_latest(registry).decode()


def scrape(tmp_path: Path, tree: str, smart: SmartOptions) -> str:
    return exposition(collector(tree, ("diskstats", "md", "smart"), smart))


GOLDEN = {
    "procfs": (("diskstats", "md", "filesystem", "smart"), ("/srv/array",)),
    "md-sysfs": (("md",), ()),
    "host": (("diskstats",), ()),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_exposition(tmp_path: Path, name: str) -> None:
    only, mounts = GOLDEN[name]
    tree = "procfs-md-sysfs" if name == "md-sysfs" else name
    text = exposition(collector(tree, only, SmartOptions(fake_smartctl(tmp_path), SMART_DEVICES), mounts))
    golden = FIX / f"golden-{name}.prom"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), "exposition changed: review it, then rerun with UPDATE_GOLDEN=1 to accept"
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install the Debian package prometheus (make bootstrap does)"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_metric_names_units_and_labels(tmp_path: Path) -> None:
    text = exposition(collector("procfs", smart=SmartOptions(fake_smartctl(tmp_path), SMART_DEVICES),
                                mounts=("/srv/array",)))  # fmt: skip
    assert 'magellan_storage_disk_read_bytes_total{device="sda",node="n1"} 5.13713216512e+11' in text  # x 512
    assert 'magellan_storage_disk_io_time_weighted_seconds_total{device="sda",node="n1"} 82621.804' in text
    assert 'magellan_storage_disk_info{device="sda",major="8",minor="0",node="n1",scheduler="bfq"} 1.0' in text
    assert 'magellan_storage_disk_rotational{device="sda",node="n1"} 1.0' in text
    assert 'magellan_storage_disk_info{device="dm-0",major="252",minor="0",node="n1",scheduler=""} 1.0' in text
    assert 'magellan_storage_md_sync_action{action="recover",device="md6",node="n1"} 1.0' in text
    assert 'magellan_storage_md_info{array="hdd",device="md7",level="raid6",node="n1",sources="mdstat",uuid=""}' in text
    assert 'magellan_storage_md_sync_remaining_seconds{device="md42",node="n1"} 112086.0' in text
    assert 'magellan_storage_md_sync_pending{device="md11",node="n1"} 1.0' in text
    assert 'magellan_storage_filesystem_avail_bytes{mountpoint="/srv/array",node="n1"} 7.69658138624e+11' in text
    assert 'magellan_storage_smart_power_on_seconds_total{device="sda",node="n1"} 1.715652e+08' in text
    assert 'magellan_storage_smart_nvme_percentage_used_ratio{device="nvme0n1",node="n1"} 0.0' in text
    assert 'magellan_storage_smart_info{device="sdb",model="SAMSUNG MZ7WD240HAFV-00003",node="n1",' in text
    for reason in storage.ERROR_REASONS:
        assert f'magellan_storage_scrape_errors_total{{node="n1",reason="{reason}"}} 0.0' in text
    names = {m.name for m in text_string_to_metric_families(text)}
    ours = {n for n in names if n.startswith("magellan_storage_")}
    assert all(re.fullmatch(r"magellan_storage_(disk|md|filesystem|smart|collector)_[a-z_]+|magellan_storage_[a-z_]+",
                            n) for n in ours)  # fmt: skip
    assert "magellan_storage_up" in names and "process_cpu_seconds" not in names  # no default registry


def test_broken_sources_are_counted_and_the_rest_reported(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(FIX / "procfs", tree, symlinks=True)
    (tree / "proc" / "diskstats").unlink()
    os.mkfifo(tree / "proc" / "diskstats")  # a FIFO never blocks the exporter (read_regular: O_NONBLOCK)
    (tree / "sys" / "block" / "sda" / "queue" / "scheduler").write_text("noop deadline\n")
    with (tree / "proc" / "mdstat").open("a") as f:
        f.write("md9999 : exploded\n      garbage\n")
    c = collector(str(tree), ("diskstats", "md"))
    text = exposition(c)
    assert 'magellan_storage_up{node="n1"} 0.0' in text
    assert 'magellan_storage_scrape_errors_total{node="n1",reason="diskstats"} 1.0' in text
    assert 'magellan_storage_scrape_errors_total{node="n1",reason="mdstat"} 1.0' in text
    assert 'magellan_storage_collector_success{collector="diskstats",node="n1"} 0.0' in text
    assert 'magellan_storage_md_sync_action{action="recover",device="md6",node="n1"} 1.0' in text  # md still read
    (tree / "proc" / "diskstats").unlink()
    shutil.copy(FIX / "procfs" / "proc" / "diskstats", tree / "proc" / "diskstats")
    text = exposition(c)
    assert 'magellan_storage_scrape_errors_total{node="n1",reason="queue"} 1.0' in text  # the bad scheduler file
    assert 'magellan_storage_disk_info{device="sda",major="8",minor="0",node="n1",scheduler=""} 1.0' in text


def test_what_is_not_a_sysfs_attribute_is_bounded_and_counted(tmp_path: Path) -> None:
    """read_attribute, the sysfs reader without read_text's fstat: a FIFO (with a writer that holds it open and never
    writes, which a blocking read would wait for), a file larger than a page and a directory where md's attributes
    are: each a problem of its reason, the scrape answers, the rest of the array is still reported."""
    tree = tmp_path / "tree"
    shutil.copytree(FIX / "guest" / "recovering", tree, symlinks=True)
    md = next((tree / "sys" / "block").glob("md*/md"))
    (md / "sync_speed").unlink()
    os.mkfifo(md / "sync_speed")
    writer = os.open(md / "sync_speed", os.O_RDWR)  # a writer that never writes: a blocking read would wait forever
    try:
        (md / "level").unlink()
        (md / "level").write_text("raid6\n" * 1000)
        (md / "uuid").unlink()
        (md / "uuid").mkdir()
        paths = Paths(procfs=tree / "proc", sysfs=tree / "sys")
        problems = Problems(Health("storage", {"node": "n1"}, storage.ERROR_REASONS, "x", "y"))
        c = MdCollector(paths, "n1", problems, tree / "dev" / "md")
        families, ok = c.read()
        assert not ok and problems.health.errors["md_sysfs"] == 3, problems.health.errors
        assert any(f.name == "magellan_storage_md_member_info" for f in families)
    finally:
        os.close(writer)


def test_no_md_driver_is_no_arrays_not_an_error() -> None:
    text = exposition(collector("host", ("md",)))
    assert "magellan_storage_md_" not in text and 'magellan_storage_up{node="n1"} 1.0' in text


def test_a_hanging_statvfs_is_skipped_until_it_returns() -> None:
    release = threading.Event()

    def statvfs(path: str) -> os.statvfs_result:
        if path == "/dead/nfs":
            release.wait(10)
        return statvfs_of(path)

    c = collector("host", ("filesystem",), mounts=("/dead/nfs", "/srv/array"), statvfs=statvfs)
    started = time.monotonic()
    text = exposition(c)
    assert time.monotonic() - started < 3
    assert 'reason="filesystem_timeout"} 1.0' in text and 'mountpoint="/dead/nfs"' not in text
    assert 'magellan_storage_filesystem_size_bytes{mountpoint="/srv/array",node="n1"}' in text
    text = exposition(c)  # still stuck: skipped at once, counted again
    assert 'reason="filesystem_timeout"} 2.0' in text
    release.set()
    deadline = time.monotonic() + 5
    while 'mountpoint="/dead/nfs"' not in text and time.monotonic() < deadline:
        time.sleep(0.05)
        text = exposition(c)
    assert 'magellan_storage_filesystem_size_bytes{mountpoint="/dead/nfs",node="n1"}' in text


def test_command_line() -> None:
    args = storage._parser().parse_args(["--no-collector.smart", "--smart.devices=/dev/sda,/dev/sdb",
                                         "--smart.devices", "/dev/nvme0n1", "--collector.filesystem.mount-points=/srv",
                                         "--path.sysfs=/x/sys", "--web.listen-address=127.0.0.1:9999"])  # fmt: skip
    assert (args.collector_smart, args.collector_md, args.devices) == (False, True, ["/dev/sda", "/dev/sdb",
                                                                                      "/dev/nvme0n1"])  # fmt: skip
    assert (args.mounts, args.sysfs, args.listen, args.smart_timeout) == (["/srv"], Path("/x/sys"),
                                                                          ("127.0.0.1", 9999), 10.0)  # fmt: skip
    defaults = storage._parser().parse_args([])
    assert (defaults.listen, defaults.md_links) == (("0.0.0.0", 9813), Path("/dev/md"))
    assert storage._parser().parse_args(["--collector.md.links-directory=/x/md"]).md_links == Path("/x/md")


@pytest.mark.parametrize("bad", ["--collector.diskstats.device-exclude=(", "--smart.timeout=0", "--smart.devices=,"])
def test_bad_flags_exit_2_with_a_message(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        storage.main([bad])
    assert exc.value.code == 2 and bad.split("=", maxsplit=1)[0] in capsys.readouterr().err


# --- agreement with node_exporter 1.5 -------------------------------------------------------------------------------

DISK_PAIRS = {  # node_exporter's series -> ours (the same figure, the same unit)
    "node_disk_reads_completed_total": "magellan_storage_disk_reads_completed_total",
    "node_disk_writes_completed_total": "magellan_storage_disk_writes_completed_total",
    "node_disk_reads_merged_total": "magellan_storage_disk_reads_merged_total",
    "node_disk_writes_merged_total": "magellan_storage_disk_writes_merged_total",
    "node_disk_read_bytes_total": "magellan_storage_disk_read_bytes_total",
    "node_disk_written_bytes_total": "magellan_storage_disk_written_bytes_total",
    "node_disk_read_time_seconds_total": "magellan_storage_disk_read_time_seconds_total",
    "node_disk_write_time_seconds_total": "magellan_storage_disk_write_time_seconds_total",
    "node_disk_io_now": "magellan_storage_disk_in_flight_requests",
    "node_disk_io_time_seconds_total": "magellan_storage_disk_io_time_seconds_total",
    "node_disk_io_time_weighted_seconds_total": "magellan_storage_disk_io_time_weighted_seconds_total",
    "node_disk_discards_completed_total": "magellan_storage_disk_discards_completed_total",
    "node_disk_discards_merged_total": "magellan_storage_disk_discards_merged_total",
    "node_disk_discard_time_seconds_total": "magellan_storage_disk_discard_time_seconds_total",
    "node_disk_flush_requests_total": "magellan_storage_disk_flush_requests_total",
    "node_disk_flush_requests_time_seconds_total": "magellan_storage_disk_flush_time_seconds_total",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "node"))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[Callable[[str], dict[tuple[str, tuple[tuple[str, str], ...]], float]]]:
    """Scrape node_exporter once on a fixture tree, with only its diskstats and mdadm collectors."""
    procs: list[subprocess.Popen[bytes]] = []

    def run(tree: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        sysfs = FIX / tree / "sys" if (FIX / tree / "sys").is_dir() else tmp_path  # it refuses a missing sysfs
        port = free_port()
        proc = subprocess.Popen(
            [str(NODE_EXPORTER), f"--path.procfs={FIX / tree / 'proc'}", f"--path.sysfs={sysfs}",
             f"--path.udev.data={tmp_path}", "--collector.disable-defaults", "--collector.diskstats",
             "--collector.mdadm", f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        deadline = time.monotonic() + 20
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                return samples(body)
            except OSError:
                assert proc.poll() is None, f"node_exporter exited {proc.returncode}"
                assert time.monotonic() < deadline, "node_exporter did not answer within 20 s"
                time.sleep(0.1)

    yield run
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def node_state(ours: dict[tuple[str, tuple[tuple[str, str], ...]], float], device: str) -> str:
    """Our state and sync action in node_md_state's words (active, inactive, recovering, resync, check)."""

    if ours.get(("magellan_storage_md_state", (("device", device), ("state", "inactive")))) == 1:
        return "inactive"
    for action, word in (("recover", "recovering"), ("resync", "resync"), ("check", "check")):
        if ours.get(("magellan_storage_md_sync_action", (("action", action), ("device", device)))) == 1:
            return word
    return "active"


@pytest.mark.skipif(not NODE_EXPORTER.exists(), reason=f"{NODE_EXPORTER} missing: apt-get install "
                    "prometheus-node-exporter (CI installs it) to compare with node_exporter 1.5")  # fmt: skip
@pytest.mark.parametrize("tree", ["procfs", "node_exporter", "host", "kernel-doc"])
def test_values_agree_with_node_exporter(tree: str, node_exporter: Callable[[str], dict[tuple[str, tuple[
        tuple[str, str], ...]], float]]) -> None:  # fmt: skip
    theirs = node_exporter(tree)
    ours = samples(exposition(collector(tree, ("diskstats", "md"))))
    compared = 0
    for their_name, our_name in DISK_PAIRS.items():
        their_series = {k[1]: v for k, v in theirs.items() if k[0] == their_name}
        our_series = {k[1]: v for k, v in ours.items() if k[0] == our_name}
        assert their_series.keys() == our_series.keys(), their_name  # the same devices (the same default exclude)
        for labels, value in their_series.items():
            assert math.isclose(our_series[labels], value, rel_tol=1e-12), (their_name, labels)
            compared += 1
    discarded = {k[1]: v for k, v in theirs.items() if k[0] == "node_disk_discarded_sectors_total"}
    for labels, value in discarded.items():  # node_exporter counts sectors, we count bytes
        assert ours[("magellan_storage_disk_discarded_bytes_total", labels)] == value * 512
    assert compared > 0
    md_ok = theirs[("node_scrape_collector_success", (("collector", "mdadm"),))]
    if tree == "node_exporter":
        # node_exporter 1.5 (procfs 0.8) fails on the whole file over md8's tab-indented lines; we read all 12.
        assert md_ok == 0 and len({k[1] for k in ours if k[0] == "magellan_storage_md_info"}) == 12
        return
    devices = sorted({dict(k[1])["device"] for k in theirs if k[0] == "node_md_blocks"})
    assert len(devices) == {"procfs": 18}.get(tree, 0)
    assert devices == sorted({dict(k[1])["device"] for k in ours if k[0] == "magellan_storage_md_info"})
    for device in devices:
        d = (("device", device),)
        assert ours[("magellan_storage_md_size_bytes", d)] == theirs[("node_md_blocks", d)] * 1024
        for state in ("active", "failed", "spare"):
            key = (("device", device), ("state", state))
            assert ours[("magellan_storage_md_disks", key)] == theirs[("node_md_disks", key)], (device, state)
        their_state = next(dict(k[1])["state"] for k, v in theirs.items() if k[0] == "node_md_state" and v == 1
                           and dict(k[1])["device"] == device)  # fmt: skip
        if device == "md42":
            # Different on purpose: node_exporter does not know a reshape (active, blocks_synced = blocks, i.e.
            # "done"); we report sync_action reshape at 56.1 %.
            assert their_state == "active" and theirs[("node_md_blocks_synced", d)] == theirs[("node_md_blocks", d)]
            assert ours[("magellan_storage_md_sync_progress_ratio", d)] == pytest.approx(0.5615, abs=1e-4)
            continue
        assert node_state(ours, device) == their_state, device
        if their_state == "inactive":
            # Different on purpose: node_exporter reports 0 slots for an inactive array; it keeps its [n/m] slots.
            assert theirs[("node_md_disks_required", d)] == 0
        else:
            assert ours[("magellan_storage_md_disks_required", d)] == theirs[("node_md_disks_required", d)], device
        progress = ours.get(("magellan_storage_md_sync_progress_ratio", d))
        if progress is not None and progress > 0:
            # raid1 only in these trees, where a member is the array: their synced / blocks is our ratio. For a
            # striped array it is not (test_progress_is_not_divided_by_the_array_size): node_exporter's bug.
            assert progress == theirs[("node_md_blocks_synced", d)] / theirs[("node_md_blocks", d)]


# --- md recorded in the storage guest in every state (tools/record-md-states; fixtures README) ----------------------

GUEST = FIX / "guest"
# state: the scratch array's md name, and what the exporter must report for it: array_state, sync action, pending,
# member disks active/failed/spare (sysfs: a rebuilding member is a spare), degraded slots, and the mdstat-only view's
# action (mdstat says resync for a repair, nothing for frozen) and spare count (mdstat lists a rebuilding member
# without (S))
RECORDED = {
    "resync": ("rec1", "clean", "resync", False, (2, 0, 0), 0, "resync", 0),
    "clean": ("rec1", "clean", "idle", False, (2, 0, 0), 0, "idle", 0),
    "check": ("rec1", "clean", "check", False, (2, 0, 0), 0, "check", 0),
    "frozen": ("rec1", "clean", "frozen", False, (2, 0, 0), 0, "idle", 0),
    "repair": ("rec1", "clean", "repair", False, (2, 0, 0), 0, "resync", 0),
    "faulty": ("rec1", "clean", "idle", False, (1, 1, 0), 1, "idle", 0),
    "degraded": ("rec1", "clean", "idle", False, (1, 0, 0), 1, "idle", 0),
    "recovering": ("rec1", "clean", "recover", False, (1, 0, 1), 1, "recover", 0),
    "spare": ("rec5", "clean", "idle", False, (3, 0, 1), 0, "idle", 1),
    "reshape": ("rec5", "clean", "reshape", False, (4, 0, 0), 0, "reshape", 0),
    "pending": ("rec2", "read-auto", "resync", True, (2, 0, 0), 0, "resync", 0),
    "delayed": ("rec4", "clean", "resync", True, (2, 0, 0), 0, "resync", 0),
}


def recorded(state: str) -> dict[str, MdArray]:
    """The md collector on one recorded tree, arrays by md name; no problem may be counted."""
    tree = GUEST / state
    problem = Problems(storage_health())
    arrays = MdCollector(Paths(procfs=tree / "proc", sysfs=tree / "sys"), "n1", problem, tree / "dev" / "md").arrays()
    assert problem.count == 0, state
    return {a.md_name: a for a in arrays}


def sysfs_figures(state: str, device: str) -> tuple[int, int, int]:
    """(done, total, KiB/s) straight from the recorded sync_completed and sync_speed files."""
    md = GUEST / state / "sys" / "block" / device / "md"
    done, total = (int(n) for n in (md / "sync_completed").read_text().split(" / "))
    return done, total, int((md / "sync_speed").read_text())


@pytest.mark.parametrize("state", sorted(RECORDED))
def test_md_recorded_in_every_state(state: str) -> None:
    name, array_state, action, pending, (active, failed, spare), degraded, _, _ = RECORDED[state]
    a = recorded(state)[name]
    assert (a.state, a.action, a.pending, a.sources) == (array_state, action, pending, "mdstat+sysfs")
    required = 4 if state == "reshape" else 3 if name == "rec5" else 2  # the reshape grew rec5 from 3 to 4 members
    assert (a.active, a.failed, a.spare, a.degraded, a.required) == (active, failed, spare, degraded, required)
    if pending:
        assert (a.progress, a.speed_bytes, a.remaining_seconds) == (0.0, None, None)
    elif action in ("resync", "check", "repair", "recover", "reshape"):
        done, total, speed = sysfs_figures(state, a.name)
        assert a.progress == done / total and 0 < done < total  # per member: not blocks synced / array size
        assert speed > 0 and a.speed_bytes == speed * 1024
        assert a.remaining_seconds == pytest.approx((total - done) * 512 / (speed * 1024))
    else:
        assert (a.progress, a.speed_bytes, a.remaining_seconds) == (None, None, None)


@pytest.mark.parametrize("state", sorted(RECORDED))
def test_mdstat_recorded_in_every_state(state: str) -> None:
    """The mdstat-only view of the same recordings: every array parses (the node's own hdd and ssd too), the scratch
    array's action, pending, counts and its progress line's own done / total."""
    name, _, _, pending, (active, failed, _), degraded, action, spare = RECORDED[state]
    arrays, problems = parse_mdstat((GUEST / state / "proc" / "mdstat").read_text())
    assert problems == []
    device = os.readlink(GUEST / state / "dev" / "md" / name).rpartition("/")[2]
    by = {m.name: m for m in arrays}
    for own in ("hdd", "ssd"):  # storage1's own arrays, idle raid6 of four members in every recording
        m = merge(by[os.readlink(GUEST / state / "dev" / "md" / own).rpartition("/")[2]], None)
        assert (m.level, m.action, m.active, m.required, m.degraded) == ("raid6", "idle", 4, 4, 0)
    m = by[device]
    a = merge(m, None)
    assert (a.action, a.pending, a.active, a.failed, a.spare, a.degraded) == (action, pending, active, failed, spare,
                                                                               degraded)  # fmt: skip
    if pending:
        assert m.pending == state.upper() and (a.progress, a.speed_bytes) == (0.0, None)
    elif m.progress is not None:
        p = m.progress
        assert a.progress == p.done_kib / p.total_kib and a.speed_bytes == (p.speed_kib or 0) * 1024 > 0
        assert a.remaining_seconds == p.finish_seconds and m.blocks is not None
        if state == "reshape":  # a reshape of a raid5 counts per member: half the array's 2 data disks
            assert p.total_kib * 2 == m.blocks
    else:
        assert action == "idle" and a.progress is None


# state: the scratch array's members and their states as magellan_storage_md_member_info names them (sysfs and mdstat),
# and as mdstat alone does (it lists a rebuilding member unmarked: in_sync)
RECORDED_MEMBERS = {
    "degraded": ({"loop0": "in_sync"}, {"loop0": "in_sync"}),  # loop1 removed: no longer a member
    "faulty": ({"loop0": "in_sync", "loop1": "faulty"}, {"loop0": "in_sync", "loop1": "faulty"}),
    "recovering": ({"loop0": "in_sync", "loop2": "rebuilding"}, {"loop0": "in_sync", "loop2": "in_sync"}),
    "spare": ({"loop3": "in_sync", "loop4": "in_sync", "loop5": "in_sync", "loop6": "spare"},
              {"loop3": "in_sync", "loop4": "in_sync", "loop5": "in_sync", "loop6": "spare"}),
    "pending": ({"loop2": "in_sync", "loop3": "in_sync"}, {"loop2": "in_sync", "loop3": "in_sync"}),
}  # fmt: skip


@pytest.mark.parametrize("state", sorted(RECORDED_MEMBERS))
def test_md_member_states_recorded(state: str) -> None:
    """Each member of the scratch array named with its state, the node's own raid6 members all in sync; in the
    exposition, one magellan_storage_md_member_info series a member and none for any other device."""
    both, mdstat_only = RECORDED_MEMBERS[state]
    arrays = recorded(state)
    scratch = arrays[RECORDED[state][0]]
    assert dict(scratch.members) == both
    assert all(s in MEMBER_STATES for a in arrays.values() for _, s in a.members)
    for own in ("hdd", "ssd"):
        assert [s for _, s in arrays[own].members] == ["in_sync"] * 4
    assert dict(merge(mdstat(f"guest/{state}")[scratch.name], None).members) == mdstat_only  # type: ignore[arg-type]
    text = exposition(collector(f"guest/{state}", ("md",)))
    series = {(s.labels["device"], s.labels["member"], s.labels["state"]) for f in text_string_to_metric_families(
        text) if f.name == "magellan_storage_md_member_info" for s in f.samples}  # fmt: skip
    assert {(d, m) for d, m, _ in series} == {(a.name, m) for a in arrays.values() for m, _ in a.members}
    assert {(m, s) for d, m, s in series if d == scratch.name} == set(both.items())
    assert len(series) == len(both) + 8


def test_md_recorded_names_and_the_nodes_own_arrays() -> None:
    """Every recording names the node's arrays from its /dev/md links, and reports them as sysfs says."""
    for state in RECORDED:
        arrays = recorded(state)
        for own in ("hdd", "ssd"):
            a = arrays[own]
            assert (a.level, a.state, a.action, a.active, a.required, a.degraded) == ("raid6", "clean", "idle", 4, 4, 0)
    delayed = recorded("delayed")["rec3"]  # the array the delayed one waits for, resyncing
    assert (delayed.action, delayed.pending) == ("resync", False) and delayed.progress is not None
    assert (GUEST / "KERNEL").read_text().startswith("6.1.0-") and "v4.2" in (GUEST / "MDADM").read_text()


@pytest.mark.skipif(not NODE_EXPORTER.exists(), reason=f"{NODE_EXPORTER} missing: apt-get install "
                    "prometheus-node-exporter (CI installs it) to compare with node_exporter 1.5")  # fmt: skip
@pytest.mark.parametrize("state", sorted(RECORDED))
def test_md_recordings_agree_with_node_exporter(state: str, node_exporter: Callable[[str], dict[tuple[str, tuple[
        tuple[str, str], ...]], float]]) -> None:  # fmt: skip
    """node_exporter 1.5 (mdstat only) and us (mdstat + sysfs) on each recorded tree, every array: the same size,
    slots, active and failed members and state, but for the differences on purpose named here."""
    theirs = node_exporter(f"guest/{state}")
    ours = samples(exposition(collector(f"guest/{state}", ("md",))))
    assert theirs[("node_scrape_collector_success", (("collector", "mdadm"),))] == 1
    devices = sorted({dict(k[1])["device"] for k in theirs if k[0] == "node_md_blocks"})
    assert devices == sorted({dict(k[1])["device"] for k in ours if k[0] == "magellan_storage_md_info"})
    scratch = os.readlink(GUEST / state / "dev" / "md" / RECORDED[state][0]).rpartition("/")[2]
    for device in devices:
        d = (("device", device),)
        assert ours[("magellan_storage_md_size_bytes", d)] == theirs[("node_md_blocks", d)] * 1024
        assert ours[("magellan_storage_md_disks_required", d)] == theirs[("node_md_disks_required", d)]
        for disks in ("active", "failed", "spare"):
            key = (("device", device), ("state", disks))
            if (state, disks, device) == ("recovering", "spare", scratch):
                # Different on purpose: sysfs calls the rebuilding member a spare; mdstat lists it without (S)
                assert (ours[("magellan_storage_md_disks", key)], theirs[("node_md_disks", key)]) == (1, 0)
                continue
            assert ours[("magellan_storage_md_disks", key)] == theirs[("node_md_disks", key)], (device, disks)
        their_state = next(dict(k[1])["state"] for k, v in theirs.items() if k[0] == "node_md_state" and v == 1
                           and dict(k[1])["device"] == device)  # fmt: skip
        if device == scratch and state == "reshape":  # node_exporter knows no reshape: "active", synced = blocks
            assert their_state == "active" and theirs[("node_md_blocks_synced", d)] == theirs[("node_md_blocks", d)]
        elif device == scratch and state == "repair":  # mdstat says resync for a repair; sysfs names it
            assert their_state == "resync" and ours[("magellan_storage_md_sync_action", (("action", "repair"),
                                                                                        *d))] == 1  # fmt: skip
        else:
            assert node_state(ours, device) == their_state, device


def test_golden_exposition_of_a_recording() -> None:
    """The md collector's whole exposition of the recovering recording (the scratch mirror rebuilding, the node's
    two raid6 arrays idle), compared exactly; UPDATE_GOLDEN=1 rewrites it."""
    text = exposition(collector("guest/recovering", ("md",)))
    golden = FIX / "golden-guest-recovering.prom"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), "exposition changed: review it, then rerun with UPDATE_GOLDEN=1 to accept"
    assert 'magellan_storage_md_sync_action{action="recover",device="md125",node="n1"} 1.0' in text
    assert 'magellan_storage_md_info{array="rec1",device="md125",level="raid1",node="n1",' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install the Debian package prometheus (make bootstrap does)"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
