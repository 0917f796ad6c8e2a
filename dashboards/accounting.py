""" "Accounting": what the batch system's users, accounts (projects) and partitions used — CPU, wall time, memory,
storage I/O and jobs by final state — from Slurm's accounting (magellan-accounting-exporter, sacct), and what they
asked of the conditions database (its --collector.database, MariaDB's user statistics)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards.common import RATE, magellan_dashboard, selector, stat_panel, target, timeseries_panel
from exporters.accounting import DB_BYTES_SENT, DB_COMMANDS, DB_ROWS_READ
from magellan import contract

UID = "magellan-accounting"
FILTERS = (("account", "Account"), ("user", "User"), ("partition", "Partition"))
SELECTOR = selector(FILTERS)
PREFIX = "magellan_accounting_"
UP = contract.exporter_up("accounting")
ERRORS = contract.exporter_scrape_errors("accounting") + "_total"
BY = "account, user, partition"
LEGEND = "{{user}} in {{account}} ({{partition}})"
# The database's series have no partition: a session does not know its job, and `account` is the user's default one.
DB_SELECTOR = selector(FILTERS[:2])
DB_BY = "account, user"
DB_LEGEND = "{{user}} in {{account}}"
DB_NOTE = (
    " Per MariaDB user and the user's default Slurm account (a database session does not know its job; a user that is "
    "no Slurm user has an empty account). The partition filter does not apply."
)


def used(metric: str, by: str = BY) -> str:
    """What the finished jobs used over the dashboard's time range, per `by`."""
    return f"sum by ({by}) (increase({PREFIX}{metric}{{{SELECTOR}}}[$__range]))"


def total(metric: str, by: str = BY) -> str:
    """What the finished jobs used since the exporter started counting, per `by`."""
    return f"sum by ({by}) ({PREFIX}{metric}{{{SELECTOR}}})"


def per_second(metric: str, by: str = BY) -> str:
    """How fast finished jobs add to a counter, per `by` (sacct's figures arrive when each job ends)."""
    return f"sum by ({by}) (rate({PREFIX}{metric}{{{SELECTOR}}}[{RATE}]))"


def build() -> dashboard.Dashboard:
    d = magellan_dashboard(
        "Accounting",
        UID,
        "Slurm accounting per account (project), user and partition: CPU time, wall time, memory, storage I/O and "
        "jobs of finished jobs, as sacct reports them (magellan-accounting-exporter on the accounting host).",
        "accounting",
        f"{PREFIX}cpu_seconds_total",
        FILTERS,
        since="now-24h",
    )
    d = d.with_row(dashboard.Row("Usage in the time range"))
    for title, description, unit, expr in (
        (
            "CPU time per account",
            "CPU time (user + system) of the jobs of each account that finished in the time range.",
            "s",
            used("cpu_seconds_total", "account"),
        ),
        (
            "Wall time per account",
            "Elapsed time of the account's jobs that finished in the time range, summed over its jobs.",
            "s",
            used("wall_seconds_total", "account"),
        ),
        (
            "Storage read per account",
            "Bytes the account's finished jobs read from file systems (Slurm's fs/disk TRES).",
            "bytes",
            used("read_bytes_total", "account"),
        ),
        (
            "Jobs per account",
            "Jobs of each account that finished in the time range, whatever their final state.",
            "short",
            used("jobs_total", "account"),
        ),
    ):
        d = d.with_panel(stat_panel(title, description, unit, [target(expr, "{{account}}")]))
    d = d.with_row(dashboard.Row("Per user"))
    d = d.with_panel(
        timeseries_panel(
            "CPU seconds per second",
            "CPU time finished jobs add per second, per user, account and partition: about how many cores their "
            "jobs kept busy. Jobs are counted when they end, so a long job shows as a step.",
            "short",
            [target(per_second("cpu_seconds_total"), LEGEND)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "CPU efficiency",
            "CPU time over wall time of all the finished jobs the exporter has counted, per user, account and "
            "partition: 1 = every job kept one core busy all the time; low values are jobs waiting for I/O or "
            "sleeping (a multi-core job can exceed 1).",
            "percentunit",
            [target(f"{total('cpu_seconds_total')} / ({total('wall_seconds_total')} > 0)", LEGEND)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Storage I/O",
            "Bytes per second finished jobs read (A) and wrote (B) through file systems, per user and account.",
            "Bps",
            [
                target(per_second("read_bytes_total"), LEGEND + " read", "A"),
                target(per_second("written_bytes_total"), LEGEND + " written", "B"),
            ],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Peak memory",
            "The largest resident memory (MaxRSS) of any step of the user's finished jobs: what a job needed at "
            "most, to size memory requests by.",
            "bytes",
            [target(f"max by ({BY}) ({PREFIX}memory_peak_bytes{{{SELECTOR}}})", LEGEND)],
        )
    )
    d = d.with_row(dashboard.Row("Conditions database access"))
    for title, description, unit, metric in (
        (
            "Database queries",
            "Statements (select, update and other) the conditions database ran for each user in the time range.",
            "short",
            DB_COMMANDS,
        ),
        ("Database rows read", "Rows the conditions database read for each user's statements.", "short", DB_ROWS_READ),
        ("Database bytes sent", "Bytes the conditions database sent to each user.", "bytes", DB_BYTES_SENT),
    ):
        expr = f"sum by ({DB_BY}) (increase({metric}{{{DB_SELECTOR}}}[$__range]))"
        d = d.with_panel(stat_panel(title, description + DB_NOTE, unit, [target(expr, DB_LEGEND)], width=8))
    d = d.with_panel(
        timeseries_panel(
            "Database queries per second",
            "Statements per second the conditions database ran for each user (A), and statements refused for lack "
            "of a privilege or logins refused (B). The figures restart from 0 when the database server restarts, "
            "which the rates take as a counter reset." + DB_NOTE,
            "reqps",
            [
                target(f"sum by ({DB_BY}) (rate({DB_COMMANDS}{{{DB_SELECTOR}}}[{RATE}]))", DB_LEGEND, "A"),
                target(
                    f"sum by ({DB_BY}) (rate({PREFIX}db_access_denied_total{{{DB_SELECTOR}}}[{RATE}]))",
                    DB_LEGEND + " refused",
                    "B",
                ),
            ],
            width=24,
        )
    )
    d = d.with_row(dashboard.Row("Jobs"))
    d = d.with_panel(
        timeseries_panel(
            "Finished jobs by state",
            "Jobs that finished in the time range by final state (COMPLETED, FAILED, TIMEOUT, NODE_FAIL, …), per "
            "account and partition: a rise of FAILED or NODE_FAIL is a problem of the site or of a workflow.",
            "short",
            [target(used("jobs_total", "account, partition, state"), "{{state}}: {{account}} ({{partition}})")],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Accounting exporter",
            "1 while the exporter's last sacct run succeeded (A); sacct failures per second by reason (B: timeout, "
            "exit status, too much output, unparsable lines; db_* of the database's statistics, sacctmgr_* of the "
            "users' default accounts). While sacct fails, the last figures are kept; while the database query "
            "fails, its figures are absent.",
            "short",
            [
                target(f"{UP}", "up on {{node}}", "A"),
                target(f"sum by (node, reason) (rate({ERRORS}[{RATE}]))", "{{reason}} on {{node}}", "B"),
            ],
        )
    )
    return d
