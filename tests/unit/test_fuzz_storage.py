"""The storage exporter's parsers, fuzzed like the others (tests/unit/test_fuzz_parsers.py): arbitrary text, and
recorded input with one part mutated. Zero escapes: the line parsers never raise, the value parsers raise only
ParseError, and what passes holds finite numbers in range; md figures merged from it stay in range too."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exporters import storage_parsers as p
from exporters.storage_md import MdSysfs, merge
from tests.unit.test_fuzz_parsers import FAST, JSON, NEAR, TEXT, _replace_field, in_range

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "storage"
DISKSTATS = (FIX / "host" / "proc" / "diskstats").read_text().splitlines()
MDSTAT = (FIX / "procfs" / "proc" / "mdstat").read_text().splitlines()
SMART = json.loads((FIX / "smartctl" / "nvme-samsung-970-evo-plus.json").read_text())
ATA = json.loads((FIX / "smartctl" / "sata-hdd-wdc-wd20efrx.json").read_text())
MDSTAT_WORDS = st.sampled_from(["resync=PENDING", "resync=DELAYED", "recovery =  8.5% (1/2)", "[UU_]", "[2/1]",
                                "(F)", "(S)", "blocks", "\t", "finish=1.0min", "speed=1K/sec"])  # fmt: skip


def figures_in_range(value: Any) -> bool:
    """in_range on a parser's result, its flags (bools: issued_only, active, available, passed) left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return all(figures_in_range(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (tuple, list, frozenset)):
        return all(figures_in_range(v) for v in value)
    return isinstance(value, bool) or in_range(value)


def check_md(arrays: list[p.MdStat]) -> None:
    for a in arrays:
        assert figures_in_range(a)
        m = merge(a, None)
        assert m.progress is None or 0 <= m.progress <= 1
        assert all(v is None or v >= 0 for v in (m.speed_bytes, m.remaining_seconds, m.degraded, m.active))


@FAST
@given(st.text(max_size=400))
def test_parse_diskstats_arbitrary(text: str) -> None:
    stats, problems = p.parse_diskstats(text)
    assert all(figures_in_range(s) for s in stats) and all(
        isinstance(n, int) and isinstance(m, str) for n, m in problems
    )


@FAST
@given(st.integers(0, len(DISKSTATS) - 1), st.integers(0, 19), NEAR)
def test_parse_diskstats_one_field_mutated(line: int, column: int, value: str) -> None:
    lines = list(DISKSTATS)
    lines[line] = _replace_field(lines[line].strip(), column, value)
    stats, _ = p.parse_diskstats("\n".join(lines))
    assert all(figures_in_range(s) for s in stats)


@FAST
@given(st.text(max_size=400) | st.lists(MDSTAT_WORDS | TEXT, max_size=12).map(" ".join))
def test_parse_mdstat_arbitrary(text: str) -> None:
    arrays, problems = p.parse_mdstat(text)
    check_md(arrays)
    assert all(isinstance(n, int) and isinstance(m, str) for n, m in problems)


@FAST
@given(st.integers(0, len(MDSTAT) - 1), st.integers(0, 12), NEAR | MDSTAT_WORDS)
def test_parse_mdstat_one_word_mutated(line: int, column: int, value: str) -> None:
    lines = list(MDSTAT)
    lines[line] = _replace_field(lines[line], column, value)
    arrays, _ = p.parse_mdstat("\n".join(lines))
    check_md(arrays)


VALUE_PARSERS: list[Callable[[str], Any]] = [
    p.parse_scheduler, p.parse_flag, p.parse_sysfs_count, p.parse_array_state, p.parse_sync_action,
    p.parse_sync_completed, p.parse_raid_disks, p.parse_sync_speed, p.parse_speed_limit, p.parse_member_state,
    p.parse_member_slot, p.parse_diskstats_line,
]  # fmt: skip
SYSFS_NEAR = st.sampled_from(["none", "delayed", "1 / 2", "2 / 1", "0 / 0", "11 (10)", "[bfq]", "[a] [b]",
                              "1000 (system)", "in_sync,spare", "idle", "clean", "8 0 sda 1 2 3 4"])  # fmt: skip


@FAST
@given(TEXT | NEAR | SYSFS_NEAR | st.builds(str.__add__, SYSFS_NEAR, TEXT))
def test_sysfs_value_parsers_raise_only_parse_error(text: str) -> None:
    for parse in VALUE_PARSERS:
        with contextlib.suppress(p.ParseError):
            assert figures_in_range(parse(text))


@FAST
@given(st.text(max_size=60), st.text(max_size=60), SYSFS_NEAR | TEXT)
def test_merge_of_any_sysfs_figures(state: str, action: str, completed: str) -> None:
    def parsed(parse: Callable[[str], Any], text: str) -> Any:
        try:
            return parse(text)
        except p.ParseError:
            return None

    s = MdSysfs(name="md0", array_state=parsed(p.parse_array_state, state),
                sync_action=parsed(p.parse_sync_action, action),
                sync_completed=parsed(p.parse_sync_completed, completed), sync_speed_kib=1)  # fmt: skip
    m = merge(None, s)
    assert m.progress is None or 0 <= m.progress <= 1
    assert m.remaining_seconds is None or m.remaining_seconds >= 0


def check_smart(text: str) -> None:
    try:
        d = p.parse_smartctl(text)
    except p.ParseError:
        return
    t = d.temperature_celsius
    assert t is None or p.TEMPERATURE_RANGE[0] <= t <= p.TEMPERATURE_RANGE[1]
    assert figures_in_range(dataclasses.replace(d, temperature_celsius=None))
    assert 0 <= d.exit_status <= 255 and all(isinstance(x, str) for x in (*d.messages, *d.problems))


@FAST
@given(st.text(max_size=300) | JSON.map(json.dumps))
def test_parse_smartctl_arbitrary(text: str) -> None:
    check_smart(text)


def _set(data: Any, path: tuple[str, ...], value: Any) -> Any:
    out = json.loads(json.dumps(data))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


PATHS = [("smartctl", "exit_status"), ("smart_status", "passed"), ("temperature", "current"),
         ("power_on_time", "hours"), ("nvme_smart_health_information_log",),
         ("nvme_smart_health_information_log", "media_errors"), ("device", "protocol"), ("model_name",),
         ("smartctl", "messages")]  # fmt: skip


@FAST
@given(st.sampled_from(PATHS), JSON, st.booleans())
def test_parse_smartctl_one_field_replaced(path: tuple[str, ...], value: Any, ata: bool) -> None:
    base = ATA if ata else SMART
    if ata and path[0] == "nvme_smart_health_information_log":
        path = ("ata_smart_attributes", "table")
    check_smart(json.dumps(_set(base, path, value)))
