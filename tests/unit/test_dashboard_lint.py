"""Dashboard checks: today's generated dashboards pass them, and each rule fails on a dashboard broken for it."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dashboards import lint
from dashboards.__main__ import GENERATED
from dashboards.queries import panel_queries
from magellan import contract

REPO = Path(__file__).resolve().parents[2]
PLATFORM = json.loads((GENERATED / "magellan-platform-comparison.json").read_text())
KNOWN = lint.known_metrics()


# -- the PromQL extractor ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (node, platform) (rate(a_total{platform=~"$platform", node=~"$node"}[$__rate_interval]))',
            {"a_total"},
        ),
        ("a / on (group, workload) group_left max by (group) (b)", {"a", "b"}),
        ("a * ignoring(instance) group_right(job) b", {"a", "b"}),
        ('label_replace(up{job="x"}, "dst", "$1", "instance", "(.*):.*")', {"up"}),
        ("count(up == 0) or vector(0)", {"up"}),
        ('{__name__="foo", job="x"}', {"foo"}),
        ('{__name__=~"foo.*"}', set()),  # a regex on the name selects no name we can check
        ('{"my.metric", job="x"}', {"my.metric"}),  # Prometheus 3's quoted UTF-8 name
        ("rate(x[5m] offset 1h) + y offset -5m", {"x", "y"}),
        ("x @ start() - x @ 1609746000", {"x"}),
        ("max_over_time(rate(x[1m])[1h:5m])", {"x"}),
        ("histogram_quantile(0.9, sum by (le) (rate(x_bucket[$__rate_interval])))", {"x_bucket"}),
        ("x > bool 1 and on() y unless ignoring(a) z", {"x", "y", "z"}),
        ("# comment naming not_a_metric\nx", {"x"}),
        ('topk(5, x) + quantile(0.5, y) + count_values("v", z)', {"x", "y", "z"}),
        ('x{by="1", on="2", state="running", sum="a"}', {"x"}),  # label names that are keywords, and values
        ("SUM BY (node) (x) + Inf + NaN + 1e-3 + 0x1F + .5", {"x"}),
        ("job:rate5m:sum / $scale", {"job:rate5m:sum"}),
        ('x{a="q\\"uoted } [5m]"} + `raw "x"`', {"x"}),
        ("x[[[interval]]]", {"x"}),
        ("absent(nope{job='y'})", {"nope"}),
        ("sum(x) by (node) / sum(y) without (cpu)", {"x", "y"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert lint.metric_names(expr) == names


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ('x{a="b}', "unterminated string"),
        ("sum(rate(x[5m])", "unclosed '\\('"),
        ("x{a='b'", "unclosed '\\{'"),
        ("rate(x[5m)", "unbalanced '\\['"),
        ("sum(x))", "unbalanced '\\)'"),
        ("magellan_${exporter}_up", "built from a variable"),
        ("${prefix}_up", "built from a variable"),
        ("x ; y", "unexpected ';'"),
    ],
)
def test_unreadable_queries_are_errors(expr: str, error: str) -> None:
    with pytest.raises(lint.PromQLError, match=error):
        lint.metric_names(expr)


def test_rate_windows() -> None:
    expr = (
        "rate(a[$__rate_interval]) + irate(b[5m]) + increase(c[${__rate_interval}]) "
        "+ increase(sum(d)[1h:]) + rate(max_over_time(e[1h])[$__rate_interval:]) + delta(f[5m])"
    )
    assert lint.rate_windows(expr) == [
        ("rate", "$__rate_interval"),
        ("irate", "5m"),
        ("increase", "${__rate_interval}"),
        ("increase", "1h:"),
        ("rate", "$__rate_interval:"),
    ]


@pytest.mark.parametrize(
    ("query", "expr"),
    [
        ('label_values(magellan_virt_up{platform=~"$platform"}, node)', 'magellan_virt_up{platform=~"$platform"}'),
        ("label_values(node)", ""),
        ("label_names()", ""),
        ("query_result(count by (node) (up))", "count by (node) (up)"),
        ("up", "up"),
    ],
)
def test_variable_query_expr(query: str, expr: str) -> None:
    assert lint.variable_query_expr(query) == expr


def test_exposition_metrics_of_samples_types_and_templates() -> None:
    text = (
        '# HELP h_seconds A histogram.\n# TYPE h_seconds histogram\nh_seconds_bucket{le="1"} 0\n'
        "# TYPE c_total counter\n# TYPE empty_gauge gauge\nuntyped_thing 1\n"
        'templated{node="{{ inventory_hostname }}"} {{ value }}\n'
    )
    assert lint.exposition_metrics(text) == {
        "h_seconds_bucket", "h_seconds_sum", "h_seconds_count", "c_total", "empty_gauge", "untyped_thing", "templated"
    }  # fmt: skip


# -- what the exporters emit ------------------------------------------------------------------------------------


def test_emitted_metrics_hold_every_name_the_contract_owns() -> None:
    emitted = lint.emitted_metrics()
    owned = {*contract.JOB_METRICS.values(), contract.JOB_INFO, contract.NODE_PROFILE_CPUS}
    owned |= {contract.NODE_PROFILE_READ_BPS, contract.NODE_VIRTUAL_INFO, *contract.STORAGE_CATALOGUE.values()}
    for exporter in contract.EXPORTERS:
        owned |= {contract.exporter_up(exporter), contract.exporter_scrape_errors(exporter) + "_total"}
    assert owned <= set(emitted), owned - set(emitted)
    assert any(n.startswith(contract.COMPARISON_PREFIX) for n in emitted)
    assert emitted["magellan_accounting_cpu_seconds_total"].startswith("exporters/accounting.py")
    assert emitted["magellan_virt_vcpu_steal_seconds_total"] == "tests/fixtures/virsh/golden.prom"


def test_external_metrics_are_external_and_used() -> None:
    """An EXTERNAL entry our exporters emit is not external; one no dashboard uses is dead weight."""
    emitted = lint.emitted_metrics()
    used = set()
    for path in GENERATED.glob("*.json"):
        used |= {n for q in panel_queries(json.loads(path.read_text())) for n in lint.metric_names(q.expr)}
    for name, source in lint.EXTERNAL.items():
        assert name not in emitted and name in used and source, name


# -- the rules, on today's dashboards and on broken ones --------------------------------------------------------


def test_todays_dashboards_pass() -> None:
    problems = lint.lint_directory(GENERATED)
    assert problems == [], "\n".join(map(str, problems))
    assert len(list(GENERATED.glob("*.json"))) == 7


def panel(dash: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in dash["panels"] if p.get("title") == title)


def broken(change: Callable[[dict[str, Any]], None]) -> list[tuple[str, str, str]]:
    dash = copy.deepcopy(PLATFORM)
    change(dash)
    return [(p.dashboard, p.panel, p.rule) for p in lint.lint(dash, KNOWN)]


UID = "magellan-platform-comparison"
EPS = "Events per second"


def set_expr(title: str, expr: str, ref: int = 0) -> Callable[[dict[str, Any]], None]:
    def change(dash: dict[str, Any]) -> None:
        panel(dash, title)["targets"][ref]["expr"] = expr

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: panel(d, EPS).update(datasource={"type": "prometheus", "uid": "prom-1"}), (EPS, "datasource")),
        (lambda d: panel(d, EPS).pop("datasource"), (EPS, "datasource")),
        (lambda d: panel(d, EPS)["targets"][0].update(datasource={"uid": "other"}), (EPS, "datasource")),
        (lambda d: d["templating"]["list"].pop(0), ("", "datasource")),
        (lambda d: d["templating"]["list"][1].update(datasource={"uid": "prom-1"}), ("", "datasource")),
        (set_expr(EPS, "sum(rate(magellan_job_events_processed_total[5m]))"), (EPS, "rate-interval")),
        (set_expr(EPS, "sum(irate(magellan_job_events_processed_total[$__interval]))"), (EPS, "rate-interval")),
        (set_expr(EPS, "sum(rate(magellan_job_events_processed_total[$__range]))"), (EPS, "rate-interval")),
        (set_expr(EPS, "sum(increase(magellan_job_events_processed_total[1h]))"), (EPS, "rate-interval")),
        (lambda d: panel(d, EPS)["fieldConfig"]["defaults"].pop("unit"), (EPS, "unit")),
        (lambda d: panel(d, EPS).update(description="  "), (EPS, "description")),
        (lambda d: panel(d, EPS).update(targets=[]), (EPS, "query")),
        (set_expr(EPS, "sum(rate(magellan_job_events_processed_totl[$__rate_interval]))"), (EPS, "metric")),
        (set_expr("Node CPU busy", "rate(node_cpu_second_total[$__rate_interval])"), ("Node CPU busy", "metric")),
        (lambda d: d["templating"]["list"][1].update(query="label_values(magellan_jobs_state, platform)"),
         ("", "metric")),
        (set_expr(EPS, "sum(rate(magellan_job_events_processed_total[$__rate_interval])"), (EPS, "promql")),
    ],
)  # fmt: skip
def test_each_rule_fails_on_a_dashboard_broken_for_it(
    change: Callable[[dict[str, Any]], None], expected: tuple[str, str]
) -> None:
    assert broken(change) == [(UID, *expected)]


def test_a_total_over_the_time_range_is_not_a_rate() -> None:
    # increase() over $__range is what the dashboard's whole range added (the accounting totals): dashboard-linter
    # flags it as a window that should be $__rate_interval, a false positive.
    assert broken(set_expr(EPS, "sum(increase(magellan_job_events_processed_total[$__range]))")) == []


def test_a_problem_says_where_and_what_to_fix() -> None:
    dash = copy.deepcopy(PLATFORM)
    set_expr(EPS, "sum(rate(magellan_job_events_processed_totl[5m]))")(dash)
    problems = [str(p) for p in lint.lint(dash, KNOWN)]
    assert problems == [
        f"{UID}: panel '{EPS}': [metric] query A uses magellan_job_events_processed_totl, which no exporter emits "
        "(did you mean magellan_job_events_processed_total?): fix the name, or if it comes from outside "
        "(node_exporter, Prometheus) add it to dashboards.lint.EXTERNAL with its source",
        f"{UID}: panel '{EPS}': [rate-interval] query A: rate() over [5m]: use [$__rate_interval] (common.RATE), so "
        "that the window always holds enough scrapes at every zoom",
    ]


def test_panels_inside_a_collapsed_row_are_checked() -> None:
    dash = copy.deepcopy(PLATFORM)
    inner = copy.deepcopy(panel(dash, EPS))
    inner.update(title="hidden", description="")
    dash["panels"].append({"type": "row", "title": "collapsed", "collapsed": True, "panels": [inner]})
    assert [(p.panel, p.rule) for p in lint.lint(dash, KNOWN)] == [("hidden", "description")]


def test_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lint.main([str(GENERATED)]) == 0
    assert lint.main([str(tmp_path)]) == 2 and "no dashboard JSON" in capsys.readouterr().err
    dash = copy.deepcopy(PLATFORM)
    panel(dash, EPS)["fieldConfig"]["defaults"]["unit"] = ""
    (tmp_path / "d.json").write_text(json.dumps(dash))
    assert lint.main([str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert f"{UID}: panel '{EPS}': [unit]" in out.out and "1 dashboards, 1 problems" in out.err
