"""Run one workload on several nodes side by side and measure it through Prometheus.

The numbers come from Prometheus, i.e. from what the job exporters on the nodes reported — the same
series the dashboards show — not from the jobs' own summaries.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from testbed.inventory import Inventory, Node, ansible_command, ansible_env, play_result
from testbed.prom import PromClient, PromError
from testbed.report import Comparison, NodeResult

REPO = Path(__file__).resolve().parent.parent


class CompareError(RuntimeError):
    """The comparison could not be run or measured."""


STORM = "storm"


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
    readers: int = 1  # storm: concurrent analyze readers per job
    cold: bool = True  # analyze and storm read the storage, not the page cache

    @property
    def label(self) -> str:
        """The workload, with the readers of a storm: simulate, analyze, storm-n16."""
        return f"{self.workload}-n{self.readers}" if self.workload == STORM else self.workload

    def job_id(self, run_id: str, node: Node, rep: int = 0) -> str:
        return f"{run_id}-r{rep}-{node.name}"

    def run_jobs(self, run_id: str, node: Node, rep: int) -> list[str]:
        """The progress-file job ids of one run: the job itself, or each reader of a storm."""
        job = self.job_id(run_id, node, rep)
        return [f"{job}-{i}" for i in range(self.readers)] if self.workload == STORM else [job]

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

    def job_ids(self, run_id: str, skip: Collection[tuple[str, int]] = ()) -> set[str]:
        """Every job of the run, but those of the (node, repetition) runs in skip."""
        return {
            job
            for n in self.nodes
            for rep in range(self.repeat)
            if (n.name, rep) not in skip
            for job in self.run_jobs(run_id, n, rep)
        }


def new_run_id(plan: Plan, now: datetime | None = None) -> str:
    return f"cmp-{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%S')}-{plan.label}"


def start_jobs(
    inventory: Inventory, plan: Plan, hosts: str, rep: int, run_id: str, log: Path, result: Path
) -> subprocess.Popen[bytes]:
    """Start playbooks/run_workload.yml on every host of the pattern at once; its result goes to `result` as JSON
    (ansible.posix.json), its warnings and errors to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    extra = {
        "workload_run_id": run_id,
        "workload_hosts": hosts,
        "workload_name": plan.workload,
        "workload_duration": plan.duration,
        "workload_events": plan.events,
        "workload_seed": plan.seed,
        "workload_rep": rep,
        "workload_readers": plan.readers,
        "workload_cold": plan.cold,
    }
    cmd = [ansible_command("ansible-playbook"), "-i", str(inventory.path), str(REPO / "playbooks" / "run_workload.yml")]
    cmd += ["-e", json.dumps(extra)]
    with log.open("ab") as err, result.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO, env=ansible_env(json_result=True))


def failed_hosts(output: str, hosts: list[str]) -> dict[str, str]:
    """Host -> why, for every host of the batch whose workload run failed, from ansible.posix.json's output.

    Output that is not that JSON (ansible-playbook itself failed) fails every host of the batch; other callbacks'
    lines after the JSON document (profile_tasks) are ignored."""
    try:
        plays = play_result(output)["plays"]
    except ValueError:
        tail = " ".join(output.strip().splitlines()[-3:])[-500:]
        return {h: f"ansible-playbook gave no result ({tail or 'no output'})" for h in hosts}
    failed: dict[str, str] = {}
    for play in plays:
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                if (result.get("failed") or result.get("unreachable")) and host not in failed:
                    msg = " ".join(str(result.get("msg", "")).split())
                    failed[host] = f"{task.get('task', {}).get('name', 'a task')}: {msg}"[:800]
    return failed


def _values(prom: PromClient, expr: str, key: str = "job_id") -> dict[str, float]:
    return {s.labels.get(key, ""): s.value for s in prom.query(expr)}


def _of_run(run_id: str, extra: str = "") -> str:
    """Label matchers selecting the jobs of one run."""
    return f'job_id=~"{run_id}-.*"' + (f",{extra}" if extra else "")


def virtual_nodes(prom: PromClient) -> dict[str, str]:
    """node -> the accelerator a virtual node really runs on (kvm, tcg, xen), as its node exporter reports it
    (role virtual_node); bare-metal nodes are not in it."""
    return {s.labels["node"]: s.labels.get("accel", "unknown") for s in prom.query("magellan_node_virtual_info == 1")}


def progress(prom: PromClient, run_id: str) -> dict[str, float]:
    """Events processed so far per job of this run."""
    return _values(prom, f"magellan_job_events_processed_total{{{_of_run(run_id)}}}")


def wait_final(
    prom: PromClient, plan: Plan, run_id: str, timeout: float = 90.0, skip: Collection[tuple[str, int]] = ()
) -> set[str]:
    """Wait until Prometheus has scraped every job in a final state (finished or failed); return the jobs that did
    not get there in time. Runs in skip never started a job (their submission failed): nothing to wait for."""
    wanted = plan.job_ids(run_id, skip)
    final = 'state=~"finished|failed"'
    expr = f"magellan_job_state{{{_of_run(run_id, final)}}} == 1"
    done: set[str] = set()

    def all_final() -> bool:
        done.update(_values(prom, expr))
        return wanted <= done

    prom.wait_until(all_final, timeout)
    return wanted - done


