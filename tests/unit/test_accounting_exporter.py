"""The accounting exporter: sacct parsing on captured output, counting each job once, errors as metrics."""

from __future__ import annotations

import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporters import accounting
from exporters.accounting import Accounting, AccountingCollector, JobRecord, Options, parse_sacct
from tests.conftest import free_port

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


def fake_sacct(tmp_path: Path, body: str, executable: bool = True, name: str = "sacct") -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def scrape(collector: AccountingCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def polled(options: Options) -> AccountingCollector:
    collector = AccountingCollector(options)
    collector.poll()
    return collector


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.05)


UP = 'magellan_accounting_up{cluster="magellan"}'
LAST_SUCCESS = "magellan_accounting_last_success_timestamp_seconds{"


def test_exposition_from_a_real_capture(tmp_path: Path) -> None:
    sacct = fake_sacct(tmp_path, f"cat {CAPTURED}")
    text = scrape(polled(Options(sacct=sacct, cluster="magellan")))
    labels = 'account="root",cluster="magellan",partition="chos",user="root"'
    assert f"magellan_accounting_cpu_seconds_total{{{labels}}} 13.309" in text
    assert (
        'magellan_accounting_jobs_total{account="root",cluster="magellan",partition="chos",state="CANCELLED",' in text
    )
    assert f"magellan_accounting_memory_peak_bytes{{{labels}}} 1.23219968e+08" in text
    assert 'state="RUNNING",user="root"} 1.0' in text
    assert f"{UP} 1.0" in text and LAST_SUCCESS in text
    for reason in accounting.ERROR_REASONS:
        assert f'magellan_accounting_scrape_errors_total{{cluster="magellan",reason="{reason}"}} 0.0' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: make bootstrap installs Debian's prometheus package")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_before_the_first_poll_up_is_0_and_there_is_no_last_success() -> None:
    text = scrape(AccountingCollector(Options(sacct="/nonexistent/sacct")))
    assert f"{UP} 0.0" in text and LAST_SUCCESS not in text
    assert 'reason="exec"} 0.0' in text


@pytest.mark.parametrize(
    ("body", "reason"),
    [("exit 1", "exit_status"), ("sleep 5", "timeout"), (None, "not_found"), ("not executable", "exec")],
)
def test_a_bad_sacct_is_a_metric_and_the_figures_stay(tmp_path: Path, body: str | None, reason: str) -> None:
    good = fake_sacct(tmp_path, f"cat {CAPTURED}")
    clock = [1000.0]
    collector = AccountingCollector(Options(sacct=good, interval=15, timeout=0.5), clock=lambda: clock[0])
    collector.poll()
    if body is None:
        collector.options.sacct = str(tmp_path / "missing")
    else:
        collector.options.sacct = fake_sacct(tmp_path, body, executable=reason != "exec", name="bad-sacct")
    clock[0] += 20
    collector.poll()
    text = scrape(collector)
    assert f"{UP} 0.0" in text
    assert f'magellan_accounting_scrape_errors_total{{cluster="magellan",reason="{reason}"}} 1.0' in text
    assert f'{LAST_SUCCESS}cluster="magellan"}} 1000.0' in text  # the last good run, not the failed one
    assert 'magellan_accounting_jobs_total{account="atlas"' in text  # the earlier figures are still served


def test_garbage_lines_are_counted(tmp_path: Path) -> None:
    sacct = fake_sacct(tmp_path, "echo 'not|sacct'; echo '1|1|a|b|c|COMPLETED|1|00:01.000|||'")
    text = scrape(polled(Options(sacct=sacct)))
    assert 'magellan_accounting_scrape_errors_total{cluster="magellan",reason="parse"} 1.0' in text
    assert f"{UP} 1.0" in text


def test_bytes_that_are_not_utf8_are_parse_errors(tmp_path: Path) -> None:
    bad_user = r"printf '11|11|\377\376|root|chos|COMPLETED|1|00:00.100|||\n'"
    sacct = fake_sacct(tmp_path, f"cat {CAPTURED}; {bad_user}")
    text = scrape(polled(Options(sacct=sacct)))
    assert 'magellan_accounting_scrape_errors_total{cluster="magellan",reason="parse"} 1.0' in text
    assert f"{UP} 1.0" in text
    assert 'magellan_accounting_jobs_total{account="atlas"' in text  # the good lines still count
    records, problems = parse_sacct("12|12|b\ufffd|root|chos|COMPLETED|1|00:00.100|||\n")
    assert records == [] and problems == [(1, "not UTF-8")]


