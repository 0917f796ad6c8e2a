"""Faults never leave a job `running` nor destroy a file: every failure of simulate, analyze and a storm's readers
ends the job's record `failed` with its reason; an output that is an input is refused; outputs are written under a
temporary name and renamed onto theirs only on success, so a signal or an error leaves an existing file as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import uproot

from magellan import contract
from workloads.rootio import EventWriter, branches
from workloads.simulate import Simulator

ROOT = Path(__file__).resolve().parents[2]
OLD = b"an existing file that no failed job may touch\n" * 100


def workload(*argv: str, inject: str = "") -> subprocess.CompletedProcess[str]:
    """magellan-workload in a fresh interpreter, after the Python statements `inject` (a fault to inject)."""
    code = f"import sys\n{inject}\nfrom workloads.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    cmd = [sys.executable, "-c", code, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def record(jobs: Path, job_id: str) -> contract.Progress:
    return contract.parse_progress((jobs / f"{job_id}.json").read_bytes())


def assert_failed(proc: subprocess.CompletedProcess[str], jobs: Path, job_id: str, reason: str) -> None:
    """The job exited 1 with `reason` (exception type and message) on stderr and in its record, state failed."""
    assert proc.returncode == 1, proc.stderr
    assert reason in proc.stderr
    rec = record(jobs, job_id)
    assert rec.state == contract.FAILED and rec.finished_at is not None
    assert rec.message is not None and reason in rec.message, rec.message


def no_partial(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".partial")]


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.root"
    sim, writer = Simulator(3, record=True), EventWriter(path)
    for _ in range(50):
        writer.add(sim.event(), sim.detail)
    writer.close()
    return path


@pytest.fixture(scope="module")
def misshapen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TTree with every branch of the events by name, but flat: each collection's fields are not lists."""
    path = tmp_path_factory.mktemp("misshapen") / "flat.root"
    with uproot.recreate(path) as f:
        f.mktree("events", {name: np.zeros(3, np.float32) for name in branches("ttree")})
    return path


# --- every exit path ends the record failed with its reason ----------------------------------------------------------


def test_analyze_of_columns_of_the_wrong_shape_fails_the_job(tmp_path: Path, misshapen: Path) -> None:
    proc = workload("analyze", "--job-id", "shape", "--jobs-dir", str(tmp_path), "--input", str(misshapen))
    assert_failed(proc, tmp_path, "shape", "column particle_pt holds float32 per event, not a list of numbers")


def test_analyze_whose_output_cannot_be_written_fails_the_job_and_keeps_the_old_output(
    tmp_path: Path, events: Path
) -> None:
    out = tmp_path / "hists.root"
    out.write_bytes(OLD)
    deny = (
        "import uproot\n"
        "def recreate(path, **options):\n"
        "    raise PermissionError(13, 'Permission denied', str(path))\n"
        "uproot.recreate = recreate\n"
    )
    argv = ["analyze", "--job-id", "perm", "--jobs-dir", str(tmp_path), "--input", str(events), "--output", str(out)]
    proc = workload(*argv, inject=deny)
    assert_failed(proc, tmp_path, "perm", "PermissionError: [Errno 13] Permission denied")
    assert record(tmp_path, "perm").events_processed == 50  # it read everything first
    assert out.read_bytes() == OLD
    no_partial(tmp_path)


def test_simulate_whose_output_fails_at_the_end_fails_the_job_and_keeps_the_old_output(tmp_path: Path) -> None:
    out = tmp_path / "events.root"
    out.write_bytes(OLD)
    full = (
        "import errno, workloads.rootio as r\n"
        "def close(self):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "r.uproot.WritableDirectory.close = close\n"
    )
    argv = ["simulate", "--job-id", "full", "--jobs-dir", str(tmp_path), "--events", "20", "--output", str(out)]
    proc = workload(*argv, inject=full)
    assert_failed(proc, tmp_path, "full", "OSError: [Errno 28] No space left on device")
    assert out.read_bytes() == OLD
    no_partial(tmp_path)


