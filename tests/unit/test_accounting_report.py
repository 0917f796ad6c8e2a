"""`testbed accounting report`: per account and user, from sacct output captured on the testbed's cluster, parsed
as the accounting exporter parses it; the table, the CSV, and clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from exporters.accounting import parse_sacct
from testbed import accounting, cli
from testbed.inventory import Inventory

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