def test_each_poll_reaches_back_to_the_previous_one_minus_the_overlap(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    sacct = fake_sacct(tmp_path, f'echo "$4" >> {calls}')
    clock = [100_000.0]
    collector = AccountingCollector(Options(sacct=sacct, lookback=7200, overlap=600), clock=lambda: clock[0])
    for step in (0, 15, 15):
        clock[0] += step
        collector.poll()
    starts = [
        accounting.sacct_argv(sacct, accounting.local_time(t))[4]
        for t in (100_000 - 7200, 100_000 - 600, 100_015 - 600)
    ]
    assert calls.read_text().split() == starts


def test_the_poller_thread_polls_at_start_and_every_interval_then_stops(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    sacct = fake_sacct(tmp_path, f"echo x >> {calls}; cat {CAPTURED}")
    collector = AccountingCollector(Options(sacct=sacct, interval=0.1))
    collector.start()
    try:
        wait_for(lambda: calls.exists() and calls.read_text().count("x") >= 3)
    finally:
        collector.stop()
    assert collector.thread is not None and not collector.thread.is_alive()
    text = scrape(collector)
    assert f"{UP} 1.0" in text and LAST_SUCCESS in text
    physicist = 'account="atlas",cluster="magellan",partition="chos",state="COMPLETED",user="physicist"'
    assert f"magellan_accounting_jobs_total{{{physicist}}} 2.0" in text  # jobs 6 and 7, once for all the polls


def test_a_scrape_does_not_wait_for_a_slow_sacct(tmp_path: Path) -> None:
    started = tmp_path / "started"
    sacct = fake_sacct(tmp_path, f"touch {started}; sleep 5; cat {CAPTURED}")
    collector = AccountingCollector(Options(sacct=sacct, interval=3600, timeout=60))
    collector.start()
    try:
        wait_for(started.exists)
        before = time.monotonic()
        text = scrape(collector)
        assert time.monotonic() - before < 2  # sacct is still sleeping for about 5 s
        assert f"{UP} 0.0" in text and LAST_SUCCESS not in text
        wait_for(lambda: LAST_SUCCESS in scrape(collector))
        assert f"{UP} 1.0" in scrape(collector)
    finally:
        collector.stop()
    assert collector.thread is not None and not collector.thread.is_alive()


def test_the_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    sacct = fake_sacct(tmp_path, f"cat {CAPTURED}")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporters.accounting",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--sacct.path={sacct}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = ""

        def answered() -> bool:
            nonlocal body
            assert proc.poll() is None, f"exporter exited {proc.returncode}"
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                return False
            return LAST_SUCCESS in body

        wait_for(answered)
        assert f"{UP} 1.0" in body and "process_resident_memory_bytes" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        _, err = proc.communicate()
        assert "Traceback" not in err and "sacct poller stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_flags_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        accounting.main(["--sacct.interval", "-3"])
    assert "expected a number of seconds above 0, at most 315360000" in capsys.readouterr().err


# --- bounded input (issue 15) -------------------------------------------------------------------------------------

LINE = "1|1|alice|atlas|chos|COMPLETED|1|00:01.000|||"


def test_sacct_output_beyond_max_bytes_is_refused_and_the_figures_stay(tmp_path: Path) -> None:
    clock = [1000.0]
    collector = AccountingCollector(Options(sacct=fake_sacct(tmp_path, f"cat {CAPTURED}")), clock=lambda: clock[0])
    collector.poll()
    flood = f"yes '{LINE}' | head -c 3000000; echo done >&2"  # 3 MB of valid lines: too much for a 1 MB limit
    collector.options = Options(sacct=fake_sacct(tmp_path, flood, name="flood"), max_bytes=1_000_000)
    clock[0] += 20
    started = time.monotonic()
    collector.poll()
    assert time.monotonic() - started < 5
    text = scrape(collector)
    assert f"{UP} 0.0" in text
    assert 'magellan_accounting_scrape_errors_total{cluster="magellan",reason="too_large"} 1.0' in text
    assert 'magellan_accounting_scrape_errors_total{cluster="magellan",reason="parse"} 0.0' in text
    assert f'{LAST_SUCCESS}cluster="magellan"}} 1000.0' in text
    assert 'magellan_accounting_jobs_total{account="atlas"' in text  # the earlier figures are still served
    assert 'user="alice"' not in text  # nothing of the refused output was counted


def test_sacct_output_at_max_bytes_is_read() -> None:
    records, problems = parse_sacct((LINE + "\n") * 10)
    assert problems == [] and len(records) == 1


def test_max_bytes_flag() -> None:
    assert accounting._parser().parse_args([]).max_bytes == accounting.Options().max_bytes
    assert accounting._parser().parse_args(["--sacct.max-bytes", "2048"]).max_bytes == 2048


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "²", "9" * 400])
def test_bad_max_bytes_is_a_clear_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        accounting.main([f"--sacct.max-bytes={value}"])
    assert "--sacct.max-bytes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ElapsedRaw", "²"),  # str.isdigit() says yes, int() and float() say no
        ("ElapsedRaw", "٣"),  # an Arabic-Indic digit: int() takes it, sacct never prints it
        ("ElapsedRaw", "9" * 400),
        ("ElapsedRaw", "-5"),
        ("ElapsedRaw", "nan"),
        ("ElapsedRaw", "inf"),
        ("TotalCPU", "9" * 400 + "-00:00:00"),  # days beyond a float: OverflowError in int + float
        ("TotalCPU", "٣:00"),
        ("TotalCPU", "nan:00"),
        ("MaxRSS", "9" * 400),  # float() of it is inf: the memory peak would stay +Inf for good
        ("MaxRSS", "9" * 400 + "K"),
        ("MaxRSS", "²K"),
        ("MaxRSS", "٣M"),
        ("MaxRSS", "nan"),
        ("MaxRSS", "inf"),
        ("MaxRSS", "-1K"),
        ("MaxRSS", "99999999999P"),  # finite, but beyond 2^63-1 bytes
        ("TRESUsageInTot", "fs/disk=" + "9" * 400),
        ("TRESUsageOutTot", "fs/disk=٣"),
    ],
)
def test_bad_numbers_are_problems_not_exceptions(field: str, value: str) -> None:
    job = "7|7|alice|atlas|chos|COMPLETED|10|00:01.000|||"
    step = "7.batch|7.batch||atlas||COMPLETED|10|00:01.000|1K|fs/disk=1|fs/disk=1"
    lines = [job.split("|"), step.split("|")]
    column = accounting.FIELDS.index(field)
    lines[1 if field in ("MaxRSS", "TRESUsageInTot", "TRESUsageOutTot") else 0][column] = value
    good = "8|8|bob|cms|kvm|COMPLETED|1|00:01.000|||"
    records, problems = parse_sacct("\n".join(["|".join(line) for line in lines] + [good]))
    assert [r.job_id for r in records] == ["8"], records
    assert len(problems) == 1 and "job 7" in problems[0][1], problems


