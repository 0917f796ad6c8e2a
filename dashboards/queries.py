"""Panel queries of generated dashboards, expanded so that they run on a plain Prometheus (no Grafana)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.prom import PromClient, PromError

# What Grafana would substitute for its own variables; a dashboard's variables are "All" (template_values).
DEFAULTS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "datasource": "prometheus",
}
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str


def panel_queries(dash: dict[str, Any]) -> list[PanelQuery]:
    """Every Prometheus query of every panel (rows included)."""
    out = []
    panels = list(dash.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for t in panel.get("targets") or []:
            if t.get("expr"):
                out.append(PanelQuery(dash.get("title", ""), panel.get("title", ""), t.get("refId", ""), t["expr"]))
    return out


def template_values(dash: dict[str, Any]) -> dict[str, str]:
    """Each query variable of the dashboard at "All": its allValue (".*" when it has none)."""
    found = (dash.get("templating") or {}).get("list") or []
    return {str(v["name"]): str(v.get("allValue") or ".*") for v in found if v.get("type") == "query"}


def expand(expr: str, variables: dict[str, str] | None = None) -> str:
    """Substitute Grafana variables; raise KeyError naming one that has no value."""
    values = {**DEFAULTS, **(variables or {})}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"no value for dashboard variable ${name}")
        return values[name]

    return _VAR.sub(sub, expr)


def check_dashboards(prom: PromClient, directory: Path, require_data: bool = True) -> list[str]:
    """One line per panel query that fails on prom, or (with require_data) returns nothing."""
    failures = []
    for path in sorted(directory.glob("*.json")):
        dash = json.loads(path.read_text())
        for q in panel_queries(dash):
            where = f"{path.name}: panel '{q.panel}' query {q.ref_id}"
            try:
                result = prom.query(expand(q.expr, template_values(dash)))
            except (PromError, KeyError) as exc:
                failures.append(f"{where}: {exc}")
                continue
            if require_data and not result:
                failures.append(f"{where}: empty result for {expand(q.expr, template_values(dash))}")
    return failures
