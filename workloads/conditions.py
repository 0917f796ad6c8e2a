"""The conditions database: calibrations an analysis job reads for each run it meets, as ATLAS jobs read theirs
(COOL/CREST: a global tag, folders, intervals of validity over runs, channels) from a remote database.

One owner for the database's shape: the schema and its content (`sql`, which roles/conditions_db loads into
MariaDB) and the queries a job makes (`Conditions`) are both here.

- `iov`: one row per tag, folder, channel and interval of validity (IOV) [run_first, run_last], holding a value.
  The analysis reads folder JES (jet energy scale) and MET (missing-ET scale), channel 0, and scales each event's
  leading jet pT and missing ET by its run's values before the selection.
- `tags`: the global tags, each with its description; a job names one (the option file's [magellan] tag, or
  --conditions-tag).
- An event's run is contract.FIRST_RUN + its number // contract.EVENTS_PER_RUN: a file of 5000 events spans five
  runs.

A job connects once with the options of a MySQL option file (contract.CONDITIONS_FILE: [client] host, port, user,
password, database), checks its tag at start (one query) and asks for an IOV only when an event's run is outside
the IOVs it holds (one query per IOV met, each returning the IOV's rows of every folder). The server accounts the
queries, rows and bytes per database user (MariaDB's user statistics, read by the accounting exporter): each site
user has an account of their own.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from magellan import contract
from workloads.progress import JobError

FOLDERS = ("JES", "MET")  # folder -> what the analysis scales: the leading jet's pT, the missing ET
DEFAULT_TAG = "MAGELLAN-COND-2026-01"
CONNECT_TIMEOUT = 10  # seconds to reach the server; a query's read also times out (READ_TIMEOUT)
READ_TIMEOUT = 30
OPTION_GROUP = "magellan"  # the option file's own group: tag = <global tag>
TAG = "[A-Za-z0-9_.-]{1,64}"

SCHEMA = """\
CREATE TABLE IF NOT EXISTS tags (
  tag VARCHAR(64) NOT NULL PRIMARY KEY,
  description VARCHAR(255) NOT NULL
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS iov (
  tag VARCHAR(64) NOT NULL,
  folder VARCHAR(64) NOT NULL,
  channel SMALLINT UNSIGNED NOT NULL,
  run_first INT UNSIGNED NOT NULL,
  run_last INT UNSIGNED NOT NULL,
  value DOUBLE NOT NULL,
  PRIMARY KEY (tag, folder, channel, run_first),
  KEY by_run (tag, run_first, run_last)
) ENGINE=InnoDB;
"""
# Every folder of the IOV holding a run: the job's one query per IOV.
IOV_QUERY = (
    "SELECT folder, channel, run_first, run_last, value FROM iov WHERE tag = %s AND run_first <= %s AND run_last >= %s"
)
TAG_QUERY = "SELECT description FROM tags WHERE tag = %s"


class ConditionsError(JobError):
    """The conditions cannot be read: the message says which file, server, tag or run, and what to do."""


def value(tag: str, folder: str, run_first: int) -> float:
    """The calibration of an IOV: within ±2 % of 1, drawn from a hash of its keys (the same on every load)."""
    digest = hashlib.sha256(f"{tag}/{folder}/{run_first}".encode()).digest()
    return round(0.98 + 0.04 * int.from_bytes(digest[:4], "big") / 2**32, 6)


def sql(tag: str, first_run: int, runs: int, runs_per_iov: int, description: str = "") -> str:
    """The schema and the tag's content: IOVs of `runs_per_iov` runs from `first_run`, covering `runs` runs, a row
    per folder. REPLACE rows and CREATE ... IF NOT EXISTS: loading it again changes nothing."""
    if not _valid_tag(tag):
        raise ValueError(f"tag {tag!r}: 1-64 characters of A-Z a-z 0-9 _ . -")
    if first_run < 0 or runs < 1 or runs_per_iov < 1 or first_run + runs > 2**32:
        raise ValueError("first_run >= 0, runs >= 1 and runs_per_iov >= 1, within 32-bit run numbers")
    about = description or f"runs {first_run}-{first_run + runs - 1}, IOVs of {runs_per_iov} runs"
    lines = [SCHEMA, f"REPLACE INTO tags VALUES ({_quote(tag)}, {_quote(about)});"]
    rows = [
        f"({_quote(tag)}, {_quote(folder)}, 0, {start}, {min(start + runs_per_iov, first_run + runs) - 1}, "
        f"{value(tag, folder, start)!r})"
        for start in range(first_run, first_run + runs, runs_per_iov)
        for folder in FOLDERS
    ]
    for i in range(0, len(rows), 500):  # statements of bounded size
        lines.append("REPLACE INTO iov VALUES\n" + ",\n".join(rows[i : i + 500]) + ";")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    """A SQL string literal of text without quotes or backslashes (tags, folders and descriptions are ours)."""
    if "'" in text or "\\" in text:
        raise ValueError(f"{text!r}: no quotes or backslashes")
    return f"'{text}'"


def _valid_tag(tag: str) -> bool:
    return re.fullmatch(TAG, tag) is not None


@dataclass(frozen=True)
class Options:
    """What the option file gives: where to connect (for messages) and the site's global tag."""

    path: str
    host: str
    user: str
    tag: str


def read_options(path: str, tag: str | None = None) -> Options:
    """The option file at `path` (~ expanded); ConditionsError naming the file and what is wrong."""
    full = os.path.expanduser(path)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(full, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        raise ConditionsError(
            f"conditions option file {full}: missing; the site writes it for its users (roles/conditions_db), "
            "or give --conditions FILE"
        ) from None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConditionsError(f"conditions option file {full}: unreadable ({exc})") from None
    client = parser["client"] if parser.has_section("client") else {}
    missing = [k for k in ("host", "user", "password", "database") if not client.get(k)]
    if missing:
        raise ConditionsError(f"conditions option file {full}: [client] lacks {', '.join(missing)}")
    chosen = tag or str(parser.get(OPTION_GROUP, "tag", fallback=DEFAULT_TAG))
    if not _valid_tag(chosen):
        raise ConditionsError(f"conditions tag {chosen!r} (from {full} or --conditions-tag): 1-64 of A-Za-z0-9_.-")
    return Options(full, client["host"], client["user"], chosen)


@dataclass
class Conditions:
    """A job's connection to the conditions database and the IOVs it has read."""

    options: Options
    queries: int = 0
    rows: int = 0
    _iovs: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)
    _db: Any = None

    @classmethod
    def open(cls, path: str, tag: str | None = None) -> Conditions:
        """Connect with the option file's [client] options and check the tag (one query)."""
        import pymysql  # noqa: PLC0415 - only jobs that read conditions need it

        options = read_options(path, tag)
        where = f"{options.user}@{options.host}"
        try:
            db = pymysql.connect(
                read_default_file=options.path,
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                autocommit=True,
            )
        except pymysql.MySQLError as exc:
            raise ConditionsError(f"conditions database {where} (options {options.path}): {_error(exc)}") from None
        self = cls(options, _db=db)
        rows = self._query(TAG_QUERY, (options.tag,))
        if not rows:
            raise ConditionsError(f"conditions tag {options.tag!r} is not in the database at {where}")
        return self

    def _query(self, query: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        import pymysql  # noqa: PLC0415

        try:
            with self._db.cursor() as cursor:
                cursor.execute(query, args)
                rows = list(cursor.fetchall())
        except pymysql.MySQLError as exc:
            raise ConditionsError(
                f"conditions database {self.options.user}@{self.options.host}: {_error(exc)}"
            ) from None
        self.queries += 1
        self.rows += len(rows)
        return rows

    def calibration(self, run: int) -> dict[str, float]:
        """Each folder's value (channel 0) for `run`; the IOV's rows are asked for once."""
        for first, last, values in self._iovs:
            if first <= run <= last:
                return values
        rows = self._query(IOV_QUERY, (self.options.tag, run, run))
        values = {str(folder): float(v) for folder, channel, _first, _last, v in rows if int(channel) == 0}
        missing = [f for f in FOLDERS if f not in values]
        if missing:
            raise ConditionsError(
                f"conditions tag {self.options.tag!r} has no IOV of {', '.join(missing)} for run {run}"
            )
        first = max(int(r[2]) for r in rows)
        last = min(int(r[3]) for r in rows)
        self._iovs.append((first, last, values))
        return values

    def scales(self, numbers: Any) -> Iterator[tuple[Any, dict[str, float]]]:
        """(mask, calibration) for each run among the event numbers (a numpy array)."""
        import numpy as np  # noqa: PLC0415

        runs = contract.FIRST_RUN + np.asarray(numbers, dtype=np.int64) // contract.EVENTS_PER_RUN
        for run in np.unique(runs):
            yield runs == run, self.calibration(int(run))

    def summary(self) -> dict[str, object]:
        return {"conditions_tag": self.options.tag, "conditions_queries": self.queries, "conditions_rows": self.rows}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _error(exc: BaseException) -> str:
    """A PyMySQL error as its code and message: (1045, "Access denied for user ...") -> error 1045: Access denied"""
    if len(exc.args) == 2:
        return f"error {exc.args[0]}: {exc.args[1]}"
    return f"{type(exc).__name__}: {exc}"
