"""Metric families as Prometheus text exposition: what testbed writes into node_exporter's textfile directory (the
comparisons' results, testbed.results; the arrays' catalogue figures, testbed.storage). A module of its own, so that
the storage_array filter plugin, loaded in every task's worker process of every playbook run, imports no more than this
and prometheus_client only when it writes an exposition (tests/unit/test_filter_imports.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.core import Metric


def text_exposition(families: Sequence[Metric]) -> str:
    """Metric families as Prometheus text exposition (what node_exporter's textfile collector reads)."""
    from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415 - see the module's docstring
    from prometheus_client.registry import Collector  # noqa: PLC0415

    class _Collector(Collector):
        def collect(self) -> Sequence[Metric]:
            return families

    registry = CollectorRegistry()
    registry.register(_Collector())
    return generate_latest(registry).decode()
