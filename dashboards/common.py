"""Shared dashboard defaults: the $datasource variable, node/platform filters, panel and query helpers."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

from magellan import contract

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# The filters of a dashboard: (label, variable label) pairs, each a multi-value variable whose values are taken
# from the dashboard's metric, narrowed by the filters before it. Most dashboards filter by platform and node.
NODE_FILTERS = (("platform", "Platform"), ("node", "Node"))


def selector(filters: tuple[tuple[str, str], ...]) -> str:
    """The label matchers of a dashboard's filters: `platform=~"$platform", node=~"$node"`."""
    return ", ".join(f'{name}=~"${name}"' for name, _ in filters)


# Series selector every node-filtered panel uses.
SELECTOR = selector(NODE_FILTERS)
RATE = "$__rate_interval"
JOB = contract.JOB_METRICS  # the job exporter's per-job series


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def target(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id)


def _legend() -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["mean", "lastNotNull"])
    )


def timeseries_panel(
    title: str, description: str, unit: str, targets: list[prometheus.Dataquery], width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(8)
        .legend(_legend())
    )
    for t in targets:
        panel = panel.with_target(t)
    return panel


def stat_panel(
    title: str, description: str, unit: str, targets: list[prometheus.Dataquery], width: int = 6
) -> stat.Panel:
    panel = stat.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit).span(width).height(4)
    for t in targets:
        panel = panel.with_target(t)
    return panel


def magellan_dashboard(
    title: str,
    uid: str,
    description: str,
    tag: str,
    metric: str,
    filters: tuple[tuple[str, str], ...] = NODE_FILTERS,
    since: str = "now-30m",
) -> dashboard.Dashboard:
    """A magellan dashboard: its defaults, the $datasource variable, and a variable per filter (by default $platform
    and $node) taken from `metric`; tag: its area (its folder in Grafana); since: the start of its time range."""
    d = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([*contract.DASHBOARD_TAGS, tag])
        .refresh("10s")
        .time(since, "now")
        .timezone("browser")
        .editable()
        .with_variable(datasource_variable())
    )
    for i, (name, label) in enumerate(filters):
        narrowed = f"{metric}{{{selector(filters[:i])}}}" if i else metric
        d = d.with_variable(label_variable(name, label, f"label_values({narrowed}, {name})"))
    return d


def running_jobs() -> str:
    """Running jobs per node and platform, for the selected nodes."""
    return f'sum by (node, platform) ({JOB["state"]}{{state="running", {SELECTOR}}})'
