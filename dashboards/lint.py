"""Dashboard checks over the generated JSON, without Grafana or Prometheus: the rules of grafana/dashboard-linter
that fit our dashboards (templated datasource, `$__rate_interval` windows), plus units, descriptions, and every
metric a query names being one an exporter of ours really emits (or a documented external one).

`lint(dashboard, known)` is pure; `emitted_metrics()` reads the exporters' golden expositions and runs the exporters
that have none on their recorded inputs; `python -m dashboards.lint` checks dashboards/generated/.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from exporters import accounting
from testbed.model import Comparison, NodeResult
from testbed.results import exposition
from testbed.storage import DeviceModel, array_economics, catalogue_exposition

REPO = Path(__file__).resolve().parent.parent
GENERATED = Path(__file__).resolve().parent / "generated"
FIXTURES = REPO / "tests" / "fixtures"

DATASOURCE_UIDS = ("$datasource", "${datasource}")
RATE_FUNCTIONS = ("rate", "irate", "increase")
RATE_WINDOWS = ("$__rate_interval", "${__rate_interval}")
# increase() over the whole time range is a total, not a rate (dashboard-linter flags it; a false positive).
RANGE_WINDOWS = ("$__range", "${__range}")

# Series a dashboard may use that no exporter of this project emits, each with where it comes from. Exact names,
# not prefixes: a misspelt node_* name must fail like a misspelt magellan_* one.
EXTERNAL: Mapping[str, str] = {
    "up": "Prometheus: 1/0 per scrape target at its last scrape (synthetic, every target)",
    "node_cpu_seconds_total": "node_exporter 1.5 cpu collector (roles/node_exporter): CPU seconds per core and mode",
    "node_disk_read_bytes_total": "node_exporter 1.5 diskstats collector (roles/node_exporter): bytes read per device",
    "scrape_duration_seconds": "Prometheus: how long each target's last scrape took (synthetic, every target)",
    "prometheus_tsdb_head_series": "Prometheus 2.42 (Debian's package) about itself: series in the head block",
    "prometheus_tsdb_head_samples_appended_total": "Prometheus 2.42 about itself: samples appended to the head",
}

# ---------------------------------------------------------------------------------------------------------------
# PromQL: just enough of a lexer to find metric names and range windows


class PromQLError(ValueError):
    """A query the extractor cannot read (the message says where)."""


@dataclass(frozen=True)
class Token:
    kind: str  # id, num, str, var, range, op, (, ), {, }, ","
    text: str
    pos: int


_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:[a-zA-Z]+\d*)*")
_RANGE = re.compile(r"\[((?:\[\[\w+\]\]|[^\[\]])*)\]")
_OPERATORS = ("==", "!=", "=~", "!~", ">=", "<=", "+", "-", "*", "/", "%", "^", "=", "<", ">", "@", ":")
# Keywords followed by a parenthesised list of label names; the aggregation operators (`sum by (x) (...)`: not
# always followed by "("); the other keywords. PromQL's keywords are case-insensitive.
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATIONS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
                 "count_values", "limitk", "limit_ratio"}  # fmt: skip
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", *_AGGREGATIONS}


def _string_end(expr: str, start: int) -> int:
    quote = expr[start]
    i = start + 1
    while i < len(expr):
        if expr[i] == "\\" and quote != "`":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    raise PromQLError(f"unterminated string at character {start}")


def tokens(expr: str) -> list[Token]:
    """The tokens of a PromQL expression with Grafana variables ($x, ${x}, [[x]]) as tokens of their own."""
    out: list[Token] = []
    i = 0
    while i < len(expr):
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == "#":  # a comment, to the end of the line
            end = expr.find("\n", i)
            i = len(expr) if end < 0 else end
        elif c in "\"'`":
            end = _string_end(expr, i)
            out.append(Token("str", expr[i + 1 : end - 1], i))
            i = end
        elif m := _VARIABLE.match(expr, i):
            out.append(Token("var", m.group(), i))
            i = m.end()
        elif c == "[":
            if not (m := _RANGE.match(expr, i)):
                raise PromQLError(f"unbalanced '[' at character {i}")
            out.append(Token("range", m.group(1).strip(), i))
            i = m.end()
        elif m := _IDENT.match(expr, i):
            out.append(Token("id", m.group(), i))
            i = m.end()
        elif m := _NUMBER.match(expr, i):
            out.append(Token("num", m.group(), i))
            i = m.end()
        elif c in "(){},":
            out.append(Token(c, c, i))
            i += 1
        elif op := next((o for o in _OPERATORS if expr.startswith(o, i)), None):
            out.append(Token("op", op, i))
            i += len(op)
        else:
            raise PromQLError(f"unexpected {c!r} at character {i}")
        if out and out[-1].pos + len(out[-1].text) == i and i < len(expr) and out[-1].kind in ("id", "var"):
            glued = expr[i] == "$" or (out[-1].kind == "var" and (expr[i].isalnum() or expr[i] == "_"))
            if glued:
                raise PromQLError(f"a name built from a variable at character {out[-1].pos}: give the metric's name")
    _check_balance(out)
    return out


def _check_balance(toks: list[Token]) -> None:
    stack: list[Token] = []
    for t in toks:
        if t.kind in "({":
            stack.append(t)
        elif t.kind in ")}" and (not stack or stack.pop().kind != {")": "(", "}": "{"}[t.kind]):
            raise PromQLError(f"unbalanced {t.text!r} at character {t.pos}")
    if stack:
        raise PromQLError(f"unclosed {stack[-1].text!r} at character {stack[-1].pos}")


def _closing(toks: list[Token], i: int) -> int:
    """Index of the token that closes the bracket at toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].kind in "({":
            depth += 1
        elif toks[j].kind in ")}":
            depth -= 1
            if depth == 0:
                return j
    raise PromQLError(f"unclosed {toks[i].text!r} at character {toks[i].pos}")  # _check_balance rules this out


