""" "Storage arrays": the storage nodes' md arrays and their devices — what they deliver, their state and rebuilds, who
reads them, and what they cost (role storage_array's device catalogue, magellan.contract.STORAGE_CATALOGUE).

The array series are magellan-storage-exporter's (exporters/storage*.py own their names; the lint checks each one
against its golden exposition): per md device, joined with magellan_storage_md_info for the array's md name (label
array), the name the catalogue's series carry. A sync figure exists only while a sync runs: those queries fall back
to 0 for every array (`or on(node, device) 0 * md_info`), so that an idle, clean site shows 0, not "No data". The
devices' panels take the arrays' members only: the diskstats series whose device is the member of a
magellan_storage_md_member_info series (its label `member`, copied to `device` with label_join), so that a system
disk (vda, the root disk) or any other device no array holds is not shown.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat, timeseries

from dashboards.common import (
    RATE,
    SELECTOR,
    magellan_dashboard,
    stat_panel,
    target,
    timeseries_panel,
)
from dashboards.storage_concurrency import concurrent_jobs, read_per_job
from magellan import contract

UID = "magellan-storage-arrays"
MD = "magellan_storage_md_"
DISK = "magellan_storage_disk_"
MD_INFO = f"{MD}info{{{SELECTOR}}}"
# every member device of the selected nodes' arrays, once (a container's disk is a member of the container and of
# its volumes), its block device copied to label `device` (diskstats' name for it): label_join of the one label, as
# label_replace would with "$1", which Grafana would take for a variable
MEMBERS = f'label_join(group by (node, member) ({MD}member_info{{{SELECTOR}}}), "device", "", "member")'
ARRAY = "{{array}} ({{node}} {{device}})"
CAT = contract.STORAGE_CATALOGUE
CATALOGUE_LEGEND = "{{array}}: {{device_class}} {{model}}"
USD = "currencyUSD"


def per_array(expr: str) -> str:
    """expr (one series per node and md device) labelled with the array's md name."""
    return f"({expr}) * on(node, device) group_left(array) {MD_INFO}"


def or_idle(expr: str) -> str:
    """expr, or 0 for each array that has no such series (a sync figure while no sync runs)."""
    return f"{expr} or on(node, device) 0 * {MD_INFO}"


def members_only(expr: str) -> str:
    """expr (one series per node and block device) for the arrays' member devices only (`and` keeps expr's series
    and values)."""
    return f"({expr}) and on(node, device) {MEMBERS}"


def device_rate(metric: str, matchers: str) -> str:
    return f"sum by (node, device) (rate({metric}{{{matchers}}}[{RATE}]))"


def io_figures(matchers: str, label: str, by_array: bool) -> list[timeseries.Panel]:
    """Throughput, IOPS, time-weighted latency and queue depth of the devices `matchers` selects (diskstats): per
    array (named), or of the arrays' members only."""

    def q(expr: str) -> str:
        return per_array(expr) if by_array else members_only(expr)

    legend = ARRAY if by_array else "{{node}} {{device}}"

    def rate(name: str) -> str:
        return device_rate(f"{DISK}{name}", matchers)

    def latency(time: str, ops: str) -> str:
        # 0/0 is NaN, which a panel shows as "No data": while a device does no I/O of a kind, its latency is 0
        return f"{rate(time)} / clamp_min({rate(ops)}, 1e-9)"

    return [
        timeseries_panel(
            f"Throughput per {label}",
            f"Bytes per second each {label} read and wrote (/proc/diskstats). An array's figure is what its file "
            "system asked of md; its members' add up to more when md writes parity or mirror copies.",
            "Bps",
            [
                target(q(rate("read_bytes_total")), f"{legend} read", "A"),
                target(q(rate("written_bytes_total")), f"{legend} write", "B"),
            ],
        ),
        timeseries_panel(
            f"IOPS per {label}",
            f"Reads and writes completed per second by each {label}.",
            "iops",
            [
                target(q(rate("reads_completed_total")), f"{legend} read", "A"),
                target(q(rate("writes_completed_total")), f"{legend} write", "B"),
            ],
        ),
        timeseries_panel(
            f"Average latency per {label}",
            "Time a read (a write) took on average over the window, queueing included: the rate of the time all "
            "reads took divided by the rate of reads, so every request weighs the same. 0 while the device does no "
            "I/O of that kind.",
            "s",
            [
                target(q(latency("read_time_seconds_total", "reads_completed_total")), f"{legend} read", "A"),
                target(q(latency("write_time_seconds_total", "writes_completed_total")), f"{legend} write", "B"),
            ],
        ),
        timeseries_panel(
            f"Queue depth per {label}",
            "Average number of requests in progress over the window: the rate of the time integral of the requests "
            "in flight (diskstats' weighted I/O time). A device kept busy by N readers shows about N.",
            "short",
            [target(q(rate("io_time_weighted_seconds_total")), legend)],
        ),
    ]


