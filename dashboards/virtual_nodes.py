""" "Virtual nodes": the libvirt domains of the hypervisors — CPU, steal, I/O, memory, state — and how fast a virtual
node runs simulate next to bare metal."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.builders.common import ReduceDataOptions

from dashboards.common import (
    RATE,
    SELECTOR,
    magellan_dashboard,
    stat_panel,
    target,
    timeseries_panel,
)
from exporters.virt import DOMAIN_TYPES
from magellan import contract

UID = "magellan-virtual-nodes"
UP = contract.exporter_up("virt")
ERRORS = contract.exporter_scrape_errors("virt") + "_total"
# Labels of the exporter's per-domain series (besides vcpu, disk, interface, state); node is the hypervisor.
DOMAIN = "node, domain, hypervisor, accel"
LEGEND = "{{domain}} on {{node}} ({{hypervisor}}, {{accel}})"


def per_domain(metric: str, how: str = "sum") -> str:
    """Per-second rate of a per-vCPU/disk/interface counter, summed (or averaged) per domain, selected hypervisors."""
    return f"{how} by ({DOMAIN}) (rate({metric}{{{SELECTOR}}}[{RATE}]))"


# A virtual node's platform is its accelerator (roles/virtual_node); bare-metal nodes publish accel "none".
VIRTUAL_PLATFORMS = "|".join(sorted({accel for _, accel in DOMAIN_TYPES.values()}))
SIMULATE = 'magellan_comparison_events_per_second{workload="simulate", '
# Simulate events/s of each virtual node (an accelerator as accel label or as platform) divided by the fastest
# bare-metal node's in the same published comparison (group), whichever node it took as its reference.
VIRTUAL_VS_BARE_METAL = (
    f'({SIMULATE}accel!="none"}} or {SIMULATE}platform=~"{VIRTUAL_PLATFORMS}"}})'
    " / on (group, workload, readers) group_left "
    f'max by (group, workload, readers) ({SIMULATE}accel="none", platform!~"{VIRTUAL_PLATFORMS}"}})'
)


def build() -> dashboard.Dashboard:
    d = magellan_dashboard(
        "Virtual nodes",
        UID,
        "The hypervisors' libvirt domains (magellan-virt-exporter): vCPU use and steal, block and network I/O, "
        "memory and state per domain, by hypervisor and accelerator; and virtual against bare-metal simulate speed.",
        "virtualisation",
        UP,
    )
    d = d.with_row(dashboard.Row("vCPUs"))
    d = d.with_panel(
        timeseries_panel(
            "vCPU utilisation",
            "CPU time the domain's vCPU threads used per second, averaged over its vCPUs (1 = every vCPU busy all "
            "the time). Under TCG (accel tcg) a busy vCPU does far less guest work per second than under KVM.",
            "percentunit",
            [target(per_domain("magellan_virt_vcpu_seconds_total", "avg"), LEGEND)],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "vCPU steal",
            "Time per second a vCPU was ready to run but waited in the hypervisor's run queue (libvirt vcpu.N.delay), "
            "averaged over the domain's vCPUs; the guest sees it as steal time. Above a few percent the host's CPUs "
            "are overcommitted and the guest's jobs slow down for it.",
            "percentunit",
            [target(per_domain("magellan_virt_vcpu_steal_seconds_total", "avg"), LEGEND)],
        )
    )
    d = d.with_row(dashboard.Row("I/O"))
    d = d.with_panel(
        timeseries_panel(
            "Block I/O",
            "Bytes per second the domain read from and wrote to its virtual disks, summed over its disks, as QEMU "
            "counts them on the hypervisor.",
            "Bps",
            [
                target(per_domain("magellan_virt_block_read_bytes_total"), f"{LEGEND} read", "A"),
                target(per_domain("magellan_virt_block_written_bytes_total"), f"{LEGEND} write", "B"),
            ],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Network I/O",
            "Bytes per second the domain received and sent, summed over its interfaces (the host-side devices, "
            "e.g. vnet1).",
            "Bps",
            [
                target(per_domain("magellan_virt_net_receive_bytes_total"), f"{LEGEND} rx", "A"),
                target(per_domain("magellan_virt_net_transmit_bytes_total"), f"{LEGEND} tx", "B"),
            ],
        )
    )
    d = d.with_row(dashboard.Row("Memory and state"))
    d = d.with_panel(
        timeseries_panel(
            "Memory: balloon and host RSS",
            "The memory the domain has now (the balloon's current size) next to the resident memory of its QEMU "
            "process on the hypervisor: what the guest was given and what it costs the host.",
            "bytes",
            [
                target(f"magellan_virt_memory_current_bytes{{{SELECTOR}}}", f"{LEGEND} balloon", "A"),
                target(f"magellan_virt_memory_rss_bytes{{{SELECTOR}}}", f"{LEGEND} host RSS", "B"),
            ],
        )
    )
    d = d.with_panel(
        timeseries_panel(
            "Domain state",
            "Each domain's libvirt state (running, paused, shutoff, crashed, ...): one line at 1 per domain, named "
            "after its current state. A domain that leaves 'running' shows as a new line.",
            "short",
            [
                target(
                    f"max by ({DOMAIN}, state) (magellan_virt_domain_state{{{SELECTOR}}}) == 1",
                    "{{domain}} on {{node}}: {{state}} ({{hypervisor}}, {{accel}})",
                )
            ],
        )
    )
    d = d.with_row(dashboard.Row("Hypervisors"))
    d = d.with_panel(
        stat_panel(
            "Domains running",
            "Domains in state running on the selected hypervisors, by hypervisor and accelerator.",
            "short",
            [
                target(
                    f'sum by (node, hypervisor, accel) (magellan_virt_domain_state{{state="running", {SELECTOR}}})',
                    "{{node}} ({{hypervisor}}, {{accel}})",
                )
            ],
        )
    )
    d = d.with_panel(
        stat_panel(
            "Virt exporters up",
            "Hypervisors whose exporter could run virsh domstats and read it at its last scrape (1 each). Fewer than "
            "hypervisors: their domains are missing from every other panel; the errors panel says why.",
            "short",
            [target(f"sum({UP}{{{SELECTOR}}})", "up")],
        )
    )
    d = d.with_panel(
        stat_panel(
            "virsh errors in the time range",
            "Failed virsh runs and unusable output over the dashboard's time range, all reasons together (not "
            f"found, exec, timeout, exit status, parse, dumpxml; {ERRORS}{{reason}} tells them apart). Should be 0. "
            "Grafana computes it as the Delta of the error counters over the range (an exporter's restart counts as "
            "new errors).",
            "short",
            [target(f"sum({ERRORS}{{{SELECTOR}}})", "errors")],
        ).reduce_options(ReduceDataOptions().calcs(["delta"]).values(False))
    )
    d = d.with_panel(
        stat_panel(
            "Scrape time of the virt exporters",
            "The longest time one exporter's virsh runs took at its last scrape. Close to the exporter's "
            "--virsh.timeout: libvirtd is slow, and a scrape is about to fail.",
            "s",
            [target(f"max(magellan_virt_scrape_duration_seconds{{{SELECTOR}}})", "slowest")],
        )
    )
    d = d.with_row(dashboard.Row("Latest comparison: virtual vs bare metal (published by testbed compare)"))
    d = d.with_panel(
        stat_panel(
            "Simulate speed of virtual nodes relative to bare metal",
            "Events per second of each virtual node in the latest simulate comparison divided by the fastest "
            "bare-metal node's in the same comparison (1 = as fast as bare metal). A virtual node's platform is "
            "the accelerator it ran on: kvm, tcg or xen. Not filtered by the hypervisor variables: the comparison "
            "labels the virtual node, not its hypervisor.",
            "short",
            [target(VIRTUAL_VS_BARE_METAL, "{{node}} ({{platform}})")],
            width=24,
        )
    )
    return d
