"""A generated dashboard's panels with their data over a time range, queried from Prometheus as Grafana would.

Grafana fills $__rate_interval with max(step + scrape interval, 4 × scrape interval), $__interval with the step
and $__range with the range; "All" of a multi-value variable with its allValue. The same is done here, with the
scrape interval Prometheus itself is configured with, so that each panel shows what it would show in Grafana.
Values are formatted in the panel's unit the way Grafana formats the units our dashboards use.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from dashboards.queries import expand, template_values
from testbed.prom import PromClient, PromError

MAX_POINTS = 300  # points per series at most: the step grows with the range
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def duration_seconds(text: str) -> float:
    """A Prometheus duration ("5s", "1m30s") in seconds; ValueError for anything else."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _SECONDS[u] for n, u in parts)


def scrape_interval(prom: PromClient) -> float:
    """The longest scrape interval of Prometheus' loaded configuration: the global one (its default, 1m, when it sets
    none), a job's, or a target's (label __scrape_interval__, roles/prometheus: testbed_scrape_interval). Grafana's
    data source is set to the longest, so that a $__rate_interval window holds samples of every target."""
    config = yaml.safe_load(prom.config()) or {}
    found = [str((config.get("global") or {}).get("scrape_interval", "1m"))]
    for job in config.get("scrape_configs") or []:
        found += [str(job["scrape_interval"])] if job.get("scrape_interval") else []
        found += [
            str(static["labels"]["__scrape_interval__"])
            for static in job.get("static_configs") or []
            if "__scrape_interval__" in (static.get("labels") or {})
        ]
    return max(duration_seconds(text) for text in found)


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float
    scrape: float  # Prometheus' scrape interval, seconds

    @property
    def step(self) -> float:
        return max(self.scrape, math.ceil((self.end - self.start) / MAX_POINTS))

    @property
    def first(self) -> float:
        """The first time a range query evaluates: the grid of steps ends on `end` itself, so that a series that
        appeared in the range's last step (results published a moment before the pages are drawn) is drawn too."""
        return self.end - math.floor((self.end - self.start) / self.step) * self.step

    def variables(self) -> dict[str, str]:
        rate = max(self.step + self.scrape, 4 * self.scrape)
        return {
            "__rate_interval": f"{math.ceil(rate)}s",
            "__interval": f"{math.ceil(self.step)}s",
            "__range": f"{math.ceil(self.end - self.start)}s",
        }


@dataclass(frozen=True)
class Series:
    name: str
    times: tuple[float, ...]
    values: tuple[float, ...]

    def reduce(self, how: str) -> float:
        """Grafana's reducers that our panels use: lastNotNull (default), last, mean, max, min."""
        finite = [v for v in self.values if math.isfinite(v)]
        if how == "last":
            return self.values[-1] if self.values else math.nan
        if not finite:
            return math.nan
        if how == "mean":
            return sum(finite) / len(finite)
        if how in ("max", "min"):
            return max(finite) if how == "max" else min(finite)
        return finite[-1]


@dataclass(frozen=True)
class Panel:
    kind: str  # row, timeseries, stat (or any other Grafana panel type, drawn as a table of values)
    title: str
    description: str = ""
    unit: str = ""
    width: int = 24  # of Grafana's 24 grid columns
    reducer: str = "lastNotNull"
    series: list[Series] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.kind != "row" and not self.series and not self.errors


def legend_name(fmt: str, labels: dict[str, str]) -> str:
    """A series' name from the target's legendFormat ({{label}} replaced), or its labels when there is none."""
    if fmt and fmt != "__auto":
        return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), fmt)
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}"


def _ordered(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel in reading order (by grid row, then column), a row's nested panels after it."""

    def place(p: dict[str, Any]) -> tuple[int, int]:
        return int(p.get("gridPos", {}).get("y", 0)), int(p.get("gridPos", {}).get("x", 0))

    for panel in sorted(dash.get("panels") or [], key=place):
        yield panel
        yield from _ordered({"panels": panel.get("panels") or []})


def _series(prom: PromClient, target: dict[str, Any], variables: dict[str, str], rng: TimeRange) -> list[Series]:
    expr = expand(target["expr"], variables)
    grouped: dict[frozenset[tuple[str, str]], list[tuple[float, float]]] = {}
    for s in prom.query_range(expr, rng.first, rng.end, rng.step):
        grouped.setdefault(frozenset(s.labels.items()), []).append((s.timestamp, s.value))
    out = []
    for labels, points in grouped.items():
        points.sort()
        out.append(
            Series(legend_name(target.get("legendFormat", ""), dict(labels)), *map(tuple, zip(*points, strict=True)))
        )
    return sorted(out, key=lambda s: s.name)


def load(prom: PromClient, dash: dict[str, Any], rng: TimeRange) -> list[Panel]:
    """The dashboard's panels with the series of their queries over rng; a query that fails is the panel's error."""
    panels = []
    variables = template_values(dash) | rng.variables()
    for p in _ordered(dash):
        defaults = (p.get("fieldConfig") or {}).get("defaults") or {}
        calcs = ((p.get("options") or {}).get("reduceOptions") or {}).get("calcs") or ["lastNotNull"]
        series: list[Series] = []
        errors: list[str] = []
        for target in p.get("targets") or []:
            if not target.get("expr"):
                continue
            try:
                series += _series(prom, target, variables, rng)
            except (PromError, KeyError) as exc:
                errors.append(f"query {target.get('refId', '')}: {exc}")
        panels.append(
            Panel(
                kind=str(p.get("type", "")),
                title=str(p.get("title", "")),
                description=str(p.get("description", "")),
                unit=str(defaults.get("unit", "")),
                width=int((p.get("gridPos") or {}).get("w", 24)),
                reducer=str(calcs[0]),
                series=series,
                errors=errors,
            )
        )
    return panels


_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_IEC = ((2**40, "Ti"), (2**30, "Gi"), (2**20, "Mi"), (2**10, "Ki"))
_SHORT = ((1e12, "Tri"), (1e9, "Bil"), (1e6, "Mil"), (1e3, "K"))


def _scaled(value: float, steps: tuple[tuple[float, str], ...], suffix: str) -> str:
    for size, prefix in steps:
        if abs(value) >= size:
            return f"{value / size:.3g} {prefix}{suffix}"
    return f"{value:.3g} {suffix}".rstrip()


def format_value(value: float, unit: str) -> str:
    """value in the panel's unit as Grafana writes it (the units of our dashboards; others as plain numbers)."""
    if not math.isfinite(value):
        return "No data" if math.isnan(value) else str(value)
    if unit == "percentunit":
        return f"{value * 100:.3g} %"
    if unit == "percent":
        return f"{value:.3g} %"
    if unit == "Bps":
        return _scaled(value, _SI, "B/s")
    if unit == "bytes":
        return _scaled(value, _IEC, "B")
    if unit == "ops":
        return _scaled(value, _SI, "ops/s")
    if unit == "s":
        if 0 < abs(value) < 1:
            return f"{value * 1000:.3g} ms"
        if abs(value) >= 3600:
            return f"{value / 3600:.3g} h"
        return f"{value / 60:.3g} min" if abs(value) >= 60 else f"{value:.3g} s"
    if unit == "short":
        return _scaled(value, _SHORT, "")
    return f"{value:.3g}"
