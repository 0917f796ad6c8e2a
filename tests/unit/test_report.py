"""Ratios, the known-answer check, and the report files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from testbed.report import Comparison, NodeResult, load_comparison, table, write_report


def comparison() -> Comparison:
    full = NodeResult("compute1", "bare-metal", "j1", 1.0, 45000, 30.0, 29.9, 1500.0)
    half = NodeResult("compute2", "bare-metal-halfcpu", "j2", 0.5, 21000, 30.0, 14.8, 700.0)
    unknown = NodeResult("vm1", "kvm", "j3", None, 30000, 30.0, 29.0, 1000.0, accel="tcg")
    t0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
    return Comparison("simulate", {"duration_s": 30, "run_id": "cmp-1"}, "compute1", t0, t0, [full, half, unknown])


def test_ratios_and_deviation() -> None:
    rows = {r.result.node: r for r in comparison().rows()}
    assert rows["compute1"].ratio == 1.0 and rows["compute1"].deviation_pct == 0.0
    assert round(rows["compute2"].ratio, 4) == 0.4667
    assert rows["compute2"].expected == 0.5
    assert round(rows["compute2"].deviation_pct or 0, 2) == -6.67
    assert rows["vm1"].expected is None and rows["vm1"].deviation_pct is None


def test_known_answer_check() -> None:
    c = comparison()
    assert c.known_answer_ok(15.0)
    assert not c.known_answer_ok(5.0)


def test_efficiency_figures() -> None:
    half = comparison().results[1]
    assert round(half.cpu_efficiency, 3) == 0.493
    assert round(half.events_per_cpu_second) == 1419


def test_table_has_a_row_per_node_and_shows_accel() -> None:
    console = Console(width=200, record=True)
    console.print(table(comparison()))
    text = console.export_text()
    assert all(n in text for n in ("compute1", "compute2", "vm1", "tcg", "-6.7 %", "OFF" if False else "ok"))
    assert table(comparison()).row_count == 3


def test_report_files(tmp_path: Path) -> None:
    c = comparison()
    out = write_report(c, tmp_path)
    assert out.name == "20261125T040000Z-simulate"
    md = (out / "report.md").read_text()
    assert "| compute2 | bare-metal-halfcpu |" in md and "How these numbers were measured" in md
    assert (out / "events_per_second.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = load_comparison(out / "comparison.json")
    assert again == c
