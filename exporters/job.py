"""magellan-job-exporter: events, CPU, I/O and state of the ATLAS-like jobs running on a node.

Reads each job's progress file (docs/contracts.md) and, while the job's own process lives, its /proc
accounting. A corrupt or half-written file is counted and skipped; the other jobs are still reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from exporters import web
from exporters.paths import Paths

LOG = logging.getLogger("magellan.job_exporter")
DEFAULT_PORT = 9810
SCHEMA = 1
STATES = ("running", "finished", "failed")
JOB_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
WORKLOAD = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_FILE_BYTES = 64 * 1024  # a progress file is ~400 bytes; anything this big is not one
ERROR_REASONS = ("json", "schema", "field", "read", "jobs_dir")  # exported from the start, at 0
JOB_LABELS = ["node", "platform", "job_id", "workload"]
SELF_LABELS = ["node", "platform"]


class ProgressError(ValueError):
    """A progress file that cannot be used; `reason` is the value of the `reason` label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Progress:
    job_id: str
    workload: str
    state: str
    pid: int
    pid_starttime: int
    events_processed: int
    events_target: int
    started_at: float
    updated_at: float
    finished_at: float | None
    cpu_seconds: float
    bytes_read: int
    bytes_written: int
    message: str | None = None
    score_db12: float | None = None


@dataclass(frozen=True)
class ProcStat:
    utime_ticks: int
    stime_ticks: int
    starttime: int


@dataclass(frozen=True)
class ProcIO:
    read_bytes: int
    write_bytes: int


_INT_FIELDS = ("pid", "pid_starttime", "events_processed", "events_target", "bytes_read", "bytes_written")
_FLOAT_FIELDS = ("started_at", "updated_at", "cpu_seconds")


def _number(data: dict[str, Any], key: str) -> float:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ProgressError("field", f"{key}={v!r} is not a finite non-negative number")
    return float(v)


