"""workloads/conditions.py: the conditions database's content, the option file, and the queries a job makes (against
a stand-in connection here; against the site's MariaDB in tests/integration/test_cluster.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from magellan import contract
from workloads import conditions
from workloads.conditions import Conditions, ConditionsError, Options, read_options

OPTIONS = """[client]
host = 10.213.7.10
port = 3306
user = physicist
password = secret
database = conditions

[magellan]
tag = T1
"""


def test_sql_covers_the_runs_with_one_row_per_folder_and_iov() -> None:
    text = conditions.sql("T1", 100, 12, 5)
    rows = re.findall(r"\('T1', '(\w+)', 0, (\d+), (\d+), ([0-9.]+)\)", text)
    assert [(f, int(a), int(b)) for f, a, b, _ in rows] == [
        (folder, first, last) for first, last in ((100, 104), (105, 109), (110, 111)) for folder in conditions.FOLDERS
    ]
    assert all(0.98 <= float(v) <= 1.02 for *_, v in rows)
    assert "CREATE TABLE IF NOT EXISTS iov" in text and "REPLACE INTO tags VALUES ('T1'" in text
    assert conditions.sql("T1", 100, 12, 5) == text  # loading it again changes nothing


def test_large_tags_are_loaded_in_bounded_statements() -> None:
    assert conditions.sql("T1", 0, 3000, 1).count("REPLACE INTO iov VALUES") == 12  # 6000 rows, 500 a statement


@pytest.mark.parametrize(
    ("args", "message"),
    [(("a'b", 0, 1, 1), "tag"), (("T", -1, 1, 1), "first_run"), (("T", 0, 0, 1), "runs"), (("T", 0, 1, 0), "runs")],
)
def test_sql_refuses_bad_parameters(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        conditions.sql(*args)


def test_options_name_the_server_user_and_tag(tmp_path: Path) -> None:
    (tmp_path / "c.cnf").write_text(OPTIONS)
    assert read_options(str(tmp_path / "c.cnf")) == Options(str(tmp_path / "c.cnf"), "10.213.7.10", "physicist", "T1")
    assert read_options(str(tmp_path / "c.cnf"), "T2").tag == "T2"
    (tmp_path / "d.cnf").write_text(OPTIONS.split("[magellan]", maxsplit=1)[0])
    assert read_options(str(tmp_path / "d.cnf")).tag == conditions.DEFAULT_TAG


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "missing; the site writes it"),
        ("[client]\nhost = h\n", "lacks user, password, database"),
        ("no section", "unreadable"),
        (OPTIONS.replace("tag = T1", "tag = bad tag"), "conditions tag 'bad tag'"),
    ],
)
def test_bad_option_files_are_named(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "c.cnf"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConditionsError, match=message) as caught:
        read_options(str(path))
    assert str(path) in str(caught.value)


class FakeCursor:
    def __init__(self, db: FakeDB) -> None:
        self.db = db
        self.rows: list[tuple[Any, ...]] = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, query: str, args: tuple[Any, ...]) -> None:
        self.db.queries.append((query, args))
        tag, run, _ = args
        self.rows = [r for r in self.db.iovs if r[0] == tag and r[3] <= run <= r[4]]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [r[1:] for r in self.rows]


class FakeDB:
    """The iov table as a list of (tag, folder, channel, run_first, run_last, value)."""

    def __init__(self, iovs: list[tuple[Any, ...]]) -> None:
        self.iovs = iovs
        self.queries: list[tuple[str, tuple[Any, ...]]] = []

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)


def test_each_iov_is_asked_for_once_and_scales_its_runs() -> None:
    first = contract.FIRST_RUN
    db = FakeDB(
        [("T", "JES", 0, first, first + 1, 1.01), ("T", "MET", 0, first, first + 1, 0.99),
         ("T", "JES", 0, first + 2, first + 9, 0.98), ("T", "MET", 0, first + 2, first + 9, 1.02)]
    )  # fmt: skip
    c = Conditions(Options("f", "h", "u", "T"), _db=db)
    numbers = np.arange(0, 4 * contract.EVENTS_PER_RUN, 500)  # runs first .. first+3
    scales = {int(numbers[mask][0]) // contract.EVENTS_PER_RUN: cal for mask, cal in c.scales(numbers)}
    assert scales == {0: {"JES": 1.01, "MET": 0.99}, 1: {"JES": 1.01, "MET": 0.99}, 2: {"JES": 0.98, "MET": 1.02},
                      3: {"JES": 0.98, "MET": 1.02}}  # fmt: skip
    assert len(db.queries) == 2
    assert c.summary() == {"conditions_tag": "T", "conditions_queries": 2, "conditions_rows": 4}


def test_a_run_without_conditions_fails_naming_it() -> None:
    c = Conditions(Options("f", "h", "u", "T"), _db=FakeDB([("T", "JES", 0, 1, 5, 1.0)]))
    with pytest.raises(ConditionsError, match="tag 'T' has no IOV of MET for run 3"):
        c.calibration(3)


def test_an_unreachable_server_is_named(tmp_path: Path) -> None:
    (tmp_path / "c.cnf").write_text(OPTIONS.replace("10.213.7.10", "127.0.0.1").replace("3306", "9"))
    with pytest.raises(ConditionsError, match=r"conditions database physicist@127.0.0.1 .*error 2003"):
        Conditions.open(str(tmp_path / "c.cnf"))