def _followed_by_paren(toks: list[Token], i: int) -> bool:
    return i + 1 < len(toks) and toks[i + 1].kind == "("


def _matcher_names(toks: list[Token], start: int, end: int) -> Iterator[str]:
    """Metric names inside {…}: `__name__="x"`, or a quoted name on its own (`{"x", job="y"}`)."""
    i = start + 1
    while i < end:
        t = toks[i]
        if t.kind in ("id", "str") and i + 2 < end and toks[i + 1].kind == "op":
            if t.text == "__name__" and toks[i + 1].text == "=" and toks[i + 2].kind == "str":
                yield toks[i + 2].text
            i += 3
        elif t.kind == "str":
            yield t.text
            i += 1
        else:
            i += 1


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects; not label names or values, functions, keywords, durations,
    numbers or Grafana variables."""
    toks = tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "{":
            end = _closing(toks, i)
            names.update(_matcher_names(toks, i, end))
            i = end + 1
            continue
        if t.kind == "id":
            word = t.text.lower()
            if word in _LABEL_LISTS:
                i = _closing(toks, i + 1) + 1 if _followed_by_paren(toks, i) else i + 1
                continue
            if word not in _KEYWORDS and not _followed_by_paren(toks, i):  # a name followed by ( is a function
                names.add(t.text)
        i += 1
    return names


def rate_windows(expr: str) -> list[tuple[str, str]]:
    """(function, window) of every rate()/irate()/increase() call: the range its argument selects."""
    toks = tokens(expr)
    out = []
    for i, t in enumerate(toks):
        if t.kind == "id" and t.text in RATE_FUNCTIONS and _followed_by_paren(toks, i):
            end = _closing(toks, i + 1)
            depth = 0
            for u in toks[i + 2 : end]:
                depth += {"(": 1, ")": -1}.get(u.kind, 0)
                if u.kind == "range" and depth == 0:
                    out.append((t.text, u.text))
    return out


def variable_query_expr(query: str) -> str:
    """The PromQL inside a Grafana Prometheus variable query: label_values(<expr>, label), query_result(<expr>);
    "" for label_values(label) and label_names()."""
    query = query.strip()
    if m := re.fullmatch(r"label_values\((.*),\s*\w+\s*\)", query, re.S):
        return m.group(1)
    if m := re.fullmatch(r"query_result\((.*)\)", query, re.S):
        return m.group(1)
    if re.fullmatch(r"label_values\(\s*\w+\s*\)|label_names\(\s*\)", query):
        return ""
    return query


# ---------------------------------------------------------------------------------------------------------------
# What our exporters emit


_TYPE = re.compile(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)", re.M)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", re.M)
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


def exposition_metrics(text: str) -> set[str]:
    """The series names of a Prometheus text exposition (also a Jinja template of one): each sample's name, and the
    names each `# TYPE` line promises (histograms: _bucket, _sum, _count)."""
    names = set(_SAMPLE.findall(text))
    for name, kind in _TYPE.findall(text):
        names.update(name + s for s in _SUFFIXES.get(kind, ("",)))
    return names


def _accounting_exposition() -> str:
    """The accounting exporter's exposition on the recorded sacct and sinfo output (Slurm 22.05): it has no golden
    file."""
    captured = (FIXTURES / "sacct" / "captured-22.05.txt").read_text()
    records, _problems = accounting.parse_sacct(captured)
    nodes, _problems = accounting.parse_sinfo((FIXTURES / "sinfo" / "captured-22.05-busy.txt").read_text())
    collector = accounting.AccountingCollector(accounting.Options(sacct="/nonexistent/sacct", cluster="magellan"))
    with collector.lock:
        collector.accounting.update(records, now=1.0, window_start=0.0)
        collector.health.read(True, 1.0)
        collector.nodes = nodes
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def _comparison_exposition() -> str:
    """What `testbed compare` publishes for a comparison of two nodes."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    nodes = [
        NodeResult("a", "bare-metal", "job-a", 1.0, 1000, 10.0, 9.9, 100.0),
        NodeResult("b", "bare-metal-halfcpu", "job-b", 0.5, 500, 10.0, 5.0, 50.0),
    ]
    return exposition(Comparison("simulate", {"run_id": "cmp-lint"}, "a", t0, t0, nodes), tolerance_pct=15.0)


