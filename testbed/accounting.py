"""`testbed accounting report`: what each account (project) and user used over a time window — jobs, CPU-hours,
wall-hours, the largest memory peak, bytes read and written — from Slurm's accounting, as a table and a CSV file.

The figures are sacct's, run on the site's accounting host (the first host of group accounting_exporter) through
Ansible, and parsed and summed as the accounting exporter does (exporters.accounting): one owner for what a sacct
line means. A job counts when it ended in a final state and sacct returns it for the window (it ran in the
window: a job that started before --since counts whole). Storage and database use are not in Slurm's accounting;
they are not reported here yet (issue 20).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from rich.table import Table

from exporters.accounting import Accounting, JobRecord, parse_sacct, sacct_argv
from testbed.inventory import Inventory, InventoryError, ad_hoc
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


COLUMNS = [f.name for f in fields(Usage)]  # the CSV's header, in base units
HEADERS = ["account", "user", "jobs", "not completed", "CPU-hours", "wall-hours", "max RSS", "read", "written"]


def table(rows: list[Usage], title: str) -> Table:
    t = Table(title=title)
    for col in HEADERS:
        t.add_column(col, justify="left" if col in ("account", "user") else "right")
    for r in rows:
        t.add_row(
            r.account, r.user, str(r.jobs), str(r.not_completed), f"{r.cpu_hours:.3f}", f"{r.wall_hours:.3f}",
            f"{r.max_rss_bytes / 2**20:.1f} MiB", f"{r.read_bytes / 1e6:.1f} MB", f"{r.written_bytes / 1e6:.1f} MB",
        )  # fmt: skip
    return t


def write_csv(rows: list[Usage], path: Path) -> None:
    """The rows as CSV (base units: hours, bytes), written under a temporary name and renamed."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(astuple(r) for r in rows)
    atomic(path, lambda p: p.write_text(text.getvalue()))
