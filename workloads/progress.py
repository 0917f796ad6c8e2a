"""The job's progress file (schema in docs/contracts.md), written atomically."""

from __future__ import annotations

import json
import os
import re
import resource
import time
from typing import Any

SCHEMA = 1
JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
STATES = ("running", "finished", "failed")


def valid_job_id(job_id: str) -> bool:
    return bool(JOB_ID.match(job_id)) and job_id not in (".", "..")


def _self_starttime(procfs: str) -> int:
    with open(os.path.join(procfs, "self", "stat")) as f:
        text = f.read()
    return int(text[text.rindex(")") + 2 :].split()[19])


def _self_io(procfs: str) -> tuple[int, int]:
    try:
        with open(os.path.join(procfs, "self", "io")) as f:
            fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        return int(fields["read_bytes"]), int(fields["write_bytes"])
    except (OSError, KeyError, ValueError):
        return 0, 0


class ProgressWriter:
    """Writes <jobs_dir>/<job_id>.json: at start, on update() and at the end."""

    def __init__(self, jobs_dir: str, job_id: str, workload: str, events_target: int, procfs: str = "/proc"):
        if not valid_job_id(job_id):
            raise ValueError(f"invalid job id {job_id!r}: use 1-128 characters of A-Z a-z 0-9 _ . -")
        self.path = os.path.join(jobs_dir, job_id + ".json")
        self.procfs = procfs
        self.record: dict[str, Any] = {
            "schema": SCHEMA,
            "job_id": job_id,
            "workload": workload,
            "state": "running",
            "pid": os.getpid(),
            "pid_starttime": _self_starttime(procfs),
            "events_processed": 0,
            "events_target": int(events_target),
            "started_at": time.time(),
            "updated_at": time.time(),
            "finished_at": None,
            "cpu_seconds": 0.0,
            "bytes_read": 0,
            "bytes_written": 0,
        }

    def update(self, events: int, state: str = "running", message: str | None = None) -> None:
        assert state in STATES
        now = time.time()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        read, written = _self_io(self.procfs)
        self.record.update(
            events_processed=int(events),
            state=state,
            updated_at=now,
            cpu_seconds=round(usage.ru_utime + usage.ru_stime, 6),
            bytes_read=read,
            bytes_written=written,
        )
        if state != "running":
            self.record["finished_at"] = now
        if message is not None:
            self.record["message"] = message
        self._write()

    def _write(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.record, f, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
