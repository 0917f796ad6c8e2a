"""Metric families as Prometheus text exposition: what testbed writes into node_exporter's textfile directory (the
comparisons' results, testbed.results; the arrays' catalogue figures, testbed.storage). A module of its own, so that
the storage_array filter plugin, loaded by every playbook run, imports no more than this."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector


def text_exposition(families: Sequence[Metric]) -> str:
    """Metric families as Prometheus text exposition (what node_exporter's textfile collector reads)."""

    class _Collector(Collector):
        def collect(self) -> Sequence[Metric]:
            return families

    registry = CollectorRegistry()
    registry.register(_Collector())
    return generate_latest(registry).decode()
