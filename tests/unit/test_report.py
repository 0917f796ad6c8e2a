"""Ratios, the known-answer check, and the report files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from testbed.report import Comparison, NodeResult, load_comparison, table, write_report

T0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


def comparison() -> Comparison:
    full = NodeResult("compute1", "bare-metal", "j1", 1.0, 45000, 30.0, 29.9, 1500.0)
    half = NodeResult("compute2", "bare-metal-halfcpu", "j2", 0.5, 21000, 30.0, 14.8, 700.0)
    return Comparison("simulate", {"duration_s": 30, "run_id": "cmp-1"}, "compute1", T0, T0, [full, half, unknown()])


def unknown() -> NodeResult:
    return NodeResult("vm1", "kvm", "j3", None, 30000, 30.0, 29.0, 1000.0, accel="tcg")


T0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


def repeated() -> Comparison:
    """Three interleaved repetitions: compute2 at half rate with little spread, vm1 within noise of compute1."""
    full = NodeResult("compute1", "bare-metal", "a,b,c", 1.0, 45000, 30.0, 29.9, 1500.0, runs=[1500, 1490, 1510])
    half = NodeResult("compute2", "bare-metal-halfcpu", "d,e,f", 0.5, 22500, 30.0, 15, 750.0, runs=[750, 745, 757])
    vm = NodeResult("vm1", "kvm", "g,h,i", None, 45000, 30.0, 29.9, 1500.0, accel="tcg", runs=[1530, 1440, 1505])
    return Comparison("simulate", {"repeat": 3, "run_id": "cmp-2"}, "compute1", T0, T0, [full, half, vm])


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


def test_repetitions_give_median_ratio_spread_and_verdict(tmp_path: Path) -> None:
    rows = {r.result.node: r for r in repeated().rows()}
    assert rows["compute1"].verdict == "reference"
    assert rows["compute2"].ratio == 0.5 and rows["compute2"].verdict == "real"
    assert rows["compute2"].spread is not None and rows["compute2"].spread < 0.01
    assert rows["vm1"].verdict == "within noise"  # ±3 % spread hides a 0 % median difference
    out = write_report(repeated(), tmp_path)
    md = (out / "report.md").read_text()
    assert "| within noise |" in md and "| real |" in md
    assert load_comparison(out / "comparison.json") == repeated()


def test_single_runs_make_no_claim() -> None:
    rows = comparison().rows()
    assert {r.verdict for r in rows} == {"reference", "one run: no spread"}