def catalogue(role: str) -> str:
    """One catalogue series of the selected nodes, labelled with its array's model, device class and level."""
    return f"{CAT[role]}{{{SELECTOR}}}"


def with_model(expr: str) -> str:
    """expr (per node and array) with the catalogue's model, device class and level of the array."""
    return f"({expr}) * on(node, array) group_left(model, device_class, level) {catalogue('info')}"


def per_tb(role: str) -> str:
    """A catalogue figure per TB (10^12 bytes) usable."""
    return f"{catalogue(role)} / on(node, array) group_left() {catalogue('usable')} * 1e12"


def catalogue_panels() -> list[stat.Panel]:
    return [
        stat_panel(
            "Price per TB usable",
            "Purchase price of each array built of the catalogue model's real devices (members and spares, at the "
            "catalogue's dated price) divided by its usable capacity: parity, mirrors and spares cost without "
            "adding capacity.",
            USD,
            [target(with_model(per_tb("price")), CATALOGUE_LEGEND)],
        ),
        stat_panel(
            "Power per TB usable",
            "Watts of each array's devices by their datasheets, busy (active) and idle, per TB usable.",
            "suffix: W/TB",
            [target(with_model(per_tb("watts")), f"{CATALOGUE_LEGEND} {{{{state}}}}")],
        ),
        stat_panel(
            "Expected failed disks per year",
            "Devices of each array times the model's annualised failure rate (published fleet statistics): the "
            "disks a site replaces a year, and the rebuilds it lives through.",
            "short",
            [target(with_model(catalogue("failures")), CATALOGUE_LEGEND)],
        ),
        stat_panel(
            "Replacement cost per year",
            "Expected failed devices a year times their price: what the failures cost in disks (labour not counted).",
            USD,
            [target(with_model(catalogue("replacement")), CATALOGUE_LEGEND)],
        ),
        stat_panel(
            "Cost of ownership over the service life",
            "Purchase price, the energy of running busy all the time and the expected replacements over the service "
            "life (next panel). Enclosures, controllers, cooling and labour are not counted.",
            USD,
            [target(with_model(catalogue("tco")), CATALOGUE_LEGEND)],
        ),
        stat_panel(
            "Cost of ownership per TB usable",
            "The cost of ownership over the service life divided by the usable capacity: the figure to compare "
            "arrays of different sizes by.",
            USD,
            [target(with_model(per_tb("tco")), CATALOGUE_LEGEND)],
        ),
        stat_panel(
            "Service life",
            "Years of service the cost of ownership counts energy and replacements for (role storage_array).",
            "short",
            [target(with_model(catalogue("life")), CATALOGUE_LEGEND)],
        ),
    ]


