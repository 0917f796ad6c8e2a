"""Run one workload on several nodes side by side and measure it through Prometheus.

The numbers come from Prometheus, i.e. from what the job exporters on the nodes reported — the same series the
dashboards show — not from the jobs' own summaries. Job ids, directories and command lines come from the contract
(magellan.contract): this module computes them once per job and hands them to playbooks/run_workload.yml.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from magellan import contract
from magellan.contract import JobRef, JobSpec
from testbed.inventory import Inventory, Node, ansible_command, ansible_env, play_result, task_results
from testbed.model import Comparison, NodeResult
from testbed.prom import PromClient, PromError

REPO = Path(__file__).resolve().parent.parent
M = contract.JOB_METRICS
T = TypeVar("T")


class CompareError(RuntimeError):
    """The comparison could not be run or measured."""


@dataclass(frozen=True)
class Plan:
    """One comparison: a job (spec) on every node, repeated; in turn (A B A B) or all nodes at once."""

    nodes: list[Node]
    spec: JobSpec = field(default_factory=JobSpec)
    reference: str | None = None
    repeat: int = 1
    concurrent: bool = False

    @property
    def label(self) -> str:
        return self.spec.label

    def run_jobs(self, run_id: str, node: Node, rep: int) -> list[JobRef]:
        """The progress files of one run on one node: the job itself, or each reader of a storm."""
        job = JobRef(run_id, rep, node.name)
        return job.readers(self.spec.readers) if contract.workload(self.spec.workload).readers else [job]

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
            job.format()
            for n in self.nodes
            for rep in range(self.repeat)
            if (n.name, rep) not in skip
            for job in self.run_jobs(run_id, n, rep)
        }


def new_run_id(plan: Plan, now: datetime | None = None) -> str:
    return contract.RunId.new(plan.label, now).format()


def prepare_script(spec: JobSpec, node: Node) -> str:
    """Shell lines that make a job's inputs on its node when they are missing (the input once per seed, size and
    format; a storm's per-reader copies), each written under a temporary name and renamed; 'made <file>' per file
    made, nothing when all are there. Empty for a job without inputs."""
    if not contract.workload(spec.workload).reads_input:
        return ""
    first, *copies = spec.inputs(node.data_dir)
    make = shlex.join(spec.input_argv(node.name, node.data_dir, node.prefix)) + " >/dev/null"
    # each reader its own copy: no reader finds another's pages cached
    steps = [(first, make), *((c, f"cp {shlex.quote(first)} {shlex.quote(c + contract.PARTIAL)}") for c in copies)]
    lines = ["set -e"]
    for path, command in steps:
        q, part = shlex.quote(path), shlex.quote(path + contract.PARTIAL)
        # -O: missing, or not root's (a user planted it in the sticky data directory): made again, mv replaces it
        lines.append(f"if [ ! -O {q} ]; then {command}; mv {part} {q}; echo made {q}; fi")
    return "\n".join(lines)


def job_vars(spec: JobSpec, node: Node, job: JobRef) -> dict[str, Any]:
    """What run_workload.yml needs to run one job on its node, all computed here."""
    job_id = job.format()
    return {
        "job_id": job_id,
        "command": shlex.join(spec.argv(job_id, node.jobs_dir, node.data_dir, node.prefix)),
        "prepare": prepare_script(spec, node),
        "duration": spec.duration,
        "chos": spec.chos,
        "output": contract.JOB_OUTPUT.format(job_id=job_id),
    }


def start_jobs(
    inventory: Inventory, plan: Plan, hosts: str, rep: int, run_id: str, log: Path, result: Path
) -> subprocess.Popen[bytes]:
    """Start playbooks/run_workload.yml on every host of the pattern at once; its result goes to `result` as JSON
    (ansible.posix.json), its warnings and errors to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    names = hosts.split(",")
    jobs = {n.name: job_vars(plan.spec, n, JobRef(run_id, rep, n.name)) for n in plan.nodes if n.name in names}
    extra = {"workload_hosts": hosts, "workload_jobs": jobs}
    cmd = [ansible_command("ansible-playbook"), "-i", str(inventory.path), str(REPO / "playbooks" / "run_workload.yml")]
    cmd += ["-e", json.dumps(extra)]
    with log.open("ab") as err, result.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO, env=ansible_env(json_result=True))


