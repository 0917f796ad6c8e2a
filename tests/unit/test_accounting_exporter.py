"""The accounting exporter: sacct parsing on captured output, counting each job once, errors as metrics."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporters import accounting
from exporters.accounting import Accounting, AccountingCollector, JobRecord, Options, parse_sacct

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sacct"
CAPTURED = FIXTURES / "captured-22.05.txt"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.txt")), ids=lambda p: p.name)
def test_every_fixture_parses_into_sane_records(path: Path) -> None:
    records, _ = parse_sacct(path.read_text())
    assert records
    for r in records:
        assert r.job_id.isdigit() and r.state.isupper()
        assert min(r.cpu_seconds, r.elapsed_seconds, r.max_rss_bytes, r.read_bytes, r.written_bytes) >= 0


def by_id(records: list[JobRecord]) -> dict[str, JobRecord]:
    return {r.job_id: r for r in records}


def test_captured_output() -> None:
    records, problems = parse_sacct(CAPTURED.read_text())
    assert problems == []
    jobs = by_id(records)
    assert len(jobs) == 10
    io_job = jobs["5"]  # the dd + python job: figures from its batch step
    assert (io_job.user, io_job.account, io_job.partition, io_job.state) == ("root", "root", "chos", "COMPLETED")
    assert io_job.elapsed_seconds == 12
    assert io_job.cpu_seconds == pytest.approx(12.414)
    assert io_job.max_rss_bytes == 120332 * 1024
    assert io_job.read_bytes == 212082582 and io_job.written_bytes == 209721453
    assert jobs["9"].state == "CANCELLED"  # "CANCELLED by 0"
    assert jobs["10"].state == "RUNNING" and not jobs["10"].final
    assert jobs["8"].user == "physicist" and jobs["8"].account == "atlas" and jobs["8"].state == "FAILED"
    assert jobs["1"].max_rss_bytes == 0 and jobs["1"].read_bytes == 0  # too short to be sampled


def test_edge_cases() -> None:
    records, problems = parse_sacct((FIXTURES / "edge-cases.txt").read_text())
    jobs = by_id(records)
    assert sorted(jobs) == ["100", "102", "103"]
    big = jobs["100"]
    assert big.cpu_seconds == 90061 and big.elapsed_seconds == 90061
    assert big.max_rss_bytes == 2048 * 2**20  # the larger of 1.5G and 2048M
    assert big.read_bytes == 2 * 2**30 + 1024 and big.written_bytes == 512 * 2**20
    assert jobs["103"].cpu_seconds == 3599 and jobs["103"].final
    assert not jobs["102"].final
    reasons = " ".join(p for _, p in problems)
    assert "step 101.0 without its job line" in reasons
    assert "1 fields, expected 11" in reasons
    assert "bad JobIDRaw 'x1'" in reasons


@pytest.mark.parametrize(
    ("text", "seconds"), [("00:00.228", 0.228), ("01:02:03", 3723), ("2-00:00:01", 172801), ("", 0)]
)
def test_cpu_time(text: str, seconds: float) -> None:
    assert accounting.parse_cpu_time(text) == pytest.approx(seconds)


def test_bad_values_are_parse_errors() -> None:
    for bad in ("12X", "K"):
        with pytest.raises(accounting.ParseError):
            accounting.parse_size(bad)
    with pytest.raises(accounting.ParseError):
        accounting.parse_cpu_time("soon")


def record(job_id: str, state: str, cpu: float = 10.0) -> JobRecord:
    return JobRecord(job_id, "alice", "atlas", "chos", state, 20.0, cpu, 1e6, 100.0, 50.0)


def test_a_job_is_counted_once_when_it_finishes() -> None:
    acc = Accounting()
    acc.update([record("1", "RUNNING", 2.0)], now=100.0, window_start=0.0)
    assert acc.totals == {} and acc.active[("alice", "atlas", "chos", "RUNNING")] == 1
    acc.update([record("1", "COMPLETED")], now=110.0, window_start=90.0)
    acc.update([record("1", "COMPLETED"), record("2", "FAILED")], now=120.0, window_start=100.0)
    t = acc.totals[("alice", "atlas", "chos")]
    assert t.cpu_seconds == 20.0 and t.wall_seconds == 40.0 and t.read_bytes == 200.0
    assert t.jobs == {"COMPLETED": 1, "FAILED": 1}
    assert not acc.active
    acc.update([], now=130.0, window_start=125.0)  # both ended before this window: forgotten, totals stay
    assert acc.counted == {} and t.jobs == {"COMPLETED": 1, "FAILED": 1}


def fake_sacct(tmp_path: Path, body: str) -> str:
    path = tmp_path / "sacct"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def scrape(collector: AccountingCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_exposition_from_a_real_capture(tmp_path: Path) -> None:
    sacct = fake_sacct(tmp_path, f"cat {CAPTURED}")
    text = scrape(AccountingCollector(Options(sacct=sacct, cluster="magellan")))
    labels = 'account="root",cluster="magellan",partition="chos",user="root"'
    assert f"magellan_accounting_cpu_seconds_total{{{labels}}} 13.309" in text
    assert (
        'magellan_accounting_jobs_total{account="root",cluster="magellan",partition="chos",state="CANCELLED",' in text
    )
    assert f"magellan_accounting_memory_peak_bytes{{{labels}}} 1.23219968e+08" in text
    assert 'state="RUNNING",user="root"} 1.0' in text
    assert 'magellan_accounting_up{cluster="magellan"} 1.0' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: make bootstrap installs Debian's prometheus package")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    ("body", "reason"),
    [("exit 1", "exit_status"), ("sleep 5", "timeout"), (None, "not_found")],
)
def test_a_bad_sacct_is_a_metric_and_the_figures_stay(tmp_path: Path, body: str | None, reason: str) -> None:
    good = fake_sacct(tmp_path, f"cat {CAPTURED}")
    clock = [1000.0]
    collector = AccountingCollector(Options(sacct=good, interval=15, timeout=0.5), clock=lambda: clock[0])
    scrape(collector)
    collector.options.sacct = fake_sacct(tmp_path, body) if body else str(tmp_path / "missing")
    clock[0] += 20
    text = scrape(collector)
    assert 'magellan_accounting_up{cluster="magellan"} 0.0' in text
    assert f'magellan_accounting_sacct_errors_total{{cluster="magellan",reason="{reason}"}} 1.0' in text
    assert 'magellan_accounting_jobs_total{account="atlas"' in text  # the earlier figures are still served


def test_garbage_lines_are_counted(tmp_path: Path) -> None:
    sacct = fake_sacct(tmp_path, "echo 'not|sacct'; echo '1|1|a|b|c|COMPLETED|1|00:01.000|||'")
    text = scrape(AccountingCollector(Options(sacct=sacct)))
    assert 'magellan_accounting_sacct_errors_total{cluster="magellan",reason="parse"} 1.0' in text
    assert 'magellan_accounting_up{cluster="magellan"} 1.0' in text


def test_polls_at_most_every_interval(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    sacct = fake_sacct(tmp_path, f"echo x >> {calls}")
    clock = [1000.0]
    collector = AccountingCollector(Options(sacct=sacct, interval=15), clock=lambda: clock[0])
    for step in (0, 5, 5, 10):
        clock[0] += step
        scrape(collector)
    assert calls.read_text().count("x") == 2


def test_bad_flags_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        accounting.main(["--sacct.interval", "-3"])
    assert "expected a positive number of seconds" in capsys.readouterr().err
