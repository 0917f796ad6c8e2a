"""The HTML viewer (testbed.panels, testbed.pages): Grafana's units and variables, and pages drawn from a real
Prometheus scraping real job exporters, opened in headless Chromium."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from magellan.contract import JOB_METRICS
from testbed import pages, panels
from testbed.prom import PromClient
from testbed.report import write_report
from tests.browser import chromium, problems
from tests.unit.test_compare import RUN, progress, serve
from tests.unit.test_report import comparison


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.4567, "percentunit", "45.7 %"),
        (12.5, "percent", "12.5 %"),
        (2_500_000, "Bps", "2.5 MB/s"),
        (999, "Bps", "999 B/s"),
        (3 * 2**30, "bytes", "3 GiB"),
        (1500, "ops", "1.5 kops/s"),
        (0.25, "s", "250 ms"),
        (90, "s", "1.5 min"),
        (7200, "s", "2 h"),
        (45000, "short", "45 K"),
        (2.5e6, "short", "2.5 Mil"),
        (12.345, "short", "12.3"),
        (3.0, "", "3"),
        (math.nan, "short", "No data"),
    ],
)
def test_values_are_written_in_grafana_units(value: float, unit: str, text: str) -> None:
    assert panels.format_value(value, unit) == text


def test_durations_and_grafana_variables() -> None:
    assert panels.duration_seconds("1m30s") == 90 and panels.duration_seconds("5s") == 5
    for bad in ("5", "1x", "5s "):
        with pytest.raises(ValueError, match="not a Prometheus duration"):
            panels.duration_seconds(bad)
    # Grafana: $__rate_interval = max(step + scrape interval, 4 x scrape interval); the step keeps 300 points at most.
    short = panels.TimeRange(0, 600, 5).variables()
    assert short == {"__rate_interval": "20s", "__interval": "5s", "__range": "600s"}
    long = panels.TimeRange(0, 6 * 3600, 5)
    assert long.step == 72 and long.variables()["__rate_interval"] == "77s"


def test_legends_and_reducers() -> None:
    labels = {"__name__": "up", "node": "compute1", "job": "node"}
    assert panels.legend_name("{{node}} ({{ job }}, {{missing}})", labels) == "compute1 (node, )"
    assert panels.legend_name("", labels) == 'up{job="node", node="compute1"}'
    s = panels.Series("x", (1, 2, 3, 4), (1.0, 3.0, 2.0, math.nan))
    assert (s.reduce("lastNotNull"), s.reduce("mean"), s.reduce("max"), s.reduce("min")) == (2.0, 2.0, 3.0, 1.0)
    assert math.isnan(s.reduce("last")) and math.isnan(panels.Series("y", (), ()).reduce("mean"))


def dashboard() -> dict[str, object]:
    events = JOB_METRICS["events"]

    def panel(kind: str, title: str, expr: str, x: int, y: int, unit: str = "short") -> dict[str, object]:
        return {
            "type": kind,
            "title": title,
            "description": f"what {title} shows",
            "gridPos": {"x": x, "y": y, "w": 12, "h": 8},
            "fieldConfig": {"defaults": {"unit": unit}},
            "targets": [{"expr": expr, "legendFormat": "{{node}}", "refId": "A"}],
        }

    return {
        "uid": "t",
        "title": "Test dashboard",
        "description": "made by the test",
        "templating": {"list": [{"type": "query", "name": "node", "includeAll": True, "allValue": ".*"}]},
        "panels": [
            {"type": "row", "title": "Jobs", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}, "panels": []},
            panel("stat", "Events", f'sum by (node) ({events}{{node=~"$node"}})', 12, 1),
            panel("timeseries", "Event counters", f"{events}", 0, 1),
            panel("timeseries", "Event rate", f"rate({events}[$__rate_interval])", 0, 9, "ops"),
            panel("timeseries", "Nothing", "magellan_no_such_series", 12, 9),
            panel("stat", "Broken", "rate(up[", 0, 17),
        ],
    }


@pytest.fixture
def prom(tmp_path: Path, live_prometheus: Callable[[list[str]], PromClient]) -> PromClient:
    """A real Prometheus (scraping every second) with 10 s of two real job exporters' series."""
    jobs = {node: [progress(f"{RUN}-r0-{node}", n, 30.0, 29.0)] for node, n in (("fast", 30000), ("slow", 15000))}
    targets = serve(tmp_path, jobs)
    client = live_prometheus(next(targets))
    assert client.wait_until(lambda: len(client.query(JOB_METRICS["events"])) == 2, timeout=30, interval=0.5)
    time.sleep(10)
    yield client
    next(targets, None)


