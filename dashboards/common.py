"""Shared dashboard defaults: the $datasource variable, node/platform filters, panel and query helpers."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

from magellan import contract

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Series selector every magellan panel filters on; $platform and $node are multi-value variables.
SELECTOR = 'platform=~"$platform", node=~"$node"'
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


def magellan_dashboard(title: str, uid: str, description: str, tag: str, metric: str) -> dashboard.Dashboard:
    """A magellan dashboard: its defaults, the $datasource variable, and $platform / $node taken from `metric`."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["magellan", "generated", tag])
        .refresh("10s")
        .time("now-30m", "now")
        .timezone("browser")
        .editable()
        .with_variable(datasource_variable())
        .with_variable(label_variable("platform", "Platform", f"label_values({metric}, platform)"))
        .with_variable(label_variable("node", "Node", f'label_values({metric}{{platform=~"$platform"}}, node)'))
    )


def running_jobs() -> str:
    """Running jobs per node and platform, for the selected nodes."""
    return f'sum by (node, platform) ({JOB["state"]}{{state="running", {SELECTOR}}})'