def failed_hosts(output: str, hosts: list[str]) -> dict[str, str]:
    """Host -> why, for every host of the batch whose workload run failed, from ansible.posix.json's output: the
    last task that failed on it (an ignored failure before it, such as a lost node's unreadable output, is not why).

    Output that is not that JSON (ansible-playbook itself failed) fails every host of the batch; other callbacks'
    lines after the JSON document (profile_tasks) are ignored."""
    try:
        doc = play_result(output)
    except ValueError:
        tail = " ".join(output.strip().splitlines()[-3:])[-500:]
        return {h: f"ansible-playbook gave no result ({tail or 'no output'})" for h in hosts}
    last: dict[str, str] = {}
    for name, host, result in task_results(doc):
        if result.get("failed") or result.get("unreachable"):
            msg = " ".join(str(result.get("msg", "")).split())
            last[host] = f"{name or 'a task'}: {msg}"[:800]
    stats = doc.get("stats", {})

    def stopped(host: str) -> bool:  # ignored failures count as "ignored" there, not as failures
        counts = stats.get(host)
        return not isinstance(counts, dict) or counts.get("failures", 0) + counts.get("unreachable", 0) > 0

    return {host: why for host, why in last.items() if stopped(host)}


# The task of playbooks/run_workload.yml that hands the job to Slurm: before it nothing of the run exists yet.
SUBMIT_TASK = "Submit the job, pinned to the node"


def unreached_before_submitting(output: str) -> bool:
    """The batch stopped only because a host could not be reached (an SSH connection that timed out) before any job
    was submitted: nothing was measured or started, so it can be run again as it was. In a make test run here the
    controller's connection to the head timed out (60 s) at the first task delegated to it, failing both nodes' runs
    of a cold analyze comparison."""
    try:
        doc = play_result(output)
    except ValueError:
        return False
    unreachable = False
    for name, _, result in task_results(doc):
        if name == SUBMIT_TASK and not result.get("skipped"):
            return False
        if result.get("unreachable"):
            unreachable = True
        elif result.get("failed") and not result.get("ignore_errors"):
            return False
    return unreachable


def _values(prom: PromClient, expr: str, key: str = "job_id") -> dict[str, float]:
    return {s.labels.get(key, ""): s.value for s in prom.query(expr)}


def _of_run(run_id: str, extra: str = "") -> str:
    """Label matchers selecting the jobs of one run."""
    return contract.run_selector(run_id) + (f",{extra}" if extra else "")


def virtual_nodes(prom: PromClient) -> dict[str, str]:
    """node -> the accelerator a virtual node really runs on (kvm, tcg, xen), as its node exporter reports it
    (role virtual_node); bare-metal nodes are not in it."""
    info = prom.query(f"{contract.NODE_VIRTUAL_INFO} == 1")
    return {s.labels["node"]: s.labels.get("accel", "unknown") for s in info}


def progress(prom: PromClient, run_id: str) -> dict[str, float]:
    """Events processed so far per node in this run (a storm's readers summed)."""
    per_node: dict[str, float] = {}
    for job_id, events in _values(prom, f"{M['events']}{{{_of_run(run_id)}}}").items():
        if ref := JobRef.parse(job_id, run_id):
            per_node[ref.node] = per_node.get(ref.node, 0.0) + events
    return per_node