def build() -> dashboard.Dashboard:
    d = magellan_dashboard(
        "Storage arrays",
        UID,
        "The storage nodes' md arrays (magellan-storage-exporter) and their devices: state, degraded members and "
        "rebuilds with their ETA; throughput, IOPS, latency and queue depth per array and device; the jobs reading "
        "them; and each array's cost, power and failures from role storage_array's device catalogue. The node "
        "filter holds the storage nodes and the nodes whose jobs read them.",
        "storage",
        "up",
    )
    d = d.with_row(dashboard.Row("Arrays: state and rebuilds"))
    d = d.with_panel(
        stat_panel(
            "Array state",
            "Each array's state as md reports it (md/array_state), in the series' name: clean or active when it "
            "runs (a degraded array too: see the next panels), inactive, readonly, read-auto, broken otherwise.",
            "short",
            [target(per_array(f"{MD}state{{{SELECTOR}}}"), "{{array}} ({{device}}): {{state}}")],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Degraded members",
            "Slots of each array without an in-sync member (md/degraded): a failed or missing disk, or one still "
            "rebuilding. 0 is good; a RAID 6 survives 2, a RAID 5 or mirror 1.",
            "short",
            [target(per_array(f"{MD}degraded_disks{{{SELECTOR}}}"), ARRAY)],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Failed members",
            "Members md marks faulty (md/dev-*/state): disks to replace. 0 is good.",
            "short",
            [target(per_array(f'{MD}disks{{state="failed", {SELECTOR}}}'), ARRAY)],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Sync action",
            "What md is doing on each redundant array (md/sync_action): idle, resync, recover (a rebuild onto a "
            "replacement), check, repair, reshape; a sync waiting to start is the action it waits for.",
            "short",
            [target(per_array(f"{MD}sync_action{{{SELECTOR}}}"), "{{array}} ({{device}}): {{action}}")],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Members by state",
            "Member disks of each array: active (in sync), failed, spare (a rebuilding member counts as a spare "
            "until it is in sync).",
            "short",
            [target(per_array(f"{MD}disks{{{SELECTOR}}}"), "{{array}} {{state}}")],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Sync and rebuild progress",
            "Done part of the running sync (resync, rebuild, check, reshape), 0 to 1, counted in sectors of a "
            "member (not mdstat's blocks divided by the array's size). 0 while no sync runs.",
            "percentunit",
            [target(per_array(or_idle(f"{MD}sync_progress_ratio{{{SELECTOR}}}")), ARRAY)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Sync and rebuild speed",
            "Speed of the running sync (md/sync_speed, per member; md holds it under md/sync_speed_max, and above "
            "md/sync_speed_min whatever the other I/O). 0 while no sync runs.",
            "Bps",
            [target(per_array(or_idle(f"{MD}sync_speed_bytes_per_second{{{SELECTOR}}}")), ARRAY)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Sync and rebuild time remaining (ETA)",
            "Time the running sync needs at its current speed (sectors left / md/sync_speed, else mdstat's "
            "finish=): how long a rebuilding array stays exposed to a further failure. 0 while no sync runs.",
            "s",
            [target(per_array(or_idle(f"{MD}sync_remaining_seconds{{{SELECTOR}}}")), ARRAY)],
        )
    )
    d = d.with_row(dashboard.Row("Arrays: throughput, IOPS, latency, queue depth"))
    for panel in io_figures(f'{SELECTOR}, device=~"md.+"', "array", by_array=True):
        d = d.with_panel(panel)
    d = d.with_row(dashboard.Row("Devices of the storage nodes (the arrays' members)"))
    for panel in io_figures(SELECTOR, "device", by_array=False):
        d = d.with_panel(panel)
    d = d.with_row(dashboard.Row("Readers: the jobs and their share"))
    d = d.with_panel(concurrent_jobs())
    d = d.with_panel(read_per_job())
    d = d.with_row(dashboard.Row("Cost, power and reliability (role storage_array's device catalogue)"))
    for cost in catalogue_panels():
        d = d.with_panel(cost)
    return d