def test_a_dashboard_drawn_from_prometheus_in_a_browser(prom: PromClient, tmp_path: Path) -> None:
    (tmp_path / "dashboards").mkdir()
    (tmp_path / "dashboards" / "t.json").write_text(__import__("json").dumps(dashboard()))
    now = time.time()
    rng = panels.TimeRange(now - 20, now, panels.scrape_interval(prom))
    assert rng.scrape == 1.0  # tests/conftest.py's configuration, read back from Prometheus
    out = tmp_path / "html"
    (out / "stale").mkdir(parents=True)
    done = pages.render(prom, tmp_path / "dashboards", out, rng)
    assert not (out / "stale").exists() and not list(tmp_path.glob(".html.*"))  # replaced whole, nothing left over
    assert done.panels == 5 and done.empty == ["t: Nothing"]
    assert len(done.failed) == 1 and done.failed[0].startswith("t: Broken: query A: ")
    html = (out / "t.html").read_text()
    # Reading order (row, then by grid row and column), the stat's reduced value per node in the panel's unit.
    assert html.index("Jobs") < html.index("Event counters") < html.index("<h3>Events") < html.index("Event rate")
    assert "30 K <small>fast</small>" in html and "15 K <small>slow</small>" in html
    assert sorted(p.name for p in (out / "t").iterdir()) == ["panel-01.png", "panel-03.png"]
    with chromium() as browser:
        found = problems(browser, out / "t.html", "unit-test-dashboard")
        assert sorted(found) == [
            "t.html: panel panel empty: Nothing (short)",
            "t.html: panel panel failed: Broken (short)",
        ]
        assert problems(browser, out / "index.html", "unit-test-index") == []
        # The browser check sees what a reader would: a chart that is gone is a broken image.
        (out / "t" / "panel-03.png").unlink()
        assert any("broken image" in line and "panel-03.png" in line for line in problems(browser, out / "t.html", "x"))


def test_the_report_as_html_in_a_browser(tmp_path: Path) -> None:
    out = write_report([comparison()], tmp_path)
    html = (out / "report.html").read_text()
    assert "<table>" in html and '<td class="ok">ok</td>' in html and '<img src="simulate.png"' in html
    with chromium() as browser:
        assert problems(browser, out / "report.html", "unit-test-report") == []


def test_a_dashboard_that_is_not_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    rng = panels.TimeRange(0, 60, 15)
    with pytest.raises(pages.RenderError, match=r"bad.json: not a dashboard's JSON .* run make dashboards"):
        pages.render(PromClient("http://127.0.0.1:9"), tmp_path, tmp_path / "out", rng)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written left
    with pytest.raises(pages.RenderError, match="no dashboard JSON to draw"):
        pages.render(PromClient("http://127.0.0.1:9"), tmp_path / "none", tmp_path / "out", rng)


class _Configured(PromClient):
    def __init__(self, text: str) -> None:
        super().__init__("http://127.0.0.1:9")  # never asked: config() is the loaded configuration below
        self.text = text

    def config(self) -> str:
        return self.text


@pytest.mark.parametrize(
    ("config", "seconds"),
    [
        ("scrape_configs: []", 60.0),  # Prometheus' default
        ("global: {scrape_interval: 5s}", 5.0),
        ("global: {scrape_interval: 5s}\nscrape_configs: [{job_name: a, scrape_interval: 30s}]", 30.0),
        (  # roles/prometheus: a guest's testbed_scrape_interval as its target's label
            "global: {scrape_interval: 5s}\nscrape_configs: [{job_name: node, static_configs: ["
            "{targets: ['h:1'], labels: {node: h}}, {targets: ['g:1'], labels: {node: g, __scrape_interval__: 15s}}]}]",
            15.0,
        ),
    ],
)
def test_the_rate_window_follows_the_longest_scrape_interval(config: str, seconds: float) -> None:
    assert panels.scrape_interval(_Configured(config)) == seconds


def test_the_range_queries_grid_ends_on_the_ranges_end() -> None:
    """A series published a moment before the pages are drawn is in the last evaluation (the grid ends on `end`)."""
    rng = panels.TimeRange(start=1000.0, end=1997.0, scrape=5.0)
    assert rng.start <= rng.first < rng.start + rng.step
    assert (rng.end - rng.first) % rng.step == 0
