"""Static HTML pages, to look at the results without Grafana: each generated dashboard with every panel drawn from its
own queries over a time range (`testbed dashboards render`), an index of them, and a campaign's report.html.

A viewer for our own dashboards, not a Grafana clone: rows, time series (a PNG chart and a legend table with mean
and last value) and stat panels (each series' reduced value), with their titles, units and descriptions. A panel
whose queries return nothing says "No data" and one whose query fails shows the error, each marked with a class
(empty, failed) that the browser test looks for.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from testbed import plots
from testbed.panels import Panel, TimeRange, format_value, load
from testbed.prom import PromClient

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2328; background: #f6f8fa; }
h1 { margin-bottom: .2rem; } .meta { color: #57606a; margin-top: 0; }
.grid { display: grid; grid-template-columns: repeat(24, 1fr); gap: .8rem; }
.row { grid-column: span 24; margin: 1rem 0 0; border-bottom: 1px solid #d0d7de; }
.panel { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem .8rem; min-width: 0; }
.panel h3 { margin: 0; font-size: 1rem; } .unit { color: #57606a; font-weight: normal; font-size: .85rem; }
.panel p.description { color: #57606a; font-size: .85rem; margin: .3rem 0; }
.panel img { width: 100%; height: auto; }
.nodata, .error { padding: 1.5rem; text-align: center; color: #9a6700; background: #fff8c5; }
.error { color: #82071e; background: #ffebe9; text-align: left; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: .85rem; } td, th { padding: .15rem .5rem; text-align: right; }
td:first-child, th:first-child { text-align: left; } tr + tr td { border-top: 1px solid #eaeef2; }
.swatch { display: inline-block; width: .8rem; height: .3rem; margin-right: .4rem; vertical-align: middle; }
.stat { font-size: 1.6rem; font-weight: 600; } .stat small { font-size: .8rem; font-weight: normal; color: #57606a; }
td.ok { color: #1a7f37; font-weight: 600; } td.off { color: #cf222e; font-weight: 600; }
"""


def page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _when(rng: TimeRange) -> str:
    start, end = (datetime.fromtimestamp(t, UTC) for t in (rng.start, rng.end))
    v = rng.variables()
    return (
        f"{start:%Y-%m-%d %H:%M:%S} – {end:%H:%M:%S} UTC, step {v['__interval']}, "
        f"$__rate_interval {v['__rate_interval']}"
    )


def _legend(panel: Panel) -> str:
    rows = "".join(
        f'<tr><td><span class="swatch" style="background:{plots.PALETTE[i % len(plots.PALETTE)]}"></span>'
        f"{escape(s.name)}</td><td>{escape(format_value(s.reduce('mean'), panel.unit))}</td>"
        f"<td>{escape(format_value(s.reduce('lastNotNull'), panel.unit))}</td></tr>"
        for i, s in enumerate(panel.series)
    )
    return f"<table><tr><th>series</th><th>mean</th><th>last</th></tr>{rows}</table>"


def _panel_body(panel: Panel, chart: str | None) -> str:
    if panel.errors:
        return f'<div class="error">{escape(chr(10).join(panel.errors))}</div>'
    if panel.empty:
        return '<div class="nodata">No data</div>'
    if chart:
        return f'<img src="{escape(chart)}" alt="{escape(panel.title)}">{_legend(panel)}'
    return "".join(
        f'<div class="stat">{escape(format_value(s.reduce(panel.reducer), panel.unit))} <small>{escape(s.name)}</small>'
        "</div>"
        for s in panel.series
    )


def _panel(panel: Panel, chart: str | None) -> str:
    if panel.kind == "row":
        return f'<h2 class="row">{escape(panel.title)}</h2>'
    state = " failed" if panel.errors else " empty" if panel.empty else ""
    unit = f' <span class="unit">({escape(panel.unit)})</span>' if panel.unit else ""
    return (
        f'<section class="panel{state}" data-kind="{escape(panel.kind)}" style="grid-column: span {panel.width}">'
        f'<h3>{escape(panel.title)}{unit}</h3><p class="description">{escape(panel.description)}</p>'
        f"{_panel_body(panel, chart)}</section>"
    )


def dashboard_page(dash: dict[str, Any], panels: list[Panel], rng: TimeRange, charts: dict[int, str]) -> str:
    """charts: a panel's index in panels -> its chart's file name, relative to the page."""
    body = (
        f"<h1>{escape(str(dash.get('title', '')))}</h1>"
        f'<p class="meta">{escape(str(dash.get("description", "")))}<br>{escape(_when(rng))} · '
        '<a href="index.html">all dashboards</a></p>\n<div class="grid">\n'
        + "\n".join(_panel(p, charts.get(i)) for i, p in enumerate(panels))
        + "\n</div>"
    )
    return page(str(dash.get("title", "")), body)


class RenderError(RuntimeError):
    """A dashboard file that cannot be drawn; the message names it and what to do."""


@dataclass
class Rendered:
    """What render wrote: its index page, and the panels without data or with a failed query, by dashboard."""

    index: Path
    panels: int = 0
    empty: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def render(prom: PromClient, directory: Path, out: Path, rng: TimeRange) -> Rendered:
    """Write out/index.html and out/<uid>.html (charts in out/<uid>/) for every dashboard JSON in directory. The pages
    are written into a new directory beside out that then replaces it: out is whole, the old one or the new."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    done = Rendered(out / "index.html")
    links = []
    try:
        found = sorted(directory.glob("*.json"))
        if not found:
            raise RenderError(f"{directory}: no dashboard JSON to draw: run make dashboards")
        for path in found:
            try:
                dash = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise RenderError(f"{path}: not a dashboard's JSON ({exc}): run make dashboards") from None
            uid = str(dash.get("uid") or path.stem)
            panels = load(prom, dash, rng)
            charts = {}
            for i, p in enumerate(panels):
                if p.kind == "timeseries" and p.series and not p.errors:
                    (tmp / uid).mkdir(exist_ok=True)
                    charts[i] = f"{uid}/panel-{i:02d}.png"
                    plots.panel_chart(p, tmp / charts[i])
            (tmp / f"{uid}.html").write_text(dashboard_page(dash, panels, rng, charts))
            shown = [p for p in panels if p.kind != "row"]
            done.panels += len(shown)
            done.empty += [f"{uid}: {p.title}" for p in shown if p.empty]
            done.failed += [f"{uid}: {p.title}: {'; '.join(p.errors)}" for p in shown if p.errors]
            links.append(
                f'<li><a href="{escape(uid)}.html">{escape(str(dash.get("title", uid)))}</a> — '
                f"{len(shown)} panels. {escape(str(dash.get('description', '')))}</li>"
            )
        body = (
            f'<h1>Magellan dashboards</h1><p class="meta">{escape(_when(rng))}, from Prometheus at '
            f"{escape(prom.base_url)}</p><ul>{''.join(links)}</ul>"
        )
        (tmp / "index.html").write_text(page("Magellan dashboards", body))
        tmp.chmod(0o755)
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done


_VERDICT = re.compile(r"<td(?: style=\"text-align:\w+\")?>(ok|OFF)</td>")


def report_page(markdown_text: str) -> str:
    """The campaign's report.md as an HTML page (its tables, plots, expected values and verdicts)."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
    body = _VERDICT.sub(lambda m: f'<td class="{m.group(1).lower()}">{m.group(1)}</td>', body)
    title = markdown_text.splitlines()[0].lstrip("# ") if markdown_text else "Campaign report"
    return page(title, body)
