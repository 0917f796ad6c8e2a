"""The contract from controller to node: the one owner of every fact a job's path crosses.

`testbed compare` (the controller) plans a job, `playbooks/run_workload.yml` runs it through Slurm on a node,
`magellan-workload` writes its progress file, `magellan-job-exporter` serves it to Prometheus, and the controller
reads it back and reports it. Each of those sides imports what it needs from here (Ansible through the vars
plugin `plugins/vars/magellan_contract.py`, which gives the site's variables `magellan_*`); none writes these
facts again. docs/contracts.md describes this module.

What is here: directories and ports; the job reference (a job id's format and its parse); the workload catalogue
(CPU- or I/O-bound, inputs, DB12 unit, parameter limits and defaults) and the job's command line; the progress
file (schema, states, the pure parser both sides trust); /proc/<pid>/stat; metric names, and the health metrics
every exporter reports about itself.
"""

from __future__ import annotations

import json
import math
import pwd
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

# The module keeps to Python 3.9's grammar and library, as the workloads do (they may run in an older CHOS
# environment's Python): tests/unit/test_workloads.py parses both with it.
UTC = timezone.utc  # noqa: UP017 - datetime.UTC is Python 3.11

# ---------------------------------------------------------------------------------------------------------------
# Directories and ports (on every node; a site changes them in its inventory, through the magellan_* variables)

PREFIX = "/opt/magellan"  # the project's venv and tools on a node
JOBS_DIR = "/var/lib/magellan/jobs"  # the progress files: written by the workloads, read by the job exporter
DATA_DIR = "/var/lib/magellan/data"  # the workloads' input files (made once per node, seed, size and format)
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # node_exporter's textfile collector (Debian's default)
WEB_CONFIG = "/etc/magellan/web-config.yml"  # the exporters' --web.config.file (roles/web_config), when it is on
# The conditions database's client options in a user's home (a MySQL option file: [client] host, port, user,
# password, database; mode 0600, owned by the user): roles/conditions_db writes it, `analyze --conditions` reads it.
CONDITIONS_FILE = "~/.config/magellan/conditions.cnf"
# The MariaDB client options (a MySQL option file, mode 0600) of the account that reads every user's statistics
# (PROCESS): roles/conditions_db writes it on the database host for the accounting exporter, which reads it
# (--database.defaults-file).
DB_STATISTICS_FILE = "/etc/magellan/db-statistics.cnf"
JOB_OUTPUT = "/tmp/magellan-{job_id}.out"  # a Slurm job's stdout and stderr on its node
WORKLOAD_COMMAND = "magellan-workload"  # in <venv>/bin

PORTS: Mapping[str, int] = {
    "prometheus": 9090,
    "node_exporter": 9100,
    "job_exporter": 9810,
    "accounting_exporter": 9811,
    "virt_exporter": 9812,
    "storage_exporter": 9813,
    "infiniband_exporter": 9814,  # reserved
    "grafana": 3000,  # roles/grafana, on real sites (Grafana's own default)
    # Slurm's daemons (its own defaults): roles/slurm configures them, roles/firewall opens them within the cluster.
    "slurmctld": 6817,
    "slurmd": 6818,
    "slurmdbd": 6819,
    # MariaDB (its own default): slurmdbd's store on the controller, and the conditions database the jobs read
    # (roles/conditions_db), which roles/firewall opens to its clients only.
    "mariadb": 3306,
    # XRootD (its own default): roles/xrootd serves the storage nodes' arrays to the jobs (root://<node>/<path>).
    "xrootd": 1094,
    # NFSv4 (its own port): roles/nfs_export exports the storage nodes' arrays on it, to the hosts of group nfs_clients.
    "nfs": 2049,
}
# The ports srun listens on for its steps' I/O and messages (slurm.conf SrunPortRange), in the syntax Slurm and
# nftables share. Without it srun takes any ephemeral port and no firewall can let the steps' answers in. Slurm asks
# for a range as large as the sruns that run at once on a submit host need; 1000 is its documentation's example.
SRUN_PORT_RANGE = "60001-61000"


