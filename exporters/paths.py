"""Every filesystem location an exporter reads, in one injectable object (tests point it at fixtures)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    procfs: Path = Path("/proc")
    jobs: Path = Path("/var/lib/magellan/jobs")

    def proc(self, pid: int, name: str) -> Path:
        return self.procfs / str(pid) / name
