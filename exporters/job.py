"""magellan-job-exporter: events, CPU, I/O and state of the ATLAS-like jobs running on a node.

Reads each job's progress file (docs/contracts.md) and, while the job's own process lives, its /proc
accounting. A corrupt or half-written file is counted and skipped; the other jobs are still reported.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import Metric

from exporters import common, web
from exporters.common import Families, Figure, Health
from exporters.paths import Paths
from magellan import contract
from magellan.contract import Progress, ProgressError, parse_proc_io, parse_proc_stat, parse_progress, user_name

LOG = logging.getLogger("magellan.job_exporter")
# not_regular: an entry that is not a regular file of its own (a FIFO, a socket, a device, a directory, a symlink)
# owner: a progress file of another user than its directory's, or a user directory whose owner is not its name
# too_many: more progress files than --jobs.max-files (the newest are read)
ERROR_REASONS = (*contract.PROGRESS_ERRORS, "not_regular", "owner", "jobs_dir", "too_many")  # exported from the start
MAX_FILES = 10_000  # --jobs.max-files: a week of jobs at the testbed's pace is a few hundred
PROC_MAX_BYTES = 4096  # /proc/<pid>/stat is ~300 bytes and /proc/<pid>/io ~100: anything larger is not one
# Never blocks (O_NONBLOCK: a FIFO's open returns at once), never follows a symlink at the last component
# (O_NOFOLLOW: ELOOP), never takes a terminal as the controlling one.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
JOB_LABELS = ("node", "platform", "job_id", "workload")
METRICS = contract.JOB_METRICS


def read_regular(path: Path, max_bytes: int, owner: int | None = None) -> bytes:
    """The contents of the regular file `path`, read without blocking and without following a symlink; the jobs
    directory is world-writable, so anything else there is someone else's. ProgressError("not_regular") for a
    symlink, FIFO, socket, device or directory, ProgressError("owner") for a file not owned by `owner` (when given),
    ProgressError("read") for a file of more than `max_bytes` (at most max_bytes + 1 are read), OSError when it
    cannot be opened or read."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ProgressError("not_regular", "a symbolic link (progress files are written in place)") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ProgressError("not_regular", f"not a regular file (mode {stat.filemode(st.st_mode)})")
        if owner is not None and st.st_uid != owner:
            raise ProgressError(
                "owner", f"owned by {user_name(st.st_uid)}, not by {user_name(owner)}, whose directory it is in"
            )
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > max_bytes:
        raise ProgressError("read", f"larger than {max_bytes} bytes")
    return b"".join(chunks)


def read_proc(path: Path) -> str:
    """A /proc/<pid> file, bounded as the progress files are (ProgressError, a ValueError, or OSError)."""
    return read_regular(path, PROC_MAX_BYTES).decode("ascii", errors="replace")


@dataclass(frozen=True)
class JobFigures:
    """What is exported for one job: the file, with CPU and I/O from /proc while the job runs, and its state
    (the file's, or contract.LOST for a running record whose process is gone)."""

    progress: Progress
    cpu_seconds: float
    read_bytes: int
    write_bytes: int
    wall_seconds: float
    state: str


@dataclass
class Scrape:
    up: bool
    jobs: list[JobFigures]
    invalid: int


