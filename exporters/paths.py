"""Every filesystem location the exporters read, in one injectable object (tests point it at fixtures).

This is the only module that names /proc, /sys and /dev; the jobs directory's default is the contract's
(magellan.contract.JOBS_DIR).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from magellan import contract


@dataclass(frozen=True)
class Paths:
    procfs: Path = Path("/proc")  # where the jobs' pids are looked up (--path.procfs)
    jobs: Path = Path(contract.JOBS_DIR)  # the progress files (--path.jobs)
    self_procfs: Path = Path("/proc")  # the exporter's own process metrics
    sysfs: Path = Path("/sys")  # block devices' queue and md files (--path.sysfs)
    dev: Path = Path("/dev")  # the device nodes smartctl is given

    def proc(self, pid: int | str, name: str) -> Path:
        """/proc/<pid>/<name> under procfs."""
        return self.procfs / str(pid) / name

    def block(self, device: str, *parts: str) -> Path:
        """/sys/block/<device>/<parts...> under sysfs."""
        return self.sysfs.joinpath("block", device, *parts)
