"""The virtual node of the local site: a guest on hv1 from the project's image, on the accelerator that really
works here, in the Slurm partition named after it, monitored, and compared with a bare-metal node."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from testbed import analysis
from testbed.inventory import Inventory
from testbed.model import Comparison
from testbed.prom import PromClient
from testbed.render import table
from tests.integration.conftest import node_shell

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def accel(site: Inventory) -> str:
    """What the hypervisor's probe found (kvm or tcg), from its local fact."""
    proc = node_shell(site, "hv1", "cat /etc/ansible/facts.d/magellan_hypervisor.fact")
    assert proc.returncode == 0, proc.stderr
    fact = json.loads(proc.stdout)
    assert fact["accel"] in ("kvm", "tcg") and fact["evidence"], fact
    return str(fact["accel"])


def test_guest_is_in_its_accelerators_partition(site: Inventory, accel: str) -> None:
    proc = node_shell(
        site, "head", f"sinfo --noheader --Node --nodes=vm1 --format='%N %P %t'; srun -p {accel} hostname"
    )
    assert proc.stdout.split() == ["vm1", accel, "idle", "vm1"], proc.stdout + proc.stderr


def test_bare_metal_vs_virtual_ratio_with_its_accelerator(bare_vs_virtual: Comparison, accel: str) -> None:
    rows = {r.result.node: r for r in analysis.rows(bare_vs_virtual)}
    vm, bare = rows["vm1"], rows["compute1"]
    assert (vm.result.accel, vm.result.platform) == (accel, accel)
    assert bare.result.accel is None and bare.verdict == "reference"
    assert vm.result.events > 0 and not vm.result.failed
    assert vm.expected is None  # no device profile predicts an accelerator's cost
    # KVM is near bare metal; TCG (software emulation) is far slower (here about 1/40 to 1/100), never faster.
    assert 0.5 < vm.ratio < 1.2 if accel == "kvm" else 0.001 < vm.ratio < 0.9, vm.ratio
    console = Console(width=220, record=True)
    console.print(table(bare_vs_virtual))
    line = next(x for x in console.export_text().splitlines() if x.lstrip("│ ").startswith("vm1 "))
    assert accel in line.split() and f"{vm.ratio:.3f}" in line


def test_results_carry_the_accelerator(bare_vs_virtual: Comparison, prom: PromClient, accel: str) -> None:
    # published as a textfile of head's node_exporter: in Prometheus from its next scrape on
    ratio = 'magellan_comparison_ratio{group="bare_vs_virtual", node="vm1"}'
    assert prom.wait_until(lambda: bool(prom.query(ratio)), timeout=60, interval=2), f"no {ratio} in Prometheus"
    series = prom.query(ratio)
    assert [(s.labels["accel"], s.labels["platform"], s.labels["reference"]) for s in series] == [
        (accel, accel, "compute1")
    ]
    info = prom.query('magellan_node_virtual_info{node="vm1"} == 1')
    assert [(s.labels["hypervisor"], s.labels["accel"]) for s in info] == [("kvm", accel)]


def test_virtualisation_exporter_reports_the_guest(site: Inventory, prom: PromClient, accel: str) -> None:
    busy = 'rate(magellan_virt_vcpu_seconds_total{domain="vm1"}[1m]) > 0'
    assert prom.wait_until(lambda: bool(prom.query(busy)), timeout=60, interval=5), "no vCPU time for vm1"

    state = prom.query('magellan_virt_domain_state{domain="vm1", state="running"} == 1')
    # The exporter names libvirt's driver: qemu for a TCG domain, kvm for a KVM one.
    driver = "kvm" if accel == "kvm" else "qemu"
    assert [(s.labels["node"], s.labels["hypervisor"], s.labels["accel"]) for s in state] == [("hv1", driver, accel)]
    assert prom.query('magellan_virt_memory_current_bytes{domain="vm1"}')[0].value == 1536 * 1024 * 1024


@pytest.mark.parametrize("guest", ["vm1", "storage1"])
def test_no_sysv_script_stands_beside_a_unit_in_a_guest(site: Inventory, guest: str) -> None:
    """roles/os_tree/files/customize-guest.sh: with an init script beside a service's unit, every enable and disable
    runs update-rc.d too (32 s under TCG); the guest image has none, and the roles brought none."""
    both = 'for s in /etc/init.d/*; do n=${s##*/}; [ -e "/lib/systemd/system/$n.service" ] && echo "$n"; done; true'
    out = node_shell(site, guest, both)
    assert out.returncode == 0 and out.stdout.split() == [], out.stdout + out.stderr