def _string(data: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    v = data.get(key)
    if not isinstance(v, str) or not pattern.fullmatch(v):
        raise ProgressError("field", f"{key}={v!r} does not match {pattern.pattern}")
    return v


def parse_progress(text: str | bytes) -> Progress:
    """Validate a schema-1 progress file strictly; raise ProgressError(json|schema|field) otherwise.

    Unknown keys are ignored (a later writer may add some within schema 1); every known key must be present
    with its type, numbers finite and non-negative, and finished_at set exactly when the job has ended.
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProgressError("json", str(exc)) from None
    if not isinstance(data, dict):
        raise ProgressError("json", "not a JSON object")
    if type(data.get("schema")) is not int or data["schema"] != SCHEMA:
        raise ProgressError("schema", f"schema {data.get('schema')!r}, expected {SCHEMA}")
    ints: dict[str, int] = {}
    for key in _INT_FIELDS:
        v = data.get(key)
        if type(v) is not int or v < 0:
            raise ProgressError("field", f"{key}={v!r} is not a non-negative integer")
        ints[key] = v
    floats = {key: _number(data, key) for key in _FLOAT_FIELDS}
    job_id = _string(data, "job_id", JOB_ID)
    workload = _string(data, "workload", WORKLOAD)
    state = data.get("state")
    if state not in STATES:
        raise ProgressError("field", f"state={state!r} is not one of {', '.join(STATES)}")
    finished_at = None if data.get("finished_at") is None else _number(data, "finished_at")
    if (finished_at is None) != (state == "running"):
        raise ProgressError("field", f"finished_at={finished_at!r} does not fit state {state}")
    message = data.get("message")
    if message is not None and not isinstance(message, str):
        raise ProgressError("field", f"message={message!r} is not a string")
    score = None if data.get("score_db12") is None else _number(data, "score_db12")
    return Progress(
        job_id=job_id,
        workload=workload,
        state=str(state),
        pid=ints["pid"],
        pid_starttime=ints["pid_starttime"],
        events_processed=ints["events_processed"],
        events_target=ints["events_target"],
        started_at=floats["started_at"],
        updated_at=floats["updated_at"],
        finished_at=finished_at,
        cpu_seconds=floats["cpu_seconds"],
        bytes_read=ints["bytes_read"],
        bytes_written=ints["bytes_written"],
        message=message,
        score_db12=score,
    )


def parse_proc_stat(text: str) -> ProcStat:
    """utime, stime and starttime (fields 14, 15, 22) of /proc/<pid>/stat; comm may hold spaces and parens."""
    try:
        fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
        return ProcStat(int(fields[11]), int(fields[12]), int(fields[19]))
    except (ValueError, IndexError):
        raise ValueError("malformed /proc/<pid>/stat") from None


def parse_proc_io(text: str) -> ProcIO:
    """read_bytes and write_bytes (storage-level I/O) of /proc/<pid>/io."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        return ProcIO(int(fields["read_bytes"]), int(fields["write_bytes"]))
    except (KeyError, ValueError):
        raise ValueError("malformed /proc/<pid>/io") from None


@dataclass(frozen=True)
class JobFigures:
    """What is exported for one job: the file, with CPU and I/O from /proc while the job runs."""

    progress: Progress
    cpu_seconds: float
    read_bytes: int
    write_bytes: int
    wall_seconds: float


@dataclass
class Scrape:
    up: bool
    jobs: list[JobFigures]
    invalid: int


class JobCollector:
    """Reads every job of the jobs directory at each scrape; yields fresh metric families."""

    def __init__(
        self,
        paths: Paths,
        node: str,
        platform: str,
        clock: Callable[[], float] = time.time,
        clock_ticks: int | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.paths = paths
        self.node = node
        self.platform = platform
        self.clock = clock
        self.ticks = clock_ticks or os.sysconf("SC_CLK_TCK")
        self.timer = timer
        self.errors = dict.fromkeys(ERROR_REASONS, 0)
        self._logged: dict[Path, int] = {}  # file -> mtime_ns last warned about

    def _live(self, p: Progress) -> tuple[float, int, int] | None:
        """CPU seconds and I/O bytes from /proc, if the job's own process (pid and start time) is alive."""
        try:
            stat = parse_proc_stat(self.paths.proc(p.pid, "stat").read_text())
        except (OSError, ValueError):
            return None
        if stat.starttime != p.pid_starttime:
            return None  # the pid now belongs to another process
        cpu = (stat.utime_ticks + stat.stime_ticks) / self.ticks
        try:
            io = parse_proc_io(self.paths.proc(p.pid, "io").read_text())
        except (OSError, ValueError):  # io needs ptrace access: the file's figures then
            return cpu, p.bytes_read, p.bytes_written
        return cpu, io.read_bytes, io.write_bytes

    def _figures(self, p: Progress, now: float) -> JobFigures:
        live = self._live(p) if p.state == "running" else None
        cpu, rd, wr = live if live else (p.cpu_seconds, p.bytes_read, p.bytes_written)
        # /proc and getrusage round differently: never let a counter fall below what the file said.
        cpu, rd, wr = max(cpu, p.cpu_seconds), max(rd, p.bytes_read), max(wr, p.bytes_written)
        end = now if p.finished_at is None else p.finished_at
        return JobFigures(p, cpu, rd, wr, max(0.0, end - p.started_at))

    def _error(self, path: Path, reason: str, detail: str) -> None:
        """Count the error; warn once per file version (path and mtime)."""
        self.errors[reason] = self.errors.get(reason, 0) + 1
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = -1
        if self._logged.get(path) != mtime:
            self._logged[path] = mtime
            LOG.warning("skipping %s: %s", path, detail or reason)

    def _read(self, path: Path) -> Progress:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ProgressError("read", f"larger than {MAX_FILE_BYTES} bytes")
        p = parse_progress(data)
        if p.job_id != path.name[: -len(".json")]:
            raise ProgressError("field", f"job_id {p.job_id!r} differs from the file name")
        return p

    def scrape(self) -> Scrape:
        """Read the jobs directory once: its state, the valid jobs and the number of unusable files."""
        now = self.clock()
        try:
            files = sorted(f for f in self.paths.jobs.iterdir() if f.name.endswith(".json"))
        except OSError as exc:
            self._error(self.paths.jobs, "jobs_dir", f"cannot list the jobs directory: {exc}")
            return Scrape(False, [], 0)
        jobs, invalid = [], 0
        for f in files:
            try:
                jobs.append(self._figures(self._read(f), now))
            except ProgressError as exc:
                invalid += 1
                self._error(f, exc.reason, str(exc))
            except OSError as exc:  # vanished between listing and reading, unreadable, a directory
                invalid += 1
                self._error(f, "read", str(exc))
        # Forget files that are gone (and the directory's own error), so the warn-once memory stays bounded.
        present = set(files)
        self._logged = {k: v for k, v in self._logged.items() if k in present}
        return Scrape(True, jobs, invalid)

    def collect(self) -> Iterator[Metric]:
        start = self.timer()
        s = self.scrape()
        me = [self.node, self.platform]

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=JOB_LABELS)

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=[*JOB_LABELS, *extra])

        events = counter("magellan_job_events_processed", "Events the job has processed.")
        target = gauge("magellan_job_events_target", "Events the job was asked for (0: bounded by time).")
        cpu = counter("magellan_job_cpu_seconds", "User+system CPU time of the job.")
        wall = gauge("magellan_job_wall_seconds", "Wall-clock time from the job's start to its end, or to now.")
        rd = counter("magellan_job_read_bytes", "Bytes the job read from storage.")
        wr = counter("magellan_job_written_bytes", "Bytes the job wrote to storage.")
        state = gauge("magellan_job_state", "1 for the job's current state, 0 for the others.", ("state",))
        started = gauge("magellan_job_start_time_seconds", "Unix time the job started.")
        score = gauge("magellan_job_score_db12", "Per-core score of the job in DB12 units (workloads/db12.py).")
        for j in s.jobs:
            p = j.progress
            labels = [*me, p.job_id, p.workload]
            events.add_metric(labels, p.events_processed)
            target.add_metric(labels, p.events_target)
            cpu.add_metric(labels, j.cpu_seconds)
            wall.add_metric(labels, j.wall_seconds)
            rd.add_metric(labels, j.read_bytes)
            wr.add_metric(labels, j.write_bytes)
            started.add_metric(labels, p.started_at)
            if p.score_db12 is not None:
                score.add_metric(labels, p.score_db12)
            for name in STATES:
                state.add_metric([*labels, name], 1.0 if p.state == name else 0.0)
        yield from (events, target, cpu, wall, rd, wr, state, started, score)

        def own(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=SELF_LABELS)
            g.add_metric(me, value)
            return g

        yield own("magellan_job_collector_up", "1 when the jobs directory could be listed.", 1.0 if s.up else 0.0)
        yield own("magellan_job_progress_files", "Valid progress files at this scrape.", len(s.jobs))
        yield own("magellan_job_progress_invalid", "Progress files that could not be used at this scrape.", s.invalid)
        errors = CounterMetricFamily(
            "magellan_job_progress_errors",
            "Progress-file and jobs-directory errors since the exporter started, by reason.",
            labels=[*SELF_LABELS, "reason"],
        )
        for reason, count in sorted(self.errors.items()):
            errors.add_metric([*me, reason], count)
        yield errors
        yield own(
            "magellan_job_scrape_duration_seconds", "Time this collector took to read the jobs.", self.timer() - start
        )


