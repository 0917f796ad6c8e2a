"""Published comparison results reach Prometheus, and a regression makes the alert rule fire."""

from __future__ import annotations

from dataclasses import replace

import pytest

from testbed import analysis
from testbed.inventory import Inventory
from testbed.model import Comparison
from testbed.prom import PromClient
from testbed.results import publish

pytestmark = pytest.mark.integration

FIRING = 'ALERTS{alertname="MagellanPlatformRegression",node="compute2",alertstate="firing"}'


def _ratio(prom: PromClient) -> float | None:
    found = prom.query('magellan_comparison_ratio{workload="simulate",node="compute2"}')
    return found[0].value if found else None


def test_results_reach_prometheus_and_a_regression_fires(
    site: Inventory, comparison: Comparison, prom: PromClient
) -> None:
    measured = {r.result.node: r.ratio for r in analysis.rows(comparison)}["compute2"]
    publish(comparison, site, 15.0)
    assert prom.wait_until(lambda: _ratio(prom) == pytest.approx(measured), timeout=60, interval=2)
    assert prom.query(FIRING) == [], "the alert fires on the real, healthy comparison"

    # The same run, but compute2 doing 40 % less work per repetition: a regression far beyond spread and tolerance.
    slow = [replace(r, runs=[x * 0.6 for x in r.runs]) if r.node == "compute2" else r for r in comparison.results]
    try:
        publish(replace(comparison, results=slow), site, 15.0)
        assert prom.wait_until(lambda: bool(prom.query(FIRING)), timeout=90, interval=3), "no alert for -40 %"
        alert = prom.query(FIRING)[0].labels
        assert alert["severity"] == "warning" and alert["reference"] == "compute1"
    finally:
        publish(comparison, site, 15.0)
    assert prom.wait_until(lambda: prom.query(FIRING) == [], timeout=90, interval=3), "the alert did not resolve"
