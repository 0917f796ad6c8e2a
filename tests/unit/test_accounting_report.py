"""`testbed accounting report`: per account and user, from sacct output captured on the testbed's cluster, parsed
as the accounting exporter parses it, and the database columns from Prometheus (a fake one, an unreachable one and
a real empty one); the table, the CSV, and clear errors."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporters.accounting import DB_BYTES_SENT, DB_COMMANDS, DB_ROWS_READ, parse_sacct
from testbed import accounting, cli
from testbed.inventory import Inventory
from testbed.prom import PromClient, PromError, Sample
from tests.conftest import free_port

CAPTURED = Path(__file__).resolve().parents[1] / "fixtures" / "sacct" / "captured-22.05.txt"
SITE = Inventory(Path("site"), {"accounting_exporter": ["head"]}, {})


def test_usage_per_account_and_user_from_a_capture() -> None:
    records, problems = parse_sacct(CAPTURED.read_text())
    assert problems == []
    rows = {(r.account, r.user): r for r in accounting.usage(records)}
    assert set(rows) == {("atlas", "physicist"), ("root", "root")}
    atlas, root = rows["atlas", "physicist"], rows["root", "root"]
    assert (atlas.jobs, atlas.not_completed) == (3, 1)  # 6, 7 completed, 8 failed
    assert (root.jobs, root.not_completed) == (6, 3)  # 1, 2, 5 completed; 3, 4 failed; 9 cancelled; 10 running: out
    assert root.cpu_hours == pytest.approx((0.228 + 0.220 + 0.034 + 0.198 + 12.414 + 0.215) / 3600)
    assert root.wall_hours == pytest.approx((1 + 0 + 0 + 0 + 12 + 17) / 3600)
    assert root.max_rss_bytes == 120332 * 1024 and root.read_bytes == 212082582 + 2338684


def test_the_report_and_its_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asked: list[tuple[float, float]] = []

    def sacct(inventory: Inventory, start: float, end: float) -> str:
        asked.append((start, end))
        return CAPTURED.read_text() + "garbage line\n"

    rows, unusable = accounting.report(SITE, 1000.0, 2000.0, sacct=sacct)
    assert asked == [(1000.0, 2000.0)] and unusable == 1 and len(rows) == 2
    out = tmp_path / "usage.csv"
    accounting.write_csv(rows, out)
    lines = list(csv.reader(out.read_text().splitlines()))
    assert lines[0] == accounting.COLUMNS and [line[:4] for line in lines[1:]] == [
        ["atlas", "physicist", "3", "1"],
        ["root", "root", "6", "3"],
    ]
    assert not list(tmp_path.glob(".*partial"))


def test_report_arguments_say_what_is_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["accounting", "report", "--since", "last week"])
    assert "'last week' is neither a duration (24h, 7d) nor an ISO 8601 time" in capsys.readouterr().err
    argv = ["accounting", "report", "--since", "2026-12-04T10:00:00Z", "--until", "2026-12-04T09:00:00Z"]
    assert cli.main(argv) == 2
    assert "is not after --since" in capsys.readouterr().out


def test_a_site_without_an_accounting_host_is_named() -> None:
    with pytest.raises(accounting.InventoryError, match="no host in group accounting_exporter"):
        accounting.run_sacct(Inventory(Path("site"), {}, {}), 0.0, 1.0)


# --- the database columns (issue 20) --------------------------------------------------------------------------------


class FakeProm:
    """Answers each database query with the samples given for its metric, and records what was asked."""

    base_url = "http://prometheus.test:9090"

    def __init__(self, answers: dict[str, list[Sample]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, float | None]] = []

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        self.asked.append((expr, at))
        return next((samples for metric, samples in self.answers.items() if f"({metric}[" in expr), [])


def sample(account: str, user: str, value: float) -> Sample:
    return Sample({"account": account, "user": user}, value, 2000.0)


# The exporter labels a database user with its default Slurm account: theorist's is theory, where sacct shows no job
# in this window; slurm (the exporter's own MariaDB user) is no Slurm user.
DB_ANSWERS = {
    DB_COMMANDS: [sample("atlas", "physicist", 6.0), sample("theory", "theorist", 2.0), sample("", "slurm", 40.0)],
    DB_ROWS_READ: [sample("atlas", "physicist", 165.0), sample("theory", "theorist", 200.0)],
    DB_BYTES_SENT: [sample("atlas", "physicist", 16170.0), sample("theory", "theorist", 210553.0)],
}


def sacct_rows() -> list[accounting.Usage]:
    return accounting.usage(parse_sacct(CAPTURED.read_text())[0])


def test_the_database_queries() -> None:
    assert accounting.database_query(DB_COMMANDS, 1000.0, 4600.4) == (
        "sum by (account, user) (increase(magellan_accounting_db_commands_total[3600s]))"
    )
    prom = FakeProm(DB_ANSWERS)
    db, why = accounting.database_usage(lambda: prom, 1000.0, 4600.0)
    assert why == "" and db is not None
    assert [at for _, at in prom.asked] == [4600.0] * 3  # at the window's end, over its length
    assert db["theory", "theorist"] == {"db_queries": 2.0, "db_rows_read": 200.0, "db_bytes_sent": 210553.0}
    assert db["", "slurm"] == {"db_queries": 40.0}


def test_rows_merge_by_account_and_user() -> None:
    db, _ = accounting.database_usage(lambda: FakeProm(DB_ANSWERS), 1000.0, 2000.0)
    rows = {(r.account, r.user): r for r in accounting.merge(sacct_rows(), db)}
    assert list(rows) == [("", "slurm"), ("atlas", "physicist"), ("root", "root"), ("theory", "theorist")]
    physicist, theorist, root = rows["atlas", "physicist"], rows["theory", "theorist"], rows["root", "root"]
    assert (physicist.jobs, physicist.db_queries, physicist.db_rows_read, physicist.db_bytes_sent) == (3, 6, 165, 16170)
    assert (theorist.jobs, theorist.cpu_hours, theorist.db_queries, theorist.db_bytes_sent) == (0, 0.0, 2, 210553)
    assert (root.jobs, root.db_queries, root.db_rows_read) == (6, 0.0, 0.0)  # Prometheus answered: none
    assert rows["", "slurm"].db_rows_read == 0.0


def test_unreachable_prometheus_leaves_the_database_columns_unknown(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    db, why = accounting.database_usage(lambda: PromClient(url, timeout=2), 1000.0, 2000.0)
    assert db is None and f"Prometheus at {url} is not reachable" in why
    rows = accounting.merge(sacct_rows(), db)
    assert [(r.account, r.user, r.db_queries) for r in rows] == [("atlas", "physicist", None), ("root", "root", None)]
    out = tmp_path / "usage.csv"
    accounting.write_csv(rows, out)
    lines = list(csv.reader(out.read_text().splitlines()))
    assert lines[0][-3:] == ["db_queries", "db_rows_read", "db_bytes_sent"]
    assert lines[1][:3] == ["atlas", "physicist", "3"] and lines[1][-3:] == ["", "", ""]


def failing(exc: Exception) -> Callable[[], accounting.Querier]:
    def connect() -> accounting.Querier:
        raise exc

    return connect


@pytest.mark.parametrize(
    ("connect", "why"),
    [
        (lambda: FakeProm({}), "is the accounting exporter's database collector on (accounting_exporter_database)?"),
        (failing(PromError("the Prometheus CA file x is not a readable PEM certificate")), "PEM"),
        (failing(accounting.InventoryError("needs exactly one host in group 'prometheus'")), "one host"),
        (lambda: FakeProm({DB_COMMANDS: [sample("atlas", "physicist", float("nan"))]}), "has no"),
    ],
)
def test_why_the_database_columns_are_unknown(connect: Callable[[], accounting.Querier], why: str) -> None:
    db, message = accounting.database_usage(connect, 1000.0, 2000.0)
    assert db is None and why in message


def report_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, list[list[str]]]:
    """`testbed accounting report` on the captured sacct output, without Ansible."""
    monkeypatch.setattr(cli, "load_inventory", lambda path: SITE)
    monkeypatch.setattr(cli.accounting, "report", lambda inv, start, end: (sacct_rows(), 0))
    out = tmp_path / "usage.csv"
    code = cli.main(["accounting", "report", "--since", "24h", "--csv", str(out), *extra])
    return code, capsys.readouterr().out, list(csv.reader(out.read_text().splitlines()))


def test_the_report_with_the_database_columns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prom = FakeProm(DB_ANSWERS)
    monkeypatch.setattr(cli, "prometheus_client", lambda args, inventory, timeout: prom)
    code, text, lines = report_cli(monkeypatch, tmp_path, capsys)
    assert code == 0 and "DB queries" in text and "n/a" not in text and "database columns" not in text
    assert "(none)" in text and "0.2 MB" in text  # slurm's row; theorist's 210553 bytes sent
    assert [line[:3] + line[-3:] for line in lines[1:]] == [
        ["", "slurm", "0", "40.0", "0.0", "0.0"],
        ["atlas", "physicist", "3", "6.0", "165.0", "16170.0"],
        ["root", "root", "6", "0.0", "0.0", "0.0"],
        ["theory", "theorist", "0", "2.0", "200.0", "210553.0"],
    ]


def test_the_report_without_prometheus_says_why_once_and_keeps_the_jobs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, text, lines = report_cli(monkeypatch, tmp_path, capsys, "--prometheus-url", url)
    assert code == 0 and "Traceback" not in text
    assert [line for line in text.splitlines() if "database columns n/a" in line] == [
        f"database columns n/a: Prometheus at {url} is not reachable: [Errno 111] Connection refused"
    ]
    assert text.count("n/a") == 1 + 2 * 3  # the warning, and 3 columns of the 2 rows
    assert [line[:3] + line[-3:] for line in lines[1:]] == [
        ["atlas", "physicist", "3", "", "", ""],
        ["root", "root", "6", "", "", ""],
    ]


def test_a_real_prometheus_takes_the_queries(live_prometheus: Callable[[list[str]], PromClient]) -> None:
    prom = live_prometheus([])
    now = time.time()
    db, why = accounting.database_usage(lambda: prom, now - 3600, now)
    assert db is None and "has no magellan_accounting_db_commands_total" in why  # accepted, and nothing there
