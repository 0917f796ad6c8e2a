"""Per-job exporter: events, CPU, I/O and state of the ATLAS-like jobs running on a node.

Reads each job's progress file (docs/contracts.md) and, while the job's process lives, its /proc
accounting. A corrupt or half-written file is counted and skipped; the other jobs are still reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from exporters.paths import Paths

LOG = logging.getLogger("magellan.job_exporter")
STATES = ("running", "finished", "failed")
JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
LABELS = ["node", "platform", "job_id", "workload"]


class ProgressError(ValueError):
    """A progress file that cannot be used; `reason` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
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


def parse_progress(text: str) -> Progress:
    """Validate a schema-1 progress file strictly; raise ProgressError(reason) on anything else."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProgressError("json", str(exc)) from None
    if not isinstance(data, dict):
        raise ProgressError("json", "not a JSON object")
    if data.get("schema") != 1:
        raise ProgressError("schema", f"schema {data.get('schema')!r}, expected 1")
    values: dict[str, Any] = {}
    for key in _INT_FIELDS:
        v = data.get(key)
        if type(v) is not int or v < 0:
            raise ProgressError("field", f"{key}={v!r} is not a non-negative integer")
        values[key] = v
    for key in _FLOAT_FIELDS:
        v = data.get(key)
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ProgressError("field", f"{key}={v!r} is not a non-negative number")
        values[key] = float(v)
    finished = data.get("finished_at")
    if finished is not None and (not isinstance(finished, int | float) or isinstance(finished, bool) or finished < 0):
        raise ProgressError("field", f"finished_at={finished!r} is not a number or null")
    for key in ("job_id", "workload", "state"):
        if not isinstance(data.get(key), str):
            raise ProgressError("field", f"{key} missing or not a string")
    if not JOB_ID.match(data["job_id"]):
        raise ProgressError("field", f"job_id={data['job_id']!r} is not a valid job id")
    if data["state"] not in STATES:
        raise ProgressError("field", f"state={data['state']!r} not one of {', '.join(STATES)}")
    return Progress(
        job_id=data["job_id"],
        workload=data["workload"],
        state=data["state"],
        finished_at=None if finished is None else float(finished),
        **values,
    )


def parse_proc_stat(text: str) -> ProcStat:
    """utime, stime and starttime from /proc/<pid>/stat (comm may hold spaces and parentheses)."""
    try:
        fields = text[text.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state): utime=14, stime=15, starttime=22
        return ProcStat(int(fields[11]), int(fields[12]), int(fields[19]))
    except (ValueError, IndexError):
        raise ValueError("malformed /proc/<pid>/stat") from None


def parse_proc_io(text: str) -> ProcIO:
    """read_bytes and write_bytes (storage-level I/O) from /proc/<pid>/io."""
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
    progress: Progress
    cpu_seconds: float
    read_bytes: int
    write_bytes: int
    wall_seconds: float


class JobCollector:
    """Collects every job of the jobs directory at each scrape."""

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
        self.errors: dict[str, int] = {}
        self._logged: set[tuple[str, float]] = set()

    def _live(self, p: Progress) -> tuple[float, int, int] | None:
        """CPU seconds and I/O bytes from /proc while the job's own process (pid + starttime) is alive."""
        try:
            stat = parse_proc_stat(self.paths.proc(p.pid, "stat").read_text())
            if stat.starttime != p.pid_starttime:
                return None
            cpu = (stat.utime_ticks + stat.stime_ticks) / self.ticks
            try:
                io = parse_proc_io(self.paths.proc(p.pid, "io").read_text())
                return cpu, io.read_bytes, io.write_bytes
            except (OSError, ValueError):
                return cpu, p.bytes_read, p.bytes_written
        except (OSError, ValueError):
            return None

    def _figures(self, p: Progress, now: float) -> JobFigures:
        live = self._live(p) if p.state == "running" else None
        cpu, rd, wr = live if live else (p.cpu_seconds, p.bytes_read, p.bytes_written)
        # Never let a counter go backwards between the file's last write and /proc.
        cpu, rd, wr = max(cpu, p.cpu_seconds), max(rd, p.bytes_read), max(wr, p.bytes_written)
        end = p.finished_at if p.finished_at is not None else (now if live else p.updated_at)
        return JobFigures(p, cpu, rd, wr, max(0.0, end - p.started_at))

    def _error(self, path: Path, reason: str, detail: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
        try:
            key = (str(path), path.stat().st_mtime)
        except OSError:
            key = (str(path), 0.0)
        if key not in self._logged:
            self._logged.add(key)
            LOG.warning("skipping progress file %s: %s: %s", path, reason, detail)

    def read_jobs(self) -> tuple[bool, list[JobFigures], int]:
        """(jobs dir readable, figures of the valid jobs, number of invalid files)."""
        now = self.clock()
        try:
            files = sorted(f for f in self.paths.jobs.iterdir() if f.suffix == ".json")
        except OSError as exc:
            self._error(self.paths.jobs, "jobs_dir", str(exc))
            return False, [], 0
        jobs, invalid = [], 0
        for f in files:
            try:
                p = parse_progress(f.read_text())
                if p.job_id != f.stem:
                    raise ProgressError("field", f"job_id {p.job_id!r} differs from the file name")
            except ProgressError as exc:
                invalid += 1
                self._error(f, exc.reason, str(exc))
                continue
            except (OSError, UnicodeDecodeError) as exc:
                invalid += 1
                self._error(f, "read", str(exc))
                continue
            jobs.append(self._figures(p, now))
        return True, jobs, invalid

    def collect(self) -> Iterator[Metric]:
        start = self.timer()
        up, jobs, invalid = self.read_jobs()
        self_labels = ["node", "platform"]
        me = [self.node, self.platform]

        def gauge(name: str, doc: str, extra: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=LABELS + (extra or []))

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=LABELS)

        events = counter("magellan_job_events_processed", "Events the job has processed.")
        target = gauge("magellan_job_events_target", "Events the job was asked for (0: bounded by time).")
        cpu = counter("magellan_job_cpu_seconds", "User+system CPU time of the job.")
        wall = gauge("magellan_job_wall_seconds", "Wall-clock time since the job started (until it ended).")
        rd = counter("magellan_job_read_bytes", "Bytes the job read from storage.")
        wr = counter("magellan_job_written_bytes", "Bytes the job wrote to storage.")
        state = gauge("magellan_job_state", "1 for the job's current state.", ["state"])
        started = gauge("magellan_job_start_time_seconds", "Unix time the job started.")
        for j in jobs:
            p = j.progress
            labels = [*me, p.job_id, p.workload]
            events.add_metric(labels, p.events_processed)
            target.add_metric(labels, p.events_target)
            cpu.add_metric(labels, j.cpu_seconds)
            wall.add_metric(labels, j.wall_seconds)
            rd.add_metric(labels, j.read_bytes)
            wr.add_metric(labels, j.write_bytes)
            started.add_metric(labels, p.started_at)
            for s in STATES:
                state.add_metric([*labels, s], 1.0 if p.state == s else 0.0)
        yield from (events, target, cpu, wall, rd, wr, state, started)

        up_m = GaugeMetricFamily(
            "magellan_job_collector_up", "1 when the jobs directory could be read.", labels=self_labels
        )
        up_m.add_metric(me, 1.0 if up else 0.0)
        files = GaugeMetricFamily(
            "magellan_job_progress_files", "Valid progress files at this scrape.", labels=self_labels
        )
        files.add_metric(me, len(jobs))
        bad = GaugeMetricFamily(
            "magellan_job_progress_invalid",
            "Progress files that could not be used at this scrape.",
            labels=self_labels,
        )
        bad.add_metric(me, invalid)
        errs = CounterMetricFamily(
            "magellan_job_progress_errors",
            "Progress-file and jobs-directory errors, by reason.",
            labels=[*self_labels, "reason"],
        )
        for reason, count in sorted(self.errors.items()):
            errs.add_metric([*me, reason], count)
        took = GaugeMetricFamily(
            "magellan_job_scrape_duration_seconds",
            "Time this collector took to read the jobs.",
            labels=self_labels,
        )
        took.add_metric(me, self.timer() - start)
        yield from (up_m, files, bad, errs, took)


def _listen(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--web.listen-address={address!r}: expected [HOST]:PORT, for example :9810")
    return host.strip("[]") or "0.0.0.0", int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="magellan-job-exporter", description=__doc__)
    p.add_argument("--web.listen-address", dest="listen", default=":9810")
    p.add_argument("--path.procfs", dest="procfs", default=str(Paths.procfs))
    p.add_argument("--path.jobs", dest="jobs", default=str(Paths.jobs))
    p.add_argument("--node.name", dest="node", default=socket.gethostname())
    p.add_argument("--node.platform", dest="platform", default="unknown")
    p.add_argument("--collector.job", dest="collector_job", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def build_registry(paths: Paths, node: str, platform: str, job: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    if job:
        registry.register(JobCollector(paths, node, platform))
    return registry


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        host, port = _listen(args.listen)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = Paths(procfs=Path(args.procfs), jobs=Path(args.jobs))
    registry = build_registry(paths, args.node, args.platform, args.collector_job)
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        LOG.error("cannot listen on %s:%d: %s", host, port, exc)
        return 1
    LOG.info(
        "listening on %s:%d, jobs in %s, node=%s platform=%s",
        host,
        port,
        paths.jobs,
        args.node,
        args.platform,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