def user_dir(base: str, user: str) -> str:
    """Where `user`'s jobs write their progress files (base: JOBS_DIR) or keep their inputs (base: DATA_DIR): the
    directory itself for root, whose jobs are the campaigns', and <base>/<user> for anyone else. The directories are
    sticky and writable by all, so that a user's first job makes its own subdirectory; a job uses only a directory
    of its user's and reads only its user's or root's inputs (workloads/cli.py), and the job exporter reads only
    files of the directory's user (exporters/job.py): nobody plants a file that another user's job reads."""
    return base if user == "root" else f"{base}/{user}"


def user_name(uid: int) -> str:
    """The name of a user id (the name user_dir takes), or the id itself when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def venv(prefix: str = PREFIX) -> str:
    return f"{prefix}/venv"


def workload_command(prefix: str = PREFIX) -> str:
    """The workload program on a node."""
    return f"{venv(prefix)}/bin/{WORKLOAD_COMMAND}"


SITE_DIRS: Mapping[str, str] = {
    "prefix": PREFIX,
    "jobs_dir": JOBS_DIR,
    "data_dir": DATA_DIR,
    "textfile_dir": TEXTFILE_DIR,
    "web_config": WEB_CONFIG,
    "conditions_file": CONDITIONS_FILE,
    "db_statistics_file": DB_STATISTICS_FILE,
}


def site_var(name: str) -> str:
    """The Ansible variable of a site-wide fact: magellan_jobs_dir, magellan_ports, ..."""
    return f"magellan_{name}"


# The host variables that give a node's address on the site network, the first one set winning, else its inventory
# name: the exporters and Prometheus listen there (not on every interface), Prometheus scrapes it, the controller
# reaches the node there.
SITE_ADDRESS_VARS = ("testbed_address", "ansible_host")


def site_address(hostvars: Mapping[str, Any], name: str) -> str:
    """A node's address on the site network from its host variables (SITE_ADDRESS_VARS), as the controller sees it."""
    return next((str(hostvars[v]) for v in SITE_ADDRESS_VARS if hostvars.get(v)), name)


def site_vars() -> dict[str, Any]:
    """The site's shared variables as Ansible sees them (plugins/vars/magellan_contract.py): one per fact, read by
    every role that needs it. An inventory's group_vars override them. magellan_site_address is an expression that
    Ansible evaluates per host (site_address's rule)."""
    address = " | ".join([SITE_ADDRESS_VARS[0], *(f"default({v})" for v in SITE_ADDRESS_VARS[1:])])
    return (
        {site_var(k): v for k, v in SITE_DIRS.items()}
        | {site_var("ports"): dict(PORTS)}
        | {site_var("srun_port_range"): SRUN_PORT_RANGE}
        # TLS and basic auth between Prometheus and the exporters: off (None) in the site in a box; a real site
        # gives its certificates and scrape credentials (roles/web_config/README.md).
        | {site_var("web_security"): None}
        | {site_var("site_address"): "{{ " + address + " | default(inventory_hostname) }}"}
    )


class ContractError(ValueError):
    """A value that breaks the contract; the message names the parameter, what was wrong and what to give."""


# ---------------------------------------------------------------------------------------------------------------
# Job ids and the job reference

JOB_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")  # a host name: no '_', which separates a storm's reader
RUN_PREFIX = "cmp"
_STAMP = "%Y%m%dT%H%M%S"


def valid_job_id(job_id: str) -> bool:
    """1-128 characters of A-Z a-z 0-9 _ . - (a file name, a Slurm job name and a Prometheus label value)."""
    return JOB_ID.fullmatch(job_id) is not None


def reader_job_id(job_id: str, reader: int) -> str:
    """The job id of reader `reader` of a storm: each reader is a job of its own, with its own progress file."""
    return f"{job_id}_{reader}"