def _catalogue_exposition() -> str:
    """What role storage_array writes to node_exporter's textfile directory for a priced array (its filter plugin
    calls testbed.storage.catalogue_exposition; the figures here are made up, the names are the point)."""
    model = DeviceModel("lint-hdd", "hdd", 16.0, 9.0, 5.0, 1.0, 15.0, "2026-01")
    return catalogue_exposition("storage1", "unknown", [("hdd", array_economics(6, 4, 0, model, 5.0, 0.25))])


def emitted_metrics() -> dict[str, str]:
    """Every series name our side emits -> where it was found."""
    sources = {
        "tests/fixtures/job/golden.prom": (FIXTURES / "job" / "golden.prom").read_text(),
        "tests/fixtures/virsh/golden.prom": (FIXTURES / "virsh" / "golden.prom").read_text(),
        "tests/fixtures/storage/golden-procfs.prom": (FIXTURES / "storage" / "golden-procfs.prom").read_text(),
        "roles/node_exporter/templates/magellan_profile.prom.j2": (
            REPO / "roles" / "node_exporter" / "templates" / "magellan_profile.prom.j2"
        ).read_text(),
        # With the database collector on (a later source names the series they share: sacct's and sinfo's).
        "tests/fixtures/mariadb/golden.prom": (FIXTURES / "mariadb" / "golden.prom").read_text(),
        "exporters/accounting.py on tests/fixtures/sacct/captured-22.05.txt and sinfo/": _accounting_exposition(),
        "testbed/results.py exposition()": _comparison_exposition(),
        "testbed/storage.py catalogue_exposition() (role storage_array's textfile)": _catalogue_exposition(),
    }
    return {name: where for where, text in sources.items() for name in sorted(exposition_metrics(text))}


# ---------------------------------------------------------------------------------------------------------------
# The rules


@dataclass(frozen=True)
class Problem:
    dashboard: str  # uid
    panel: str  # title ("" for the dashboard itself)
    rule: str
    message: str  # what is wrong and what to fix

    def __str__(self) -> str:
        where = f"{self.dashboard}: panel '{self.panel}'" if self.panel else self.dashboard
        return f"{where}: [{self.rule}] {self.message}"


