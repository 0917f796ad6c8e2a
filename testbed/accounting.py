"""`testbed accounting report`: what each account (project) and user used over a time window — jobs, CPU-hours,
wall-hours, the largest memory peak, bytes read and written, and the conditions database's queries, rows read and
bytes sent — from Slurm's accounting and the site's Prometheus, as a table and a CSV file.

The job figures are sacct's, run on the site's accounting host (the first host of group accounting_exporter)
through Ansible, and parsed and summed as the accounting exporter does (exporters.accounting): one owner for what a
sacct line means. A job counts when it ended in a final state and sacct returns it for the window (it ran in the
window: a job that started before --since counts whole).

The database figures are the accounting exporter's (--collector.database, MariaDB's USER_STATISTICS) as
Prometheus kept them: the increase of each counter over the window, per account and user (`increase()` at the
window's end, over its length: extrapolated to the window's edges, and blind to what a user did before the first
sample of its series, such as the first queries after the database server or the exporter started). A database
session does not know its job, so its `account` is the user's default Slurm account: a user may have database
figures under an account where sacct shows no job of theirs (a row with 0 jobs), and a database user that is no
Slurm user has the account "". When Prometheus cannot be asked or holds no such series, the database columns are
n/a (empty in the CSV) and the report says why; the job figures stand. Storage use is not reported yet (issue 20).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path
from typing import Protocol

from rich.table import Table

from exporters.accounting import (
    DB_BYTES_SENT,
    DB_COMMANDS,
    DB_ROWS_READ,
    Accounting,
    JobRecord,
    parse_sacct,
    sacct_argv,
)
from testbed.inventory import Inventory, InventoryError, ad_hoc
from testbed.prom import PromError, Sample
from testbed.report import atomic

GROUP = "accounting_exporter"  # the host that runs sacct for the exporter runs it for the report too


class AccountingError(RuntimeError):
    """sacct could not be run on the site, or gave nothing to use; the message says where and why."""


@dataclass(frozen=True)
class Usage:
    account: str
    user: str
    jobs: int
    not_completed: int  # jobs that ended failed, cancelled, timed out, out of memory, node failure ...
    cpu_hours: float
    wall_hours: float
    max_rss_bytes: float
    read_bytes: float
    written_bytes: float
    # The conditions database's figures under the user's default account (None: not known, see database_usage).
    db_queries: float | None = None
    db_rows_read: float | None = None
    db_bytes_sent: float | None = None


def usage(records: list[JobRecord]) -> list[Usage]:
    """Per account and user, sorted: the finished jobs' figures as the exporter sums them (exporters.accounting
    .Accounting, per user, account and partition), summed over the partitions (memory: the largest peak)."""
    summed = Accounting()
    summed.update(records, now=0.0, window_start=0.0)
    rows: dict[tuple[str, str], Usage] = {}
    for (user, account, _partition), t in summed.totals.items():
        jobs = sum(t.jobs.values())
        part = Usage(account, user, jobs, jobs - t.jobs["COMPLETED"], t.cpu_seconds / 3600, t.wall_seconds / 3600,
                     t.memory_peak_bytes, t.read_bytes, t.written_bytes)  # fmt: skip
        old = rows.get((account, user))
        rows[account, user] = part if old is None else Usage(
            account, user, old.jobs + part.jobs, old.not_completed + part.not_completed,
            old.cpu_hours + part.cpu_hours, old.wall_hours + part.wall_hours,
            max(old.max_rss_bytes, part.max_rss_bytes), old.read_bytes + part.read_bytes,
            old.written_bytes + part.written_bytes,
        )  # fmt: skip
    return [rows[k] for k in sorted(rows)]


def run_sacct(inventory: Inventory, start: float, end: float) -> str:
    """sacct's output for the window (unix times), run on the site's accounting host through Ansible. The window
    goes to sacct relative to now (now-N), so that the host's time zone does not matter."""
    hosts = inventory.groups.get(GROUP) or []
    if not hosts:
        raise InventoryError(f"inventory {inventory.path} has no host in group {GROUP}: nowhere to run sacct")
    host = hosts[0]
    now = time.time()
    argv = " ".join(sacct_argv("sacct", f"now-{max(0, int(now - start))}", f"now-{max(0, int(now - end))}"))
    result, stderr = ad_hoc(str(inventory.path), host, "ansible.builtin.command", argv)
    if result is None:
        raise AccountingError(f"sacct on {host}: no result ({stderr[-500:]})")
    if result.get("rc", 1) != 0 or result.get("unreachable"):
        why = (result.get("stderr") or result.get("msg") or "").strip()[:500]
        raise AccountingError(f"sacct on {host} failed: {why}")
    return str(result["stdout"])