def build_registry(paths: Paths, node: str, platform: str, job: bool = True) -> CollectorRegistry:
    """The exporter's own registry: its process metrics, and the job collector unless disabled."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry, proc=str(paths.self_procfs))
    if job:
        registry.register(JobCollector(paths, node, platform))
    return registry


def _label(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="magellan-job-exporter", description=__doc__.splitlines()[0])
    web.add_common_flags(p, DEFAULT_PORT)
    defaults = Paths()
    p.add_argument("--path.procfs", dest="procfs", type=Path, default=defaults.procfs, help="(default: %(default)s)")
    p.add_argument("--path.jobs", dest="jobs", type=Path, default=defaults.jobs, help="(default: %(default)s)")
    p.add_argument(
        "--node.name", dest="node", type=_label, default=socket.gethostname(), help="node label (default: hostname)"
    )
    p.add_argument("--node.platform", dest="platform", type=_label, default="unknown", help="platform label")
    p.add_argument(
        "--collector.job",
        dest="collector_job",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the per-job collector (default: on)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = Paths(procfs=args.procfs, jobs=args.jobs)
    registry = build_registry(paths, args.node, args.platform, args.collector_job)
    LOG.info(
        "jobs in %s, procfs %s, node=%s platform=%s, job collector %s",
        paths.jobs,
        paths.procfs,
        args.node,
        args.platform,
        "on" if args.collector_job else "off",
    )
    host, port = args.listen
    return web.serve(registry, host, port, LOG)


if __name__ == "__main__":
    sys.exit(main())
