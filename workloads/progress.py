"""The job's progress file (schema 1, docs/contracts.md), written atomically for the job exporter."""

from __future__ import annotations

import json
import os
import re
import resource
import time
from typing import Any

from workloads import db12

SCHEMA = 1
JOB_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
STATES = ("running", "finished", "failed")
DEFAULT_PROCFS = "/proc"


def valid_job_id(job_id: str) -> bool:
    """The contract's job id: 1-128 characters of A-Z a-z 0-9 _ . -"""
    return JOB_ID.fullmatch(job_id) is not None


def self_starttime(procfs: str = DEFAULT_PROCFS) -> int:
    """Field 22 of /proc/self/stat: this process's start time in clock ticks since boot."""
    with open(os.path.join(procfs, "self", "stat")) as f:
        text = f.read()
    # comm (field 2) may hold spaces and parentheses: count from the last ')'; field 3 is index 0.
    return int(text[text.rindex(")") + 2 :].split()[19])


def self_io(procfs: str = DEFAULT_PROCFS) -> tuple[int, int]:
    """(read_bytes, write_bytes) of /proc/self/io, (0, 0) where it is not readable."""
    try:
        with open(os.path.join(procfs, "self", "io")) as f:
            fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        return int(fields["read_bytes"]), int(fields["write_bytes"])
    except (OSError, KeyError, ValueError):
        return 0, 0


class ProgressWriter:
    """Writes <jobs_dir>/<job_id>.json atomically: call update() at start, periodically and at the end."""

    def __init__(
        self, jobs_dir: str, job_id: str, workload: str, events_target: int, procfs: str = DEFAULT_PROCFS
    ) -> None:
        if not valid_job_id(job_id):
            raise ValueError(f"invalid job id {job_id!r}: use 1-128 characters of A-Z a-z 0-9 _ . -")
        if events_target < 0:
            raise ValueError("events_target must not be negative")
        self.jobs_dir = jobs_dir
        self.path = os.path.join(jobs_dir, job_id + ".json")
        self.procfs = procfs
        now = time.time()
        self.record: dict[str, Any] = {
            "schema": SCHEMA,
            "job_id": job_id,
            "workload": workload,
            "state": "running",
            "pid": os.getpid(),
            "pid_starttime": self_starttime(procfs),
            "events_processed": 0,
            "events_target": int(events_target),
            "started_at": now,
            "updated_at": now,
            "finished_at": None,
            "cpu_seconds": 0.0,
            "bytes_read": 0,
            "bytes_written": 0,
        }

    def update(self, events: int, state: str = "running", message: str | None = None) -> None:
        """Record the events done so far and the state; a finished or failed state sets finished_at."""
        if state not in STATES:
            raise ValueError(f"state {state!r} not one of {', '.join(STATES)}")
        now = time.time()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        read, written = self_io(self.procfs)
        self.record.update(
            events_processed=int(events),
            state=state,
            updated_at=now,
            finished_at=None if state == "running" else now,
            cpu_seconds=round(usage.ru_utime + usage.ru_stime, 6),
            bytes_read=read,
            bytes_written=written,
            score_db12=db12.score(self.record["workload"], events, usage.ru_utime + usage.ru_stime),
        )
        if message is not None:
            self.record["message"] = message
        self._write()

    def _write(self) -> None:
        """Write <job_id>.json.tmp beside the file, fsync it, rename it over the file, fsync the directory."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.record, f, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        try:  # make the rename durable; some file systems refuse fsync on a directory, which is fine
            fd = os.open(self.jobs_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
