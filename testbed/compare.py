"""Run one workload on several nodes side by side and measure it through Prometheus.

The numbers come from Prometheus, i.e. from what the job exporters on the nodes reported — the same
series the dashboards show — not from the jobs' own summaries.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from testbed.inventory import Inventory, Node, ansible_command
from testbed.prom import PromClient, PromError
from testbed.report import Comparison, NodeResult

REPO = Path(__file__).resolve().parent.parent


class CompareError(RuntimeError):
    """The comparison could not be run or measured."""


@dataclass(frozen=True)
class Plan:
    nodes: list[Node]
    workload: str = "simulate"
    duration: int = 60
    events: int = 0
    seed: int = 12345
    reference: str | None = None
    repeat: int = 1
    concurrent: bool = False

    def job_id(self, run_id: str, node: Node, rep: int = 0) -> str:
        return f"{run_id}-r{rep}-{node.name}"

    def batches(self) -> list[tuple[str, int]]:
        """(ansible host pattern, repetition) per step. Interleaved: A B A B …, one node at a time, so that nodes
        sharing one physical host do not slow each other down. Concurrent: every node at once, per repetition."""
        steps = []
        for rep in range(self.repeat):
            if self.concurrent:
                steps.append((",".join(n.name for n in self.nodes), rep))
            else:
                steps += [(n.name, rep) for n in self.nodes]
        return steps

    def job_ids(self, run_id: str) -> set[str]:
        return {self.job_id(run_id, n, rep) for n in self.nodes for rep in range(self.repeat)}


def new_run_id(now: datetime | None = None) -> str:
    return "cmp-" + (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")


def start_jobs(
    inventory: Inventory, plan: Plan, hosts: str, rep: int, run_id: str, log: Path
) -> subprocess.Popen[bytes]:
    """Start playbooks/run_workload.yml; it launches the job on every host of the pattern at once."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        ansible_command("ansible-playbook"),
        "-i",
        str(inventory.path),
        str(REPO / "playbooks" / "run_workload.yml"),
        "-e",
        f"workload_run_id={run_id} workload_hosts={hosts} workload_name={plan.workload} "
        f"workload_duration={plan.duration} workload_events={plan.events} workload_seed={plan.seed} "
        f"workload_rep={rep}",
    ]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)


def _values(prom: PromClient, expr: str, key: str = "job_id") -> dict[str, float]:
    return {s.labels.get(key, ""): s.value for s in prom.query(expr)}


def _of_run(run_id: str, extra: str = "") -> str:
    """Label matchers selecting the jobs of one run."""
    return f'job_id=~"{run_id}-.*"' + (f",{extra}" if extra else "")


def progress(prom: PromClient, run_id: str) -> dict[str, float]:
    """Events processed so far per job of this run."""
    return _values(prom, f"magellan_job_events_processed_total{{{_of_run(run_id)}}}")


def wait_final(prom: PromClient, plan: Plan, run_id: str, timeout: float = 90.0) -> None:
    """Wait until Prometheus has scraped every job in a final state (finished or failed)."""
    wanted = plan.job_ids(run_id)
    final = 'state=~"finished|failed"'
    expr = f"magellan_job_state{{{_of_run(run_id, final)}}} == 1"
    done: set[str] = set()

    def all_final() -> bool:
        done.update(_values(prom, expr))
        return wanted <= done

    if not prom.wait_until(all_final, timeout):
        missing = ", ".join(sorted(wanted - done))
        raise CompareError(
            f"Prometheus has no final state for {missing} after {timeout:.0f} s: check that the job exporter "
            "on those nodes is up (magellan_job_collector_up) and that the job ran"
        )


def measure(prom: PromClient, plan: Plan, run_id: str) -> list[NodeResult]:
    """Final per-job figures as Prometheus recorded them."""
    sel = f"{{{_of_run(run_id)}}}"
    events = _values(prom, f"last_over_time(magellan_job_events_processed_total{sel}[1h])")
    wall = _values(prom, f"last_over_time(magellan_job_wall_seconds{sel}[1h])")
    cpu = _values(prom, f"last_over_time(magellan_job_cpu_seconds_total{sel}[1h])")
    failed_state = 'state="failed"'
    failed = _values(prom, f"magellan_job_state{{{_of_run(run_id, failed_state)}}} == 1")
    cpus = _values(prom, "magellan_node_profile_cpus", key="node")
    results = []
    for node in plan.nodes:
        jobs = [plan.job_id(run_id, node, rep) for rep in range(plan.repeat)]
        for jid in jobs:
            if jid not in events or jid not in wall:
                raise CompareError(f"Prometheus has no figures for job {jid} on {node.name}")
            if jid in failed:
                raise CompareError(f"job {jid} on {node.name} failed: see its progress file in /var/lib/magellan/jobs")
        n_events = sum(events[j] for j in jobs)
        n_wall = sum(wall[j] for j in jobs)
        results.append(
            NodeResult(
                node=node.name,
                platform=node.platform,
                job_id=",".join(jobs),
                configured_cpus=cpus.get(node.name),
                events=int(n_events),
                wall_seconds=n_wall,
                cpu_seconds=sum(cpu.get(j, 0.0) for j in jobs),
                events_per_second=n_events / n_wall if n_wall > 0 else 0.0,
                accel=None,  # bare-metal nodes; virtual nodes report their accelerator
                runs=[events[j] / wall[j] for j in jobs if wall[j] > 0],
            )
        )
    return results


def pick_reference(plan: Plan, results: list[NodeResult]) -> str:
    if plan.reference:
        if plan.reference not in {r.node for r in results}:
            raise CompareError(f"--reference {plan.reference} is not one of the compared nodes")
        return plan.reference
    return max(results, key=lambda r: (r.configured_cpus or 0.0, r.events_per_second)).node


def run(
    inventory: Inventory,
    plan: Plan,
    prom: PromClient,
    log_dir: Path,
    on_progress: Callable[[dict[str, float]], None] | None = None,
) -> Comparison:
    """Run the plan, follow it live through Prometheus, and return the measured comparison."""
    run_id = new_run_id()
    started = datetime.now(UTC)
    log = log_dir / f"{run_id}.log"
    for hosts, rep in plan.batches():
        proc = start_jobs(inventory, plan, hosts, rep, run_id, log)
        while proc.poll() is None:
            if on_progress:
                with contextlib.suppress(PromError):
                    on_progress(progress(prom, run_id))
            time.sleep(2)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-25:]
            raise CompareError(
                f"the workload run on {hosts} failed (ansible-playbook exit {proc.returncode}); log {log}:\n"
                + "\n".join(tail)
            )
    wait_final(prom, plan, run_id)
    results = measure(prom, plan, run_id)
    if on_progress:
        on_progress(progress(prom, run_id))
    return Comparison(
        workload=plan.workload,
        parameters={
            "duration_s": plan.duration,
            "events": plan.events,
            "seed": plan.seed,
            "run_id": run_id,
            "repeat": plan.repeat,
            "mode": "concurrent" if plan.concurrent else "interleaved",
        },
        reference=pick_reference(plan, results),
        started=started,
        finished=datetime.now(UTC),
        results=results,
    )