@dataclass(frozen=True)
class RunId:
    """One comparison's run: `cmp-<UTC time>-<label>`; every job of the run carries it."""

    started: datetime
    label: str

    def format(self) -> str:
        return f"{RUN_PREFIX}-{self.started.astimezone(UTC).strftime(_STAMP)}-{self.label}"

    @classmethod
    def new(cls, label: str, now: datetime | None = None) -> RunId:
        return cls((now or datetime.now(UTC)).replace(microsecond=0), label)


@dataclass(frozen=True)
class JobRef:
    """A job of a run: `<run id>-r<repetition>-<node>`, and `_<i>` for reader i of a storm (reader_job_id)."""

    run: str
    rep: int
    node: str
    reader: int | None = None

    def __post_init__(self) -> None:
        if not NODE.fullmatch(self.node):
            raise ContractError(f"node {self.node!r}: a job's node is a host name ({NODE.pattern})")
        if self.rep < 0 or (self.reader is not None and self.reader < 0):
            raise ContractError("a job's repetition and reader are not negative")

    def format(self) -> str:
        job = f"{self.run}-r{self.rep}-{self.node}"
        return job if self.reader is None else reader_job_id(job, self.reader)

    def job(self) -> JobRef:
        """The Slurm job this one belongs to (itself, or a storm reader's storm)."""
        return replace(self, reader=None)

    def readers(self, n: int) -> list[JobRef]:
        return [replace(self, reader=i) for i in range(n)]

    @classmethod
    def parse(cls, job_id: str, run: str) -> JobRef | None:
        """The reference of a job of run `run`, or None when job_id is not one of its jobs."""
        if not job_id.startswith(run + "-"):
            return None
        m = re.fullmatch(rf"r(\d+)-({NODE.pattern})(?:_(\d+))?", job_id[len(run) + 1 :])
        if m is None:
            return None
        return cls(run, int(m[1]), m[2], None if m[3] is None else int(m[3]))


RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")  # a job id's prefix, and a regex that matches itself (no '.')


def run_selector(run: str) -> str:
    """PromQL label matcher for every job of a run."""
    if not RUN_ID.fullmatch(run):
        raise ContractError(f"run id {run!r}: 1-80 characters of A-Z a-z 0-9 _ -")
    return f'job_id=~"{run}-r[0-9]+-.+"'


# ---------------------------------------------------------------------------------------------------------------
# The workload catalogue

Bound = Literal["cpu", "io"]
FORMATS = ("rntuple", "ttree")  # the event file's layout: ROOT's RNTuple (uproot's default) or a TTree
DEFAULT_FORMAT = "rntuple"
READERS_MAX = 1000
DEFAULT_SEED = 12345
DEFAULT_DURATION = 20  # seconds a comparison's job runs
INPUT_EVENTS = 5000  # events in the input file of analyze and storm
STORM_FILES = 32  # a storm's readers read their own copies of the input, up to this many
CHOS_NAME = re.compile(r"[a-z0-9_.-]{0,32}")
# The run an event belongs to, for the conditions it is calibrated with (workloads/conditions.py): FIRST_RUN + its
# number // EVENTS_PER_RUN. The conditions database's IOVs cover runs from FIRST_RUN (roles/conditions_db).
FIRST_RUN = 410000
EVENTS_PER_RUN = 1000
PARTIAL = ".partial"  # an input in the making: <input>.partial, renamed onto <input> when whole


@dataclass(frozen=True)
class Workload:
    name: str
    bound: Bound
    reads_input: bool  # reads a ROOT file of simulated events made once per node (its input)
    summary: str
    db12_unit: str  # the workload whose events per DB12-second score it (a storm's readers are analyze jobs)
    events_per_db12_second: float  # events per CPU second per DB12 unit, calibrated once (workloads/db12.py)
    readers: bool = False  # runs --readers concurrent jobs


CATALOGUE: Mapping[str, Workload] = {
    w.name: w
    for w in (
        Workload("simulate", "cpu", False, "CPU-bound event generation and detector response", "simulate", 16.6),
        Workload(
            "analyze", "io", True, "reads a ROOT file of simulated events, selects, fills histograms", "analyze", 650.0
        ),
        Workload("storm", "io", True, "N analyze readers at once on the node's storage", "analyze", 650.0, True),
    )
}


