"""The job exporter: parsers on captured /proc and progress files, the exposition, bad inputs, the process."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporters.job import JobCollector
from exporters.paths import Paths
from exporters.web import listen_address
from magellan.contract import ProgressError, parse_proc_io, parse_proc_stat, parse_progress
from tests.conftest import free_port

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "job"
RUNNING = json.loads((FIX / "jobs" / "sim-running.json").read_text())
NOW = RUNNING["started_at"] + 10.0  # the fixed clock of the golden file
PID, ODD_PID = 22405, 22406  # the captured processes (tests/fixtures/job/README.md)
VALID = 6  # valid progress files in the fixture tree


def collector(jobs: Path = FIX / "jobs") -> JobCollector:
    return JobCollector(
        Paths(procfs=FIX / "proc", jobs=jobs),
        "node1",
        "bare-metal",
        clock=lambda: NOW,
        clock_ticks=100,
        timer=lambda: 0,
    )


def exposition(c: JobCollector) -> str:
    reg = CollectorRegistry()
    reg.register(c)
    return generate_latest(reg).decode()


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in exposition")


def fixture_copy(tmp_path: Path, *names: str) -> Path:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for name in names:
        shutil.copy(FIX / "jobs" / name, jobs / name)
    return jobs


# --- parsers on captured text -------------------------------------------------------------------------------------


def test_parse_proc_stat_captured() -> None:
    stat = parse_proc_stat((FIX / "proc" / str(PID) / "stat").read_text())
    assert (stat.utime_ticks, stat.stime_ticks, stat.starttime) == (523, 2, 456395)


def test_parse_proc_stat_captured_comm_with_spaces_and_parens() -> None:
    text = (FIX / "proc" / str(ODD_PID) / "stat").read_text()
    assert "(sim (x) job)" in text
    stat = parse_proc_stat(text)
    assert (stat.utime_ticks, stat.stime_ticks, stat.starttime) == (582, 0, 456395)


@pytest.mark.parametrize("text", ["", "12 (x) R 1 2", "no parens at all", "1 (a) R " + "x " * 30])
def test_parse_proc_stat_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_proc_stat(text)


def test_parse_proc_io_captured() -> None:
    io = parse_proc_io((FIX / "proc" / str(PID) / "io").read_text())
    assert (io.read_bytes, io.write_bytes) == (430080, 36864)


@pytest.mark.parametrize("text", ["", "rchar: 1\nwchar: 2\n", "read_bytes: x\nwrite_bytes: 1\n"])
def test_parse_proc_io_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_proc_io(text)


@pytest.mark.parametrize("name", ["sim-running.json", "sim-finished.json", "sim-failed.json", "sim-odd-comm.json"])
def test_parse_progress_captured_files(name: str) -> None:
    raw = json.loads((FIX / "jobs" / name).read_text())
    p = parse_progress((FIX / "jobs" / name).read_text())
    assert (p.job_id, p.state, p.pid, p.events_processed) == (
        raw["job_id"],
        raw["state"],
        raw["pid"],
        raw["events_processed"],
    )
    assert (p.finished_at is None) == (p.state == "running")


def test_parse_progress_failed_keeps_its_message() -> None:
    p = parse_progress((FIX / "jobs" / "sim-failed.json").read_bytes())
    assert (p.state, p.message) == ("failed", "terminated")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("corrupt.json", "json"),
        ("truncated.json", "json"),
        ("future-schema.json", "schema"),
        ("nan-cpu.json", "field"),
    ],
)
def test_parse_progress_bad_files(name: str, reason: str) -> None:
    with pytest.raises(ProgressError) as err:
        parse_progress((FIX / "jobs" / name).read_text())
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "json"),
        ("[1, 2]", "json"),
        ("null", "json"),
        (b"\xff\xfe{}", "json"),
        ('{"schema": "1"}', "schema"),
        ('{"schema": true}', "schema"),
        ("{}", "schema"),
    ],
)
def test_parse_progress_not_a_progress_file(text: str | bytes, reason: str) -> None:
    with pytest.raises(ProgressError) as err:
        parse_progress(text)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "change",
    [
        {"events_processed": -1},
        {"events_processed": "12"},
        {"events_processed": 1.5},
        {"pid": True},
        {"state": "paused"},
        {"job_id": "../etc"},
        {"job_id": "sim-running\n"},
        {"job_id": "x" * 129},
        {"workload": ""},
        {"workload": 'a"b'},
        {"started_at": None},
        {"cpu_seconds": float("inf")},
        {"finished_at": "soon"},
        {"finished_at": 1.0},  # a running job has not finished
        {"state": "finished"},  # ... and a finished one has finished_at
        {"message": 42},
        {"score_db12": -1.0},
        {"score_db12": "fast"},
    ],
)
def test_parse_progress_bad_fields(change: dict[str, object]) -> None:
    data = {**RUNNING, **change}
    with pytest.raises(ProgressError) as err:
        parse_progress(json.dumps(data))
    assert err.value.reason == "field"


def test_parse_progress_missing_field() -> None:
    data = dict(RUNNING)
    del data["bytes_written"]
    with pytest.raises(ProgressError, match="bytes_written"):
        parse_progress(json.dumps(data))


def test_parse_progress_ignores_unknown_keys() -> None:
    assert parse_progress(json.dumps({**RUNNING, "host": "n1"})).job_id == "sim-running"


# --- the collector on the fixture tree ----------------------------------------------------------------------------


def test_running_job_uses_live_proc_figures() -> None:
    text = exposition(collector())
    # /proc/22405/stat: utime 523 + stime 2 ticks at 100 Hz; /proc/22405/io: read 430080, written 36864.
    assert sample(text, "magellan_job_cpu_seconds_total", job_id="sim-running") == pytest.approx(5.25)
    assert sample(text, "magellan_job_read_bytes_total", job_id="sim-running") == 430080
    assert sample(text, "magellan_job_written_bytes_total", job_id="sim-running") == 36864
    assert sample(text, "magellan_job_cpu_seconds_total", job_id="sim-odd-comm") == pytest.approx(5.82)
    assert sample(text, "magellan_job_wall_seconds", job_id="sim-running") == pytest.approx(10.0)
    assert sample(text, "magellan_job_state", job_id="sim-running", state="running") == 1
    assert sample(text, "magellan_job_state", job_id="sim-running", state="finished") == 0


def test_reused_pid_is_not_mistaken_for_the_job() -> None:
    text = exposition(collector())  # pid 22405 is alive, but with another start time: the file's figures
    assert sample(text, "magellan_job_cpu_seconds_total", job_id="sim-reused-pid") == 0.25
    assert sample(text, "magellan_job_read_bytes_total", job_id="sim-reused-pid") == RUNNING["bytes_read"]
    assert sample(text, "magellan_job_state", job_id="sim-reused-pid", state="lost") == 1


def test_a_job_whose_process_is_gone_is_lost_with_the_files_figures_and_wall_to_its_last_record() -> None:
    vanished = json.loads((FIX / "jobs" / "sim-vanished.json").read_text())
    text = exposition(collector())
    assert sample(text, "magellan_job_cpu_seconds_total", job_id="sim-vanished") == 1.5
    assert sample(text, "magellan_job_wall_seconds", job_id="sim-vanished") == pytest.approx(
        vanished["updated_at"] - vanished["started_at"]
    )
    assert sample(text, "magellan_job_state", job_id="sim-vanished", state="lost") == 1
    assert sample(text, "magellan_job_state", job_id="sim-vanished", state="running") == 0
    assert sample(text, "magellan_job_state", job_id="sim-running", state="lost") == 0  # its process is alive


def test_a_job_that_ends_between_the_read_and_the_proc_check_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job writes its final record, then exits: read while running, checked after the exit, it is finished."""
    jobs = fixture_copy(tmp_path, "sim-vanished.json")
    final = {**json.loads((jobs / "sim-vanished.json").read_text()), "state": "finished", "finished_at": NOW - 1}
    c = collector(jobs)
    read = c._read

    def read_then_finish(path: Path) -> object:
        p = read(path)
        path.write_text(json.dumps(final))  # what the job writes just before it exits
        return p

    monkeypatch.setattr(c, "_read", read_then_finish)
    text = exposition(c)
    assert sample(text, "magellan_job_state", job_id="sim-vanished", state="finished") == 1
    assert sample(text, "magellan_job_state", job_id="sim-vanished", state="lost") == 0
    assert sample(text, "magellan_job_wall_seconds", job_id="sim-vanished") == pytest.approx(
        final["finished_at"] - final["started_at"]
    )