def _panels(dash: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    stack = list(dash.get("panels") or [])
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels") or [])  # a collapsed row holds its panels
        yield panel


def _datasource_uid(ref: Any) -> str | None:
    if isinstance(ref, str):
        return ref
    if isinstance(ref, Mapping):
        uid = ref.get("uid")
        return uid if isinstance(uid, str) else None
    return None


def _datasource_problems(dash: Mapping[str, Any], uid: str) -> Iterator[Problem]:
    rule = "datasource"
    variables = (dash.get("templating") or {}).get("list") or []
    if not any(v.get("type") == "datasource" and v.get("name") == "datasource" for v in variables):
        yield Problem(uid, "", rule, "no datasource variable 'datasource': add dashboards.common.datasource_variable()")
    for v in variables:
        if v.get("type") == "query" and _datasource_uid(v.get("datasource")) not in DATASOURCE_UIDS:
            yield Problem(uid, "", rule, f"variable '{v.get('name')}' does not query $datasource: give it DATASOURCE")
    for panel in _panels(dash):
        title = str(panel.get("title") or f"#{panel.get('id')}")
        ds = _datasource_uid(panel.get("datasource"))
        if panel.get("targets") and ds not in DATASOURCE_UIDS:
            yield Problem(uid, title, rule, f"panel datasource is {ds!r}, not $datasource: use common.DATASOURCE")
        for t in panel.get("targets") or []:
            if "datasource" in t and _datasource_uid(t["datasource"]) not in DATASOURCE_UIDS:
                yield Problem(
                    uid,
                    title,
                    rule,
                    f"query {t.get('refId')} datasource is {_datasource_uid(t['datasource'])!r}: drop it (the "
                    "panel's $datasource applies) or use common.DATASOURCE",
                )


def _query_problems(
    uid: str, title: str, ref: str, expr: str, known: Collection[str], rates: bool = True
) -> Iterator[Problem]:
    try:
        names = metric_names(expr)
        windows = rate_windows(expr) if rates else []
    except PromQLError as exc:
        yield Problem(uid, title, "promql", f"query {ref} cannot be read: {exc}: {expr}")
        return
    for name in sorted(names - set(known)):
        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        yield Problem(
            uid,
            title,
            "metric",
            f"query {ref} uses {name}, which no exporter emits{hint}: fix the name, or if it comes from outside "
            "(node_exporter, Prometheus) add it to dashboards.lint.EXTERNAL with its source",
        )
    for function, window in windows:
        if window not in RATE_WINDOWS and not (function == "increase" and window in RANGE_WINDOWS):
            yield Problem(
                uid,
                title,
                "rate-interval",
                f"query {ref}: {function}() over [{window}]: use [$__rate_interval] (common.RATE), so that the "
                "window always holds enough scrapes at every zoom",
            )


def lint(dash: Mapping[str, Any], known: Collection[str]) -> list[Problem]:
    """Every problem of one dashboard's JSON model; `known`: the metric names queries may use."""
    uid = str(dash.get("uid") or dash.get("title") or "?")
    problems = list(_datasource_problems(dash, uid))
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") == "query":
            query = v.get("query")
            text = query.get("query", "") if isinstance(query, Mapping) else str(query or "")
            var = f"variable {v.get('name')}"
            problems += _query_problems(uid, "", var, variable_query_expr(text), known, rates=False)
    for panel in _panels(dash):
        title = str(panel.get("title") or f"#{panel.get('id')}")
        if panel.get("type") == "row":
            continue
        if not str(panel.get("description") or "").strip():
            problems.append(Problem(uid, title, "description", "no description: say in plain words what it shows"))
        unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if not unit:
            problems.append(Problem(uid, title, "unit", "no unit: give one (Bps, s, percentunit, short, ...)"))
        if not panel.get("targets"):
            problems.append(Problem(uid, title, "query", "no query: a panel shows at least one"))
        for t in panel.get("targets") or []:
            if t.get("expr"):
                problems += _query_problems(uid, title, str(t.get("refId", "")), t["expr"], known)
    return problems


def known_metrics() -> set[str]:
    return set(emitted_metrics()) | set(EXTERNAL)


def lint_directory(directory: Path = GENERATED, known: Collection[str] | None = None) -> list[Problem]:
    """The problems of every dashboard JSON file in `directory`."""
    known = known_metrics() if known is None else known
    problems = []
    for path in sorted(directory.glob("*.json")):
        problems += lint(json.loads(path.read_text()), known)
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboards.lint", description=__doc__.split("\n\n")[0])
    p.add_argument("directory", nargs="?", type=Path, default=GENERATED)
    args = p.parse_args(argv)
    files = sorted(args.directory.glob("*.json"))
    if not files:
        print(f"error: no dashboard JSON in {args.directory} (run make dashboards)", file=sys.stderr)
        return 2
    problems = lint_directory(args.directory)
    for problem in problems:
        print(problem)
    print(f"{len(files)} dashboards, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
