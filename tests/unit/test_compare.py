"""testbed compare's measurement path, end to end on loopback: real job exporters, a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from magellan.contract import JobSpec
from testbed import compare
from testbed.inventory import Node
from testbed.prom import PromClient
from tests.conftest import LivePrometheus, free_port

REPO = Path(__file__).resolve().parents[2]

RUN = "cmp-20261125T040000-simulate"


def progress(job_id: str, events: int, wall: float, cpu: float, state: str = "finished") -> dict[str, object]:
    t0 = 1_795_000_000.0
    return {
        "schema": 1,
        "job_id": job_id,
        "workload": "simulate",
        "state": state,
        "pid": 999999,
        "pid_starttime": 1,
        "events_processed": events,
        "events_target": 0,
        "started_at": t0,
        "updated_at": t0 + wall,
        "finished_at": t0 + wall,
        "cpu_seconds": cpu,
        "bytes_read": 0,
        "bytes_written": 0,
    }


def serve(tmp_path: Path, jobs_per_node: dict[str, list[dict[str, object]]]) -> Iterator[list[str]]:
    """A real job exporter per node, serving the given progress files."""
    procs, targets = [], []
    for node, records in jobs_per_node.items():
        jobs = tmp_path / node
        jobs.mkdir()
        for record in records:
            (jobs / f"{record['job_id']}.json").write_text(json.dumps(record))
        port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "exporters.job",
                    f"--web.listen-address=127.0.0.1:{port}",
                    f"--path.jobs={jobs}",
                    f"--node.name={node}",
                    "--node.platform=test",
                ]
            )
        )
        targets.append(f"127.0.0.1:{port}")
    try:
        yield targets
    finally:  # also when the generator is closed early (targets.close()): no exporter outlives its test
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


@pytest.fixture
def exporters(tmp_path: Path) -> Iterator[list[str]]:
    """Two job exporters ('nodes' fast and slow) serving finished jobs of run RUN."""
    figures = {"fast": [(30000, 30.0, 29.8), (31000, 30.0, 29.9)], "slow": [(15000, 30.0, 14.9), (15500, 30.0, 15.0)]}
    yield from serve(
        tmp_path,
        {
            node: [progress(f"{RUN}-r{rep}-{node}", *fig) for rep, fig in enumerate(reps)]
            for node, reps in figures.items()
        },
    )


def test_measure_reads_final_figures_from_prometheus(
    exporters: list[str], live_prometheus: Callable[[list[str]], PromClient]
) -> None:
    prom = live_prometheus(exporters)
    nodes = [Node("fast", "127.0.0.1", "test"), Node("slow", "127.0.0.1", "test")]
    plan = compare.Plan(nodes, JobSpec(duration=30), repeat=2)
    assert plan.batches() == [("fast", 0), ("slow", 0), ("fast", 1), ("slow", 1)]
    compare.wait_final(prom, plan, RUN, timeout=30)
    results = {r.node: r for r in compare.measure(prom, plan, RUN)}
    assert results["fast"].events == 61000 and results["slow"].events == 30500
    assert results["slow"].events_per_second == pytest.approx(30500 / 60.0)
    assert results["fast"].cpu_seconds == pytest.approx(59.7)
    assert compare.pick_reference(plan, list(results.values())) == "fast"


def test_a_prometheus_restarted_in_the_middle_still_gives_the_results(
    exporters: list[str], live_prometheus: LivePrometheus, tmp_path: Path
) -> None:
    """Prometheus restarts while the comparison waits for its jobs and reads their figures (issue 15). The jobs'
    progress files are gone by then, so the figures can only come from its TSDB on disk."""
    prom = live_prometheus(exporters)
    nodes = [Node("fast", "127.0.0.1", "test"), Node("slow", "127.0.0.1", "test")]
    plan = compare.Plan(nodes, JobSpec(duration=30), repeat=2)
    assert compare.wait_final(prom, plan, RUN, timeout=30) == set()
    for f in tmp_path.glob("*/*.json"):
        f.unlink()
    restart = threading.Thread(target=live_prometheus.restart, kwargs={"down": 4.0})
    restart.start()
    try:
        time.sleep(1)  # down now, for 4 s: waiting on it is no error, it only sees nothing
        assert compare.wait_final(prom, plan, RUN, timeout=1) == plan.job_ids(RUN)
        results = {r.node: r for r in compare.through_restarts(prom, lambda: compare.measure(prom, plan, RUN))}
    finally:
        restart.join()
    assert results["fast"].events == 61000 and results["slow"].events == 30500
    assert not results["fast"].failed and not results["slow"].failed
    with pytest.raises(compare.CompareError, match="has not answered for 1 s"):
        live_prometheus.stop()
        compare.through_restarts(prom, lambda: compare.measure(prom, plan, RUN), patience=1)


def test_wait_final_returns_the_jobs_that_never_ended(live_prometheus: Callable[[list[str]], PromClient]) -> None:
    prom = live_prometheus([])
    plan = compare.Plan([Node("ghost", "127.0.0.1", "test")], JobSpec(duration=1))
    start = time.monotonic()
    assert compare.wait_final(prom, plan, RUN, timeout=3) == {f"{RUN}-r0-ghost"}
    assert time.monotonic() - start < 15


def test_a_job_killed_outright_is_final_and_its_run_failed_with_why(
    tmp_path: Path, live_prometheus: Callable[[list[str]], PromClient]
) -> None:
    """A record left `running` by a process that is gone (SIGKILL, the OOM killer, a node lost): the exporter says
    lost, the comparison stops waiting for it and records that run as failed, saying why; the other run counts."""
    lost = {**progress(f"{RUN}-r1-n1", 500, 5.0, 5.0), "state": "running", "finished_at": None}
    targets = serve(tmp_path, {"n1": [progress(f"{RUN}-r0-n1", 3000, 30.0, 29.0), lost]})
    prom = live_prometheus(next(targets))
    plan = compare.Plan([Node("n1", "127.0.0.1", "test")], JobSpec(duration=30), repeat=2)
    assert compare.wait_final(prom, plan, RUN, timeout=30) == set()
    (result,) = compare.measure(prom, plan, RUN)
    assert result.runs == [100.0, None] and result.events == 3000
    assert "gone without a final record" in result.failed["1"] and "OOM killer" in result.failed["1"]
    targets.close()


STORM_RUN = "cmp-20261125T040000-storm-n2"


@pytest.fixture
def storm_exporters(tmp_path: Path) -> Iterator[list[str]]:
    """A storm of 2 readers, 2 repetitions, on two nodes; on 'slow' one reader of repetition 1 failed."""
    jobs: dict[str, list[dict[str, object]]] = {"fast": [], "slow": []}
    for node, (events, wall) in {"fast": (4000, 10.0), "slow": (2000, 10.0)}.items():
        for rep in range(2):
            for i in range(2):
                record = progress(f"{STORM_RUN}-r{rep}-{node}_{i}", events, wall - i, 3.0)
                record["bytes_read"] = 5_000_000
                if node == "slow" and rep == 1 and i == 1:
                    record["state"] = "failed"
                jobs[node].append(record)
    yield from serve(tmp_path, jobs)


def test_a_storm_sums_its_readers_and_a_failed_run_is_left_out(
    storm_exporters: list[str], live_prometheus: Callable[[list[str]], PromClient]
) -> None:
    prom = live_prometheus(storm_exporters)
    nodes = [Node("fast", "127.0.0.1", "test"), Node("slow", "127.0.0.1", "test")]
    plan = compare.Plan(nodes, JobSpec("storm", readers=2, duration=10), repeat=2)
    assert plan.label == "storm-n2" and plan.run_jobs(STORM_RUN, nodes[0], 1)[1].format() == f"{STORM_RUN}-r1-fast_1"
    compare.wait_final(prom, plan, STORM_RUN, timeout=30)
    results = {r.node: r for r in compare.measure(prom, plan, STORM_RUN, {("fast", 1): "ssh: unreachable"})}
    fast, slow = results["fast"], results["slow"]
    assert fast.runs == [800.0, None] and fast.failed == {"1": "ssh: unreachable"}
    assert (fast.events, fast.wall_seconds, fast.read_bytes) == (8000, 10.0, 10_000_000)  # wall: the longest reader
    assert slow.runs[1] is None and "the job failed" in slow.failed["1"]
    assert slow.runs[0] == 400.0
    assert compare.progress(prom, STORM_RUN) == {"fast": 16000.0, "slow": 8000.0}  # readers summed per node


def test_failed_hosts_from_a_real_ansible_json_result(tmp_path: Path) -> None:
    """ansible.posix.json's output of a play in which one host fails an assert after an ignored failure, another
    only an ignored one: the reason names the task that stopped the host; the other did not fail."""
    book = tmp_path / "play.yml"
    book.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Read the end of the job's output\n"
        "      ansible.builtin.fail:\n        msg: Connection timed out\n"
        "      ignore_errors: true\n"
        "    - name: Stop when the job did not complete\n"
        "      ansible.builtin.assert:\n"
        "        that: inventory_hostname != 'n2'\n"
        "        fail_msg: Slurm job 7 ended FAILED 1:0; analyze /data/x.root is truncated\n"
    )
    env = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run(
        ["ansible-playbook", "-i", "n1,n2,", "-c", "local", str(book)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    failed = compare.failed_hosts(proc.stdout, ["n1", "n2"])
    assert failed == {
        "n2": "Stop when the job did not complete: Slurm job 7 ended FAILED 1:0; analyze /data/x.root is truncated"
    }
    assert set(compare.failed_hosts("ERROR! the playbook could not be found", ["n1", "n2"])) == {"n1", "n2"}


def _doc(*tasks: tuple[str, dict[str, dict[str, object]]]) -> str:
    """ansible.posix.json's output shape: one play of these (task name, host -> result) tasks."""
    play = {"play": {"name": "run"}, "tasks": [{"task": {"name": n}, "hosts": hosts} for n, hosts in tasks]}
    return json.dumps({"plays": [play], "stats": {}})


def test_a_batch_unreached_before_submitting_is_run_again_only_then() -> None:
    ok: dict[str, object] = {"changed": False}
    lost: dict[str, object] = {"unreachable": True, "msg": "Task failed: Connection timed out."}
    partition = "Find the node's partition"
    assert compare.unreached_before_submitting(_doc(("Make the job's inputs", {"n1": ok}), (partition, {"n1": lost})))
    # once a job was handed to Slurm, or when something else failed, the run is what it is
    submitted = (compare.SUBMIT_TASK, {"n1": ok})
    assert not compare.unreached_before_submitting(_doc(submitted, ("Wait for the job", {"n1": lost})))
    failed: tuple[str, dict[str, dict[str, object]]] = (partition, {"n2": {"failed": True, "msg": "sinfo: error"}})
    assert not compare.unreached_before_submitting(_doc((partition, {"n1": lost}), failed))
    assert not compare.unreached_before_submitting(_doc((partition, {"n1": ok})))
    assert not compare.unreached_before_submitting("ERROR! the playbook could not be read")
    assert f"- name: {compare.SUBMIT_TASK}\n" in (REPO / "playbooks" / "run_workload.yml").read_text()
