"""exporters.web's exposition: byte for byte prometheus_client's generate_latest (text format 0.0.4) on every kind of
family, on label values and help texts of any characters, and on the storage exporter's registries over recorded
trees; and the WSGI answers make_wsgi_app gave (gzip, OPTIONS, 405, favicon)."""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from exporters import common, storage, web
from exporters.paths import Paths
from exporters.storage_io import Problems, Subsystem
from exporters.storage_md import MdCollector

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "storage"


def registry(families: list[Metric]) -> CollectorRegistry:
    class Fixed(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from families

    r = CollectorRegistry(auto_describe=False)
    r.register(Fixed())
    return r


def every_kind(value: str, doc: str) -> list[Metric]:
    g = GaugeMetricFamily("magellan_g", doc, labels=["node", "path"])
    g.add_metric(["n1", value], 1.5)
    g.add_metric(["n2", ""], float("inf"))
    g.add_metric(["n3", value * 2], float("nan"))
    c = CounterMetricFamily("magellan_c", doc, labels=["reason"], created=1.7e9)
    c.add_metric([value], 3, created=1.7e9)
    u = UnknownMetricFamily("magellan_u", doc, value=-0.0)
    i = InfoMetricFamily("magellan_i", doc, value={"version": value})
    s = StateSetMetricFamily("magellan_s", doc, value={"a": True, "b": False})
    h = HistogramMetricFamily("magellan_h", doc, buckets=[("1", 1), ("+Inf", 2)], sum_value=3.25)
    gh = GaugeHistogramMetricFamily("magellan_gh", doc, buckets=[("1", 1), ("+Inf", 2)], gsum_value=3)
    summary = SummaryMetricFamily("magellan_sum", doc, count_value=4, sum_value=1e21)
    return [g, c, u, i, s, h, gh, summary]


def test_every_kind_of_family_as_generate_latest_writes_it() -> None:
    r = registry(every_kind('a "quoted" \\ back\nslash, ünïcode', "help with \\ and \n a newline"))
    assert web.exposition(r) == generate_latest(r)


@settings(max_examples=200, deadline=None)
@given(value=st.text(), doc=st.text())
def test_any_label_value_and_help_text(value: str, doc: str) -> None:
    r = registry(every_kind(value, doc))
    assert web.exposition(r) == generate_latest(r)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.text(), min_size=3, max_size=3), number=st.floats() | st.integers(-(2**70), 2**70))
def test_families_series_as_generate_latest_writes_them(values: list[str], number: float) -> None:
    """common.Families formats each series once, as it is added (label names out of order, extra label names, a
    family first added with other extra ones, any value): what generate_latest writes from its samples."""
    f = common.Families(("zone", "node"))
    f.add([("counter", "magellan_t_total", "a counter", number), ("gauge", "magellan_g", "a gauge", 1.0)], values[:2])
    f.add([("gauge", "magellan_g", "a gauge", -0.0)], values[:2])
    f.add([("gauge", "magellan_s", "a state", 0.5), ("gauge", "magellan_g", "a gauge", number)], values, ("a",))
    f.add([("gauge", "magellan_skipped", "not reported", None)], values[:2])
    r = registry(list(f))
    assert web.exposition(r) == generate_latest(r)
    assert b"magellan_skipped" not in web.exposition(r)


@pytest.mark.parametrize("tree", ["procfs", "node_exporter", "host", "guest/recovering", "guest/reshape"])
def test_the_storage_exporters_scrape_of_a_recorded_tree(tree: str) -> None:
    paths = Paths(procfs=FIX / tree / "proc", sysfs=FIX / tree / "sys")

    def scrape() -> CollectorRegistry:  # a new exporter each time: its error counters count every scrape
        def build(problem: Problems) -> list[Subsystem]:
            return [storage.DiskstatsCollector(paths, "n1", problem, re.compile(storage.DEVICE_EXCLUDE)),
                    MdCollector(paths, "n1", problem, FIX / tree / "dev" / "md")]  # fmt: skip

        return common.registry(
            [storage.Collector("n1", build, clock=lambda: 1.0, timer=lambda: 0.0)], paths.self_procfs
        )

    ours, theirs = web.exposition(scrape()), generate_latest(scrape())
    # the process collector's figures (CPU seconds, memory) move between the two calls: compare the rest
    moving = re.compile(rb"^process_.*$", re.M)
    assert moving.sub(b"", ours) == moving.sub(b"", theirs)
    assert re.search(rb"^magellan_storage_(disk|md)_\w+\{", ours, re.M)  # the collectors' series are there


def call(environ: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
    r = registry(every_kind("v", "d"))
    answered: list[tuple[str, dict[str, str]]] = []
    live = web.LiveWebConfig(None, logging.getLogger("test"))
    body = b"".join(web.app(r, live)(environ, lambda status, headers: answered.append((status, dict(headers)))))
    return answered[0][0], answered[0][1], body


def test_the_wsgi_answers() -> None:
    status, headers, body = call({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"})
    assert status == "200 OK" and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert body == generate_latest(registry(every_kind("v", "d")))
    status, headers, zipped = call({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_ACCEPT_ENCODING": "gzip, br"})
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == body
    assert call({"REQUEST_METHOD": "POST", "PATH_INFO": "/metrics"})[0] == "405 Method Not Allowed"
    assert call({"REQUEST_METHOD": "OPTIONS", "PATH_INFO": "/metrics"})[1]["Allow"] == "OPTIONS,GET"
    assert call({"REQUEST_METHOD": "GET", "PATH_INFO": "/favicon.ico"})[2] == b""
