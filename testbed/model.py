"""What a campaign measured: per-node results of each comparison, as data (no analysis, no rendering).

testbed.compare fills it from Prometheus, testbed.analysis derives ratios and checks from it, testbed.render and
testbed.plots show it, testbed.report writes the report directory; campaign.json is this model plus the analysis.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from magellan import contract


@dataclass(frozen=True)
class NodeResult:
    node: str
    platform: str
    job_id: str
    configured_cpus: float | None
    events: int
    wall_seconds: float
    cpu_seconds: float
    events_per_second: float
    accel: str | None = None
    runs: list[float | None] = field(default_factory=list)  # events/s of each repetition in order; None: failed
    read_bytes: float = 0.0
    configured_read_bps: float | None = None
    failed: dict[str, str] = field(default_factory=dict)  # repetition -> why it failed

    @property
    def cpu_efficiency(self) -> float:
        """CPU seconds per wall second (1.0 = one core busy all the time)."""
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def events_per_cpu_second(self) -> float:
        return self.events / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def read_mb_per_second(self) -> float:
        """Storage bytes read per wall second, in MB (10^6 bytes)."""
        return self.read_bytes / self.wall_seconds / 1e6 if self.wall_seconds > 0 else 0.0


@dataclass(frozen=True)
class Comparison:
    """One workload on several nodes side by side. parameters: the job's (contract.JobSpec's fields), the run's
    (run_id, repeat, mode) and, for older campaign files, whatever they recorded."""

    workload: str
    parameters: dict[str, Any]
    reference: str
    started: datetime
    finished: datetime
    results: list[NodeResult] = field(default_factory=list)

    def reference_result(self) -> NodeResult:
        for r in self.results:
            if r.node == self.reference:
                return r
        raise ValueError(f"reference node {self.reference} has no result")

    @property
    def readers(self) -> int:
        return int(self.parameters.get("readers", 1))

    @property
    def format(self) -> str | None:
        """The event files' format a reading workload read (contract.FORMATS); None for simulate."""
        if not contract.workload(self.workload).reads_input:
            return None
        return str(self.parameters.get("format", contract.DEFAULT_FORMAT))

    @property
    def label(self) -> str:
        return contract.label(self.workload, self.readers, self.format or contract.DEFAULT_FORMAT)

    @property
    def is_storm(self) -> bool:
        return contract.workload(self.workload).readers

    @property
    def failed_runs(self) -> int:
        return sum(len(r.failed) for r in self.results)

    def data(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "parameters": self.parameters,
            "reference": self.reference,
            "started": self.started.isoformat(),
            "finished": self.finished.isoformat(),
            "results": [asdict(r) for r in self.results],
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Comparison:
        return cls(
            workload=data["workload"],
            parameters=data["parameters"],
            reference=data["reference"],
            started=datetime.fromisoformat(data["started"]),
            finished=datetime.fromisoformat(data["finished"]),
            results=[NodeResult(**r) for r in data["results"]],
        )


def load_campaign(path: Path) -> list[Comparison]:
    """The comparisons of a campaign.json (keys the analysis added, such as ratios and starved, are derived and
    not read back)."""
    return [Comparison.from_data(d) for d in json.loads(path.read_text())["comparisons"]]
