"""The job's progress file (magellan.contract.Progress, schema 1), written atomically for the job exporter."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import replace

from magellan import contract
from workloads.output import fsync_dir

DEFAULT_PROCFS = "/proc"


class JobError(RuntimeError):
    """A failure whose message says all that is wrong (a bad input file): the job fails with it, no traceback."""


def self_starttime(procfs: str = DEFAULT_PROCFS) -> int:
    """Field 22 of /proc/self/stat: this process's start time in clock ticks since boot."""
    with open(os.path.join(procfs, "self", "stat")) as f:
        return contract.parse_proc_stat(f.read()).starttime


def self_io(procfs: str = DEFAULT_PROCFS) -> tuple[int, int]:
    """(read_bytes, write_bytes) of /proc/self/io, (0, 0) where it is not readable."""
    try:
        with open(os.path.join(procfs, "self", "io")) as f:
            io = contract.parse_proc_io(f.read())
    except (OSError, ValueError):
        return 0, 0
    return io.read_bytes, io.write_bytes


class ProgressWriter:
    """Writes <jobs_dir>/<job_id>.json atomically: call update() at start, periodically and at the end.

    `record` is the last Progress written. `format` is the event file's format (contract.FORMATS) of a job that
    writes or reads one; a job that learns it later (analyze detects it in its input) sets it with update()."""

    def __init__(
        self,
        jobs_dir: str,
        job_id: str,
        workload: str,
        events_target: int,
        procfs: str = DEFAULT_PROCFS,
        format: str | None = None,
    ) -> None:
        if not contract.valid_job_id(job_id):
            raise ValueError(f"invalid job id {job_id!r}: use 1-128 characters of A-Z a-z 0-9 _ . -")
        if events_target < 0:
            raise ValueError("events_target must not be negative")
        _check_format(format)
        now = time.time()
        self.jobs_dir = jobs_dir
        self.procfs = procfs
        self.record = contract.Progress(
            job_id=job_id,
            workload=workload,
            state=contract.RUNNING,
            pid=os.getpid(),
            pid_starttime=self_starttime(procfs),
            events_processed=0,
            events_target=int(events_target),
            started_at=now,
            updated_at=now,
            finished_at=None,
            cpu_seconds=0.0,
            bytes_read=0,
            bytes_written=0,
            format=format,
        )
        self.path = os.path.join(jobs_dir, self.record.path_name)

    def update(
        self, events: int, state: str = contract.RUNNING, message: str | None = None, format: str | None = None
    ) -> None:
        """Record the events done so far and the state; a finished or failed state sets finished_at. A message or
        format given once stays in the record."""
        if state not in contract.STATES:
            raise ValueError(f"state {state!r} not one of {', '.join(contract.STATES)}")
        _check_format(format)
        now = time.time()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        read, written = self_io(self.procfs)
        self.record = replace(
            self.record,
            events_processed=int(events),
            state=state,
            updated_at=now,
            finished_at=None if state == contract.RUNNING else now,
            cpu_seconds=round(cpu, 6),
            bytes_read=read,
            bytes_written=written,
            score_db12=contract.db12_score(self.record.workload, events, cpu),
            message=self.record.message if message is None else message,
            format=self.record.format if format is None else format,
        )
        self._write(self.record.to_json())

    def _write(self, text: str) -> None:
        write_record(self.jobs_dir, self.path, text)


def write_record(jobs_dir: str, path: str, text: str) -> None:
    """Write <job_id>.json.tmp beside the file, fsync it, rename it over the file, fsync the directory."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(jobs_dir)


def end_abandoned(jobs_dir: str, job_id: str, workload: str, pid: int, reason: str) -> bool:
    """End as failed, with `reason`, the record of a job that died without ending it (a storm's reader killed
    outright, or never started): its last record with state failed, or a first one when it left none. False when
    it had ended it itself."""
    now = time.time()
    last = read_record(jobs_dir, job_id)
    if last is None:  # pid_starttime 0 matches no process: the job exporter reads no other process's /proc for it
        last = contract.Progress(job_id, workload, contract.RUNNING, pid, 0, 0, 0, now, now, None, 0.0, 0, 0)
    if last.state != contract.RUNNING:
        return False
    ended = replace(last, state=contract.FAILED, updated_at=now, finished_at=now, message=reason)
    write_record(jobs_dir, os.path.join(jobs_dir, last.path_name), ended.to_json())
    return True


def read_record(jobs_dir: str, job_id: str) -> contract.Progress | None:
    """A job's last progress record; None when it left none that parses (killed before its first write)."""
    try:
        with open(os.path.join(jobs_dir, job_id + contract.PROGRESS_SUFFIX), "rb") as f:
            return contract.parse_progress(f.read(contract.PROGRESS_MAX_BYTES + 1))
    except (OSError, contract.ProgressError):
        return None


def _check_format(format: str | None) -> None:
    if format is not None and format not in contract.FORMATS:
        raise ValueError(f"format {format!r} not one of {', '.join(contract.FORMATS)}")
