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
import subprocess
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from rich.table import Table

from exporters.accounting import JobRecord, parse_sacct, sacct_argv
from testbed.inventory import Inventory, InventoryError, ansible_command, ansible_env, play_result
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
    """Per account and user, sorted, the finished jobs' figures summed (memory: the largest peak)."""
    sums: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if not r.final:
            continue
        s = sums.setdefault((r.account, r.user), [0, 0, 0.0, 0.0, 0.0, 0.0, 0.0])
        s[0] += 1
        s[1] += r.state != "COMPLETED"
        s[2] += r.cpu_seconds / 3600
        s[3] += r.elapsed_seconds / 3600
        s[4] = max(s[4], r.max_rss_bytes)
        s[5] += r.read_bytes
        s[6] += r.written_bytes
    return [Usage(a, u, int(s[0]), int(s[1]), *s[2:]) for (a, u), s in sorted(sums.items())]


def run_sacct(inventory: Inventory, start: float, end: float) -> str:
    """sacct's output for the window (unix times), run on the site's accounting host through Ansible. The window
    goes to sacct relative to now (now-N), so that the host's time zone does not matter."""
    hosts = inventory.groups.get(GROUP) or []
    if not hosts:
        raise InventoryError(f"inventory {inventory.path} has no host in group {GROUP}: nowhere to run sacct")
    host = hosts[0]
    now = time.time()
    argv = " ".join(sacct_argv("sacct", f"now-{max(0, int(now - start))}", f"now-{max(0, int(now - end))}"))
    cmd = [ansible_command("ansible"), "-i", str(inventory.path), host, "-m", "ansible.builtin.command", "-a", argv]
    env = ansible_env(json_result=True, one_task=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    try:
        result = play_result(proc.stdout)["plays"][0]["tasks"][0]["hosts"][host]
    except (ValueError, KeyError, IndexError):
        why = proc.stderr[-500:]
        raise AccountingError(f"sacct on {host}: no result (ansible exit {proc.returncode}): {why}") from None
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