def wait_final(
    prom: PromClient, plan: Plan, run_id: str, timeout: float = 90.0, skip: Collection[tuple[str, int]] = ()
) -> set[str]:
    """Wait until Prometheus has scraped every job in a final state (finished, failed or lost); return the jobs that
    did not get there in time. Runs in skip never started a job (their submission failed): nothing to wait for."""
    wanted = plan.job_ids(run_id, skip)
    final = f'state=~"{"|".join(contract.FINAL_STATES)}"'
    expr = f"{M['state']}{{{_of_run(run_id, final)}}} == 1"
    done: set[str] = set()

    def all_final() -> bool:
        with contextlib.suppress(PromError):  # restarting, or briefly away: the jobs' figures wait in their files
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

    events, wall, cpu, read = (last(M[k]) for k in ("events", "wall", "cpu", "read"))

    def in_state(state: str) -> dict[str, float]:
        matcher = 'state="' + state + '"'
        return _values(prom, f"{M['state']}{{{_of_run(run_id, matcher)}}} == 1")

    failed, lost = in_state(contract.FAILED), in_state(contract.LOST)
    cpus = _values(prom, contract.NODE_PROFILE_CPUS, key="node")
    read_bps = _values(prom, contract.NODE_PROFILE_READ_BPS, key="node")
    virtual = virtual_nodes(prom)
    results = []
    for node in plan.nodes:
        runs: list[float | None] = []
        total = {"events": 0.0, "wall": 0.0, "cpu": 0.0, "read": 0.0}
        for rep in range(plan.repeat):
            jobs = [j.format() for j in plan.run_jobs(run_id, node, rep)]
            why = failures.get((node.name, rep))
            if why is None and any(j in failed for j in jobs):
                why = f"the job failed: see its progress file in {node.jobs_dir} on {node.name}"
            if why is None and any(j in lost for j in jobs):
                why = (
                    f"the job's process on {node.name} is gone without a final record (killed outright: SIGKILL, "
                    "the OOM killer, or the node lost or restarted)"
                )
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
                platform=contract.platform(node.platform, virtual.get(node.name)),
                job_id=",".join(JobRef(run_id, rep, node.name).format() for rep in range(plan.repeat)),
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


PROMETHEUS_PATIENCE = 120.0  # seconds a restarting Prometheus may take (it replays its write-ahead log first)


def through_restarts(prom: PromClient, read: Callable[[], T], patience: float = PROMETHEUS_PATIENCE) -> T:
    """read(), tried again while Prometheus does not answer (restarting: its TSDB and the series of the run are on
    its disk); CompareError when it has not answered for `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return read()
        except PromError as exc:
            if time.monotonic() > deadline:
                raise CompareError(
                    f"Prometheus at {prom.base_url} has not answered for {patience:.0f} s ({exc}); the jobs' figures "
                    "are still in their progress files on the nodes: start Prometheus and run the comparison again"
                ) from None
            time.sleep(2)


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
    """Run the plan, follow it live through Prometheus (on_progress: events so far per node), and return the
    measured comparison. A run that fails is recorded as failed, with its reason, and the others go on; a batch whose
    hosts were not reached before a job was submitted is run again once (unreached_before_submitting)."""
    run_id = new_run_id(plan)
    started = datetime.now(UTC)
    log = log_dir / f"{run_id}.log"
    failures: dict[tuple[str, int], str] = {}
    for hosts, rep in plan.batches():
        result = log.with_name(f"{run_id}-r{rep}-{hosts.replace(',', '_')}.json")
        for attempt in range(2):
            proc = start_jobs(inventory, plan, hosts, rep, run_id, log, result)
            while proc.poll() is None:
                if on_progress:
                    with contextlib.suppress(PromError):
                        on_progress(progress(prom, run_id))
                time.sleep(2)
            if proc.returncode == 0 or attempt or not unreached_before_submitting(result.read_text(errors="replace")):
                break
        if proc.returncode != 0:
            for host, why in failed_hosts(result.read_text(errors="replace"), hosts.split(",")).items():
                failures[(host, rep)] = why
    late = wait_final(prom, plan, run_id, skip=failures)
    for node in plan.nodes:
        for rep in range(plan.repeat):
            jobs = sorted(late.intersection(j.format() for j in plan.run_jobs(run_id, node, rep)))
            if jobs:
                failures[(node.name, rep)] = (
                    f"Prometheus has no final state for {', '.join(jobs[:3])}: check that the job exporter on "
                    f"{node.name} is up ({contract.exporter_up('job')}) and that the job ran"
                )
    results = through_restarts(prom, lambda: measure(prom, plan, run_id, failures))
    if on_progress:
        with contextlib.suppress(PromError):
            on_progress(progress(prom, run_id))
    return Comparison(
        workload=plan.spec.workload,
        parameters={
            **plan.spec.parameters(),
            "run_id": run_id,
            "repeat": plan.repeat,
            "mode": "concurrent" if plan.concurrent else "interleaved",
        },
        reference=pick_reference(plan, results),
        started=started,
        finished=datetime.now(UTC),
        results=results,
    )
