"""What the three exporters' collectors share: their registry, the metric families of a scrape, and the health each
reports about its own source — `magellan_<exporter>_up` and `magellan_<exporter>_scrape_errors_total{reason}`,
named by magellan.contract (exporter_up, exporter_scrape_errors), with every reason present from 0.

A counter is named here as it is exposed, `..._total` included (the contract's JOB_METRICS): prometheus_client's
CounterMetricFamily strips the suffix and writes it back on exposition (client_python >= 0.4; the nodes run
Debian's 0.16), so the name is written once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample

from exporters import web
from magellan import contract

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

Kind = Literal["counter", "gauge"]
Figure = tuple[Kind, str, str, float | None]  # counter|gauge, metric name, help, value (None: not reported)
Family = Metric  # a family of a scrape: a Families family or one of prometheus_client's


def registry(collectors: Iterable[Collector], self_procfs: Path) -> CollectorRegistry:
    """An exporter's own registry (nothing from the default one): its process metrics (read under `self_procfs`,
    Paths.self_procfs), then its collectors."""
    reg = CollectorRegistry()
    ProcessCollector(registry=reg, proc=str(self_procfs))
    for collector in collectors:
        reg.register(collector)
    return reg


def family(kind: Kind, name: str, doc: str, labels: Sequence[str]) -> Family:
    return (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=labels)


class _Series(Metric):
    """A family of Families. Each series is formatted once, when it is added, as exporters.web writes it (`lines`);
    prometheus_client's Samples are made only when something asks for them (generate_latest, in the tests) from the
    same series: a scrape builds one string per series, not a Sample, a label dict and a string (issue 16: a scrape
    at most twice node_exporter's). Named as prometheus_client's Counter/GaugeMetricFamily name theirs: a counter
    without its `_total`, its samples with it."""

    def __init__(self, kind: Kind, name: str, doc: str, labels: Sequence[str]) -> None:
        if kind == "counter" and name.endswith("_total"):
            name = name[: -len("_total")]
        super().__init__(name, doc, kind)
        self.labelnames = tuple(labels)
        self.sample_name = name + ("_total" if kind == "counter" else "")
        self.lines: list[str] = []
        self._series: list[tuple[Sequence[str], float]] = []  # label values (of labelnames, in order), value

    @property
    def samples(self) -> list[Sample]:
        return [Sample(self.sample_name, dict(zip(self.labelnames, v, strict=False)), x, None) for v, x in self._series]

    @samples.setter
    def samples(self, value: list[Sample]) -> None:  # Metric.__init__'s empty list; the series are this family's
        if value:
            raise ValueError("a Families family takes its series from Families.add")

    def add_series(self, values: Sequence[str], text: str, value: float) -> None:
        """One series: `values` of this family's label names, in order, and `text`, their label text."""
        self._series.append((values, value))
        self.lines.append(web.series_line(self.sample_name, text, value))


class Families:
    """The metric families of one scrape, each made when its first series is added: every series of a family has
    the exporter's labels for the thing it describes (a job, a domain), then the `extra` ones of its kind."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self._families: dict[str, _Series] = {}

    def add(self, figures: Iterable[Figure], values: Sequence[str], extra: Sequence[str] = ()) -> None:
        """One series per figure reported (a None value is left out: not reported by its source)."""
        names = (*self.labels, *extra) if extra else self.labels
        text: str | None = None
        for kind, name, doc, value in figures:
            if value is None:
                continue
            f = self._families.get(name)
            if f is None:
                f = self._families[name] = _Series(kind, name, doc, names)
            if f.labelnames != names:  # a family first added with other extra labels: its own names, as add_metric
                own = values[: len(f.labelnames)]
                f.add_series(own, web.label_values_text(f.labelnames, own), value)
                continue
            if text is None:  # once for all the figures of these labels
                text = web.label_values_text(names, values)
            f.add_series(values, text, value)

    def state(self, name: str, doc: str, states: Sequence[str], current: str, values: Sequence[str]) -> None:
        """A state gauge, label `state`: 1 for the current state, 0 for each of the others."""
        for s in states:
            self.add([("gauge", name, doc, 1.0 if s == current else 0.0)], [*values, s], ("state",))

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


class Health:
    """What an exporter reports about its own source, so that a broken source shows instead of vanishing: up (1
    when the source could be read at the last try, 0 before the first), errors by reason since the start (every
    reason present from 0), and the time of the last good read (absent until the first). The owner serialises
    access (the collectors hold a lock, or run in the scrape's thread only)."""

    def __init__(
        self, exporter: str, labels: Mapping[str, str], reasons: Sequence[str], source: str, errors_help: str
    ) -> None:
        """`source` names what is read in the help texts ("the jobs directory", "sacct"); `errors_help` is the help
        of the errors counter, saying what its reasons count."""
        if exporter not in contract.EXPORTERS:
            raise ValueError(f"exporter {exporter!r}: one of {', '.join(contract.EXPORTERS)} (magellan.contract)")
        self.exporter = exporter
        self.labels = dict(labels)
        self.reasons = tuple(reasons)
        self.errors: Counter[str] = Counter(dict.fromkeys(self.reasons, 0))
        self.up = False
        self.last_success: float | None = None
        self.source = source
        self.errors_help = errors_help

    def failed(self, reason: str, count: int = 1) -> None:
        """Count `count` errors of `reason`, one of the reasons given (another one is counted too, from its first
        occurrence: a scrape must not fail over it); up is left as it is."""
        self.errors[reason] += count

    def read(self, ok: bool, now: float) -> None:
        """The outcome of the last try to read the source, at unix time `now`."""
        self.up = ok
        if ok:
            self.last_success = now

    def gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        """One of the exporter's own gauges, `magellan_<exporter>_<name>`, with its own labels."""
        return self._gauge(f"magellan_{self.exporter}_{name}", doc, value)

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        g = GaugeMetricFamily(name, doc, labels=list(self.labels))
        g.add_metric(list(self.labels.values()), value)
        return g

    def metrics(self) -> Iterator[Metric]:
        up_help = f"1 when {self.source} could be read at the last try (0 before the first)."
        yield self._gauge(contract.exporter_up(self.exporter), up_help, 1.0 if self.up else 0.0)
        name = contract.exporter_scrape_errors(self.exporter)
        errors = CounterMetricFamily(name, self.errors_help, labels=[*self.labels, "reason"])
        for reason, count in sorted(self.errors.items()):
            errors.add_metric([*self.labels.values(), reason], count)
        yield errors
        if self.last_success is not None:
            doc = f"Unix time {self.source} was last read (absent until then)."
            yield self.gauge("last_success_timestamp_seconds", doc, self.last_success)