def report(
    inventory: Inventory, start: float, end: float, sacct: Callable[[Inventory, float, float], str] = run_sacct
) -> tuple[list[Usage], int]:
    """The usage of the window and the number of sacct lines that could not be used."""
    records, problems = parse_sacct(sacct(inventory, start, end))
    return usage(records), len(problems)


class Querier(Protocol):
    """What the database columns need of a Prometheus client (testbed.prom.PromClient)."""

    base_url: str

    def query(self, expr: str, at: float | None = None) -> list[Sample]: ...


# Each database column of Usage and the exporter's counter it sums (all the kinds of statement for the queries).
DB_SERIES = {"db_queries": DB_COMMANDS, "db_rows_read": DB_ROWS_READ, "db_bytes_sent": DB_BYTES_SENT}
DbFigures = dict[tuple[str, str], dict[str, float]]  # (account, user) -> column -> figure


def database_query(metric: str, start: float, end: float) -> str:
    """PromQL for what the window added to `metric` per account and user, asked at the window's end."""
    return f"sum by (account, user) (increase({metric}[{max(1, round(end - start))}s]))"


def database_usage(connect: Callable[[], Querier], start: float, end: float) -> tuple[DbFigures | None, str]:
    """The database figures of the window per (account, user), or None and why they are not known: Prometheus not
    reachable (or not configured), or without any of the series in the window (the collector is off)."""
    try:
        prom = connect()
        answers = {column: prom.query(database_query(metric, start, end), at=end) for column, metric in
                   DB_SERIES.items()}  # fmt: skip
    except (PromError, InventoryError) as exc:
        return None, str(exc)
    figures: DbFigures = {}
    for column, samples in answers.items():
        for sample in samples:
            if math.isfinite(sample.value):
                key = (sample.labels.get("account", ""), sample.labels.get("user", ""))
                figures.setdefault(key, {})[column] = sample.value
    if not figures:
        return None, (
            f"Prometheus at {prom.base_url} has no {', '.join(DB_SERIES.values())} in this window: is the accounting "
            "exporter's database collector on (accounting_exporter_database)?"
        )
    return figures, ""


def merge(rows: list[Usage], db: DbFigures | None) -> list[Usage]:
    """The job rows with the database figures (0 where Prometheus has none for a row), plus a row of 0 jobs for
    each account and user that only the database saw; unchanged (None: n/a) when db is None. Sorted."""
    if db is None:
        return rows
    merged = {(r.account, r.user): r for r in rows}
    for account, user in db.keys() - merged.keys():
        merged[account, user] = Usage(account, user, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    out = []
    for key, r in sorted(merged.items()):
        got = db.get(key, {})
        out.append(replace(r, db_queries=got.get("db_queries", 0.0), db_rows_read=got.get("db_rows_read", 0.0),
                            db_bytes_sent=got.get("db_bytes_sent", 0.0)))  # fmt: skip
    return out


COLUMNS = [f.name for f in fields(Usage)]  # the CSV's header, in base units
HEADERS = ["account", "user", "jobs", "not completed", "CPU-hours", "wall-hours", "max RSS", "read", "written",
           "DB queries", "DB rows read", "DB sent"]  # fmt: skip


def _figure(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e6:.1f} MB" if unit == "MB" else f"{value:.0f}"


def table(rows: list[Usage], title: str) -> Table:
    t = Table(title=title)
    for col in HEADERS:
        t.add_column(col, justify="left" if col in ("account", "user") else "right")
    for r in rows:
        t.add_row(
            r.account or "(none)", r.user, str(r.jobs), str(r.not_completed), f"{r.cpu_hours:.3f}",
            f"{r.wall_hours:.3f}", f"{r.max_rss_bytes / 2**20:.1f} MiB", f"{r.read_bytes / 1e6:.1f} MB",
            f"{r.written_bytes / 1e6:.1f} MB", _figure(r.db_queries), _figure(r.db_rows_read),
            _figure(r.db_bytes_sent, "MB"),
        )  # fmt: skip
    return t


def write_csv(rows: list[Usage], path: Path) -> None:
    """The rows as CSV (base units: hours, bytes; a database figure that is not known is empty), written under a
    temporary name and renamed."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(astuple(r) for r in rows)
    atomic(path, lambda p: p.write_text(text.getvalue()))
