"""The simulate workload: deterministic physics, the progress file contract, stopping and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporters.job import parse_progress
from workloads.progress import ProgressWriter
from workloads.simulate import Simulator


def test_same_seed_same_events() -> None:
    a, b = Simulator(seed=7), Simulator(seed=7)
    events_a = [a.event() for _ in range(200)]
    events_b = [b.event() for _ in range(200)]
    assert events_a == events_b
    assert a.checksum == b.checksum
    assert Simulator(seed=8).event() != events_a[0]


def test_events_look_like_collisions() -> None:
    sim = Simulator(seed=1)
    events = [sim.event() for _ in range(500)]
    mean_particles = sum(e.n_particles for e in events) / len(events)
    assert 35 < mean_particles < 70  # ~30 soft particles plus two fragmenting partons
    assert all(e.n_tracks <= e.n_particles for e in events)
    with_jets = [e for e in events if e.n_jets]
    assert len(with_jets) > 0.5 * len(events)
    assert all(e.leading_jet_pt > 10.0 for e in with_jets)
    assert all(e.met >= 0.0 for e in events)


def test_jet_clustering_merges_a_cone() -> None:
    towers = [(0.0, 0.0, 30.0), (0.1, 0.1, 5.0), (0.05, -0.1, 4.0), (2.0, 2.0, 12.0), (-1.0, 3.1, 1.0)]
    assert Simulator._jets(towers) == [39.0, 12.0]


def test_jets_across_the_phi_boundary() -> None:
    towers = [(0.0, 3.1, 20.0), (0.0, -3.1, 8.0)]  # 0.083 apart across +-pi
    assert Simulator._jets(towers) == [28.0]


def test_progress_writer_contract(tmp_path: Path) -> None:
    w = ProgressWriter(str(tmp_path), "job-1", "simulate", 100)
    w.update(0)
    first = parse_progress((tmp_path / "job-1.json").read_text())
    assert (first.state, first.pid, first.events_target) == ("running", os.getpid(), 100)
    w.update(100, "finished")
    last = parse_progress((tmp_path / "job-1.json").read_text())
    assert last.state == "finished" and last.finished_at is not None and last.events_processed == 100
    assert [p.name for p in tmp_path.iterdir()] == ["job-1.json"]  # no temporary file left behind


@pytest.mark.parametrize("job_id", ["", "a/b", "..", "x" * 129, "white space"])
def test_invalid_job_ids(tmp_path: Path, job_id: str) -> None:
    with pytest.raises(ValueError, match="invalid job id"):
        ProgressWriter(str(tmp_path), job_id, "simulate", 0)


def _cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workloads.cli", *args], capture_output=True, text=True, timeout=60)


def test_cli_events_limit(tmp_path: Path) -> None:
    proc = _cli("simulate", "--job-id", "e1", "--jobs-dir", str(tmp_path), "--events", "300", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    sim = Simulator(seed=3)
    for _ in range(300):
        sim.event()
    assert summary["events"] == 300 and summary["checksum"] == sim.checksum
    record = parse_progress((tmp_path / "e1.json").read_text())
    assert record.state == "finished" and record.events_processed == 300 and record.cpu_seconds > 0


def test_cli_duration_limit(tmp_path: Path) -> None:
    proc = _cli("simulate", "--job-id", "d1", "--jobs-dir", str(tmp_path), "--duration", "1.5")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert 1.4 <= summary["wall_seconds"] < 5 and summary["events"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--job-id", "x"], "needs a stopping condition"),
        (["--job-id", "a/b", "--events", "1"], "--job-id"),
        (["--job-id", "x", "--events", "-1"], "must not be negative"),
        (["--job-id", "x", "--events", "1", "--jobs-dir", "/nonexistent/dir"], "not a writable directory"),
    ],
)
def test_cli_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    if "--jobs-dir" not in args:
        args = [*args, "--jobs-dir", str(tmp_path)]
    proc = _cli("simulate", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_sigterm_marks_the_job_failed(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workloads.cli",
            "simulate",
            "--job-id",
            "t1",
            "--jobs-dir",
            str(tmp_path),
            "--duration",
            "60",
            "--progress-interval",
            "0.2",
        ],
    )
    path = tmp_path / "t1.json"
    deadline = time.monotonic() + 20
    while not path.exists() or parse_progress(path.read_text()).events_processed == 0:
        assert time.monotonic() < deadline, "job never reported progress"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 143
    record = json.loads(path.read_text())
    assert record["state"] == "failed" and record["message"] == "terminated" and record["events_processed"] > 0
