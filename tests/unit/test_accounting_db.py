"""The accounting exporter's database collector: MariaDB's USER_STATISTICS as recorded from a real 10.11 server
(tests/fixtures/mariadb/, provenance in its README), the users' default Slurm accounts, bounded numbers, a fake
client that fails in each way, and the golden exposition with the collector on."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporters import accounting
from exporters.accounting import AccountingCollector, DbUsage, Options, parse_default_accounts, parse_user_statistics

FIX = Path(__file__).resolve().parents[1] / "fixtures"
DB = FIX / "mariadb"
STATS = DB / "user-statistics.txt"
ACCOUNTS = DB / "sacctmgr-default-accounts.txt"
SACCT = FIX / "sacct" / "captured-22.05.txt"
SINFO = FIX / "sinfo" / "captured-22.05-busy.txt"
GOLDEN = DB / "golden.prom"
NOW = 1796097903.0
ERRORS = 'magellan_accounting_scrape_errors_total{cluster="magellan",reason="%s"}'
UP = 'magellan_accounting_up{cluster="magellan"}'


def by_user(rows: list[DbUsage]) -> dict[str, DbUsage]:
    return {r.user: r for r in rows}


# --- the parser, on the recordings -----------------------------------------------------------------------------------


def test_the_columns_are_named_once_in_the_order_of_the_fields() -> None:
    assert dataclasses.fields(DbUsage)[0].name == "user"
    assert len(dataclasses.fields(DbUsage)) == len(accounting.DB_COLUMNS)
    assert accounting.DB_QUERY == (
        "SELECT USER, TOTAL_CONNECTIONS, CONCURRENT_CONNECTIONS, BUSY_TIME, CPU_TIME, BYTES_RECEIVED, BYTES_SENT, "
        "ROWS_READ, ROWS_SENT, SELECT_COMMANDS, UPDATE_COMMANDS, OTHER_COMMANDS, ACCESS_DENIED "
        "FROM information_schema.USER_STATISTICS"
    )
    assert (DB / "capture.sh").read_text().count(accounting.DB_QUERY) == 1  # the recordings ran this very query


def test_the_recorded_statistics() -> None:
    rows, problems = parse_user_statistics(STATS.read_text())
    assert problems == []
    users = by_user(rows)
    assert list(users) == ["root", "slurm", "physicist", "theorist"]
    theorist, physicist = users["theorist"], users["physicist"]
    assert (theorist.connections, theorist.select_commands, theorist.update_commands) == (2, 1, 1)
    assert (theorist.rows_read, theorist.rows_sent, theorist.bytes_sent) == (200, 200, 210553)  # the full scan
    assert theorist.access_denied == 2  # the refused UPDATE and the wrong password
    assert theorist.busy_seconds == pytest.approx(0.000308) and theorist.cpu_seconds == pytest.approx(0.000304)
    assert (physicist.connections, physicist.concurrent_connections) == (4, 1)  # its SLEEP(4) is running
    assert (physicist.select_commands, physicist.rows_read, physicist.bytes_received) == (6, 165, 501)
    assert users["slurm"].concurrent_connections == 1  # the query's own connection


def test_right_after_a_restart_the_exporter_sees_its_own_row() -> None:
    rows, problems = parse_user_statistics((DB / "user-statistics-after-restart.txt").read_text())
    assert problems == [] and rows == [DbUsage("slurm", 1, 1, *[0.0] * 10)]


@pytest.mark.parametrize("name", ["user-statistics-no-process.txt", "user-statistics-userstat-off.txt"])
def test_without_process_or_userstat_the_answer_is_empty(name: str) -> None:
    assert (DB / name).read_bytes() == b""
    assert parse_user_statistics("") == ([], [])


def test_odd_user_names_as_the_client_escapes_them() -> None:
    rows, problems = parse_user_statistics((DB / "user-statistics-odd-names.txt").read_text())
    users = by_user(rows)
    assert "back\\slash" in users and "théo" in users  # \\ unescaped; UTF-8 with --default-character-set=utf8mb4
    assert users["physicist"].access_denied == 1  # its query of USER_STATISTICS without PROCESS, refused
    assert sorted(p for _, p in problems) == ["not a user name: 'new\\nline'", "not a user name: 'tab\\there'"]
    assert len(rows) == 6


def test_latin1_output_is_not_utf8() -> None:
    text = (DB / "user-statistics-odd-names-latin1.txt").read_bytes().decode("utf-8", errors="replace")
    rows, problems = parse_user_statistics(text)
    assert "théo" not in by_user(rows) and (3, "not UTF-8") in problems


@pytest.mark.parametrize(
    ("escaped", "value"),
    [("a\\tb", "a\tb"), ("a\\nb", "a\nb"), ("a\\0b", "a\0b"), ("a\\\\tb", "a\\tb"), ("a\\xb", "a\\xb"), ("a\\", "a\\")],
)
def test_unescape_batch(escaped: str, value: str) -> None:
    assert accounting.unescape_batch(escaped) == value


def line(user: str = "alice", **values: str) -> str:
    fields = dict.fromkeys(accounting.DB_COLUMNS[1:], "1")
    fields.update(values)
    return "\t".join([user, *fields.values()])


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("TOTAL_CONNECTIONS", "²"),  # str.isdigit() says yes
        ("BYTES_SENT", "٣"),  # int() takes it, the client never prints it
        ("BYTES_SENT", "9" * 400),
        ("ROWS_READ", "9223372036854775808"),  # 2^63
        ("ROWS_READ", "-1"),
        ("SELECT_COMMANDS", "1.5"),
        ("ACCESS_DENIED", ""),
        ("BUSY_TIME", "nan"),
        ("BUSY_TIME", "inf"),
        ("BUSY_TIME", "1e400"),  # a finite-looking double beyond a float
        ("BUSY_TIME", "1e30"),  # a float, beyond 2^63-1
        ("CPU_TIME", "٣.5"),
        ("CPU_TIME", "9" * 400),
        ("CPU_TIME", "-0.5"),
        ("CPU_TIME", " 1"),
    ],
)
def test_bad_numbers_are_problems_not_exceptions(column: str, value: str) -> None:
    rows, problems = parse_user_statistics("\n".join([line(**{column: value}), line("bob")]))
    assert [r.user for r in rows] == ["bob"]
    assert len(problems) == 1 and problems[0][0] == 1 and column in problems[0][1], problems


def test_doubles_as_the_client_prints_them() -> None:
    rows, _ = parse_user_statistics(line(BUSY_TIME="1e18", CPU_TIME="0.0000001"))
    assert (rows[0].busy_seconds, rows[0].cpu_seconds) == (1e18, 1e-7)


def test_bad_lines_are_problems() -> None:
    text = "\n".join(
        [
            line("tab\\tname"),  # an escaped tab: one field, a name no label should hold
            "alice\t1\t2",  # too few fields
            line("bob") + "\textra",
            line("x" * 129),
            line("carol"),
            line("carol", ROWS_READ="5"),  # a second row of one user: the first is kept
            line("new\x0cpage"),  # a form feed splits no line, and is no printable name
            line(""),  # the anonymous user
        ]
    )
    rows, problems = parse_user_statistics(text)
    assert [r.user for r in rows] == ["carol", ""] and rows[0].rows_read == 1
    assert [n for n, _ in problems] == [1, 2, 3, 4, 6, 7]
    assert problems[1][1] == "3 fields, expected 13" and problems[2][1] == "14 fields, expected 13"


def test_default_accounts() -> None:
    accounts, problems = parse_default_accounts(ACCOUNTS.read_text())
    assert problems == [] and accounts == {"physicist": "atlas", "root": "root", "theorist": "theory"}
    accounts, problems = parse_default_accounts("a|x\nb|\nc\nd|x|y\na|z\na|x\ne f|x\n|x\n\n")
    assert accounts == {"a": "x", "b": ""}
    assert [n for n, _ in problems] == [3, 4, 5, 7, 8]


def test_the_client_command() -> None:
    argv = accounting.database_argv(Options(database="/usr/bin/mariadb", timeout=30))
    assert argv == [
        "/usr/bin/mariadb", "--batch", "--skip-column-names", "--default-character-set=utf8mb4",
        "--connect-timeout=15", "-e", accounting.DB_QUERY,
    ]  # fmt: skip
    argv = accounting.database_argv(Options(database="mariadb", database_defaults_file="/etc/x.cnf", timeout=1))
    assert argv[1] == "--defaults-file=/etc/x.cnf" and "--connect-timeout=1" in argv  # the client wants it first


# --- the collector, with fake programs -------------------------------------------------------------------------------


def fake(tmp_path: Path, name: str, body: str, executable: bool = True) -> str:
    path = tmp_path / name
    path.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/{name}.calls\n{body}\n')
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def options(tmp_path: Path, db_body: str = f"cat {STATS}", sacctmgr_body: str = f"cat {ACCOUNTS}") -> Options:
    return Options(
        sacct=fake(tmp_path, "sacct", f"cat {SACCT}"),
        sinfo=None,
        database=fake(tmp_path, "mariadb", db_body),
        sacctmgr=fake(tmp_path, "sacctmgr", sacctmgr_body),
    )


def scrape(collector: AccountingCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def polled(opts: Options) -> AccountingCollector:
    collector = AccountingCollector(opts, clock=lambda: NOW)
    collector.poll()
    return collector


def series(user: str, account: str, extra: str = "") -> str:
    return f'{{account="{account}",cluster="magellan",{extra}user="{user}"}}'


def test_the_database_figures_per_user_and_default_account(tmp_path: Path) -> None:
    collector = polled(options(tmp_path))
    text = scrape(collector)
    assert f"magellan_accounting_db_bytes_sent_total{series('theorist', 'theory')} 210553.0" in text
    assert f"magellan_accounting_db_rows_read_total{series('physicist', 'atlas')} 165.0" in text
    update = series("theorist", "theory", 'kind="update",')
    assert f"magellan_accounting_db_commands_total{update} 1.0" in text
    assert f"magellan_accounting_db_concurrent_connections{series('slurm', '')} 1.0" in text  # no Slurm user
    assert f"magellan_accounting_db_access_denied_total{series('theorist', 'theory')} 2.0" in text
    assert 'magellan_accounting_db_users{cluster="magellan"} 4.0' in text
    for reason in (*accounting.DB_REASONS, *accounting.SACCTMGR_REASONS):
        assert f"{ERRORS % reason} 0.0" in text
    assert (tmp_path / "sacctmgr.calls").read_text() == "--noheader --parsable2 show user format=User,DefaultAccount\n"
    assert (tmp_path / "mariadb.calls").read_text().startswith("--batch --skip-column-names")


def test_the_collector_is_off_by_default(tmp_path: Path) -> None:
    opts = dataclasses.replace(options(tmp_path), database=None)
    text = scrape(polled(opts))
    assert "magellan_accounting_db_" not in text and 'reason="db_' not in text and 'reason="sacctmgr_' not in text
    assert not (tmp_path / "sacctmgr.calls").exists() and not (tmp_path / "mariadb.calls").exists()


ACCESS_DENIED = (DB / "stderr-access-denied.txt").read_text().strip()
NO_SERVER = (DB / "stderr-no-server.txt").read_text().strip()


@pytest.mark.parametrize(
    ("body", "reason", "hint"),
    [
        (None, "not_found", "install mariadb-client or set --database.client"),
        ("not executable", "exec", "cannot run"),
        ("sleep 5", "timeout", "took longer than 0.5 s"),
        ("yes 'x' | head -c 3000000", "too_large", "raise --sacct.max-bytes"),
        (f'echo "{ACCESS_DENIED}" >&2; exit 1', "exit_status", "the options of an account with PROCESS"),
        (f'echo "{NO_SERVER}" >&2; exit 1', "exit_status", "start the MariaDB server"),
        ("echo 'ERROR 1109 (42S02): Unknown table USER_STATISTICS' >&2; exit 1", "exit_status", "must be MariaDB"),
        ("echo 'ERROR 2013 (HY000): Lost connection' >&2; exit 1", "exit_status", "run the same query by hand"),
    ],
)
def test_a_failed_query_drops_the_rows_and_says_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, body: str | None, reason: str, hint: str
) -> None:
    collector = polled(options(tmp_path))
    assert "magellan_accounting_db_rows_read_total{" in scrape(collector)
    if body is None:
        collector.options.database = str(tmp_path / "missing")
    else:
        collector.options.database = fake(tmp_path, "bad-mariadb", body, executable=reason != "exec")
    collector.options.max_bytes, collector.options.timeout = 1_000_000, 0.5
    with caplog.at_level(logging.ERROR, logger="magellan.accounting_exporter"):
        collector.poll()
    text = scrape(collector)
    assert f"{ERRORS % ('db_' + reason)} 1.0" in text
    assert "magellan_accounting_db_rows_read_total{" not in text  # not served stale
    assert 'magellan_accounting_db_users{cluster="magellan"} 0.0' in text
    assert f"{UP} 1.0" in text  # sacct's: the jobs' figures are still up
    assert any(hint in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_unusable_rows_are_counted_and_the_rest_served(tmp_path: Path) -> None:
    body = f"cat {STATS}; printf 'mallory\\t\\342\\201\\271\\t1\\t1\\t1\\t1\\t1\\t1\\t1\\t1\\t1\\t1\\t1\\n'"
    text = scrape(polled(options(tmp_path, db_body=body)))
    assert f"{ERRORS % 'db_parse'} 1.0" in text
    assert "mallory" not in text and f"magellan_accounting_db_rows_read_total{series('physicist', 'atlas')}" in text


def test_sacctmgr_failing_keeps_the_last_accounts_and_none_means_no_rows(tmp_path: Path) -> None:
    collector = polled(options(tmp_path, sacctmgr_body="exit 1"))
    text = scrape(collector)
    assert f"{ERRORS % 'sacctmgr_exit_status'} 1.0" in text
    assert "magellan_accounting_db_rows_read_total{" not in text  # no account to give them: not served as ""
    collector.options.sacctmgr = fake(tmp_path, "good-sacctmgr", f"cat {ACCOUNTS}")
    collector.poll()
    assert f"magellan_accounting_db_rows_read_total{series('physicist', 'atlas')} 165.0" in scrape(collector)
    collector.options.sacctmgr = fake(tmp_path, "bad-sacctmgr", "echo 'physicist|atlas|x'; exit 0")
    collector.poll()
    text = scrape(collector)
    assert f"{ERRORS % 'sacctmgr_parse'} 1.0" in text
    assert f"magellan_accounting_db_rows_read_total{series('theorist', 'theory')} 200.0" not in text  # replaced
    collector.options.sacctmgr = str(tmp_path / "missing")
    collector.poll()
    text = scrape(collector)
    assert f"{ERRORS % 'sacctmgr_not_found'} 1.0" in text
    assert f"magellan_accounting_db_rows_read_total{series('theorist', '')} 200.0" in text  # the last good: empty


def test_an_empty_table_is_warned_about_once_and_is_no_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = DB / "user-statistics-no-process.txt"
    collector = polled(options(tmp_path, db_body=f"cat {empty}"))
    with caplog.at_level(logging.WARNING, logger="magellan.accounting_exporter"):
        collector.poll()
        collector.poll()
        collector.options.database = fake(tmp_path, "good-mariadb", f"cat {STATS}")
        collector.poll()
        collector.options.database = fake(tmp_path, "empty-again", f"cat {empty}")
        collector.poll()
    text = scrape(collector)
    assert 'magellan_accounting_db_users{cluster="magellan"} 0.0' in text
    assert all(f"{ERRORS % r} 0.0" in text for r in accounting.DB_REASONS)
    warnings = [r.getMessage() for r in caplog.records if "USER_STATISTICS is empty" in r.getMessage()]
    assert len(warnings) == 2  # at the first empty answer, and again at the first after rows came back
    assert "userstat = 1" in warnings[0] and "GRANT PROCESS" in warnings[0]


def test_flags() -> None:
    parse = accounting._parser().parse_args
    assert accounting.options_of(parse([])).database is None
    opts = accounting.options_of(
        parse(["--collector.database", "--database.defaults-file=/etc/magellan/db.cnf", "--sacctmgr.path=/x/s"])
    )
    assert (opts.database, opts.database_defaults_file, opts.sacctmgr) == ("mariadb", "/etc/magellan/db.cnf", "/x/s")
    opts = accounting.options_of(
        parse(["--collector.database", "--database.client=/opt/mysql", "--no-collector.nodes"])
    )
    assert (opts.database, opts.database_defaults_file, opts.sinfo) == ("/opt/mysql", None, None)
    assert accounting.options_of(parse(["--database.client=/opt/mysql"])).database is None  # off unless asked


def test_golden_exposition_with_the_database_collector(tmp_path: Path) -> None:
    opts = dataclasses.replace(options(tmp_path), sinfo=fake(tmp_path, "sinfo", f"cat {SINFO}"))
    collector = polled(opts)
    collector.duration = collector.db_duration = 0.0  # the two run times: the only figures that vary
    text = scrape(collector)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed: review it, then rerun with UPDATE_GOLDEN=1 to accept"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: make bootstrap installs Debian's prometheus package")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