def test_more_files_than_max_files_reads_the_newest_and_counts_it(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    for i in range(5):
        f = jobs / f"sim-{i}.json"
        f.write_text(json.dumps({**RUNNING, "job_id": f"sim-{i}"}))
        os.utime(f, ns=(10**18 + i, 10**18 + i))
    c = JobCollector(Paths(procfs=FIX / "proc", jobs=jobs), "node1", "bare-metal", clock=lambda: NOW, max_files=3)
    text = exposition(c)
    assert {f"sim-{i}" for i in range(5) if f'job_id="sim-{i}"' in text} == {"sim-2", "sim-3", "sim-4"}
    assert sample(text, "magellan_job_scrape_errors_total", reason="too_many") == 1
    assert sample(text, "magellan_job_progress_files") == 3


def test_finished_and_failed_jobs_keep_their_final_figures() -> None:
    finished = json.loads((FIX / "jobs" / "sim-finished.json").read_text())
    text = exposition(collector())
    assert sample(text, "magellan_job_events_processed_total", job_id="sim-finished") == 2000
    assert sample(text, "magellan_job_events_target", job_id="sim-finished") == 2000
    assert sample(text, "magellan_job_cpu_seconds_total", job_id="sim-finished") == finished["cpu_seconds"]
    assert sample(text, "magellan_job_wall_seconds", job_id="sim-finished") == pytest.approx(
        finished["finished_at"] - finished["started_at"]
    )
    assert sample(text, "magellan_job_start_time_seconds", job_id="sim-finished") == finished["started_at"]
    assert sample(text, "magellan_job_state", job_id="sim-failed", state="failed") == 1
    assert sample(text, "magellan_job_state", job_id="sim-failed", state="running") == 0


def test_bad_files_are_counted_and_the_rest_still_reported() -> None:
    c = collector()
    text = exposition(c)
    assert sample(text, "magellan_job_up") == 1
    assert sample(text, "magellan_job_progress_files") == VALID
    assert sample(text, "magellan_job_progress_invalid_files") == 5
    assert sample(text, "magellan_job_scrape_errors_total", reason="json") == 2  # corrupt, truncated
    assert sample(text, "magellan_job_scrape_errors_total", reason="schema") == 1
    assert sample(text, "magellan_job_scrape_errors_total", reason="field") == 2  # nan-cpu, renamed
    assert sample(text, "magellan_job_scrape_errors_total", reason="read") == 0
    assert "sim-new" not in text  # in-flight .tmp files are ignored
    assert "other-name" not in text
    text = exposition(c)  # errors are cumulative across scrapes, the per-scrape gauges are not
    assert sample(text, "magellan_job_scrape_errors_total", reason="json") == 4
    assert sample(text, "magellan_job_progress_invalid_files") == 5


def test_an_oversized_file_counts_as_a_read_error(tmp_path: Path) -> None:
    jobs = fixture_copy(tmp_path, "sim-finished.json")
    (jobs / "huge.json").write_text(" " * 70_000 + "{}")
    text = exposition(collector(jobs))
    assert sample(text, "magellan_job_progress_files") == 1
    assert sample(text, "magellan_job_scrape_errors_total", reason="read") == 1


def test_bad_file_is_logged_once_per_version(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    jobs = fixture_copy(tmp_path, "corrupt.json", "sim-finished.json")
    c = collector(jobs)
    with caplog.at_level(logging.WARNING, logger="magellan.job_exporter"):
        exposition(c)
        exposition(c)
        assert len([r for r in caplog.records if "corrupt.json" in r.getMessage()]) == 1
        st = (jobs / "corrupt.json").stat()
        os.utime(jobs / "corrupt.json", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        exposition(c)
    assert len([r for r in caplog.records if "corrupt.json" in r.getMessage()]) == 2
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_missing_jobs_dir_reports_down_then_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    jobs = tmp_path / "absent"
    c = collector(jobs)
    text = exposition(c)
    assert sample(text, "magellan_job_up") == 0
    assert sample(text, "magellan_job_progress_files") == 0
    assert sample(text, "magellan_job_scrape_errors_total", reason="jobs_dir") == 1
    assert "magellan_job_events_processed_total{" not in text
    assert "magellan_job_last_success_timestamp_seconds" not in text  # absent until the directory is read
    jobs.mkdir()
    shutil.copy(FIX / "jobs" / "sim-finished.json", jobs)
    text = exposition(c)
    assert sample(text, "magellan_job_up") == 1
    assert sample(text, "magellan_job_events_processed_total", job_id="sim-finished") == 2000
    shutil.rmtree(jobs)
    with caplog.at_level(logging.WARNING, logger="magellan.job_exporter"):
        text = exposition(c)
    assert sample(text, "magellan_job_up") == 0
    assert sample(text, "magellan_job_scrape_errors_total", reason="jobs_dir") == 2
    assert sample(text, "magellan_job_last_success_timestamp_seconds") == NOW  # the last good read, kept
    assert any("cannot list the jobs directory" in r.getMessage() for r in caplog.records)  # warned again


def test_format_is_an_info_series_not_a_label_of_the_figures(tmp_path: Path) -> None:
    jobs = fixture_copy(tmp_path, "sim-finished.json")
    finished = json.loads((jobs / "sim-finished.json").read_text())
    for job_id, fmt in (("ana-ttree", "ttree"), ("ana-rntuple", "rntuple"), ("ana-root6", "root6")):
        (jobs / f"{job_id}.json").write_text(json.dumps({**finished, "job_id": job_id, "format": fmt}))
    text = exposition(collector(jobs))
    assert sample(text, "magellan_job_info", job_id="ana-ttree", format="ttree") == 1
    assert sample(text, "magellan_job_info", job_id="ana-rntuple", format="rntuple") == 1
    assert sample(text, "magellan_job_info", job_id="sim-finished", format="") == 1  # no ROOT file
    assert not [line for line in text.splitlines() if "format=" in line and not line.startswith("magellan_job_info{")]
    assert "ana-root6" not in text  # a format outside the contract's is an unusable file
    assert sample(text, "magellan_job_scrape_errors_total", reason="field") == 1


def test_golden_exposition() -> None:
    text = exposition(collector())
    golden = FIX / "golden.prom"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), "exposition changed: review it, then rerun with UPDATE_GOLDEN=1 to accept"


def test_promtool_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
    assert promtool, "promtool not found: install the Debian package prometheus (make bootstrap does)"
    proc = subprocess.run([promtool, "check", "metrics"], input=exposition(collector()), text=True, capture_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- flags and the real process -----------------------------------------------------------------------------------


def _exporter(*flags: str) -> list[str]:
    return [sys.executable, "-m", "exporters.job", *flags]


def _get(url: str, proc: subprocess.Popen[str], timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(urllib.request.urlopen(url, timeout=2).read().decode())
        except OSError:
            assert proc.poll() is None, f"exporter exited {proc.returncode}"
            assert time.monotonic() < deadline, "exporter did not answer"
            time.sleep(0.1)


def test_exporter_process_serves_metrics_over_http(tmp_path: Path) -> None:
    shutil.copytree(FIX / "jobs", tmp_path / "jobs")
    port = free_port()
    flags = (
        f"--web.listen-address=127.0.0.1:{port}",
        f"--path.jobs={tmp_path / 'jobs'}",
        f"--path.procfs={FIX / 'proc'}",
    )
    proc = subprocess.Popen(
        _exporter(*flags, "--node.name=n9", "--node.platform=kvm"), stderr=subprocess.PIPE, text=True
    )
    try:
        body = _get(f"http://127.0.0.1:{port}/metrics", proc)
        assert 'magellan_job_up{node="n9",platform="kvm"} 1.0' in body
        assert f'magellan_job_progress_files{{node="n9",platform="kvm"}} {VALID}.0' in body
        assert (
            'magellan_job_events_processed_total{job_id="sim-finished",node="n9",platform="kvm",'
            'workload="simulate"} 2000.0' in body
        )
        assert "process_resident_memory_bytes" in body  # the exporter's own process, from the real /proc
        assert "python_gc_objects_collected_total" not in body  # nothing from the default registry
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        _, err = proc.communicate()
        assert "Traceback" not in err
        assert "skipping" in err and "corrupt.json" in err  # bad files are logged, at warning level
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_no_collector_job_leaves_only_the_process_metrics(tmp_path: Path) -> None:
    port = free_port()
    flags = (f"--web.listen-address=127.0.0.1:{port}", f"--path.jobs={tmp_path}", "--no-collector.job")
    proc = subprocess.Popen(_exporter(*flags), stderr=subprocess.PIPE, text=True)
    try:
        body = _get(f"http://127.0.0.1:{port}/metrics", proc)
        assert "magellan_job" not in body and "process_cpu_seconds_total" in body
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--web.listen-address=nonsense", "--web.listen-address"),
        ("--web.listen-address=:99999", "port 1-65535"),
        ("--web.listen-address=:0", "port 1-65535"),
        ("--log.level=loud", "--log.level"),
        ("--node.name=", "--node.name"),
        ("--node.platform= ", "--node.platform"),
        ("--collector.nope", "unrecognized arguments"),
    ],
)
def test_bad_flags_exit_2_with_a_message(flag: str, message: str) -> None:
    proc = subprocess.run(_exporter(flag), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr and message in proc.stderr


def test_port_in_use_exits_1_with_a_message() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            _exporter(f"--web.listen-address=127.0.0.1:{port}"), capture_output=True, text=True, timeout=30
        )
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [(":9810", ("0.0.0.0", 9810)), ("127.0.0.1:1", ("127.0.0.1", 1)), ("[::1]:9810", ("::1", 9810))],
)
def test_listen_address(value: str, expected: tuple[str, int]) -> None:
    assert listen_address(value) == expected


@pytest.mark.parametrize(("age", "ok"), [("7d", True), ("12h30min", True), ("", True), ("7 days", False), ("7", False)])
def test_role_preflight_checks_the_progress_files_max_age(tmp_path: Path, age: str, ok: bool) -> None:
    """Role job_exporter's preflight on its defaults: a systemd-tmpfiles time span with units, or empty (keep all)."""
    role = Path(__file__).resolve().parents[2] / "roles" / "job_exporter"
    book = tmp_path / "play.yml"
    book.write_text(
        f"- hosts: all\n  gather_facts: false\n  vars_files: [{role / 'defaults' / 'main.yml'}]\n  tasks:\n"
        f"    - ansible.builtin.include_tasks: {role / 'tasks' / 'preflight.yml'}\n"
    )
    env = {"PATH": str(Path(sys.executable).parent), "ANSIBLE_NOCOLOR": "1"}
    extra = json.dumps({"job_exporter_jobs_max_age": age})
    proc = subprocess.run(
        ["ansible-playbook", "-i", "n1,", "-c", "local", "-e", extra, str(book)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    else:
        out = " ".join(proc.stdout.split())
        assert proc.returncode == 2 and f"Host n1: job_exporter_jobs_max_age={age} is not a time span" in out, out
        assert "such as 7d, 12h or 2w" in out


# --- hostile entries in the world-writable jobs directory (issue 15) ----------------------------------------------

HUGE = "1" + "0" * 399  # a 400-digit integer: beyond int64, and beyond a float for float()


def _scrape_within(c: JobCollector, fifos: list[Path], seconds: float = 5.0) -> str:
    """The exposition of one scrape run in a thread, or a test failure after `seconds` (a hang must not hang pytest).
    A scrape stuck opening a FIFO is released afterwards by opening the FIFO's other end."""
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(exposition(c)), daemon=True)
    thread.start()
    thread.join(seconds)
    hung = thread.is_alive()
    for fifo in fifos:  # an open() blocked on the FIFO returns once a writer comes and goes
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    thread.join(5)
    assert not hung, f"the scrape did not finish within {seconds} s"
    return result[0]


def test_a_fifo_named_json_is_refused_without_blocking_the_scrape(tmp_path: Path) -> None:
    jobs = fixture_copy(tmp_path, "sim-finished.json")
    os.mkfifo(jobs / "trap.json")
    c = collector(jobs)
    for scrape in (1, 2):  # every scrape: none leaves a thread behind
        text = _scrape_within(c, [jobs / "trap.json"])
        assert sample(text, "magellan_job_scrape_errors_total", reason="not_regular") == scrape
        assert sample(text, "magellan_job_events_processed_total", job_id="sim-finished") == 2000
        assert sample(text, "magellan_job_progress_invalid_files") == 1


def test_symlinks_and_directories_are_refused_as_not_regular(tmp_path: Path) -> None:
    jobs = fixture_copy(tmp_path, "sim-finished.json")
    secret = tmp_path / "elsewhere.json"  # a valid progress file outside the jobs directory
    shutil.copy(FIX / "jobs" / "sim-running.json", secret)
    (jobs / "sim-running.json").symlink_to(secret)  # same name as its job id: only the link makes it suspicious
    (jobs / "dir.json").mkdir()
    text = exposition(collector(jobs))
    assert "sim-running" not in text
    assert sample(text, "magellan_job_scrape_errors_total", reason="not_regular") == 2
    assert sample(text, "magellan_job_scrape_errors_total", reason="read") == 0
    assert sample(text, "magellan_job_progress_files") == 1


def test_not_regular_is_exported_from_0(tmp_path: Path) -> None:
    text = exposition(collector(fixture_copy(tmp_path, "sim-finished.json")))
    assert sample(text, "magellan_job_scrape_errors_total", reason="not_regular") == 0


@pytest.mark.parametrize("key", ["cpu_seconds", "started_at", "score_db12", "events_processed", "pid"])
def test_a_400_digit_number_is_a_field_error_and_the_rest_is_exported(tmp_path: Path, key: str) -> None:
    jobs = fixture_copy(tmp_path, "sim-finished.json")
    text = (FIX / "jobs" / "sim-running.json").read_text()
    record = json.loads(text)
    record[key] = 0  # a placeholder, replaced by the raw digits (json.dumps would write them too)
    (jobs / "sim-running.json").write_text(json.dumps(record).replace(f'"{key}": 0', f'"{key}": {HUGE}'))
    text = exposition(collector(jobs))
    assert sample(text, "magellan_job_scrape_errors_total", reason="field") == 1
    assert sample(text, "magellan_job_events_processed_total", job_id="sim-finished") == 2000
    assert "sim-running" not in text


def test_huge_proc_figures_are_not_live_figures(tmp_path: Path) -> None:
    """/proc/<pid>/stat under --path.procfs with a 400-digit utime: the file's figures, not a crash."""
    proc = tmp_path / "proc"
    shutil.copytree(FIX / "proc", proc)
    stat = proc / str(PID) / "stat"
    fields = stat.read_text().split(" ")
    fields[13] = HUGE
    stat.write_text(" ".join(fields))
    c = JobCollector(Paths(procfs=proc, jobs=FIX / "jobs"), "node1", "bare-metal", clock=lambda: NOW,
                     clock_ticks=100, timer=lambda: 0)  # fmt: skip
    text = exposition(c)
    assert sample(text, "magellan_job_cpu_seconds_total", job_id="sim-running") == RUNNING["cpu_seconds"]


def test_proc_fifo_is_not_read(tmp_path: Path) -> None:
    """A FIFO where /proc/<pid>/io should be (a hostile --path.procfs tree): the file's I/O figures, no hang."""
    proc = tmp_path / "proc"
    shutil.copytree(FIX / "proc", proc)
    (proc / str(PID) / "io").unlink()
    os.mkfifo(proc / str(PID) / "io")
    c = JobCollector(Paths(procfs=proc, jobs=FIX / "jobs"), "node1", "bare-metal", clock=lambda: NOW,
                     clock_ticks=100, timer=lambda: 0)  # fmt: skip
    text = _scrape_within(c, [proc / str(PID) / "io"])
    assert sample(text, "magellan_job_cpu_seconds_total", job_id="sim-running") == pytest.approx(5.25)  # stat: live
    assert sample(text, "magellan_job_read_bytes_total", job_id="sim-running") == RUNNING["bytes_read"]


def test_hostile_jobs_dir_is_served_over_http(tmp_path: Path) -> None:
    """The real process on a jobs directory with a FIFO, a symlink, a 400-digit float and a good job: HTTP 200
    within a deadline, at every scrape, each refusal counted under its reason."""
    jobs = fixture_copy(tmp_path, "sim-finished.json")
    os.mkfifo(jobs / "trap.json")
    (jobs / "passwd.json").symlink_to("/etc/passwd")
    record = json.loads((FIX / "jobs" / "sim-failed.json").read_text())
    huge = json.dumps({**record, "cpu_seconds": 0}).replace('"cpu_seconds": 0', f'"cpu_seconds": {HUGE}')
    (jobs / f"{record['job_id']}.json").write_text(huge)
    port = free_port()
    flags = (f"--web.listen-address=127.0.0.1:{port}", f"--path.jobs={jobs}", f"--path.procfs={FIX / 'proc'}")
    proc = subprocess.Popen(_exporter(*flags, "--node.name=n9"), stderr=subprocess.PIPE, text=True)
    try:
        for scrape in (1, 2):
            body = _get(f"http://127.0.0.1:{port}/metrics", proc)
            assert sample(body, "magellan_job_scrape_errors_total", reason="not_regular") == 2 * scrape
            assert sample(body, "magellan_job_scrape_errors_total", reason="field") == scrape
            assert sample(body, "magellan_job_events_processed_total", job_id="sim-finished") == 2000
    finally:
        with contextlib.suppress(OSError):  # release a reader stuck on the FIFO, if the fix ever regresses
            os.close(os.open(jobs / "trap.json", os.O_WRONLY | os.O_NONBLOCK))
        proc.terminate()
        proc.wait(timeout=10)


# --- whose files are read (contract.user_dir) ------------------------------------------------------------------------


def a_user_dir(jobs: Path, name: str, uid: int) -> Path:
    d = jobs / name
    d.mkdir()
    os.chown(d, uid, -1)
    return d


def test_a_users_jobs_are_read_from_the_directory_of_their_name(tmp_path: Path) -> None:
    """<jobs>/<user>/ of the user's own: read. Files there of another user, a directory another user made under
    someone else's name, a file at the top of the jobs directory not of its owner: counted (owner), not read."""
    assert os.geteuid() == 0, "the tests run as root (CI and make test do): they give files to other users"
    jobs = fixture_copy(tmp_path, "sim-finished.json")
    finished = json.loads((jobs / "sim-finished.json").read_text())

    def job(directory: Path, job_id: str, uid: int) -> None:
        (directory / f"{job_id}.json").write_text(json.dumps({**finished, "job_id": job_id}))
        os.chown(directory / f"{job_id}.json", uid, -1)

    names = {0: "root", 2001: "physicist", 2002: "theorist"}
    physicist = a_user_dir(jobs, "physicist", 2001)
    job(physicist, "phys-own", 2001)
    job(physicist, "planted-by-theorist", 2002)
    squatted = a_user_dir(jobs, "theorist", 2001)  # physicist made theorist's directory before theorist ran a job
    job(squatted, "theo-squatted", 2001)
    job(jobs, "top-by-physicist", 2001)
    c = JobCollector(Paths(procfs=FIX / "proc", jobs=jobs), "node1", "bare-metal", clock=lambda: NOW,
                     clock_ticks=100, timer=lambda: 0, user_of=lambda uid: names.get(uid, str(uid)))  # fmt: skip
    text = exposition(c)
    info = [line for line in text.splitlines() if line.startswith("magellan_job_info")]
    read = {line.split('job_id="')[1].split('"')[0] for line in info}
    assert read == {"sim-finished", "phys-own"}
    assert sample(text, "magellan_job_scrape_errors_total", reason="owner") == 3  # planted, squatted, top
