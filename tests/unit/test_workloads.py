"""The simulate workload: deterministic physics, the progress-file contract, stopping and signals."""

from __future__ import annotations

import ast
import json
import os
import signal
import stat
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from magellan import contract
from magellan.contract import parse_progress
from workloads import cli, db12
from workloads.progress import ProgressWriter
from workloads.simulate import Simulator

ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_same_events() -> None:
    a, b = Simulator(seed=7), Simulator(seed=7)
    events_a = list(a.run(200))
    events_b = list(b.run(200))
    assert events_a == events_b
    assert a.checksum == b.checksum != 0
    other = Simulator(seed=8)
    list(other.run(200))
    assert other.checksum != a.checksum


def test_checksum_in_a_fresh_interpreter_is_the_same() -> None:
    code = "from workloads.simulate import Simulator as S; s = S(seed=3); list(s.run(100)); print(s.checksum)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    s = Simulator(seed=3)
    list(s.run(100))
    assert int(out) == s.checksum


def test_events_look_like_collisions() -> None:
    sim = Simulator(seed=1)
    events = list(sim.run(500))
    mean_particles = statistics.mean(e.n_particles for e in events)
    assert 55 < mean_particles < 90  # ~50 soft particles plus two fragmenting partons
    assert all(e.n_tracks <= e.n_particles for e in events)
    assert 0.4 < statistics.mean(e.n_tracks / e.n_particles for e in events) < 0.8  # ~70 % charged, acceptance
    with_jets = [e for e in events if e.n_jets]
    assert len(with_jets) > 0.5 * len(events)
    assert all(e.leading_jet_pt > 10.0 for e in with_jets)
    assert all(e.met >= 0.0 and e.track_pt_sum >= 0.0 for e in events)


@pytest.mark.parametrize(("pt", "low", "high"), [(1.0, 0.005, 0.02), (10.0, 0.008, 0.025), (100.0, 0.05, 0.15)])
def test_tracker_resolution_grows_with_pt(pt: float, low: float, high: float) -> None:
    sim = Simulator(seed=5)
    measured = [m for m in (sim.track(pt, 0.3, 1) for _ in range(2000)) if m is not None]
    assert len(measured) > 1900  # efficiency: >= 5 of 7 hits at 98 % per layer
    assert statistics.mean(measured) == pytest.approx(pt, rel=0.02)
    assert low < statistics.pstdev(measured) / pt < high


def test_low_pt_particles_curl_up_before_the_outer_layers() -> None:
    sim = Simulator(seed=5)
    assert sim.track(0.05, 0.0, -1) is None  # radius 8 cm: reaches only the first layers


def test_jet_clustering_merges_a_cone() -> None:
    towers = [(0.0, 0.0, 30.0), (0.1, 0.1, 5.0), (0.05, -0.1, 4.0), (2.0, 2.0, 12.0), (-1.0, 3.1, 1.0)]
    assert Simulator._jets(towers) == [39.0, 12.0]


def test_jets_across_the_phi_boundary() -> None:
    towers = [(0.0, 3.1, 20.0), (0.0, -3.1, 8.0)]  # 0.083 apart across +-pi
    assert Simulator._jets(towers) == [28.0]


def test_workloads_parse_as_python_3_9() -> None:
    for path in [*(ROOT / "workloads").glob("*.py"), ROOT / "magellan" / "contract.py"]:
        tree = ast.parse(path.read_text(), feature_version=(3, 9))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and any(k.arg == "strict" for k in node.keywords):
                pytest.fail(f"{path.name}:{node.lineno}: zip(strict=) is Python 3.10+")


# --- the progress file ---------------------------------------------------------------------------------------------


def test_evict_drops_a_file_just_written_from_the_page_cache() -> None:
    """--cold's eviction of an input whose pages are still dirty (made seconds before, as a storm's copies are):
    nothing of it stays in the page cache (util-linux fincore). On a disk, not /tmp: a tmpfs keeps its pages."""
    state = Path(__file__).resolve().parents[2] / ".testbed"
    state.mkdir(exist_ok=True)
    path = state / f"evict-test-{os.getpid()}.bin"
    try:
        path.write_bytes(os.urandom(8 << 20))
        resident = ["fincore", "--noheadings", "--bytes", "--output", "RES", str(path)]
        assert int(subprocess.run(resident, capture_output=True, text=True, check=True).stdout) == 8 << 20
        cli.evict(str(path))
        assert int(subprocess.run(resident, capture_output=True, text=True, check=True).stdout) == 0
    finally:
        path.unlink(missing_ok=True)


def test_progress_writer_contract(tmp_path: Path) -> None:
    w = ProgressWriter(str(tmp_path), "job-1", "simulate", 100)
    w.update(0)
    first = parse_progress((tmp_path / "job-1.json").read_text())
    assert (first.state, first.pid, first.events_target, first.finished_at) == ("running", os.getpid(), 100, None)
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert first.pid_starttime == int(stat[stat.rindex(")") + 2 :].split()[19])
    w.update(100, "finished")
    last = parse_progress((tmp_path / "job-1.json").read_text())
    assert last.state == "finished" and last.finished_at is not None and last.events_processed == 100
    assert last.finished_at >= last.started_at and last.cpu_seconds > 0
    assert [p.name for p in tmp_path.iterdir()] == ["job-1.json"]  # no temporary file left behind


def test_what_the_writer_writes_the_contract_reads_back_field_for_field(tmp_path: Path) -> None:
    """Every write: the file is Progress.to_json() of the writer's record, and parse_progress gives that record."""
    w = ProgressWriter(str(tmp_path), "rt-1", "analyze", 0, format="ttree")
    path = tmp_path / "rt-1.json"
    for events, state, message in ((0, "running", None), (1234, "running", None), (5000, "failed", "disk gone")):
        w.update(events, state, message)
        text = path.read_text()
        assert text == w.record.to_json()
        back = parse_progress(text)
        assert back == w.record
        assert (back.events_processed, back.state, back.message, back.format) == (events, state, message, "ttree")
    assert back.schema == contract.SCHEMA and back.finished_at is not None and back.score_db12 is not None


def test_the_format_is_recorded_once_known(tmp_path: Path) -> None:
    w = ProgressWriter(str(tmp_path), "rt-2", "analyze", 0)
    w.update(0)
    assert parse_progress((tmp_path / "rt-2.json").read_text()).format is None
    w.update(10, format="rntuple")
    w.update(20, "finished")
    assert parse_progress((tmp_path / "rt-2.json").read_text()).format == "rntuple"
    with pytest.raises(ValueError, match="format 'parquet' not one of rntuple, ttree"):
        w.update(30, format="parquet")


def test_progress_writer_failed_message(tmp_path: Path) -> None:
    w = ProgressWriter(str(tmp_path), "job-2", "simulate", 0)
    w.update(5, "failed", "boom")
    p = parse_progress((tmp_path / "job-2.json").read_text())
    assert (p.state, p.message, p.events_processed) == ("failed", "boom", 5)
    with pytest.raises(ValueError, match="state"):
        w.update(6, "paused")


def test_progress_file_is_never_seen_half_written(tmp_path: Path) -> None:
    """A reader racing the writer always finds a complete, valid file (atomic rename)."""
    w = ProgressWriter(str(tmp_path), "race", "simulate", 0)
    w.update(0)
    stop = threading.Event()
    seen: list[int] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(parse_progress((tmp_path / "race.json").read_bytes()).events_processed)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 300):
            w.update(i)
    finally:
        stop.set()
        reader.join()
    assert seen and seen == sorted(seen)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("job_id", ["", "a/b", "x" * 129, "white space", "tab\t", "new\n", "é"])
def test_invalid_job_ids(tmp_path: Path, job_id: str) -> None:
    assert not contract.valid_job_id(job_id)
    with pytest.raises(ValueError, match="invalid job id"):
        ProgressWriter(str(tmp_path), job_id, "simulate", 0)


@pytest.mark.parametrize("job_id", ["a", "x" * 128, "sim_1.run-2", "A.B"])
def test_valid_job_ids(job_id: str) -> None:
    assert contract.valid_job_id(job_id)


# --- the command ---------------------------------------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "workloads.cli", "simulate", *args]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli(*args), capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_cli_events_limit(tmp_path: Path) -> None:
    proc = _run("--job-id", "e1", "--jobs-dir", str(tmp_path), "--events", "300", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    sim = Simulator(seed=3)
    list(sim.run(300))
    assert summary["events"] == 300 and summary["checksum"] == sim.checksum
    assert set(summary) >= {"job_id", "events", "wall_seconds", "cpu_seconds", "events_per_second", "checksum"}
    assert summary["events_per_second"] == pytest.approx(300 / summary["wall_seconds"], rel=0.01)
    record = parse_progress((tmp_path / "e1.json").read_text())
    assert record.state == "finished" and record.events_processed == record.events_target == 300
    assert record.cpu_seconds == summary["cpu_seconds"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["e1.json"]


def test_cli_duration_limit_and_periodic_progress(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _cli("--job-id", "d1", "--jobs-dir", str(tmp_path), "--duration", "2", "--progress-interval", "0.2"),
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    path, updates = tmp_path / "d1.json", set()
    while proc.poll() is None:
        if path.exists():
            p = parse_progress(path.read_bytes())
            if p.state == "running":
                updates.add(p.updated_at)
        time.sleep(0.05)
    assert proc.returncode == 0
    summary = json.loads(proc.stdout.read() if proc.stdout else "")
    assert 2.0 <= summary["wall_seconds"] < 6 and summary["events"] > 0
    assert len(updates) >= 4  # start plus a write every 0.2 s
    final = parse_progress(path.read_text())
    assert final.state == "finished" and final.events_target == 0 and final.events_processed == summary["events"]


def test_cli_whichever_limit_comes_first(tmp_path: Path) -> None:
    proc = _run("--job-id", "both", "--jobs-dir", str(tmp_path), "--events", "50", "--duration", "600")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["events"] == 50


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--job-id", "x"], "needs a stopping condition"),
        (["--job-id", "a/b", "--events", "1"], "--job-id"),
        (["--job-id", "x" * 129, "--events", "1"], "--job-id"),
        (["--job-id", "x", "--events", "-1"], "must not be negative"),
        (["--job-id", "x", "--events", "1", "--progress-interval", "0"], "--progress-interval"),
        (["--job-id", "x", "--duration", "nan"], "--duration"),
        (["--job-id", "x", "--duration", "inf"], "--duration"),
        (["--job-id", "x", "--events", "ten"], "invalid int value"),
        (["--job-id", "x", "--events", "1", "--jobs-dir", "/nonexistent/dir"], "No such file or directory"),
        (["--events", "1"], "--job-id"),
        (["--job-id", "x", "--events", "1", "--format", "ttree"], "--format chooses what --output writes"),
        (["--job-id", "x", "--events", "1", "--format", "csv", "--output", "o.root"], "invalid choice: 'csv'"),
    ],
)
def test_cli_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    if "--jobs-dir" not in args:
        args = [*args, "--jobs-dir", str(tmp_path)]
    proc = _run(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("signum", "status", "message"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_signal_marks_the_job_failed(tmp_path: Path, signum: int, status: int, message: str) -> None:
    proc = subprocess.Popen(
        _cli("--job-id", "t1", "--jobs-dir", str(tmp_path), "--duration", "60", "--progress-interval", "0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    path = tmp_path / "t1.json"
    try:
        deadline = time.monotonic() + 30
        while not path.exists() or parse_progress(path.read_bytes()).events_processed == 0:
            assert time.monotonic() < deadline, "job never reported progress"
            time.sleep(0.05)
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == status
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = proc.communicate()
    assert out == "" and "Traceback" not in err
    record = parse_progress(path.read_text())
    assert (record.state, record.message) == ("failed", message)
    assert record.events_processed > 0 and record.finished_at is not None
    assert not list(tmp_path.glob("*.tmp"))


def test_exception_marks_the_job_failed(tmp_path: Path) -> None:
    """An error inside the event loop: state failed with the error as message, non-zero exit."""
    code = (
        "import sys, workloads.simulate as s\n"
        "def boom(self):\n"
        "    raise RuntimeError('detector on fire')\n"
        "s.Simulator.event = boom\n"
        "from workloads.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "simulate", "--job-id", "x1", "--jobs-dir", str(tmp_path), "--events", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert "detector on fire" in proc.stderr
    record = parse_progress((tmp_path / "x1.json").read_text())
    assert (record.state, record.message) == ("failed", "RuntimeError: detector on fire")


def test_db12_measures_a_positive_score_and_scores_jobs_per_core(tmp_path: Path) -> None:
    assert db12.measure(0.002) > 0
    with pytest.raises(ValueError):
        db12.measure(0)
    unit = contract.CATALOGUE["simulate"].events_per_db12_second
    assert db12.score("simulate", 10 * unit, 2.0) == pytest.approx(5.0)
    assert db12.score("storm", 10.0, 1.0) == db12.score("analyze", 10.0, 1.0)  # a storm's readers are analyze jobs
    assert db12.score("simulate", 100, 0.0) is None and db12.score("unknown", 100, 1.0) is None
    w = ProgressWriter(str(tmp_path), "s1", "simulate", 0)
    w.update(0)
    record = parse_progress((tmp_path / "s1.json").read_text())
    assert record.score_db12 == db12.score("simulate", 0, record.cpu_seconds)


def test_db12_command_prints_its_score(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["db12", "--fraction", "0.002"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unit"] == "DB12" and out["score"] > 0
    with pytest.raises(SystemExit):
        cli.main(["db12", "--fraction", "2"])


@pytest.mark.parametrize(
    ("files", "readers", "expected"),
    [
        (4, 4, [["f0"], ["f1"], ["f2"], ["f3"]]),  # a file each: none reads another's (its pages would be cached)
        (5, 2, [["f0", "f2", "f4"], ["f1", "f3"]]),  # more files than readers: shared out, never shared
        (2, 3, [["f0"], ["f1"], ["f0"]]),  # fewer files than readers: some must share
        (1, 1, [["f0"]]),
    ],
)
def test_storm_readers_share_the_inputs_out(files: int, readers: int, expected: list[list[str]]) -> None:
    inputs = [f"f{i}" for i in range(files)]
    assert [cli.reader_inputs(inputs, readers, i) for i in range(readers)] == expected


def test_the_command_runs_every_workload_of_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(cli.ARGUMENTS) == set(contract.CATALOGUE)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for w in contract.CATALOGUE.values():
        assert w.name in out and w.summary.split()[0] in out


def test_defaults_come_from_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAGELLAN_JOBS_DIR", raising=False)
    args = cli._parser().parse_args(["simulate", "--job-id", "x", "--events", "1"])
    assert (args.jobs_dir, args.seed, args.format) == (contract.JOBS_DIR, contract.DEFAULT_SEED, None)


def test_a_job_writes_only_in_a_directory_of_its_users(tmp_path: Path) -> None:
    """contract.user_dir: a missing jobs directory is made as the job's user's; one of another user's is refused,
    and nothing is written there."""
    assert os.geteuid() == 0, "the tests run as root (CI and make test do): they give files to other users"
    made = tmp_path / "mine"
    proc = _run("--job-id", "x", "--events", "5", "--jobs-dir", str(made))
    assert proc.returncode == 0, proc.stderr
    assert made.stat().st_uid == 0 and stat.S_IMODE(made.stat().st_mode) == 0o755
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 2001, -1)
    proc = _run("--job-id", "x", "--events", "5", "--jobs-dir", str(theirs))
    assert proc.returncode == 2 and "owned by" in proc.stderr and "not by you (root)" in proc.stderr, proc.stderr
    assert not list(theirs.iterdir())
    (tmp_path / "link").symlink_to(made)
    proc = _run("--job-id", "x", "--events", "5", "--jobs-dir", str(tmp_path / "link"))
    assert proc.returncode == 2 and "not a directory" in proc.stderr


def test_an_input_of_another_user_is_refused(tmp_path: Path) -> None:
    """A job reads its user's inputs and root's only: a file another user put in the shared data directory is not
    read by a root job."""
    planted = tmp_path / "events.root"
    planted.write_bytes(b"not events")
    os.chown(planted, 2001, -1)
    proc = subprocess.run(
        [sys.executable, "-m", "workloads.cli", "analyze", "--job-id", "a", "--jobs-dir", str(tmp_path), "--input",
         str(planted), "--duration", "1"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"--input {planted}: owned by" in proc.stderr and "not by root: a job reads" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
