"""The contract from controller to node (magellan.contract): job references, the workload catalogue's rules and
command lines, the progress file, and what testbed.compare hands to playbooks/run_workload.yml."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from magellan import contract
from magellan.contract import ContractError, JobRef, JobSpec
from testbed import compare
from testbed.inventory import Node

RUN = contract.RunId(datetime(2026, 12, 3, 7, 0, 1, tzinfo=UTC), "storm-n4").format()


def test_a_run_and_its_jobs_format_and_parse_back() -> None:
    assert RUN == "cmp-20261203T070001-storm-n4"
    job = JobRef(RUN, 2, "wn-01.example.org")
    assert job.format() == f"{RUN}-r2-wn-01.example.org"
    readers = [r.format() for r in job.readers(3)]
    assert readers == [f"{RUN}-r2-wn-01.example.org_{i}" for i in range(3)]
    assert readers[1] == contract.reader_job_id(job.format(), 1)  # what the storm names its readers
    for ref in (job, *job.readers(3)):
        assert JobRef.parse(ref.format(), RUN) == ref and contract.valid_job_id(ref.format())
    assert JobRef.parse(f"{RUN}-r2-wn-01_1", RUN) == JobRef(RUN, 2, "wn-01", 1)
    assert JobRef.parse(f"{RUN}0-r2-n1", RUN) is None  # another run whose id starts like this one
    assert JobRef.parse("input-s7-n5000-rntuple-n1", RUN) is None
    with pytest.raises(ContractError, match="host name"):
        JobRef(RUN, 0, "node_1")  # '_' would make a reader's id ambiguous


def test_the_run_selector_matches_its_jobs_only() -> None:
    sel = contract.run_selector(RUN)
    pattern = re.compile(sel.split('"')[1])
    assert pattern.fullmatch(f"{RUN}-r0-n1_3") and not pattern.fullmatch(f"{RUN}x-r0-n1")
    with pytest.raises(ContractError, match="run id"):
        contract.run_selector('x"}) or vector(1')


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (JobSpec("reconstruct"), "workload 'reconstruct': one of simulate, analyze, storm"),
        (JobSpec("analyze", events=10), "analyze runs for a duration in seconds"),
        (JobSpec("simulate", duration=0), "duration or events must be positive"),
        (JobSpec("simulate", duration=float("nan")), "finite and not negative"),
        (JobSpec("storm", readers=1001), "readers 1001: a storm runs 1 to 1000 concurrent readers"),
        (JobSpec("analyze", readers=4), "more than 1 only for a storm"),
        (JobSpec("analyze", format="root6"), "format 'root6': one of rntuple, ttree"),
        (JobSpec("simulate", chos="SL6 env"), "chos 'SL6 env'"),
    ],
)
def test_bad_job_parameters_name_the_parameter(spec: JobSpec, message: str) -> None:
    with pytest.raises(ContractError, match=message.replace("(", r"\(")):
        spec.check()


def test_the_catalogue_says_what_each_workload_is() -> None:
    assert {n: (w.bound, w.reads_input, w.readers) for n, w in contract.CATALOGUE.items()} == {
        "simulate": ("cpu", False, False),
        "analyze": ("io", True, False),
        "storm": ("io", True, True),
    }
    assert contract.db12_score("storm", 650.0, 1.0) == contract.db12_score("analyze", 650.0, 1.0) == 1.0
    assert contract.db12_score("simulate", 10.0, 0.0) is None


def test_argv_and_inputs_of_each_workload() -> None:
    node = {"jobs_dir": "/j", "data_dir": "/d", "prefix": "/p"}
    sim = JobSpec("simulate", duration=20, seed=7).check()
    assert sim.argv("J", **node) == [
        "/p/venv/bin/magellan-workload",
        *("simulate", "--job-id", "J", "--jobs-dir", "/j", "--seed", "7", "--duration", "20"),
    ]
    storm = JobSpec("storm", duration=10, seed=7, readers=40, cold=True, format="ttree").check()
    inputs = storm.inputs("/d")
    assert inputs[0] == "/d/events-s7-n5000-ttree.root" and len(inputs) == contract.STORM_FILES
    argv = storm.argv("J", **node)
    assert argv[argv.index("--input") + 1 : argv.index("--cold")] == inputs
    assert argv[argv.index("--readers") + 1] == "40"
    assert JobSpec("analyze", seed=7).input_path("/d") == "/d/events-s7-n5000.root"  # the default format's name


def test_prepare_makes_the_inputs_once_under_temporary_names(tmp_path: Path) -> None:
    """The shell lines compare hands to run_workload.yml, run by bash with the real workload program: the input and
    a storm's copies appear whole, and a second run makes nothing (the task reports no change)."""
    prefix = tmp_path / "prefix"
    (prefix / "venv" / "bin").mkdir(parents=True)
    (prefix / "venv" / "bin" / "magellan-workload").symlink_to(Path(sys.executable).parent / "magellan-workload")
    (tmp_path / "jobs").mkdir()
    (tmp_path / "data").mkdir()
    node = Node("n1", "127.0.0.1", "test", jobs_dir=str(tmp_path / "jobs"), data_dir=str(tmp_path / "data"))
    node = replace(node, prefix=str(prefix))
    spec = JobSpec("storm", duration=5, seed=3, readers=3, cold=True, input_events=200).check()
    env = {**os.environ, "MAGELLAN_JOBS_DIR": str(tmp_path / "jobs")}

    def prepare() -> str:
        script = compare.prepare_script(spec, node)
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    first = prepare()
    assert sorted(first.split()) == sorted(["made", "made", "made", *spec.inputs(node.data_dir)])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(
        Path(p).name for p in spec.inputs(node.data_dir)
    )
    assert prepare() == ""
    assert compare.prepare_script(JobSpec("simulate"), node) == ""


