"""The Prometheus client against a real Prometheus, and its error messages."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from testbed.prom import PromClient, PromError
from tests.conftest import free_port


def test_queries_and_targets_on_real_prometheus(live_prometheus: Callable[[list[str]], PromClient]) -> None:
    prom = live_prometheus([])
    assert prom.wait_until(lambda: bool(prom.query('up{job="self"} == 1')), timeout=20, interval=0.5)
    [sample] = prom.query('up{job="self"}')
    assert sample.value == 1.0 and sample.labels["job"] == "self"
    assert prom.query("1 + 1")[0].value == 2.0  # a scalar result
    now = time.time()
    series = prom.query_range('up{job="self"}', now - 10, now, 1)
    assert series and all(s.value == 1.0 for s in series)
    [target] = prom.targets()
    assert (target.job, target.health) == ("self", "up")


def test_bad_query_names_the_error(live_prometheus: Callable[[list[str]], PromClient]) -> None:
    prom = live_prometheus([])
    with pytest.raises(PromError, match="bad_data"):
        prom.query("sum by (")


def test_unreachable_prometheus_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PromError, match=f"Prometheus at {url} is not reachable"):
        PromClient(url, timeout=2).query("up")
