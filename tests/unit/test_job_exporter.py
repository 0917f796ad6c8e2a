"""The job exporter: parsers on captured /proc and progress files, the exposition, bad inputs, the process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporters.job import JobCollector, ProgressError, parse_proc_io, parse_proc_stat, parse_progress
from exporters.paths import Paths

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "job"
STARTED = json.loads((FIX / "jobs" / "sim-running.json").read_text())["started_at"]
NOW = STARTED + 5.0


def collector(jobs: Path = FIX / "jobs") -> JobCollector:
    return JobCollector(
        Paths(procfs=FIX / "proc", jobs=jobs),
        "node1",
        "bare-metal",
        clock=lambda: NOW,
        clock_ticks=100,
        timer=lambda: 0.0,
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


def test_parse_proc_stat_captured() -> None:
    stat = parse_proc_stat((FIX / "proc" / "4242" / "stat").read_text())
    assert (stat.utime_ticks, stat.stime_ticks, stat.starttime) == (182, 2, 342541)


def test_parse_proc_stat_comm_with_spaces_and_parens() -> None:
    text = "77 (my (odd) job) S 1 77 77 0 -1 4194304 0 0 0 0 250 50 0 0 20 0 1 0 999 0 0"
    stat = parse_proc_stat(text)
    assert (stat.utime_ticks, stat.stime_ticks, stat.starttime) == (250, 50, 999)


@pytest.mark.parametrize("text", ["", "12 (x) R 1 2", "no parens at all"])
def test_parse_proc_stat_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_proc_stat(text)


def test_parse_proc_io_captured() -> None:
    io = parse_proc_io((FIX / "proc" / "4242" / "io").read_text())
    assert (io.read_bytes, io.write_bytes) == (57344, 12288)


def test_parse_proc_io_malformed() -> None:
    with pytest.raises(ValueError):
        parse_proc_io("rchar: 1\nwchar: 2\n")


def test_parse_progress_valid() -> None:
    p = parse_progress((FIX / "jobs" / "sim-finished.json").read_text())
    assert (p.job_id, p.state, p.events_processed, p.finished_at) == ("sim-finished", "finished", 52000, STARTED + 40)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("corrupt.json", "json"), ("truncated.json", "json"), ("future-schema.json", "schema")],
)
def test_parse_progress_bad_files(name: str, reason: str) -> None:
    with pytest.raises(ProgressError) as err:
        parse_progress((FIX / "jobs" / name).read_text())
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "change",
    [
        {"events_processed": -1},
        {"events_processed": "12"},
        {"state": "paused"},
        {"job_id": "../etc"},
        {"started_at": None},
        {"finished_at": "soon"},
        {"pid": True},
    ],
)
def test_parse_progress_bad_fields(change: dict[str, object]) -> None:
    data = json.loads((FIX / "jobs" / "sim-running.json").read_text())
    data.update(change)
    with pytest.raises(ProgressError) as err:
        parse_progress(json.dumps(data))
    assert err.value.reason == "field"


def test_running_job_uses_live_proc_figures() -> None:
    text = exposition(collector())
    # /proc/4242/stat: utime 182 + stime 2 ticks at 100 Hz; /proc/4242/io: 57344 read, 12288 written.
    assert sample(text, "magellan_job_cpu_seconds_total", job_id="sim-running") == pytest.approx(1.84)
    assert sample(text, "magellan_job_written_bytes_total", job_id="sim-running") == 12288
    assert sample(text, "magellan_job_wall_seconds", job_id="sim-running") == pytest.approx(5.0)
    assert sample(text, "magellan_job_state", job_id="sim-running", state="running") == 1


def test_reused_pid_is_not_mistaken_for_the_job() -> None:
    text = exposition(collector())
    assert sample(text, "magellan_job_cpu_seconds_total", job_id="sim-reused-pid") == 0.25


def test_finished_and_failed_jobs_keep_their_final_figures() -> None:
    text = exposition(collector())
    assert sample(text, "magellan_job_events_processed_total", job_id="sim-finished") == 52000
    assert sample(text, "magellan_job_wall_seconds", job_id="sim-finished") == pytest.approx(40.0)
    assert sample(text, "magellan_job_state", job_id="sim-failed", state="failed") == 1
    assert sample(text, "magellan_job_state", job_id="sim-failed", state="running") == 0


def test_bad_files_are_counted_and_the_rest_still_reported() -> None:
    c = collector()
    text = exposition(c)
    assert sample(text, "magellan_job_progress_files") == 4
    assert sample(text, "magellan_job_progress_invalid") == 4
    assert sample(text, "magellan_job_progress_errors_total", reason="json") == 2
    assert sample(text, "magellan_job_progress_errors_total", reason="schema") == 1
    assert sample(text, "magellan_job_progress_errors_total", reason="field") == 1
    assert "sim-new" not in text  # in-flight .tmp files are ignored
    text = exposition(c)  # errors are cumulative across scrapes
    assert sample(text, "magellan_job_progress_errors_total", reason="json") == 4


def test_missing_jobs_dir_reports_down(tmp_path: Path) -> None:
    text = exposition(collector(tmp_path / "absent"))
    assert sample(text, "magellan_job_collector_up") == 0
    assert sample(text, "magellan_job_progress_errors_total", reason="jobs_dir") == 1


def test_golden_exposition() -> None:
    text = exposition(collector())
    golden = FIX / "golden.prom"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), "exposition changed: review, then UPDATE_GOLDEN=1 to accept"


def test_promtool_accepts_the_exposition(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install the Debian package prometheus (make bootstrap does)"
    proc = subprocess.run([promtool, "check", "metrics"], input=exposition(collector()), text=True, capture_output=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_exporter_process_serves_metrics_over_http(tmp_path: Path) -> None:
    shutil.copytree(FIX / "jobs", tmp_path / "jobs")
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "exporters.job",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--path.jobs={tmp_path / 'jobs'}",
        f"--path.procfs={FIX / 'proc'}",
        "--node.name=n9",
        "--node.platform=kvm",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "exporter did not start"
                time.sleep(0.2)
        assert 'magellan_job_collector_up{node="n9",platform="kvm"} 1.0' in body
        assert (
            'magellan_job_events_processed_total{job_id="sim-finished",node="n9",platform="kvm",'
            'workload="simulate"} 52000.0' in body
        )
        assert "process_resident_memory_bytes" in body
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("flag", ["--web.listen-address=nonsense", "--web.listen-address=:99999", "--log.level=loud"])
def test_bad_flags_exit_2_with_a_message(flag: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "exporters.job", flag], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr
