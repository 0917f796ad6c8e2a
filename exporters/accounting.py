"""magellan-accounting-exporter: Slurm job accounting (sacct) per user, account and partition, and the state of
every Slurm node (sinfo).

Runs next to slurmdbd. A background thread asks sacct every --sacct.interval seconds for the jobs of a sliding
window (from the last good poll minus an overlap; the first poll, at start, looks --sacct.lookback back); a scrape
only serves the latest figures, so it never waits for slurmdbd. A job is added to the cumulative counters once,
when it is first seen in a final state; running and pending jobs are gauges. A failing, slow or missing sacct is
counted by reason and the previous figures keep being served. Each poll also asks sinfo for every node's state in
each partition; a failing sinfo is counted (reasons sinfo_*) and its states are dropped, not served stale.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import Metric

from exporters import command, common, web
from exporters.common import Families, Health
from exporters.paths import Paths
from magellan import contract

LOG = logging.getLogger("magellan.accounting_exporter")
FIELDS = (
    "JobIDRaw",
    "JobID",
    "User",
    "Account",
    "Partition",
    "State",
    "ElapsedRaw",
    "TotalCPU",
    "MaxRSS",
    "TRESUsageInTot",
    "TRESUsageOutTot",
)
FINAL_STATES = frozenset(
    {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"}
)
ERROR_REASONS = (*command.REASONS, "parse")  # exported from the start, at 0
SINFO_REASONS = tuple(f"sinfo_{r}" for r in ERROR_REASONS)
SINFO_FORMAT = "%N|%P|%T"  # node, partition (the default one ends in *), state in full (sinfo(1), Slurm 22.05)
# A state's suffixes (sinfo(1) NODE STATE CODES): * not responding; ~ powered off; # powering up; ! pending power
# down; % powering down; $ maintenance reservation; @ pending reboot; ^ rebooting; - planned by the backfill.
NODE_STATE = re.compile(r"([a-z_]{1,40}(?:\+[a-z_]{1,40}){0,8})([*~#!%$@^-]{0,9})")
NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
KEY_LABELS = ("cluster", "user", "account", "partition")
SECONDS = web.seconds(10 * 365 * 86400)  # the value type of the --sacct.* durations
MAX_BYTES = 128 << 20  # --sacct.max-bytes: ~600k jobs of four lines; a larger site raises it or the lookback drops
BYTES = web.count(1 << 40)  # the value type of --sacct.max-bytes
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
# ASCII digits only ([0-9], not \d: '٣' is a digit to \d and to int()), at most 19 before the point: no figure is
# beyond a float, and each is then bounded by contract.COUNT_MAX (bytes, seconds), so a counter never gets inf.
SIZE = re.compile(r"([0-9]{1,19}(?:\.[0-9]{1,19})?)([KMGTP]?)")
JOB_ID = re.compile(r"[0-9]{1,19}")
CPU_TIME = re.compile(r"(?:([0-9]{1,19})-)?(?:([0-9]{1,19}):)?([0-9]{1,19}):([0-9]{1,19}(?:\.[0-9]{1,19})?)")


class ParseError(ValueError):
    """A sacct value or line that cannot be used."""


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    user: str
    account: str
    partition: str
    state: str
    elapsed_seconds: float
    cpu_seconds: float
    max_rss_bytes: float
    read_bytes: float
    written_bytes: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.user, self.account, self.partition)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def _bounded(value: float, what: str, text: str) -> float:
    """value, or ParseError unless it is finite and from 0 to contract.COUNT_MAX."""
    if not 0 <= value <= contract.COUNT_MAX:  # nan too
        raise ParseError(f"{what} {text[:40]!r} beyond 2^63-1")
    return value


def parse_size(value: str) -> float:
    """sacct sizes: '1234K', '1.5G', '0', '' (none) -> bytes (units are powers of 1024); ParseError otherwise."""
    if not value:
        return 0.0
    m = SIZE.fullmatch(value)
    if not m:
        raise ParseError(f"bad size {value[:40]!r}")
    return _bounded(float(m.group(1)) * UNITS[m.group(2)], "size", value)


def parse_cpu_time(value: str) -> float:
    """sacct CPU times: 'MM:SS.mmm', 'HH:MM:SS', 'D-HH:MM:SS' -> seconds; ParseError otherwise."""
    if not value:
        return 0.0
    m = CPU_TIME.fullmatch(value)
    if not m:
        raise ParseError(f"bad time {value[:40]!r}")
    days, hours, minutes, seconds = m.groups()
    whole = int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60  # below 2^83: a float
    return _bounded(whole + float(seconds), "time", value)


def parse_elapsed(value: str) -> float:
    """sacct ElapsedRaw: whole seconds in ASCII digits; ParseError otherwise."""
    try:
        return float(contract.parse_count(value))
    except ValueError:
        raise ParseError(f"bad ElapsedRaw {value[:40]!r}") from None


def tres_bytes(value: str, name: str = "fs/disk") -> float:
    """The size of one TRES in a 'cpu=00:00:01,fs/disk=123,mem=1980K' list (0 when absent)."""
    for item in value.split(","):
        key, _, amount = item.partition("=")
        if key == name:
            return parse_size(amount)
    return 0.0


@dataclass
class _Job:
    fields: dict[str, str]
    steps: list[dict[str, str]] = field(default_factory=list)


def parse_sacct(text: str) -> tuple[list[JobRecord], list[tuple[int, str]]]:
    """Parse `sacct --parsable2 --noheader --format=<FIELDS>`: job records, and (line number, problem) pairs.

    Step lines (JobID '12.batch', '12.0', '12.extern') belong to the job line before them; the job's memory peak is
    the largest MaxRSS of its steps and its bytes read/written the sum of the steps' fs/disk TRES usage. A line
    with U+FFFD (bytes that were not UTF-8, decoded with errors="replace") is a problem, not a record.
    """
    jobs: dict[str, _Job] = {}
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if "\ufffd" in line:
            problems.append((number, "not UTF-8"))
            continue
        values = line.split("|")
        if len(values) != len(FIELDS):
            problems.append((number, f"{len(values)} fields, expected {len(FIELDS)}"))
            continue
        row = dict(zip(FIELDS, values, strict=True))
        raw = row["JobIDRaw"]
        job_id, dot, _ = raw.partition(".")
        if JOB_ID.fullmatch(job_id) is None:
            problems.append((number, f"bad JobIDRaw {raw[:40]!r}"))
        elif dot:
            if job_id in jobs:
                jobs[job_id].steps.append(row)
            else:
                problems.append((number, f"step {raw} without its job line"))
        else:
            jobs[job_id] = _Job(row)
    records = []
    for job_id, job in jobs.items():
        try:
            records.append(_record(job_id, job))
        except ParseError as exc:
            problems.append((0, f"job {job_id}: {exc}"))
    return records, problems


def _record(job_id: str, job: _Job) -> JobRecord:
    f = job.fields
    cpu = parse_cpu_time(f["TotalCPU"]) or sum(parse_cpu_time(s["TotalCPU"]) for s in job.steps)
    read = sum(tres_bytes(s["TRESUsageInTot"]) for s in job.steps)
    written = sum(tres_bytes(s["TRESUsageOutTot"]) for s in job.steps)
    return JobRecord(
        job_id=job_id,
        user=f["User"],
        account=f["Account"],
        partition=f["Partition"],
        state=(f["State"].split() or ["UNKNOWN"])[0].upper(),
        elapsed_seconds=parse_elapsed(f["ElapsedRaw"]),
        cpu_seconds=_bounded(cpu, "the steps' TotalCPU", f["TotalCPU"]),  # a sum of steps is bounded again
        max_rss_bytes=max((parse_size(s["MaxRSS"]) for s in job.steps), default=0.0),
        read_bytes=_bounded(read, "the steps' fs/disk read", str(read)),
        written_bytes=_bounded(written, "the steps' fs/disk written", str(written)),
    )


@dataclass
class Totals:
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    read_bytes: float = 0.0
    written_bytes: float = 0.0
    memory_peak_bytes: float = 0.0
    jobs: Counter[str] = field(default_factory=Counter)


class Accounting:
    """Counts each finished job once, keeps the current non-final jobs, forgets ids that left the window."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str, str], Totals] = defaultdict(Totals)
        self.active: Counter[tuple[str, str, str, str]] = Counter()
        self.counted: dict[str, float] = {}  # job id -> time it was last returned by sacct

    def update(self, records: list[JobRecord], now: float, window_start: float) -> None:
        active: Counter[tuple[str, str, str, str]] = Counter()
        for r in records:
            if not r.final:
                active[(*r.key, r.state)] += 1
                continue
            if r.job_id not in self.counted:
                t = self.totals[r.key]
                t.cpu_seconds += r.cpu_seconds
                t.wall_seconds += r.elapsed_seconds
                t.read_bytes += r.read_bytes
                t.written_bytes += r.written_bytes
                t.memory_peak_bytes = max(t.memory_peak_bytes, r.max_rss_bytes)
                t.jobs[r.state] += 1
            self.counted[r.job_id] = now
        self.active = active
        # A job no longer returned for this window ended before it began: it cannot come back.
        self.counted = {job: seen for job, seen in self.counted.items() if seen >= window_start}


