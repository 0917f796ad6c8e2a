"""Faults the site must survive without losing anything (issue 15): the head node restarted. These tests disturb
the site, so they run after every other test (marker `disruptive`, conftest.pytest_collection_modifyitems)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest

from magellan.contract import JobSpec
from testbed import compare
from testbed.inventory import Inventory
from testbed.model import Comparison
from testbed.prom import PromClient
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