def workload(name: str) -> Workload:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ContractError(f"workload {name!r}: one of {', '.join(CATALOGUE)}") from None


def db12_score(name: str, events: float, cpu_seconds: float) -> float | None:
    """Per-core score of a job in DB12 units; None for a name outside the catalogue or before any CPU time."""
    w = CATALOGUE.get(name)
    if w is None or cpu_seconds <= 0:
        return None
    return events / cpu_seconds / CATALOGUE[w.db12_unit].events_per_db12_second


def check_readers(n: int) -> int:
    """n, or ContractError unless it is a number of a storm's concurrent readers (1 to READERS_MAX)."""
    if not 1 <= n <= READERS_MAX:
        raise ContractError(f"readers {n}: a storm runs 1 to {READERS_MAX} concurrent readers")
    return n


def label(name: str, readers: int = 1, fmt: str = DEFAULT_FORMAT) -> str:
    """A comparison's name: the workload, the readers of a storm, a format other than the default for a workload
    that reads files (simulate, analyze-ttree, storm-n16). It names the report's plots and the published metrics'
    file."""
    w = workload(name)
    base = f"{w.name}-n{readers}" if w.readers else w.name
    return base if fmt == DEFAULT_FORMAT or not w.reads_input else f"{base}-{fmt}"


@dataclass(frozen=True)
class JobSpec:
    """What a job runs, as the controller asks for it: checked once (check), turned into argv once (argv)."""

    workload: str = "simulate"
    duration: float = DEFAULT_DURATION  # seconds; 0: bounded by events only (simulate)
    events: int = 0  # simulate stops after this many (0: no limit); analyze and storm read input_events again
    seed: int = DEFAULT_SEED
    readers: int = 1
    cold: bool = False  # analyze and storm evict their input from the page cache before every pass
    format: str = DEFAULT_FORMAT
    input_events: int = INPUT_EVENTS
    chos: str = ""  # the CHOS environment the job asks for (CHOS=<name>); empty: the node's default

    def check(self) -> JobSpec:
        """self, or ContractError saying which parameter is wrong and what to give."""
        w = workload(self.workload)
        if not all(math.isfinite(x) and x >= 0 for x in (self.duration, self.events)):
            raise ContractError(f"duration {self.duration} and events {self.events}: finite and not negative")
        if w.reads_input and (self.events or self.duration <= 0):
            raise ContractError(
                f"{w.name} runs for a duration in seconds (it reads its input again); events is for simulate"
            )
        if not self.duration and not self.events:
            raise ContractError("duration or events must be positive: the job needs a stopping condition")
        check_readers(self.readers)
        if self.readers != 1 and not w.readers:
            raise ContractError(f"readers {self.readers}: more than 1 only for a storm")
        if self.format not in FORMATS:
            raise ContractError(f"format {self.format!r}: one of {', '.join(FORMATS)}")
        if not 0 < self.input_events <= 10**8:
            raise ContractError(f"input_events {self.input_events}: 1 to 10^8")
        if not CHOS_NAME.fullmatch(self.chos):
            raise ContractError(f"chos {self.chos!r}: a CHOS environment's name ({CHOS_NAME.pattern}) or empty")
        return self

    @property
    def label(self) -> str:
        return label(self.workload, self.readers, self.format)

    def input_path(self, data_dir: str = DATA_DIR) -> str:
        """The input of analyze and storm on a node: made once per seed, size and format."""
        suffix = "" if self.format == DEFAULT_FORMAT else f"-{self.format}"
        return f"{data_dir}/events-s{self.seed}-n{self.input_events}{suffix}.root"

    def inputs(self, data_dir: str = DATA_DIR) -> list[str]:
        """The files a job reads: the input, and for a storm one copy per reader up to STORM_FILES."""
        first = self.input_path(data_dir)
        if not workload(self.workload).readers:
            return [first]
        return [first] + [f"{first}.copy{i}" for i in range(1, min(self.readers, STORM_FILES))]

    def input_argv(self, node: str, data_dir: str = DATA_DIR, prefix: str = PREFIX) -> list[str]:
        """The command that makes the input (written to <input>.partial; the caller renames it when it is done)."""
        job = f"input-s{self.seed}-n{self.input_events}-{self.format}-{node}"
        size = ["--events", str(self.input_events), "--format", self.format]
        out = ["--output", self.input_path(data_dir) + PARTIAL]
        return [workload_command(prefix), "simulate", "--job-id", job, "--seed", str(self.seed), *size, *out]

    def argv(self, job_id: str, jobs_dir: str = JOBS_DIR, data_dir: str = DATA_DIR, prefix: str = PREFIX) -> list[str]:
        """The job's command line on its node."""
        w = workload(self.workload)
        argv = [workload_command(prefix), w.name, "--job-id", job_id, "--jobs-dir", jobs_dir]
        if w.reads_input:
            argv += ["--input", *self.inputs(data_dir)]
            argv += ["--cold"] if self.cold else []
        else:
            argv += ["--seed", str(self.seed)]
        if w.readers:
            argv += ["--readers", str(self.readers)]
        if self.duration:
            argv += ["--duration", f"{self.duration:g}"]
        if self.events:
            argv += ["--events", str(self.events)]
        return argv

    def parameters(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# The progress file: <jobs dir>/<job id>.json, written by the workload, read by the job exporter

SCHEMA = 1
STATES = ("running", "finished", "failed")
RUNNING, FINISHED, FAILED = STATES
# Exported by the job exporter, never written in a file: a `running` record whose own process is gone (killed
# outright: SIGKILL, the OOM killer, its node lost or restarted), so that a dead job does not look alive for ever.
LOST = "lost"
EXPORTED_STATES = (*STATES, LOST)
FINAL_STATES = (FINISHED, FAILED, LOST)  # states a job never leaves
PROGRESS_SUFFIX = ".json"
PROGRESS_MAX_BYTES = 64 * 1024  # a progress file is ~500 bytes; anything this big is not one
COUNT_MAX = 2**63 - 1  # integers beyond int64 are not counts (and break exposition)
WORKLOAD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ProgressError(ValueError):
    """A progress file that cannot be used; `reason` is the value of the errors metric's `reason` label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


PROGRESS_ERRORS = ("json", "schema", "field", "read")


@dataclass(frozen=True)
class Progress:
    """One job's record, schema 1. Unknown keys are ignored by parse (a later writer may add some in schema 1)."""

    job_id: str
    workload: str
    state: str
    pid: int
    pid_starttime: int  # field 22 of /proc/<pid>/stat, so a reused pid is never mistaken for the job
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
    format: str | None = None  # the event file's format a job wrote or read (FORMATS); None: no ROOT file
    schema: int = field(default=SCHEMA)

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None or k == "finished_at"}
        return json.dumps(data, sort_keys=True) + "\n"

    @property
    def path_name(self) -> str:
        return self.job_id + PROGRESS_SUFFIX


