"""Faults the site must survive without losing anything (issue 15): the head node restarted, a compute node lost in
the middle of a job. These tests disturb the site, so they run after every other test, in this order (marker
`disruptive`, conftest.pytest_collection_modifyitems)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from magellan.contract import JOB_METRICS, JobSpec
from testbed import cli, compare
from testbed.inventory import Inventory
from testbed.model import Comparison, load_campaign
from testbed.prom import PromClient, PromError
from tests.integration.conftest import node_shell

pytestmark = [pytest.mark.integration, pytest.mark.disruptive]

SACCT = "sacct --allusers --noheader --parsable2 --starttime=now-1days --allocations --format=JobID,JobName,State"


def _until(what: str, check: Callable[[], bool], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s"
        time.sleep(3)


def test_a_restarted_head_comes_back_with_its_state(site: Inventory, comparison: Comparison, prom: PromClient) -> None:
    """The head (slurmctld, slurmdbd and MariaDB, Prometheus) restarted as a whole: Slurm comes back with its state,
    every accounting row of the jobs finished before is still there, the comparison's figures are read back from
    Prometheus's TSDB, and the cluster runs jobs again."""
    before = node_shell(site, "head", SACCT)
    assert before.returncode == 0 and comparison.parameters["run_id"] in before.stdout, before.stderr
    rows = set(before.stdout.splitlines())
    restart = subprocess.run(["podman", "restart", "--time", "30", "head"], capture_output=True, text=True, check=False)
    assert restart.returncode == 0, restart.stderr

    def slurm_answers() -> bool:
        ping = node_shell(site, "head", "scontrol ping && sacct --noheader -X -j 1 >/dev/null")
        return ping.returncode == 0 and "UP" in ping.stdout

    _until("slurmctld and slurmdbd answering", slurm_answers)
    after = node_shell(site, "head", SACCT)
    assert after.returncode == 0, after.stderr
    assert rows <= set(after.stdout.splitlines()), (
        f"accounting rows lost: {sorted(rows - set(after.stdout.splitlines()))}"
    )

    p = comparison.parameters
    spec = JobSpec(**{k: p[k] for k in JobSpec.__dataclass_fields__ if k in p})
    plan = compare.Plan(site.nodes("workload_nodes"), spec, repeat=int(p["repeat"]), concurrent=True)
    again = {r.node: r for r in compare.through_restarts(prom, lambda: compare.measure(prom, plan, p["run_id"]))}
    for r in comparison.results:
        assert (again[r.node].events, again[r.node].failed) == (r.events, {}), (r, again[r.node])

    def runs_jobs() -> bool:
        return node_shell(site, "head", "srun -p chos -w compute1,compute2 -N2 --immediate=20 true").returncode == 0

    _until("a job on both compute nodes", runs_jobs)


def _kill_when_running(prom: PromClient, node: str, since: float, killed: list[str], stop: threading.Event) -> None:
    """Kill the node's container (SIGKILL to all of it, as a node loses power) once one of its simulate jobs started
    after `since` has processed events; the job's id goes to `killed`."""
    expr = (
        f'{JOB_METRICS["events"]}{{node="{node}", workload="simulate"}} > 0 '
        f'and on (job_id) {JOB_METRICS["started"]}{{node="{node}"}} > {since}'
    )
    while not stop.wait(2):
        try:
            samples = prom.query(expr)
        except PromError:  # briefly away: look again
            continue
        if samples:
            killed.append(samples[0].labels["job_id"])
            subprocess.run(["podman", "kill", node], capture_output=True, check=False)
            return


def test_a_compute_node_lost_mid_job_fails_that_run_and_the_campaign_goes_on(
    site: Inventory, prom: PromClient, tmp_path: Path
) -> None:
    """compute1's container is killed while its job runs: Slurm ends the job NODE_FAIL (not requeued), the campaign
    records that run as failed with Slurm's state, measures compute2's, goes on to its next comparison (compute1's run
    there fails as unreachable) and keeps everything in campaign.json and the report. Started again, compute1 comes
    back into Slurm by itself and its exporter reports the killed job as lost."""
    since, killed, stop = time.time(), list[str](), threading.Event()
    watcher = threading.Thread(target=_kill_when_running, args=(prom, "compute1", since, killed, stop), daemon=True)
    watcher.start()
    try:
        argv = ["compare", "--workload", "simulate,analyze", "--seed", "7", "--duration", "20", "--repeat", "1"]
        code = cli.main([*argv, "--concurrent", "--no-publish", "--reports-dir", str(tmp_path)])
    finally:
        stop.set()
        watcher.join()
        subprocess.run(["podman", "start", "compute1"], capture_output=True, check=False)
    assert killed, "compute1's simulate job was never seen running: nothing was killed"
    assert code == 1
    out = next(tmp_path.glob("*-campaign"))
    simulate, analyze = load_campaign(out / "campaign.json")
    lost = {r.node: r for r in simulate.results}["compute1"]
    assert lost.runs == [None] and "NODE_FAIL" in lost.failed["0"], lost.failed
    assert {r.node: r for r in analyze.results}["compute1"].failed, "compute1 was down: its analyze run must fail"
    for c in (simulate, analyze):
        ok = {r.node: r for r in c.results}["compute2"]
        assert ok.events > 0 and not ok.failed, (c.label, ok)
    report = (out / "report.md").read_text()
    assert "## Failed runs" in report and "NODE_FAIL" in report
    job = killed[0]
    state = node_shell(site, "head", f"sacct --noheader --parsable2 --allocations --name={job} --format=State")
    assert state.stdout.split() == ["NODE_FAIL"], (state.stdout, state.stderr)

    def back_in_slurm() -> bool:
        info = node_shell(site, "head", "sinfo --noheader --Node --nodes=compute1 --format=%T")
        return info.returncode == 0 and info.stdout.split()[:1] in (["idle"], ["mixed"], ["allocated"])

    _until("compute1 back in service in Slurm", back_in_slurm)
    lost_state = f'{JOB_METRICS["state"]}{{job_id="{job}", state="lost"}} == 1'
    _until("compute1's exporter reporting the killed job as lost", lambda: bool(prom.query(lost_state)), timeout=90)

    def runs_jobs() -> bool:
        return node_shell(site, "head", "srun -p chos -w compute1,compute2 -N2 --immediate=20 true").returncode == 0

    _until("a job on both compute nodes", runs_jobs)