def test_job_vars_are_all_run_workload_needs() -> None:
    node = Node("compute1", "10.0.0.1", "bare-metal")
    spec = JobSpec("analyze", duration=15, seed=7, cold=True, chos="bullseye").check()
    v = compare.job_vars(spec, node, JobRef(RUN, 1, "compute1"))
    assert sorted(v) == ["chos", "command", "duration", "job_id", "output", "prepare"]
    assert v["job_id"] == f"{RUN}-r1-compute1" and v["output"] == f"/tmp/magellan-{RUN}-r1-compute1.out"
    assert v["command"].startswith(f"{contract.workload_command()} analyze --job-id {RUN}-r1-compute1 ")
    assert (v["duration"], v["chos"]) == (15, "bullseye")
    play = (Path(__file__).resolve().parents[2] / "playbooks" / "run_workload.yml").read_text()
    assert str(sorted(v)) in play  # the playbook checks for exactly these keys


def test_a_progress_record_round_trips() -> None:
    p = contract.Progress(
        job_id="j1",
        workload="analyze",
        state=contract.FINISHED,
        pid=42,
        pid_starttime=7,
        events_processed=10,
        events_target=0,
        started_at=1.0,
        updated_at=2.0,
        finished_at=2.0,
        cpu_seconds=0.5,
        bytes_read=100,
        bytes_written=0,
        format="ttree",
    )
    assert contract.parse_progress(p.to_json()) == p
    with pytest.raises(contract.ProgressError, match="field"):
        contract.parse_progress(p.to_json().replace('"events_processed": 10', '"events_processed": ' + "9" * 400))
    with pytest.raises(contract.ProgressError, match="format"):
        contract.parse_progress(p.to_json().replace('"ttree"', '"root6"'))


def test_proc_stat_fields_counted_from_the_last_parenthesis() -> None:
    stat = "1234 (a (b) c) S " + " ".join(str(i) for i in range(4, 53))
    s = contract.parse_proc_stat(stat)
    assert (s.utime_ticks, s.stime_ticks, s.starttime) == (14, 15, 22)
    with pytest.raises(ValueError, match="malformed"):
        contract.parse_proc_stat("1234 (x) S 1 2")


# --- ASCII counts in /proc (issue 15) -----------------------------------------------------------------------------

STAT = "1 (x) R " + " ".join(["0"] * 10) + " {u} 2 " + " ".join(["0"] * 6) + " 3 0\n"


@pytest.mark.parametrize("text", ["0", "12", str(contract.COUNT_MAX)])
def test_parse_count(text: str) -> None:
    assert contract.parse_count(text) == int(text)


@pytest.mark.parametrize(
    "text", ["", "²", "٣", "1٣", " 1", "1 ", "+1", "-1", "1_0", "1.0", "nan", str(2**63), "9" * 400]
)
def test_parse_count_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="ASCII digits"):
        contract.parse_count(text)


def test_proc_stat_fields_are_ascii_counts() -> None:
    assert contract.parse_proc_stat(STAT.format(u="7")) == contract.ProcStat(7, 2, 3)
    for bad in ("٣", "²", "9" * 400):
        with pytest.raises(ValueError, match="malformed"):
            contract.parse_proc_stat(STAT.format(u=bad))


def test_proc_io_fields_are_ascii_counts() -> None:
    assert contract.parse_proc_io("read_bytes: 5\nwrite_bytes:\t6\n") == contract.ProcIO(5, 6)
    for bad in ("٣", "²", "-1", "9" * 400):
        with pytest.raises(ValueError, match="malformed"):
            contract.parse_proc_io(f"read_bytes: {bad}\nwrite_bytes: 6\n")