_INTS = ("pid", "pid_starttime", "events_processed", "events_target", "bytes_read", "bytes_written")
_FLOATS = ("started_at", "updated_at", "cpu_seconds")


def _number(data: Mapping[str, Any], key: str) -> float:
    v = data.get(key)
    try:
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= COUNT_MAX
    except OverflowError:  # an integer too large for a float
        ok = False
    if not ok:
        raise ProgressError("field", f"{key}={str(v)[:40]!r} is not a finite non-negative number")
    return float(v)  # type: ignore[arg-type]


def _count(data: Mapping[str, Any], key: str) -> int:
    v = data.get(key)
    if type(v) is not int or not 0 <= v <= COUNT_MAX:
        raise ProgressError("field", f"{key}={str(v)[:40]!r} is not an integer from 0 to 2^63-1")
    return v


def _string(data: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    v = data.get(key)
    if not isinstance(v, str) or not pattern.fullmatch(v):
        raise ProgressError("field", f"{key}={str(v)[:40]!r} does not match {pattern.pattern}")
    return v


def parse_progress(text: str | bytes) -> Progress:
    """Validate a schema-1 progress file strictly; ProgressError(json|schema|field) otherwise: every known key
    present with its type, numbers finite and in range, finished_at set exactly when the job has ended."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProgressError("json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise ProgressError("json", "not a JSON object")
    if type(data.get("schema")) is not int or data["schema"] != SCHEMA:
        raise ProgressError("schema", f"schema {str(data.get('schema'))[:20]!r}, expected {SCHEMA}")
    state = data.get("state")
    if state not in STATES:
        raise ProgressError("field", f"state={str(state)[:40]!r} is not one of {', '.join(STATES)}")
    finished_at = None if data.get("finished_at") is None else _number(data, "finished_at")
    if (finished_at is None) != (state == RUNNING):
        raise ProgressError("field", f"finished_at={finished_at!r} does not fit state {state}")
    message = data.get("message")
    if message is not None and not isinstance(message, str):
        raise ProgressError("field", "message is not a string")
    fmt = data.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise ProgressError("field", f"format={str(fmt)[:40]!r} is not one of {', '.join(FORMATS)}")
    return Progress(
        job_id=_string(data, "job_id", JOB_ID),
        workload=_string(data, "workload", WORKLOAD_NAME),
        state=str(state),
        finished_at=finished_at,
        message=message,
        score_db12=None if data.get("score_db12") is None else _number(data, "score_db12"),
        format=fmt,
        **{k: _count(data, k) for k in _INTS},
        **{k: _number(data, k) for k in _FLOATS},  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------------------------------
# /proc/<pid>/stat: what the workload writes as pid_starttime and the exporter compares


@dataclass(frozen=True)
class ProcStat:
    utime_ticks: int
    stime_ticks: int
    starttime: int  # clock ticks since boot


_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: int() also takes '٣' and ' 1', str.isdigit() also '²'


def parse_count(text: str) -> int:
    """An unsigned decimal integer in ASCII digits, 0 to COUNT_MAX, as /proc, sacct and virsh print counts;
    ValueError on anything else (a sign, blanks, '_', another script's digits, more than 19 digits)."""
    if _DIGITS.fullmatch(text) is None or int(text) > COUNT_MAX:
        raise ValueError(f"{text[:40]!r} is not an integer from 0 to 2^63-1 in ASCII digits")
    return int(text)


def parse_proc_stat(text: str) -> ProcStat:
    """utime, stime and starttime (fields 14, 15, 22) of /proc/<pid>/stat; comm (field 2) may hold spaces and
    parentheses, so fields are counted from the last ')'. ValueError on anything else."""
    try:
        fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
        values = [parse_count(fields[i]) for i in (11, 12, 19)]
    except (ValueError, IndexError):
        raise ValueError("malformed /proc/<pid>/stat") from None
    return ProcStat(*values)


# /proc/<pid>/io: the storage I/O the workload writes as bytes_read/bytes_written and the exporter reads live


@dataclass(frozen=True)
class ProcIO:
    read_bytes: int
    write_bytes: int


def parse_proc_io(text: str) -> ProcIO:
    """read_bytes and write_bytes (what reached storage, not rchar/wchar) of /proc/<pid>/io; ValueError on
    anything else."""
    fields = {key.strip(): value for key, sep, value in (line.partition(":") for line in text.splitlines()) if sep}
    try:
        values = [parse_count(fields["read_bytes"].strip(" \t")), parse_count(fields["write_bytes"].strip(" \t"))]
    except (KeyError, ValueError):
        raise ValueError("malformed /proc/<pid>/io") from None
    return ProcIO(*values)


# ---------------------------------------------------------------------------------------------------------------
# Metric names


def exporter_up(exporter: str) -> str:
    """1 when the exporter's source (jobs directory, sacct, libvirt) could be read at the last try."""
    return f"magellan_{exporter}_up"


def exporter_scrape_errors(exporter: str) -> str:
    """Counter of the exporter's failures to read its source, label `reason` (every reason present from 0); the
    name without `_total`, as prometheus_client's CounterMetricFamily takes it."""
    return f"magellan_{exporter}_scrape_errors"


# ---------------------------------------------------------------------------------------------------------------
# Dashboards in Grafana: each generated dashboard's tags are DASHBOARD_TAGS and its area; the area is its folder,
# the same one whether `testbed dashboards push` puts it there or roles/grafana provisions it.

DASHBOARD_TAGS = ("magellan", "generated")


def dashboard_folder(uid: str, tags: Sequence[str]) -> tuple[str, str]:
    """(folder uid, folder title) of a generated dashboard: its one tag besides DASHBOARD_TAGS."""
    areas = [t for t in tags if t not in DASHBOARD_TAGS]
    if len(areas) != 1:
        raise ContractError(
            f"dashboard {uid}: tags {list(tags)} name {len(areas)} areas; its folder needs exactly one tag besides "
            f"{' and '.join(DASHBOARD_TAGS)} (dashboards.common.magellan_dashboard's tag)"
        )
    return f"magellan-{areas[0]}", f"Magellan {areas[0]}"


EXPORTERS = ("job", "accounting", "virt", "storage")  # magellan-<name>-exporter; each has exporter_up, scrape_errors

JOB_METRICS: Mapping[str, str] = {  # role -> the job exporter's series (the comparison reads them back)
    "events": "magellan_job_events_processed_total",
    "target": "magellan_job_events_target",
    "cpu": "magellan_job_cpu_seconds_total",
    "wall": "magellan_job_wall_seconds",
    "read": "magellan_job_read_bytes_total",
    "written": "magellan_job_written_bytes_total",
    "state": "magellan_job_state",
    "started": "magellan_job_start_time_seconds",
    "score": "magellan_job_score_db12",
}
JOB_INFO = "magellan_job_info"  # 1 per job, with the per-job labels and `format` (FORMATS; "": no ROOT file)
NODE_PROFILE_CPUS = "magellan_node_profile_cpus"
NODE_PROFILE_READ_BPS = "magellan_node_profile_read_bytes_per_second"
NODE_VIRTUAL_INFO = "magellan_node_virtual_info"
COMPARISON_PREFIX = "magellan_comparison_"
# Role storage_array's catalogue figures of each array (testbed.storage.array_economics), in node_exporter's textfile
# directory of the storage node (STORAGE_CATALOGUE_FILE): label array (its md name, as in magellan_storage_md_info's
# array label), and on ..._info also model, device_class (hdd|ssd|nvme) and level (raid6).
STORAGE_CATALOGUE_FILE = "magellan_storage_arrays.prom"
STORAGE_CATALOGUE: Mapping[str, str] = {
    "info": "magellan_storage_array_catalogue_info",
    "usable": "magellan_storage_array_catalogue_usable_bytes",  # data disks x the model's capacity: a real array's
    "price": "magellan_storage_array_catalogue_price_dollars",  # members and spares at the catalogue's dated price
    "watts": "magellan_storage_array_catalogue_power_watts",  # label state: active | idle
    "failures": "magellan_storage_array_catalogue_failures_per_year",  # members x annualised failure rate
    "replacement": "magellan_storage_array_catalogue_replacement_dollars_per_year",
    "tco": "magellan_storage_array_catalogue_cost_of_ownership_dollars",  # price, energy, replacements over the life
    "life": "magellan_storage_array_catalogue_service_life_years",
}


# ---------------------------------------------------------------------------------------------------------------
# Platforms

BARE_METAL_ACCEL = "none"  # the accel label of a node that is not virtual


def platform(configured: str, accel: str | None) -> str:
    """A node's platform: a virtual node's is the accelerator it really runs on (kvm, tcg, xen: what
    magellan_node_virtual_info reports, what Slurm's by-platform partitions are named after); a bare-metal node's
    is its inventory's testbed_platform."""
    return accel or configured