@pytest.mark.parametrize("job_id", ["²", "٣", "9" * 400])
def test_a_job_id_of_other_digits_is_a_problem(job_id: str) -> None:
    records, problems = parse_sacct(f"{job_id}|{job_id}|alice|atlas|chos|COMPLETED|10|00:01.000|||")
    assert records == [] and len(problems) == 1


def test_counters_stay_finite_after_a_huge_value(tmp_path: Path) -> None:
    huge = "9" * 400
    body = (
        "echo '7|7|alice|atlas|chos|COMPLETED|10|00:01.000|||'; "
        f"echo '7.batch|7.batch||atlas||COMPLETED|10|00:01.000|{huge}|fs/disk={huge}|fs/disk=1'"
    )
    text = scrape(polled(Options(sacct=fake_sacct(tmp_path, body))))
    assert "Inf" not in text and "NaN" not in text
    assert 'magellan_accounting_scrape_errors_total{cluster="magellan",reason="parse"} 1.0' in text


# --- Slurm node states (sinfo) --------------------------------------------------------------------------------------

SINFO = Path(__file__).resolve().parents[1] / "fixtures" / "sinfo"


@pytest.mark.parametrize("path", sorted(SINFO.glob("captured-*.txt")), ids=lambda p: p.name)
def test_every_sinfo_capture_parses_whole(path: Path) -> None:
    nodes, problems = accounting.parse_sinfo(path.read_text())
    assert problems == [] and nodes
    assert all(n.partition and not n.partition.endswith("*") for n in nodes)