def test_a_job_that_cannot_start_its_record_says_why(tmp_path: Path) -> None:
    broken = (
        "import workloads.progress as p\n"
        "def starttime(procfs='/proc'):\n"
        "    raise FileNotFoundError(2, 'No such file or directory', procfs + '/self/stat')\n"
        "p.self_starttime = starttime\n"
    )
    proc = workload("simulate", "--job-id", "nostat", "--jobs-dir", str(tmp_path), "--events", "1", inject=broken)
    assert proc.returncode == 1
    assert "simulate: FileNotFoundError: [Errno 2] No such file or directory: '/proc/self/stat'" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_every_storm_reader_that_fails_says_why(tmp_path: Path, misshapen: Path) -> None:
    argv = ["storm", "--job-id", "sh", "--jobs-dir", str(tmp_path), "--readers", "2", "--input", str(misshapen)]
    proc = workload(*argv)
    assert proc.returncode == 1
    for i in range(2):
        rec = record(tmp_path, contract.reader_job_id("sh", i))
        assert rec.state == contract.FAILED and rec.message is not None and "column particle_pt" in rec.message
    assert proc.stderr.count("column particle_pt holds float32") >= 2


def test_a_storm_that_cannot_fork_every_reader_ends_them_all(tmp_path: Path, events: Path) -> None:
    """The second fork fails: the first reader is stopped, the second has a record saying why; exit 1."""
    no_fork = (
        "import os\n"
        "real, forks = os.fork, []\n"
        "def fork():\n"
        "    forks.append(1)\n"
        "    if len(forks) > 1:\n"
        "        raise BlockingIOError(11, 'Resource temporarily unavailable')\n"
        "    return real()\n"
        "os.fork = fork\n"
    )
    argv = ["storm", "--job-id", "nf", "--jobs-dir", str(tmp_path), "--readers", "2", "--duration", "30"]
    proc = workload(*argv, "--input", str(events), inject=no_fork)
    assert proc.returncode == 1
    assert "BlockingIOError: [Errno 11] Resource temporarily unavailable" in proc.stderr
    first, second = (record(tmp_path, contract.reader_job_id("nf", i)) for i in range(2))
    assert first.state == second.state == contract.FAILED
    # The first reader was stopped, not left to run out its 30 s. Its own record's times, not the test's clock: the
    # interpreter's start-up took 30 s of wall time on a loaded CI machine.
    assert first.finished_at is not None and first.finished_at - first.started_at < 25, first
    assert second.message is not None and "BlockingIOError: [Errno 11]" in second.message


def _wait_for_events(path: Path, proc: subprocess.Popen[str], timeout: float = 30) -> contract.Progress:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the job never reported events"
        if path.exists():
            rec = contract.parse_progress(path.read_bytes())
            if rec.events_processed > 0:
                return rec
        time.sleep(0.05)


def _popen(*argv: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "workloads.cli", *argv]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def test_a_storm_reader_killed_outright_is_recorded_failed(tmp_path: Path, events: Path) -> None:
    """SIGKILL leaves a reader no chance to write its record: the storm ends it, failed by that signal."""
    argv = ["storm", "--job-id", "k", "--jobs-dir", str(tmp_path), "--readers", "2", "--duration", "30"]
    proc = _popen(*argv, "--progress-interval", "0.1", "--input", str(events))
    try:
        victim = _wait_for_events(tmp_path / "k_0.json", proc)
        _wait_for_events(tmp_path / "k_1.json", proc)
        # Stopped first, then read: what it recorded last is what it leaves (it went on reading while k_1 started).
        os.kill(victim.pid, signal.SIGSTOP)
        victim = record(tmp_path, "k_0")
        os.kill(victim.pid, signal.SIGKILL)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # to the storm alone: it passes it on to the living reader
        assert proc.wait(timeout=20) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "storm: reader k_0 killed by SIGKILL without ending its record: recorded it failed" in proc.communicate()[1]
    killed, stopped = record(tmp_path, "k_0"), record(tmp_path, "k_1")
    assert (killed.state, killed.message) == (contract.FAILED, "killed by SIGKILL")
    assert killed.events_processed == victim.events_processed > 0 and killed.pid == victim.pid
    assert (stopped.state, stopped.message) == (contract.FAILED, "terminated")


