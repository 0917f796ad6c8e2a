"""testbed compare's measurement path, end to end on loopback: real job exporters, a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed import compare
from testbed.inventory import Node
from testbed.prom import PromClient
from tests.conftest import free_port

RUN = "cmp-20261125T040000"


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


@pytest.fixture
def exporters(tmp_path: Path) -> Iterator[list[str]]:
    """Two job exporters ('nodes' fast and slow) serving finished jobs of run RUN."""
    figures = {"fast": [(30000, 30.0, 29.8), (31000, 30.0, 29.9)], "slow": [(15000, 30.0, 14.9), (15500, 30.0, 15.0)]}
    procs, targets = [], []
    for node, reps in figures.items():
        jobs = tmp_path / node
        jobs.mkdir()
        for rep, (events, wall, cpu) in enumerate(reps):
            job_id = f"{RUN}-r{rep}-{node}"
            (jobs / f"{job_id}.json").write_text(json.dumps(progress(job_id, events, wall, cpu)))
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
    yield targets
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def test_measure_reads_final_figures_from_prometheus(
    exporters: list[str], live_prometheus: Callable[[list[str]], PromClient]
) -> None:
    prom = live_prometheus(exporters)
    nodes = [Node("fast", "127.0.0.1", "test"), Node("slow", "127.0.0.1", "test")]
    plan = compare.Plan(nodes=nodes, duration=30, repeat=2)
    assert plan.batches() == [("fast", 0), ("slow", 0), ("fast", 1), ("slow", 1)]
    compare.wait_final(prom, plan, RUN, timeout=30)
    results = {r.node: r for r in compare.measure(prom, plan, RUN)}
    assert results["fast"].events == 61000 and results["slow"].events == 30500
    assert results["slow"].events_per_second == pytest.approx(30500 / 60.0)
    assert results["fast"].cpu_seconds == pytest.approx(59.7)
    assert compare.pick_reference(plan, list(results.values())) == "fast"


def test_wait_final_names_missing_jobs(live_prometheus: Callable[[list[str]], PromClient]) -> None:
    prom = live_prometheus([])
    plan = compare.Plan(nodes=[Node("ghost", "127.0.0.1", "test")], duration=1)
    start = time.monotonic()
    with pytest.raises(compare.CompareError, match=f"{RUN}-r0-ghost"):
        compare.wait_final(prom, plan, RUN, timeout=3)
    assert time.monotonic() - start < 15
