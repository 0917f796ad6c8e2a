"""Ratios, the known-answer checks (CPU quota, read throttle), failed runs, storms, and the report files
(testbed.analysis, testbed.render, testbed.plots and testbed.report on the model of testbed.model)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from testbed import analysis, report
from testbed.model import Comparison, NodeResult, load_campaign
from testbed.render import print_campaign, storm_table, table
from testbed.report import write_report

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
    rows = {r.result.node: r for r in analysis.rows(comparison())}
    assert rows["compute1"].ratio == 1.0 and rows["compute1"].deviation_pct == 0.0
    assert round(rows["compute2"].ratio, 4) == 0.4667
    assert rows["compute2"].expected == 0.5
    assert round(rows["compute2"].deviation_pct or 0, 2) == -6.67
    assert rows["vm1"].expected is None and rows["vm1"].deviation_pct is None


def test_no_profile_predicts_a_virtual_node() -> None:
    # Even with a CPU figure (its vCPUs), a guest's ratio is the accelerator's cost: nothing to check it against.
    c = comparison()
    c.results[2] = replace(c.results[2], configured_cpus=1.0)
    assert {r.result.node: r.expected for r in analysis.rows(c)} == {"compute1": 1.0, "compute2": 0.5, "vm1": None}


def test_known_answer_check() -> None:
    c = comparison()
    assert analysis.known_answer_ok(c, 15.0)
    assert not analysis.known_answer_ok(c, 5.0)


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
    out = write_report([c], tmp_path)
    assert out.name == "20261125T040000Z-campaign"
    md = (out / "report.md").read_text()
    assert "| compute2 | bare-metal-halfcpu |" in md and "How these numbers were measured" in md
    assert (out / "simulate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_campaign(out / "campaign.json") == [c]


def test_repetitions_give_median_ratio_spread_and_verdict(tmp_path: Path) -> None:
    rows = {r.result.node: r for r in analysis.rows(repeated())}
    assert rows["compute1"].verdict == "reference"
    assert rows["compute2"].ratio == 0.5 and rows["compute2"].verdict == "real"
    assert rows["compute2"].spread is not None and rows["compute2"].spread < 0.01
    assert rows["vm1"].verdict == "within noise"  # ±3 % spread hides a 0 % median difference
    out = write_report([repeated()], tmp_path)
    md = (out / "report.md").read_text()
    assert "| within noise |" in md and "| real |" in md
    assert load_campaign(out / "campaign.json") == [repeated()]


def test_single_runs_make_no_claim() -> None:
    rows = analysis.rows(comparison())
    assert {r.verdict for r in rows} == {"reference", "one run: no spread"}


MB = 1_048_576


def cold(workload: str = "analyze", readers: int = 1, runs2: list[float | None] | None = None) -> Comparison:
    """compute1: 1 CPU, 5 MB/s; compute2: half the CPU, 10 MB/s; cold reads make the throttle the answer."""
    a = NodeResult("compute1", "bare-metal", "a,b", 1.0, 60000, 40.0, 6.0, 1500.0, runs=[1500, 1500])
    a = replace(a, read_bytes=5 * MB * 40, configured_read_bps=5 * MB)
    runs2 = runs2 if runs2 is not None else [2950, 3050]
    done = [x for x in runs2 if x is not None]
    b = NodeResult("compute2", "bare-metal-halfcpu", "c,d", 0.5, int(sum(done) * 20), 20.0 * len(done), 5.0, 0.0)
    b = replace(
        b,
        events_per_second=sum(done) / len(done) if done else 0.0,
        runs=runs2,
        read_bytes=10 * MB * 20 * len(done),
        configured_read_bps=10 * MB,
        failed={str(i): "analyze: /data/x.root: not a readable events file" for i, x in enumerate(runs2) if x is None},
    )
    params = {"repeat": 2, "run_id": "cmp-3", "readers": readers, "cold": True}
    return Comparison(workload, params, "compute1", T0, T0, [a, b])


def test_cold_reads_expect_the_read_throttle_ratio_and_simulate_the_cpu_ratio() -> None:
    rows = {r.result.node: r for r in analysis.rows(cold())}
    assert rows["compute2"].expected == 2.0 and rows["compute2"].ratio == 2.0 and rows["compute2"].verdict == "real"
    assert rows["compute2"].result.read_mb_per_second == pytest.approx(10 * MB / 1e6)
    warm = replace(cold(), parameters={"repeat": 2, "cold": False})
    assert {r.result.node: r.expected for r in analysis.rows(warm)}[
        "compute2"
    ] is None  # warm reads follow neither profile
    assert {r.result.node: r.expected for r in analysis.rows(replace(cold(), workload="simulate"))}["compute2"] == 0.5


def test_a_failed_run_is_left_out_and_reported(tmp_path: Path) -> None:
    c = cold(runs2=[3000, None])
    rows = {r.result.node: r for r in analysis.rows(c)}
    assert rows["compute2"].ratio == 2.0 and rows["compute2"].spread is None  # one pair left
    assert c.failed_runs == 1
    out = write_report([c], tmp_path)
    md = (out / "report.md").read_text()
    assert "## Failed runs" in md and "analyze on compute2, repetition 1: analyze: /data/x.root" in md
    console = Console(width=220, record=True)
    print_campaign(console, [c])
    assert "failed: analyze on compute2, repetition 1" in console.export_text()


def test_a_node_whose_runs_all_failed_has_no_ratio() -> None:
    rows = {r.result.node: r for r in analysis.rows(cold(runs2=[None, None]))}
    assert rows["compute2"].verdict == "failed" and rows["compute2"].deviation_pct is None


def test_storm_table_plot_and_per_reader_efficiency(tmp_path: Path) -> None:
    storms = [cold("storm", n) for n in (1, 4)]
    assert storms[1].label == "storm-n4" and analysis.job_efficiency(storms[1], storms[1].results[0]) == pytest.approx(
        0.15 / 4
    )
    console = Console(width=200, record=True)
    console.print(storm_table(storms))
    text = console.export_text()
    assert text.count("compute1") == 2 and "5.2 MB/s" in text
    out = write_report([comparison(), *storms], tmp_path)
    md = (out / "report.md").read_text()
    assert "## storm: many readers on shared storage" in md and "| compute2 | 10.5 MB/s | 4 |" in md
    assert (out / "storm_scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "storm-n1.png").exists()


def test_db12_score_per_core() -> None:
    c = comparison()
    full = c.results[0]
    assert analysis.score(c, full) == pytest.approx(full.events_per_cpu_second / 16.6)


def test_a_node_short_of_its_cpu_is_starved_and_reported(tmp_path: Path) -> None:
    """A quota is a ceiling: compute1 (1 CPU) busy 0.76 of each wall second got 76 % of it, under STARVED (90 %);
    compute2 at its 0.5 CPU got all it could. Listed in the console and the report; I/O-bound work never is."""
    c = comparison()
    c.results[0] = replace(c.results[0], cpu_seconds=22.8)
    assert analysis.starved(c) == {"compute1": pytest.approx(0.76)}
    assert analysis.starved(replace(c, workload="analyze")) == {}
    console = Console(width=300, record=True)
    print_campaign(console, [c])
    assert "starved: simulate on compute1: its jobs got 76% of the CPU its quota gives" in console.export_text()
    md = (write_report([c], tmp_path) / "report.md").read_text()
    assert "## Starved nodes" in md and "- simulate on compute1: its jobs got 76%" in md
    assert analysis.starved(comparison()) == {}
    c.results[0] = replace(c.results[0], cpu_seconds=0.0, wall_seconds=0.0)  # never ran: failed, not starved
    assert analysis.starved(c) == {}


def test_a_single_process_job_uses_one_cpu_of_a_larger_quota() -> None:
    """simulate is one process: on a 2-CPU node it can busy one CPU, so it is expected at the 1-CPU node's rate and
    is not starved at 1.0 CPU eff."""
    c = comparison()
    c.results[1] = replace(c.results[1], configured_cpus=2.0, cpu_seconds=29.9, events=45000, events_per_second=1500.0)
    rows = {r.result.node: r for r in analysis.rows(c)}
    assert rows["compute2"].expected == 1.0 and rows["compute2"].deviation_pct == 0.0
    assert analysis.starved(c) == {}


def test_the_report_names_each_comparisons_event_file_format(tmp_path: Path) -> None:
    """analyze on RNTuple and on TTree files are two comparisons; each is named by its format, and a storm of each
    format has its own table and plot. Nothing is left under a temporary name."""
    rntuple, ttree = cold(), replace(cold(), parameters={**cold().parameters, "format": "ttree"})
    storm = replace(cold("storm", 4), parameters={**cold().parameters, "readers": 4, "format": "ttree"})
    assert (rntuple.label, ttree.label, storm.label) == ("analyze", "analyze-ttree", "storm-n4-ttree")
    assert comparison().format is None and rntuple.format == "rntuple"
    out = write_report([comparison(), rntuple, ttree, storm], tmp_path)
    md = (out / "report.md").read_text()
    assert "## analyze (RNTuple event files): events/s" in md and "## analyze-ttree (TTree event files)" in md
    assert "## storm: many readers on shared storage (TTree event files)" in md
    assert {p.name for p in out.glob("*.png")} == {
        "simulate.png",
        "analyze.png",
        "analyze-ttree.png",
        "storm_scaling-ttree.png",
    }
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nothing left under a temporary name


def test_a_campaign_is_saved_as_it_goes_and_an_unfinished_one_says_what_is_missing(tmp_path: Path) -> None:
    """campaign.json after each comparison (report.save); a report of an interrupted campaign lists what it did not
    measure; a report directory that cannot be written stops the campaign before it starts."""
    out = report.start(tmp_path / "reports", T0)
    planned = ["simulate", "analyze", "storm-n4"]
    report.save(out, [comparison()], planned, complete=False)
    saved = report.load(out)
    assert (saved.comparisons, saved.planned, saved.complete) == ([comparison()], planned, False)
    write_report([comparison(), cold()], out=out, planned=planned)
    md = (out / "report.md").read_text()
    assert "## Not measured" in md and "- storm-n4" in md and "- analyze" not in md
    assert report.load(out).complete is False
    write_report([comparison()], out=out)
    assert report.load(out).complete is True and "## Not measured" not in (out / "report.md").read_text()
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(report.ReportError, match=r"--reports-dir .*file: cannot write the campaign's report"):
        report.start(blocked, T0)
    with pytest.raises(report.ReportError, match=r"no campaign\.json"):
        report.load(tmp_path)
    (tmp_path / "campaign.json").write_text('{"comparisons": [{"workload": 1}]}')
    with pytest.raises(report.ReportError, match="not a campaign file"):
        report.load(tmp_path)