# --- an output that is an input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["same", "dotted", "symlink", "hardlink"])
def test_an_output_that_is_an_input_is_refused(tmp_path: Path, events: Path, alias: str) -> None:
    data = tmp_path / "in.root"
    data.write_bytes(events.read_bytes())
    out = {
        "same": data,
        "dotted": tmp_path / "." / "sub" / ".." / "in.root",
        "symlink": tmp_path / "link.root",
        "hardlink": tmp_path / "hard.root",
    }[alias]
    (tmp_path / "sub").mkdir()
    if alias == "symlink":
        out.symlink_to(data)
    if alias == "hardlink":
        os.link(data, out)
    before = data.read_bytes()
    argv = ["analyze", "--job-id", "io", "--jobs-dir", str(tmp_path), "--input", str(events), str(data)]
    proc = workload(*argv, "--output", str(out))
    assert proc.returncode == 2
    assert f"--output {out}: it is --input {data}" in proc.stderr and "Traceback" not in proc.stderr
    assert data.read_bytes() == before
    assert not (tmp_path / "io.json").exists()


@pytest.mark.parametrize(
    ("output", "message"),
    [("missing/h.root", "no such directory"), (".", "is a directory")],
)
def test_an_output_that_cannot_be_made_is_refused_before_the_job(
    tmp_path: Path, events: Path, output: str, message: str
) -> None:
    out = tmp_path / output
    for argv in (
        ["analyze", "--job-id", "o", "--jobs-dir", str(tmp_path), "--input", str(events)],
        ["simulate", "--job-id", "o", "--jobs-dir", str(tmp_path), "--events", "1"],
    ):
        proc = workload(*argv, "--output", str(out))
        assert proc.returncode == 2
        assert f"--output {out}: {message}" in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "o.json").exists()


# --- outputs appear whole or not at all ----------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_a_signal_mid_run_leaves_the_existing_output_as_it_was(tmp_path: Path, signum: int, status: int) -> None:
    out = tmp_path / "events.root"
    out.write_bytes(OLD)
    argv = ["simulate", "--job-id", "sig", "--jobs-dir", str(tmp_path), "--duration", "30", "--output", str(out)]
    proc = _popen(*argv, "--progress-interval", "0.1")
    try:
        _wait_for_events(tmp_path / "sig.json", proc)
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == status
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.read_bytes() == OLD
    partials = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    if signum == signal.SIGTERM:
        assert not partials and record(tmp_path, "sig").message == "terminated"
    else:  # no chance to clean up: the temporary stays, under its own name, beside the untouched output
        assert [p.name for p in partials] == [f".events.root.{proc.pid}.partial"]


def test_a_finished_job_replaces_the_output_whole(tmp_path: Path, events: Path) -> None:
    ev, hists = tmp_path / "events.root", tmp_path / "hists.root"
    ev.write_bytes(OLD)
    hists.write_bytes(OLD)
    proc = workload("simulate", "--job-id", "s", "--jobs-dir", str(tmp_path), "--events", "30", "--output", str(ev))
    assert proc.returncode == 0, proc.stderr
    argv = ["analyze", "--job-id", "a", "--jobs-dir", str(tmp_path), "--input", str(ev), "--output", str(hists)]
    proc = workload(*argv)
    assert proc.returncode == 0, proc.stderr
    with uproot.open(ev) as f:
        assert f["events"].num_entries == 30
    with uproot.open(hists) as f:
        assert f["met"].to_hist().sum(flow=True) >= 0 and "n_tracks" in f
    no_partial(tmp_path)


def test_an_output_through_a_symlink_replaces_its_target(tmp_path: Path) -> None:
    target, link = tmp_path / "target.root", tmp_path / "link.root"
    target.write_bytes(OLD)
    link.symlink_to(target)
    proc = workload("simulate", "--job-id", "l", "--jobs-dir", str(tmp_path), "--events", "5", "--output", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and target.read_bytes() != OLD
    with uproot.open(link) as f:
        assert f["events"].num_entries == 5
