"""A campaign: comparisons of a workload set on the nodes of one group, and the rule for measuring one again.

`testbed compare` and the integration tests run the same Campaign. Its rule: a CPU-bound comparison in which a
bare-metal node got less than analysis.STARVED of the CPU its quota gives measured the host, not the node (a
quota is a ceiling, not a promise), so it is measured again, STARVED_RETRIES times at most, and the least starved
try is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from magellan import contract
from magellan.contract import JobSpec
from testbed import analysis, compare
from testbed.compare import Plan
from testbed.inventory import Inventory, Node
from testbed.model import Comparison
from testbed.prom import PromClient

STARVED_RETRIES = 2
MODES = {False: "in turn (A B A B)", True: "all at once"}


class Observer:
    """What a campaign tells its caller as it goes; every method does nothing here."""

    def started(self, plan: Plan, attempt: int) -> Callable[[dict[str, float]], None] | None:
        """A comparison (try `attempt`, from 0) starts; return a callback for its live events per node, or None."""
        return None

    def measuring_again(self, plan: Plan, starved: dict[str, float]) -> None:
        """The last try was starved (node -> the share of its CPU it got): it is measured again."""

    def finished(self, comparison: Comparison) -> None:
        """A comparison is done (its kept try)."""


@dataclass(frozen=True)
class Campaign:
    plans: list[Plan]
    starved_retries: int = STARVED_RETRIES

    @classmethod
    def build(
        cls,
        nodes: list[Node],
        workloads: Sequence[str],
        spec: JobSpec,
        readers: Sequence[int] = (1,),
        formats: Sequence[str] = (contract.DEFAULT_FORMAT,),
        repeat: int = 3,
        storm_repeat: int = 1,
        concurrent: bool = False,
        reference: str | None = None,
    ) -> Campaign:
        """Every workload in order — a storm once per size in readers, a workload that reads files once per format
        in formats — with the job parameters of spec. ContractError (naming the parameter) on a bad one."""
        if repeat < 1 or storm_repeat < 1:
            raise contract.ContractError("repeat and storm_repeat must be at least 1")
        plans = []
        for name in workloads:
            w = contract.workload(name)
            for fmt in formats if w.reads_input else (contract.DEFAULT_FORMAT,):
                for n in readers if w.readers else (1,):
                    job = JobSpec(**{**spec.parameters(), "workload": name, "readers": n, "format": fmt})
                    reps = storm_repeat if w.readers else repeat
                    plans.append(Plan(nodes, job.check(), reference, reps, concurrent))
        return cls(plans)

    def describe(self) -> str:
        first = self.plans[0]
        spec = first.spec
        return (
            f"{', '.join(p.label for p in self.plans)} on {', '.join(n.name for n in first.nodes)} "
            f"{MODES[first.concurrent]}, {spec.duration:g} s per job ({spec.events or 'no'} event limit)"
        )

    def measure(
        self, inventory: Inventory, plan: Plan, prom: PromClient, log_dir: Path, observer: Observer | None = None
    ) -> Comparison:
        """One comparison, measured again while a try is starved (STARVED_RETRIES at most); the least starved try."""
        observer = observer or Observer()
        tries = [compare.run(inventory, plan, prom, log_dir, observer.started(plan, 0))]
        while (starved := analysis.starved(tries[-1])) and len(tries) <= self.starved_retries:
            observer.measuring_again(plan, starved)
            tries.append(compare.run(inventory, plan, prom, log_dir, observer.started(plan, len(tries))))
        return max(tries, key=analysis.least_starved_share)

    def run(
        self, inventory: Inventory, prom: PromClient, log_dir: Path, observer: Observer | None = None
    ) -> list[Comparison]:
        observer = observer or Observer()
        results = []
        for plan in self.plans:
            results.append(self.measure(inventory, plan, prom, log_dir, observer))
            observer.finished(results[-1])
        return results