@dataclass(frozen=True)
class NodeState:
    node: str
    partition: str
    state: str  # sinfo's state in full, without its suffixes: idle, mixed, allocated, down, drained, idle+drain ...
    responding: bool  # no * suffix


def parse_sinfo(text: str) -> tuple[list[NodeState], list[tuple[int, str]]]:
    """Parse `sinfo --noheader --Node --format=SINFO_FORMAT`: a node's state per partition, and (line number,
    problem) pairs. A node in two partitions is a line in each."""
    states, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.strip().split("|")
        if len(parts) != 3:
            problems.append((number, f"{len(parts)} fields, not 3"))
            continue
        node, partition, state = parts
        partition = partition.removesuffix("*")
        m = NODE_STATE.fullmatch(state.lower())
        if not NODE_NAME.fullmatch(node) or not NODE_NAME.fullmatch(partition) or not m:
            problems.append((number, f"not a node, partition and state: {line[:80]!r}"))
            continue
        states.append(NodeState(node, partition, m.group(1), "*" not in m.group(2)))
    return states, problems


def local_time(t: float) -> str:
    """A unix time as sacct reads a time on this host (its local zone)."""
    return datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


def sacct_argv(sacct: str, since: str, until: str = "now") -> list[str]:
    """sacct for the jobs of the window from `since` to `until`, in sacct's time syntax (a local time, or now-N
    seconds, which reads the same in every time zone)."""
    return [sacct, "--allusers", "--parsable2", "--noheader", f"--starttime={since}", f"--endtime={until}",
            f"--format={','.join(FIELDS)}"]  # fmt: skip