def _figures(j: JobFigures) -> list[Figure]:
    p = j.progress
    return [
        ("counter", METRICS["events"], "Events the job has processed.", p.events_processed),
        ("gauge", METRICS["target"], "Events the job was asked for (0: bounded by time).", p.events_target),
        ("counter", METRICS["cpu"], "User+system CPU time of the job.", j.cpu_seconds),
        ("gauge", METRICS["wall"], "Wall-clock time from the job's start to its end, or to now.", j.wall_seconds),
        ("counter", METRICS["read"], "Bytes the job read from storage.", j.read_bytes),
        ("counter", METRICS["written"], "Bytes the job wrote to storage.", j.write_bytes),
        ("gauge", METRICS["started"], "Unix time the job started.", p.started_at),
        ("gauge", METRICS["score"], "Per-core score of the job in DB12 units (workloads/db12.py).", p.score_db12),
    ]


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
        max_files: int = MAX_FILES,
        user_of: Callable[[int], str] = user_name,
    ) -> None:
        self.paths = paths
        self.user_of = user_of
        self.max_files = max_files
        self.node = node
        self.platform = platform
        self.clock = clock
        self.ticks = clock_ticks or os.sysconf("SC_CLK_TCK")
        self.timer = timer
        self.health = Health(
            "job",
            {"node": node, "platform": platform},
            ERROR_REASONS,
            "the jobs directory",
            "Unusable progress files (json, schema, field, read, not_regular; owner: of another user than its "
            "directory's, or in a user directory not named after its owner), failures to list the jobs directory "
            "(jobs_dir) and scrapes that read only the newest --jobs.max-files files (too_many) since the exporter "
            "started, by reason.",
        )
        self._logged: dict[Path, int] = {}  # file -> mtime_ns last warned about
        self._owners: dict[Path, int] = {}  # this scrape's files -> the user id that must own each

    def _live(self, p: Progress) -> tuple[float, int, int] | None:
        """CPU seconds and I/O bytes from /proc, if the job's own process (pid and start time) is alive."""
        try:
            st = parse_proc_stat(read_proc(self.paths.proc(p.pid, "stat")))
        except (OSError, ValueError):
            return None
        if st.starttime != p.pid_starttime:
            return None  # the pid now belongs to another process
        cpu = (st.utime_ticks + st.stime_ticks) / self.ticks
        try:
            io = parse_proc_io(read_proc(self.paths.proc(p.pid, "io")))
        except (OSError, ValueError):  # io needs ptrace access: the file's figures then
            return cpu, p.bytes_read, p.bytes_written
        return cpu, io.read_bytes, io.write_bytes

    def _figures(self, path: Path, p: Progress, now: float) -> JobFigures:
        live = self._live(p) if p.state == contract.RUNNING else None
        if p.state == contract.RUNNING and live is None:
            # Gone, or it has just written its final record and exited: read the file again to tell which.
            p = self._read(path)
        state = contract.LOST if p.state == contract.RUNNING and live is None and self._live(p) is None else p.state
        cpu, rd, wr = live if live else (p.cpu_seconds, p.bytes_read, p.bytes_written)
        # /proc and getrusage round differently: never let a counter fall below what the file said.
        cpu, rd, wr = max(cpu, p.cpu_seconds), max(rd, p.bytes_read), max(wr, p.bytes_written)
        # A lost job's wall time ends at its last sign of life.
        end = p.updated_at if state == contract.LOST else now if p.finished_at is None else p.finished_at
        return JobFigures(p, cpu, rd, wr, max(0.0, end - p.started_at), state)

    def _error(self, path: Path, reason: str, detail: str) -> None:
        """Count the error; warn once per file version (path and mtime)."""
        self.health.failed(reason)
        try:
            mtime = path.lstat().st_mtime_ns
        except OSError:
            mtime = -1
        if self._logged.get(path) != mtime:
            self._logged[path] = mtime
            LOG.warning("skipping %s: %s", path, detail or reason)

    def _read(self, path: Path) -> Progress:
        p = parse_progress(read_regular(path, contract.PROGRESS_MAX_BYTES, self._owners.get(path)))
        if p.path_name != path.name:
            raise ProgressError("field", f"job_id {p.job_id!r} differs from the file name")
        return p

    def scrape(self) -> Scrape:
        """Read the jobs directory once: its state, the valid jobs and the number of unusable files."""
        now = self.clock()
        try:
            self._owners = self._listing()
        except OSError as exc:
            self._error(self.paths.jobs, "jobs_dir", f"cannot list the jobs directory: {exc}")
            self.health.read(False, now)
            return Scrape(False, [], 0)
        self.health.read(True, now)
        files = sorted(self._owners)
        if len(files) > self.max_files:
            self._error(self.paths.jobs, "too_many", f"{len(files)} progress files: reading the newest "
                        f"{self.max_files} (--jobs.max-files); old ones are removed by systemd-tmpfiles")  # fmt: skip
            files = sorted(self._newest(files))
        jobs, invalid = [], 0
        for f in files:
            try:
                jobs.append(self._figures(f, self._read(f), now))
            except ProgressError as exc:
                invalid += 1
                self._error(f, exc.reason, str(exc))
            except OSError as exc:  # vanished between listing and reading, unreadable
                invalid += 1
                self._error(f, "read", str(exc))
        # Forget files that are gone (and the directory's own error), so the warn-once memory stays bounded.
        present = set(files) | {f.parent for f in files}
        self._logged = {k: v for k, v in self._logged.items() if k in present}
        return Scrape(True, jobs, invalid)

    def _listing(self) -> dict[Path, int]:
        """The progress files to read, each with the user id that must own it (contract.user_dir): those in the jobs
        directory itself, its owner's (root's: the campaigns'), and those in each user's subdirectory, named after
        its owner. A subdirectory that is not named after its owner is counted (owner) and not read: another user
        made it. OSError when the jobs directory cannot be listed."""
        top = self.paths.jobs
        owner = top.stat().st_uid
        files: dict[Path, int] = {}
        for entry in top.iterdir():
            if entry.name.endswith(contract.PROGRESS_SUFFIX):
                files[entry] = owner
                continue
            try:
                st = entry.lstat()
            except OSError:  # gone since the listing
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if self.user_of(st.st_uid) != entry.name:
                self._error(entry, "owner", f"made by {self.user_of(st.st_uid)}, not by a user named {entry.name}")
                continue
            try:
                files |= {f: st.st_uid for f in entry.iterdir() if f.name.endswith(contract.PROGRESS_SUFFIX)}
            except OSError as exc:
                self._error(entry, "jobs_dir", f"cannot list a user's jobs directory: {exc}")
        return files

    def _newest(self, files: list[Path]) -> list[Path]:
        def mtime(f: Path) -> int:
            try:
                return f.lstat().st_mtime_ns
            except OSError:  # vanished: it is skipped at its read
                return -1

        return sorted(files, key=mtime, reverse=True)[: self.max_files]

    def collect(self) -> Iterator[Metric]:
        start = self.timer()
        s = self.scrape()
        families = Families(JOB_LABELS)
        for j in s.jobs:
            p = j.progress
            labels = [self.node, self.platform, p.job_id, p.workload]
            families.add(_figures(j), labels)
            families.state(METRICS["state"], "1 for the job's current state, 0 for the others (lost: its record says "
                           "running but its process is gone).", contract.EXPORTED_STATES, j.state, labels)  # fmt: skip
            info = "1 for each job; format: the event file's layout it wrote or read (rntuple, ttree; empty: none)."
            families.add([("gauge", contract.JOB_INFO, info, 1.0)], [*labels, p.format or ""], ("format",))
        yield from families
        yield from self.health.metrics()
        yield self.health.gauge("progress_files", "Valid progress files at this scrape.", len(s.jobs))
        yield self.health.gauge(
            "progress_invalid_files", "Progress files that could not be used at this scrape.", s.invalid
        )
        yield self.health.gauge(
            "scrape_duration_seconds", "Time this collector took to read the jobs.", self.timer() - start
        )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="magellan-job-exporter", description=__doc__.splitlines()[0])
    web.add_common_flags(p, contract.PORTS["job_exporter"])
    defaults = Paths()
    p.add_argument("--path.procfs", dest="procfs", type=Path, default=defaults.procfs, help="(default: %(default)s)")
    p.add_argument("--path.jobs", dest="jobs", type=Path, default=defaults.jobs, help="(default: %(default)s)")
    p.add_argument(
        "--jobs.max-files", dest="max_files", type=web.count(10_000_000, "files"), default=MAX_FILES,
        help="progress files read per scrape at most, the newest first (default: %(default)s)",
    )  # fmt: skip
    web.add_node_flag(p)
    p.add_argument("--node.platform", dest="platform", type=web.label_value, default="unknown", help="platform label")
    p.add_argument(
        "--collector.job",
        dest="collector_job",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the per-job collector (default: on)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = web.parse_args(_parser(), argv)
    paths = Paths(procfs=args.procfs, jobs=args.jobs)
    collectors = [JobCollector(paths, args.node, args.platform, max_files=args.max_files)] if args.collector_job else []
    LOG.info(
        "jobs in %s, procfs %s, node=%s platform=%s, job collector %s",
        paths.jobs,
        paths.procfs,
        args.node,
        args.platform,
        "on" if args.collector_job else "off",
    )
    return web.serve(common.registry(collectors, paths.self_procfs), args.listen, LOG, args.web_config)


if __name__ == "__main__":
    sys.exit(main())
