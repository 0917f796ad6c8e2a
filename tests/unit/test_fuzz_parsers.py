"""Every parser of what the exporters read, fuzzed: arbitrary text, and near-valid input with one part mutated.

Zero escapes: only the parser's documented error type comes out, and whatever it returns holds finite numbers in
range (0 to 2^63-1). Each test is kept to a second or two (max_examples, no deadline: the machine may be busy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporters import accounting, virt
from magellan import contract

FIX = Path(__file__).resolve().parents[1] / "fixtures"
PROGRESS = json.loads((FIX / "job" / "jobs" / "sim-finished.json").read_text())
SACCT = (FIX / "sacct" / "captured-22.05.txt").read_text().splitlines()
DOMSTATS = (FIX / "virsh" / "domstats-running.txt").read_text().splitlines()
PROC_STAT = (FIX / "job" / "proc" / "22405" / "stat").read_text()
PROC_IO = (FIX / "job" / "proc" / "22405" / "io").read_text()
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that reaches the corners: any code point but surrogates, plus the look-alikes of digits and numbers.
TRICKY = st.sampled_from(["²", "٣", "１", "9" * 400, "nan", "inf", "-1", "+1", "1e400", "1_0", " 1", "0x1", ""])
TEXT = st.text(max_size=200) | TRICKY
# A sacct or virsh value near a valid one: a tricky number with a unit, a time's tail or a TRES name before it.
NEAR = (
    TEXT
    | st.builds(str.__add__, TRICKY, st.sampled_from(["K", "G", "P", ":00", ":00:00.5", "-00:00:00"]))
    | (st.builds(str.__add__, st.sampled_from(["fs/disk=", "cpu=1,fs/disk="]), TRICKY))
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.just(10**400),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def in_range(value: object) -> bool:
    """A figure a parser may hand on: None, a string, or a finite number from 0 to 2^63-1 (checked recursively)."""
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return math.isfinite(value) and 0 <= value <= contract.COUNT_MAX
    if isinstance(value, dict):
        return all(in_range(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(in_range(v) for v in value)
    if dataclasses.is_dataclass(value):
        return all(in_range(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


# --- the contract: progress file, /proc ---------------------------------------------------------------------------


def check_progress(text: str | bytes) -> None:
    try:
        p = contract.parse_progress(text)
    except contract.ProgressError as exc:
        assert exc.reason in contract.PROGRESS_ERRORS
        return
    assert in_range(dataclasses.replace(p, message=None))
    assert contract.parse_progress(p.to_json()) == p  # what passes is what the writer could have written


@FAST
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_parse_progress_arbitrary(text: str | bytes) -> None:
    check_progress(text)


@FAST
@given(st.sampled_from(sorted(PROGRESS)), JSON)
def test_parse_progress_one_field_replaced(key: str, value: Any) -> None:
    check_progress(json.dumps({**PROGRESS, key: value}))


@FAST
@given(st.sampled_from(sorted(PROGRESS)), TRICKY.filter(bool))
def test_parse_progress_one_field_raw(key: str, raw: str) -> None:
    """A value written as raw JSON text: 1e400, a 400-digit integer, nan (json takes NaN/Infinity, not nan)."""
    check_progress(json.dumps({**PROGRESS, key: "@"}).replace('"@"', raw))


@FAST
@given(TEXT | st.builds(lambda i, v: _replace_field(PROC_STAT, i, v), st.integers(0, 60), TEXT))
def test_parse_proc_stat(text: str) -> None:
    try:
        assert in_range(contract.parse_proc_stat(text))
    except ValueError as exc:
        assert "malformed" in str(exc)


@FAST
@given(TEXT | st.builds(lambda k, v: PROC_IO.replace(f"{k}: ", f"{k}: {v}"), st.sampled_from(["read_bytes",
       "write_bytes", "rchar"]), TEXT))  # fmt: skip
def test_parse_proc_io(text: str) -> None:
    try:
        assert in_range(contract.parse_proc_io(text))
    except ValueError as exc:
        assert "malformed" in str(exc)


@FAST
@given(TEXT)
def test_parse_count(text: str) -> None:
    try:
        n = contract.parse_count(text)
    except ValueError:
        return
    assert text.isascii() and in_range(n) and str(n) == text.lstrip("0").rjust(1, "0")


def _replace_field(text: str, index: int, value: str, sep: str = " ") -> str:
    fields = text.split(sep)
    fields[index % len(fields)] = value
    return sep.join(fields)


# --- accounting: sacct ----------------------------------------------------------------------------------------------


@FAST
@given(TEXT)
def test_accounting_value_parsers(text: str) -> None:
    for parse in (accounting.parse_size, accounting.parse_cpu_time, accounting.parse_elapsed):
        with contextlib.suppress(accounting.ParseError):
            assert in_range(parse(text))


def check_sacct(text: str) -> None:
    records, problems = accounting.parse_sacct(text)
    assert all(in_range(r) for r in records)
    assert all(isinstance(n, int) and isinstance(p, str) for n, p in problems)
    acc = accounting.Accounting()
    acc.update(records, 100.0, 0.0)
    assert all(in_range(dataclasses.replace(t, jobs=Counter())) for t in acc.totals.values())


@FAST
@given(st.text(max_size=400))
def test_parse_sacct_arbitrary(text: str) -> None:
    check_sacct(text)


@FAST
@given(st.integers(0, len(SACCT) - 1), st.integers(0, len(accounting.FIELDS) - 1), NEAR)
def test_parse_sacct_one_field_mutated(line: int, column: int, value: str) -> None:
    lines = list(SACCT)
    lines[line] = _replace_field(lines[line], column, value, "|")
    check_sacct("\n".join(lines))


SINFO = (FIX / "sinfo" / "captured-22.05-busy.txt").read_text().splitlines()


def check_sinfo(text: str) -> None:
    nodes, problems = accounting.parse_sinfo(text)
    assert all(isinstance(n, int) and isinstance(p, str) for n, p in problems)
    for n in nodes:  # what passes is a label value Prometheus takes: printable ASCII of bounded length
        assert all(v.isascii() and v.isprintable() and 0 < len(v) <= 400 for v in (n.node, n.partition, n.state))


@FAST
@given(st.text(max_size=400))
def test_parse_sinfo_arbitrary(text: str) -> None:
    check_sinfo(text)


@FAST
@given(st.integers(0, len(SINFO) - 1), st.integers(0, 2), NEAR | st.sampled_from(["idle*", "down~#", "mix+drain", "*"]))
def test_parse_sinfo_one_field_mutated(line: int, column: int, value: str) -> None:
    lines = list(SINFO)
    lines[line] = _replace_field(lines[line], column, value, "|")
    check_sinfo("\n".join(lines))


# --- accounting: the database's USER_STATISTICS (mariadb --batch) and sacctmgr's default accounts ------------------

DB_STATS = (FIX / "mariadb" / "user-statistics.txt").read_text().splitlines()
# A value near a valid one of the client's: an escape, a double with an exponent, a control character.
DB_NEAR = NEAR | st.sampled_from(["\\t", "\\", "a\\nb", "\\0", "1e20", "1e-7", "1e400", "0.5", "\x0c", "\r", "\t"])


def check_user_statistics(text: str) -> None:
    rows, problems = accounting.parse_user_statistics(text)
    assert all(in_range(r) for r in rows)
    assert all(isinstance(n, int) and isinstance(p, str) for n, p in problems)
    users = [r.user for r in rows]
    assert len(set(users)) == len(users)  # one series per user: a second row would be a duplicate sample
    assert all(u.isprintable() and len(u) <= accounting.DB_USER_MAX for u in users)


@FAST
@given(st.text(max_size=400))
def test_parse_user_statistics_arbitrary(text: str) -> None:
    check_user_statistics(text)


@FAST
@given(st.integers(0, len(DB_STATS) - 1), st.integers(0, len(accounting.DB_COLUMNS) - 1), DB_NEAR)
def test_parse_user_statistics_one_field_mutated(line: int, column: int, value: str) -> None:
    lines = list(DB_STATS)
    lines[line] = _replace_field(lines[line], column, value, "\t")
    check_user_statistics("\n".join(lines))


@FAST
@given(st.text(max_size=400) | st.builds("{}|{}".format, TEXT, TEXT))
def test_parse_default_accounts(text: str) -> None:
    accounts, problems = accounting.parse_default_accounts(text)
    assert all(isinstance(n, int) and isinstance(p, str) for n, p in problems)
    for user, account in accounts.items():  # label values: printable ASCII of bounded length
        assert user.isascii() and user.isprintable() and 0 < len(user) <= 200
        assert account.isascii() and account.isprintable() and len(account) <= 200


# --- virt: virsh domstats and dumpxml -------------------------------------------------------------------------------


def check_domstats(text: str) -> None:
    domains, problems = virt.parse_domstats(text)
    assert all(in_range(d) for d in domains)
    assert all(isinstance(n, int) and isinstance(p, str) for n, p in problems)
    assert all(isinstance(d.state_name, str) for d in domains)


@FAST
@given(st.text(max_size=400))
def test_parse_domstats_arbitrary(text: str) -> None:
    check_domstats(text)


@FAST
@given(st.integers(0, len(DOMSTATS) - 1), NEAR, st.booleans())
def test_parse_domstats_one_value_mutated(line: int, value: str, key_too: bool) -> None:
    lines = list(DOMSTATS)
    key, sep, _ = lines[line].partition("=")
    lines[line] = (f"  {value}" if key_too else key) + sep + value if sep else value
    check_domstats("\n".join(lines))


@FAST
@given(st.text(max_size=200) | st.builds("<domain type='{}'><name>{}</name></domain>".format, TEXT, TEXT))
def test_parse_domain_xml(text: str) -> None:
    try:
        xml = virt.parse_domain_xml(text)
    except virt.ParseError:
        return
    assert xml.type and isinstance(xml.name, str)