@dataclass
class Options:
    sacct: str = "sacct"
    cluster: str = "magellan"
    interval: float = 15.0
    lookback: float = 7 * 86400.0
    overlap: float = 600.0
    timeout: float = 30.0
    max_bytes: int = MAX_BYTES
    sinfo: str | None = "sinfo"  # None: no node states (--no-collector.nodes)


def run_sacct(options: Options, start: float) -> str:
    """sacct's output for the window from `start`; command.CommandError when there is none to use."""
    argv = sacct_argv(options.sacct, local_time(start))
    install = "install slurm-client or set --sacct.path"
    return command.run(argv, options.timeout, "sacct", install, options.max_bytes, "--sacct.max-bytes")


def run_sinfo(options: Options) -> str:
    """sinfo's node states; command.CommandError when there are none to use."""
    argv = [str(options.sinfo), "--noheader", "--Node", f"--format={SINFO_FORMAT}"]
    install = "install slurm-client, set --sinfo.path, or turn it off with --no-collector.nodes"
    return command.run(argv, options.timeout, "sinfo", install, options.max_bytes, "--sacct.max-bytes")


class AccountingCollector:
    """Prometheus collector serving the figures of the latest sacct run, which a background thread makes."""

    def __init__(self, options: Options, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        self.accounting = Accounting()
        self.health = Health(
            "accounting",
            {"cluster": options.cluster},
            (*ERROR_REASONS, *(SINFO_REASONS if options.sinfo else ())),
            "sacct",
            "Failed sacct runs (not_found, exec, timeout, exit_status, too_large) and unusable lines (parse), by "
            "reason; the same of sinfo as sinfo_<reason>.",
        )
        self.nodes: list[NodeState] = []
        self.lock = threading.Lock()  # guards everything collect() reads
        self.last_poll: float | None = None
        self.duration = 0.0
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Poll sacct now and then every interval in a daemon thread, until stop()."""
        self.thread = threading.Thread(target=self._run, name="sacct-poller", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop polling; a sacct run in flight is waited for (it ends within --sacct.timeout)."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(self.options.timeout + 5)

    def _run(self) -> None:
        while not self.stopping.is_set():
            due = time.monotonic() + self.options.interval
            try:
                self.poll()
            except Exception:  # a bug must not silently freeze the figures: up goes to 0, polling goes on
                LOG.exception("sacct poll failed")
                with self.lock:
                    self.health.read(False, self.clock())
            self.stopping.wait(max(0.0, due - time.monotonic()))

    def poll(self) -> None:
        """One sacct run and one sinfo run (unless off), each outside the lock so that scrapes go on meanwhile."""
        self.poll_jobs()
        if self.options.sinfo:
            self.poll_nodes()

    def poll_jobs(self) -> None:
        """One sacct run; then the figures, under the lock."""
        now = self.clock()
        start = now - self.options.lookback if self.last_poll is None else self.last_poll - self.options.overlap
        started = time.monotonic()
        try:
            text = run_sacct(self.options, start)
        except command.CommandError as exc:
            LOG.error("%s", exc)
            with self.lock:
                self.health.failed(exc.reason)
                self.health.read(False, now)
                self.duration = time.monotonic() - started
            return
        duration = time.monotonic() - started
        records, problems = parse_sacct(text)
        for number, problem in problems:
            LOG.warning("sacct output line %d: %s", number, problem)
        with self.lock:
            self.health.failed("parse", len(problems))
            self.health.read(True, now)
            self.accounting.update(records, now, start)
            self.duration, self.last_poll = duration, now

    def poll_nodes(self) -> None:
        """One sinfo run; its node states replace the previous ones, or are dropped when it fails."""
        try:
            nodes, problems = parse_sinfo(run_sinfo(self.options))
        except command.CommandError as exc:
            LOG.error("%s", exc)
            nodes, problems, reason = [], [], f"sinfo_{exc.reason}"
            with self.lock:
                self.health.failed(reason)
        for number, problem in problems:
            LOG.warning("sinfo output line %d: %s", number, problem)
        with self.lock:
            self.health.failed("sinfo_parse", len(problems))
            self.nodes = nodes

    def collect(self) -> Iterator[Metric]:
        """The latest figures; never runs sacct."""
        with self.lock:
            metrics = list(self._metrics())
        yield from metrics

    def _metrics(self) -> Iterator[Metric]:
        families = Families(KEY_LABELS)
        for key, totals in sorted(self.accounting.totals.items()):
            values = [self.options.cluster, *key]
            families.add(
                [
                    ("counter", "magellan_accounting_cpu_seconds_total", "CPU time (user+system) of finished jobs.",
                     totals.cpu_seconds),
                    ("counter", "magellan_accounting_wall_seconds_total", "Elapsed time of finished jobs.",
                     totals.wall_seconds),
                    ("counter", "magellan_accounting_read_bytes_total", "Bytes finished jobs read (fs/disk TRES).",
                     totals.read_bytes),
                    ("counter", "magellan_accounting_written_bytes_total", "Bytes finished jobs wrote (fs/disk TRES).",
                     totals.written_bytes),
                    ("gauge", "magellan_accounting_memory_peak_bytes", "Largest MaxRSS of a step of any finished job.",
                     totals.memory_peak_bytes),
                ],
                values,
            )  # fmt: skip
            for state, count in sorted(totals.jobs.items()):
                families.add([("counter", "magellan_accounting_jobs_total", "Finished jobs by final state.", count)],
                             [*values, state], ("state",))  # fmt: skip
        for (user, account, partition, state), count in sorted(self.accounting.active.items()):
            families.add([("gauge", "magellan_accounting_active_jobs", "Jobs not finished yet, by state.", count)],
                         [self.options.cluster, user, account, partition, state], ("state",))  # fmt: skip
        nodes = Families(("cluster", "slurm_node"))
        for n in self.nodes:
            nodes.add([("gauge", "magellan_accounting_node_state", "1 per Slurm node, partition and state (sinfo).",
                        1.0)], [self.options.cluster, n.node, n.partition, n.state],
                      ("partition", "state"))  # fmt: skip
        for node, responding in sorted({(n.node, n.responding) for n in self.nodes}):
            nodes.add([("gauge", "magellan_accounting_node_responding",
                        "1 while slurmctld hears from the node, 0 when sinfo marks it not responding (*).",
                        1.0 if responding else 0.0)], [self.options.cluster, node])  # fmt: skip
        yield from families
        yield from nodes
        yield from self.health.metrics()
        yield self.health.gauge("sacct_duration_seconds", "Time the last sacct run took.", self.duration)


def _parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(prog="magellan-accounting-exporter", description=__doc__.splitlines()[0])
    web.add_common_flags(p, contract.PORTS["accounting_exporter"])
    p.add_argument("--sacct.path", dest="sacct", default=d.sacct, help="sacct command (default: %(default)s)")
    p.add_argument("--cluster.name", dest="cluster", default=d.cluster, help="cluster label (default: %(default)s)")
    p.add_argument("--sinfo.path", dest="sinfo", default=d.sinfo, help="sinfo command (default: %(default)s)")
    p.add_argument(
        "--collector.nodes", dest="nodes", action=argparse.BooleanOptionalAction, default=True,
        help="Slurm node states from sinfo at every poll (default: on)",
    )  # fmt: skip
    for flag, default, doc in (
        ("interval", d.interval, "run sacct this often"),
        ("lookback", d.lookback, "how far the first poll looks back"),
        ("overlap", d.overlap, "how far each poll reaches before the previous one"),
        ("timeout", d.timeout, "give up on a sacct run after this long"),
    ):
        p.add_argument(
            f"--sacct.{flag}", dest=flag, type=SECONDS, default=default, help=f"{doc} (s, default %(default)s)"
        )
    p.add_argument(
        "--sacct.max-bytes", dest="max_bytes", type=BYTES, default=d.max_bytes,
        help="refuse a sacct run that prints more than this (default %(default)s)",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = web.parse_args(_parser(), argv)
    options = Options(
        args.sacct, args.cluster, args.interval, args.lookback, args.overlap, args.timeout, args.max_bytes,
        args.sinfo if args.nodes else None,
    )  # fmt: skip
    LOG.info("sacct %s every %.0f s, cluster=%s", options.sacct, options.interval, options.cluster)
    collector = AccountingCollector(options)
    collector.start()
    try:
        return web.serve(common.registry([collector], Paths().self_procfs), args.listen, LOG, args.web_config)
    finally:
        collector.stop()
        LOG.info("sacct poller stopped")


if __name__ == "__main__":
    sys.exit(main())
