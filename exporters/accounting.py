"""magellan-accounting-exporter: Slurm job accounting (sacct) per user, account and partition, and the state of
every Slurm node (sinfo).

Runs next to slurmdbd. A background thread asks sacct every --sacct.interval seconds for the jobs of a sliding
window (from the last good poll minus an overlap; the first poll, at start, looks --sacct.lookback back); a scrape
only serves the latest figures, so it never waits for slurmdbd. A job is added to the cumulative counters once,
when it is first seen in a final state; running and pending jobs are gauges. A failing, slow or missing sacct is
counted by reason and the previous figures keep being served. Each poll also asks sinfo for every node's state in
each partition; a failing sinfo is counted (reasons sinfo_*) and its states are dropped, not served stale.

With --collector.database (off by default), each poll also reads the conditions database's user statistics
(MariaDB's information_schema.USER_STATISTICS, server option userstat = 1) through the mariadb client, logged in
with --database.defaults-file (an account with PROCESS: without it the table reads as empty), and serves per MariaDB
user the connections, commands, rows, bytes and time the server spent on them. A database session does not know
its Slurm job, so the `account` of a database row is the user's default Slurm account (sacctmgr), or "" for a
database user that is no Slurm user: a user's queries made for a job of another account are counted under the
default one. A failing database query is counted (db_*) and its rows are dropped, as sinfo's; a failing sacctmgr
(sacctmgr_*) keeps the last default accounts it gave, and before it ever answered no database row is served.
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
DB_REASONS = tuple(f"db_{r}" for r in ERROR_REASONS)
SACCTMGR_REASONS = tuple(f"sacctmgr_{r}" for r in ERROR_REASONS)
SINFO_FORMAT = "%N|%P|%T"  # node, partition (the default one ends in *), state in full (sinfo(1), Slurm 22.05)
# A state's suffixes (sinfo(1) NODE STATE CODES): * not responding; ~ powered off; # powering up; ! pending power
# down; % powering down; $ maintenance reservation; @ pending reboot; ^ rebooting; - planned by the backfill.
NODE_STATE = re.compile(r"([a-z_]{1,40}(?:\+[a-z_]{1,40}){0,8})([*~#!%$@^-]{0,9})")
NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
KEY_LABELS = ("cluster", "user", "account", "partition")
DB_LABELS = ("cluster", "user", "account")  # account: the user's default Slurm account
DB = "magellan_accounting_db_"
# The database series `testbed accounting report` sums per account and user (the others are named where served).
DB_COMMANDS = f"{DB}commands_total"
DB_ROWS_READ = f"{DB}rows_read_total"
DB_BYTES_SENT = f"{DB}bytes_sent_total"
DB_CLIENT = "mariadb"  # --database.client's default
RESET = (
    " Since the database server started: MariaDB starts from 0 again on a restart (or FLUSH USER_STATISTICS), which"
    " rate() and increase() take as a counter reset."
)
SECONDS = web.seconds(10 * 365 * 86400)  # the value type of the --sacct.* durations
MAX_BYTES = 128 << 20  # --sacct.max-bytes: ~600k jobs of four lines; a larger site raises it or the lookback drops
BYTES = web.count(1 << 40)  # the value type of --sacct.max-bytes
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
# ASCII digits only ([0-9], not \d: '٣' is a digit to \d and to int()), at most 19 before the point: no figure is
# beyond a float, and each is then bounded by contract.COUNT_MAX (bytes, seconds), so a counter never gets inf.
SIZE = re.compile(r"([0-9]{1,19}(?:\.[0-9]{1,19})?)([KMGTP]?)")
JOB_ID = re.compile(r"[0-9]{1,19}")
# The columns of information_schema.USER_STATISTICS the database collector reads, in the order of DbUsage's fields
# (MariaDB 10.11; tests/fixtures/mariadb/). DENIED_CONNECTIONS is left out: in 10.11 it counts the refusals that
# ACCESS_DENIED counts, a refused statement twice, so neither it nor a sum of the two is a count of anything.
DB_COLUMNS = (
    "USER",
    "TOTAL_CONNECTIONS",
    "CONCURRENT_CONNECTIONS",
    "BUSY_TIME",
    "CPU_TIME",
    "BYTES_RECEIVED",
    "BYTES_SENT",
    "ROWS_READ",
    "ROWS_SENT",
    "SELECT_COMMANDS",
    "UPDATE_COMMANDS",
    "OTHER_COMMANDS",
    "ACCESS_DENIED",
)
DB_QUERY = f"SELECT {', '.join(DB_COLUMNS)} FROM information_schema.USER_STATISTICS"
DB_SECONDS = frozenset({"BUSY_TIME", "CPU_TIME"})  # doubles; every other number column is a count
# A double as the mariadb client prints one: '0.000376', '4.013672', '1e20' (ASCII digits, bounded like SIZE).
DOUBLE = re.compile(r"[0-9]{1,19}(?:\.[0-9]{1,19})?(?:e[-+]?[0-9]{1,3})?")
DB_USER_MAX = 128  # characters of a MariaDB 10.11 user name (USERNAME_CHAR_LENGTH)
BATCH_ESCAPES = {"t": "\t", "n": "\n", "0": "\0", "\\": "\\"}  # what `mariadb --batch` writes as \t, \n, \0, \\
BATCH_ESCAPE = re.compile(r"\\(.)")
SLURM_NAME = re.compile(r"[!-~]{1,200}")  # a Slurm user or account as sacctmgr prints it: printable ASCII, no blank
SACCTMGR_FORMAT = "User,DefaultAccount"
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


@dataclass(frozen=True)
class DbUsage:
    """One row of USER_STATISTICS: what the database server did for a user since it started (or since FLUSH
    USER_STATISTICS); its fields follow DB_COLUMNS."""

    user: str
    connections: float
    concurrent_connections: float
    busy_seconds: float
    cpu_seconds: float
    bytes_received: float
    bytes_sent: float
    rows_read: float
    rows_sent: float
    select_commands: float
    update_commands: float
    other_commands: float
    access_denied: float


def unescape_batch(value: str) -> str:
    """A field of `mariadb --batch` output as the server holds it: the client writes a tab as \\t, a newline as \\n,
    NUL as \\0 and a backslash as \\\\ (a backslash before anything else is left as it is)."""
    return BATCH_ESCAPE.sub(lambda m: BATCH_ESCAPES.get(m.group(1), m.group(0)), value) if "\\" in value else value


def parse_db_number(value: str, column: str) -> float:
    """A number of USER_STATISTICS: seconds (a double) for DB_SECONDS, else a count; ParseError unless it is in
    ASCII digits and from 0 to contract.COUNT_MAX."""
    if column in DB_SECONDS:
        if DOUBLE.fullmatch(value) is None:
            raise ParseError(f"{column} {value[:40]!r} is not a number of seconds")
        return _bounded(float(value), column, value)
    try:
        return float(contract.parse_count(value))
    except ValueError:
        raise ParseError(f"{column} {value[:40]!r} is not a count") from None


def parse_user_statistics(text: str) -> tuple[list[DbUsage], list[tuple[int, str]]]:
    """Parse `mariadb --batch --skip-column-names -e DB_QUERY`: a row per user, and (line number, problem) pairs.

    Fields are tab-separated and unescaped (unescape_batch); lines end at a newline only (the client escapes one in
    a value, so a form feed or U+2028 in a user name is part of the name). A user name must be at most
    DB_USER_MAX printable characters (a tab, newline or NUL in it is a problem: no Slurm user has one, and a label
    should not); the anonymous user '' is kept. A line with U+FFFD (bytes that were not UTF-8) is a problem, so is a
    second row of the same user.
    """
    rows: list[DbUsage] = []
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if "\ufffd" in line:
            problems.append((number, "not UTF-8"))
            continue
        values = line.split("\t")
        if len(values) != len(DB_COLUMNS):
            problems.append((number, f"{len(values)} fields, expected {len(DB_COLUMNS)}"))
            continue
        user = unescape_batch(values[0])
        if len(user) > DB_USER_MAX or not user.isprintable():
            problems.append((number, f"not a user name: {user[:40]!r}"))
            continue
        if user in seen:
            problems.append((number, f"a second row of user {user[:40]!r}"))
            continue
        try:
            numbers = [parse_db_number(v, c) for v, c in zip(values[1:], DB_COLUMNS[1:], strict=True)]
        except ParseError as exc:
            problems.append((number, f"user {user[:40]!r}: {exc}"))
            continue
        seen.add(user)
        rows.append(DbUsage(user, *numbers))
    return rows, problems


def parse_default_accounts(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """Parse `sacctmgr --noheader --parsable2 show user format=User,DefaultAccount`: user -> default account (""
    when it has none), and (line number, problem) pairs. A user listed twice with two accounts is a problem (the
    first is kept)."""
    accounts: dict[str, str] = {}
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 2:
            problems.append((number, f"{len(parts)} fields, not 2"))
            continue
        user, account = parts
        if not SLURM_NAME.fullmatch(user) or (account and not SLURM_NAME.fullmatch(account)):
            problems.append((number, f"not a user and an account: {line[:80]!r}"))
        elif accounts.setdefault(user, account) != account:
            problems.append((number, f"user {user} has default accounts {accounts[user]} and {account}"))
    return accounts, problems


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
    database: str | None = None  # the mariadb client; None: no database statistics (--no-collector.database)
    database_defaults_file: str | None = None  # --database.defaults-file, given to the client first
    sacctmgr: str = "sacctmgr"  # the default accounts of the database's users


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


def database_argv(options: Options) -> list[str]:
    """The mariadb client's command line for DB_QUERY. utf8mb4, because command.run runs it in the C locale, where
    the client would ask for latin1 and get a user 'théo' as bytes that are not UTF-8. The client's own connect
    timeout is half the run's, so that a server that does not answer gives the client's message, not a kill."""
    first = [f"--defaults-file={options.database_defaults_file}"] if options.database_defaults_file else []
    return [str(options.database), *first, "--batch", "--skip-column-names", "--default-character-set=utf8mb4",
            f"--connect-timeout={max(1, int(options.timeout / 2))}", "-e", DB_QUERY]  # fmt: skip


def database_hint(message: str) -> str:
    """What to do about a failed mariadb run, from its message (the client's ERROR line)."""
    if "Access denied" in message:
        return ("give --database.defaults-file the options of an account with PROCESS, readable by the exporter's "
                "user (roles/conditions_db writes them), or give that user such an account")  # fmt: skip
    if "Can't connect" in message:
        return "start the MariaDB server, or give its socket or host in --database.defaults-file"
    if "USER_STATISTICS" in message:
        return "the server has no USER_STATISTICS: it must be MariaDB (userstat)"
    return "run the same query by hand as the exporter's user"


def run_database(options: Options) -> str:
    """The client's USER_STATISTICS rows; command.CommandError when there are none to use (the message says what
    to do)."""
    install = "install mariadb-client or set --database.client"
    try:
        return command.run(database_argv(options), options.timeout, "mariadb", install, options.max_bytes,
                           "--sacct.max-bytes")  # fmt: skip
    except command.CommandError as exc:
        if exc.reason != "exit_status":
            raise
        raise command.CommandError(exc.reason, f"{exc}: {database_hint(str(exc))}") from None


def run_sacctmgr(options: Options) -> str:
    """sacctmgr's default account of each Slurm user; command.CommandError when there is none to use."""
    argv = [options.sacctmgr, "--noheader", "--parsable2", "show", "user", f"format={SACCTMGR_FORMAT}"]
    install = "install slurm-client or set --sacctmgr.path"
    return command.run(argv, options.timeout, "sacctmgr", install, options.max_bytes, "--sacct.max-bytes")


class AccountingCollector:
    """Prometheus collector serving the figures of the latest sacct run, which a background thread makes."""

    def __init__(self, options: Options, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock
        self.accounting = Accounting()
        self.health = Health(
            "accounting",
            {"cluster": options.cluster},
            (
                *ERROR_REASONS,
                *(SINFO_REASONS if options.sinfo else ()),
                *((*DB_REASONS, *SACCTMGR_REASONS) if options.database else ()),
            ),
            "sacct",
            "Failed sacct runs (not_found, exec, timeout, exit_status, too_large) and unusable lines (parse), by "
            "reason; the same of sinfo as sinfo_<reason>, of the database's user statistics as db_<reason> and of "
            "sacctmgr as sacctmgr_<reason>.",
        )
        self.nodes: list[NodeState] = []
        self.db_rows: list[DbUsage] = []
        self.db_duration = 0.0
        self.default_accounts: dict[str, str] | None = None  # None until sacctmgr first answers
        self.db_empty_warned = False
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
        """One sacct run, one sinfo run and the database's statistics (unless off), each outside the lock so that
        scrapes go on meanwhile; what is left is skipped once stop() was called."""
        self.poll_jobs()
        if self.options.sinfo and not self.stopping.is_set():
            self.poll_nodes()
        if self.options.database and not self.stopping.is_set():
            self.poll_database()

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

    def poll_database(self) -> None:
        """sacctmgr's default accounts (the last good ones are kept when it fails), then one statistics query whose
        rows replace the previous ones, or are dropped when it fails."""
        self.poll_default_accounts()
        started = time.monotonic()
        try:
            rows, problems = parse_user_statistics(run_database(self.options))
        except command.CommandError as exc:
            LOG.error("%s", exc)
            rows, problems, failed = [], [], f"db_{exc.reason}"
        else:
            failed = ""
            self._warn_when_empty(bool(rows or problems))
        duration = time.monotonic() - started
        for number, problem in problems:
            LOG.warning("USER_STATISTICS line %d: %s", number, problem)
        with self.lock:
            self.health.failed(failed or "db_parse", 1 if failed else len(problems))
            if self.default_accounts is None and rows:
                LOG.warning("database figures left out until sacctmgr gives the users' default accounts")
            self.db_rows = rows if self.default_accounts is not None else []
            self.db_duration = duration

    def poll_default_accounts(self) -> None:
        """One sacctmgr run; its default accounts replace the previous ones, which are kept when it fails."""
        try:
            accounts, problems = parse_default_accounts(run_sacctmgr(self.options))
        except command.CommandError as exc:
            LOG.error("%s", exc)
            with self.lock:
                self.health.failed(f"sacctmgr_{exc.reason}")
            return
        for number, problem in problems:
            LOG.warning("sacctmgr output line %d: %s", number, problem)
        with self.lock:
            self.health.failed("sacctmgr_parse", len(problems))
            self.default_accounts = accounts

    def _warn_when_empty(self, anything: bool) -> None:
        """Warn once (until rows come back) about an empty USER_STATISTICS: with userstat on and PROCESS, the
        exporter's own connection has a row even right after a restart, so empty means neither (not an error: the
        query worked)."""
        if anything:
            self.db_empty_warned = False
        elif not self.db_empty_warned:
            self.db_empty_warned = True
            LOG.warning(
                "information_schema.USER_STATISTICS is empty, though the exporter's own connection belongs in it: the "
                "server collects no user statistics (userstat = 1 in its [mariadbd] options, or SET GLOBAL userstat "
                "= 1) or the account of --database.defaults-file lacks PROCESS (GRANT PROCESS ON *.* TO <it>)"
            )

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
        yield from self._database_metrics()
        yield from self.health.metrics()
        yield self.health.gauge("sacct_duration_seconds", "Time the last sacct run took.", self.duration)
        if self.options.database:
            yield self.health.gauge("db_duration_seconds", "Time the last USER_STATISTICS query took.",
                                    self.db_duration)  # fmt: skip
            yield self.health.gauge("db_users", "Database users in USER_STATISTICS at the last query (0: none served; "
                                    "the exporter's own user is one).", float(len(self.db_rows)))  # fmt: skip

    def _database_metrics(self) -> Iterator[Metric]:
        """A database user's figures, labelled with its default Slurm account ("" for none)."""
        accounts = self.default_accounts or {}
        db = Families(DB_LABELS)
        for r in sorted(self.db_rows, key=lambda r: r.user):
            values = [self.options.cluster, r.user, accounts.get(r.user, "")]
            db.add(
                [
                    ("counter", f"{DB}connections_total", f"Connections the database server accepted.{RESET}",
                     r.connections),
                    ("gauge", f"{DB}concurrent_connections", "Connections open at the last query.",
                     r.concurrent_connections),
                    ("counter", DB_ROWS_READ, f"Rows the server read for the user's statements.{RESET}",
                     r.rows_read),
                    ("counter", f"{DB}rows_sent_total", f"Rows the server sent to the user.{RESET}", r.rows_sent),
                    ("counter", DB_BYTES_SENT, f"Bytes the server sent to the user.{RESET}", r.bytes_sent),
                    ("counter", f"{DB}bytes_received_total", f"Bytes the server received from the user.{RESET}",
                     r.bytes_received),
                    ("counter", f"{DB}busy_seconds_total", f"Time the user's connections were active.{RESET}",
                     r.busy_seconds),
                    ("counter", f"{DB}cpu_seconds_total", f"CPU time the server spent on the user.{RESET}",
                     r.cpu_seconds),
                    ("counter", f"{DB}access_denied_total", "Refusals: statements refused for lack of a privilege "
                     f"and failed logins of a user the server already counts (ACCESS_DENIED).{RESET}",
                     r.access_denied),
                ],
                values,
            )  # fmt: skip
            for kind, count in (("select", r.select_commands), ("update", r.update_commands),
                                ("other", r.other_commands)):  # fmt: skip
                db.add([("counter", DB_COMMANDS, f"Statements by kind (select, update, other).{RESET}",
                         count)], [*values, kind], ("kind",))  # fmt: skip
        yield from db


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
    p.add_argument(
        "--collector.database", dest="database_on", action=argparse.BooleanOptionalAction, default=False,
        help="the database's user statistics (MariaDB USER_STATISTICS) at every poll (default: off)",
    )  # fmt: skip
    p.add_argument("--database.client", dest="database", default=DB_CLIENT,
                   help="the MariaDB client program (default: %(default)s)")  # fmt: skip
    p.add_argument("--database.defaults-file", dest="database_defaults_file", metavar="FILE",
                   help="an option file for the client ([client] user, password, socket or host), given first; "
                        "default none: the exporter's unix user through the server's socket")  # fmt: skip
    p.add_argument(
        "--sacctmgr.path",
        dest="sacctmgr",
        default=d.sacctmgr,
        help="sacctmgr command, for the database users' default accounts (default: %(default)s)",
    )
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


def options_of(args: argparse.Namespace) -> Options:
    """The collector's options from the command line's (a collector turned off is None)."""
    return Options(
        args.sacct, args.cluster, args.interval, args.lookback, args.overlap, args.timeout, args.max_bytes,
        args.sinfo if args.nodes else None, args.database if args.database_on else None, args.database_defaults_file,
        args.sacctmgr,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = web.parse_args(_parser(), argv)
    options = options_of(args)
    LOG.info("sacct %s every %.0f s, cluster=%s", options.sacct, options.interval, options.cluster)
    if options.database:
        LOG.info("database statistics from %s, default accounts from %s", options.database, options.sacctmgr)
    collector = AccountingCollector(options)
    collector.start()
    try:
        return web.serve(common.registry([collector], Paths().self_procfs), args.listen, LOG, args.web_config)
    finally:
        collector.stop()
        LOG.info("sacct poller stopped")


if __name__ == "__main__":
    sys.exit(main())