def measure(
    prom: PromClient, plan: Plan, run_id: str, failures: dict[tuple[str, int], str] | None = None
) -> list[NodeResult]:
    """Final per-node figures as Prometheus recorded them. A run (node, repetition) counts only when all its jobs
    finished; a failed one is recorded with its reason (from failures, else its progress file's state) and left
    out of the figures, and the campaign goes on."""
    failures = dict(failures or {})

    def last(metric: str) -> dict[str, float]:
        return _values(prom, f"last_over_time({metric}{{{_of_run(run_id)}}}[1h])")

    events = last("magellan_job_events_processed_total")
    wall = last("magellan_job_wall_seconds")
    cpu = last("magellan_job_cpu_seconds_total")
    read = last("magellan_job_read_bytes_total")
    failed_state = 'state="failed"'
    failed = _values(prom, f"magellan_job_state{{{_of_run(run_id, failed_state)}}} == 1")
    cpus = _values(prom, "magellan_node_profile_cpus", key="node")
    read_bps = _values(prom, "magellan_node_profile_read_bytes_per_second", key="node")
    virtual = virtual_nodes(prom)
    results = []
    for node in plan.nodes:
        runs: list[float | None] = []
        total = {"events": 0.0, "wall": 0.0, "cpu": 0.0, "read": 0.0}
        for rep in range(plan.repeat):
            jobs = plan.run_jobs(run_id, node, rep)
            why = failures.get((node.name, rep))
            if why is None and any(j in failed for j in jobs):
                why = "the job failed: see its progress file in /var/lib/magellan/jobs on the node"
            if why is None and any(j not in events or j not in wall for j in jobs):
                why = f"Prometheus has no figures for {', '.join(j for j in jobs if j not in events)}"
            if why is not None:
                failures[(node.name, rep)] = why
                runs.append(None)
                continue
            run_wall = max(wall[j] for j in jobs)  # a storm's readers run side by side
            run_events = sum(events[j] for j in jobs)
            total["events"] += run_events
            total["wall"] += run_wall
            total["cpu"] += sum(cpu.get(j, 0.0) for j in jobs)
            total["read"] += sum(read.get(j, 0.0) for j in jobs)
            runs.append(run_events / run_wall if run_wall > 0 else None)
        results.append(
            NodeResult(
                node=node.name,
                platform=virtual.get(node.name, node.platform),
                job_id=",".join(plan.job_id(run_id, node, rep) for rep in range(plan.repeat)),
                configured_cpus=cpus.get(node.name),
                events=int(total["events"]),
                wall_seconds=total["wall"],
                cpu_seconds=total["cpu"],
                events_per_second=total["events"] / total["wall"] if total["wall"] > 0 else 0.0,
                accel=virtual.get(node.name),  # None on bare metal
                runs=runs,
                read_bytes=total["read"],
                configured_read_bps=read_bps.get(node.name),
                failed={str(rep): why for (name, rep), why in sorted(failures.items()) if name == node.name},
            )
        )
    return results


def pick_reference(plan: Plan, results: list[NodeResult]) -> str:
    if plan.reference:
        if plan.reference not in {r.node for r in results}:
            raise CompareError(f"--reference {plan.reference} is not one of the compared nodes")
        return plan.reference
    usable = [r for r in results if r.events_per_second > 0] or results
    return max(usable, key=lambda r: (r.configured_cpus or 0.0, r.events_per_second)).node


def run(
    inventory: Inventory,
    plan: Plan,
    prom: PromClient,
    log_dir: Path,
    on_progress: Callable[[dict[str, float]], None] | None = None,
) -> Comparison:
    """Run the plan, follow it live through Prometheus, and return the measured comparison. A run that fails is
    recorded as failed, with its reason, and the others go on."""
    run_id = new_run_id(plan)
    started = datetime.now(UTC)
    log = log_dir / f"{run_id}.log"
    failures: dict[tuple[str, int], str] = {}
    for hosts, rep in plan.batches():
        result = log.with_name(f"{run_id}-r{rep}-{hosts.replace(',', '_')}.json")
        proc = start_jobs(inventory, plan, hosts, rep, run_id, log, result)
        while proc.poll() is None:
            if on_progress:
                with contextlib.suppress(PromError):
                    on_progress(progress(prom, run_id))
            time.sleep(2)
        if proc.returncode != 0:
            for host, why in failed_hosts(result.read_text(errors="replace"), hosts.split(",")).items():
                failures[(host, rep)] = why
    late = wait_final(prom, plan, run_id, skip=failures)
    for node in plan.nodes:
        for rep in range(plan.repeat):
            jobs = sorted(late.intersection(plan.run_jobs(run_id, node, rep)))
            if jobs:
                failures[(node.name, rep)] = (
                    f"Prometheus has no final state for {', '.join(jobs[:3])}: check that the job exporter on "
                    f"{node.name} is up (magellan_job_collector_up) and that the job ran"
                )
    results = measure(prom, plan, run_id, failures)
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
            "readers": plan.readers,
            "cold": plan.cold,
        },
        reference=pick_reference(plan, results),
        started=started,
        finished=datetime.now(UTC),
        results=results,
    )