def test_a_lost_and_a_drained_node_as_sinfo_reported_them() -> None:
    nodes, _ = accounting.parse_sinfo((SINFO / "captured-22.05-lost.txt").read_text())
    got = {(n.node, n.state, n.responding) for n in nodes}
    assert got == {("compute1", "down", False), ("compute2", "drained", True), ("vm1", "drained", True)}


def test_sinfo_states_and_their_suffixes() -> None:
    nodes, problems = accounting.parse_sinfo(
        "c1|chos*|idle\nc2|chos*|down*\nc3|chos|idle+drain\nc3|kvm|idle+drain\nc4|chos|drained~\n"
        "c5|chos|mixed|extra\nc6||idle\nc7|chos|IDLE\nc8|chos|id le\n"
    )
    got = [(n.node, n.partition, n.state, n.responding) for n in nodes]
    assert got == [
        ("c1", "chos", "idle", True),
        ("c2", "chos", "down", False),
        ("c3", "chos", "idle+drain", True),
        ("c3", "kvm", "idle+drain", True),
        ("c4", "chos", "drained", True),
        ("c7", "chos", "idle", True),
    ]
    assert [n for n, _ in problems] == [6, 7, 9]


def test_node_states_are_served_and_dropped_when_sinfo_fails(tmp_path: Path) -> None:
    sacct = fake_sacct(tmp_path, f"cat {CAPTURED}")
    sinfo = fake_sacct(tmp_path, "echo 'compute1|chos*|mixed'; echo 'vm1|tcg|down*'", name="sinfo")
    collector = polled(Options(sacct=sacct, sinfo=sinfo))
    text = scrape(collector)
    node = 'magellan_accounting_node_state{cluster="magellan",partition="{}",slurm_node="{}",state="{}"} 1.0'
    assert node.replace("{}", "chos", 1).replace("{}", "compute1", 1).replace("{}", "mixed", 1) in text
    assert 'magellan_accounting_node_responding{cluster="magellan",slurm_node="vm1"} 0.0' in text
    assert 'magellan_accounting_node_responding{cluster="magellan",slurm_node="compute1"} 1.0' in text
    assert 'reason="sinfo_exit_status"} 0.0' in text
    collector.options.sinfo = fake_sacct(tmp_path, "echo 'slurm_load_node error' >&2; exit 1", name="bad-sinfo")
    collector.poll()
    text = scrape(collector)
    assert "magellan_accounting_node_state{" not in text  # not served stale: a node shown idle may be down
    assert 'reason="sinfo_exit_status"} 1.0' in text
    assert f"{UP} 1.0" in text  # sacct still answers: the jobs' figures are up


def test_sinfo_is_asked_even_when_sacct_fails_and_can_be_turned_off(tmp_path: Path) -> None:
    sinfo = fake_sacct(tmp_path, "echo 'compute1|chos*|idle'", name="sinfo")
    text = scrape(polled(Options(sacct=str(tmp_path / "missing"), sinfo=sinfo)))
    assert 'slurm_node="compute1",state="idle"} 1.0' in text and f"{UP} 0.0" in text
    text = scrape(polled(Options(sacct=fake_sacct(tmp_path, f"cat {CAPTURED}"), sinfo=None)))
    assert "node_state" not in text and 'reason="sinfo_' not in text
    args = accounting.web.parse_args(accounting._parser(), ["--no-collector.nodes", "--sinfo.path", "/x/sinfo"])
    assert args.nodes is False and args.sinfo == "/x/sinfo"
