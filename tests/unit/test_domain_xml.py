"""The libvirt domain XML of the virtual_node role: rendered with plain Jinja2 (the template uses no Ansible-only
filter), checked element by element, and validated against libvirt's own schemas with virt-xml-validate."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jinja2
import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "roles" / "virtual_node" / "templates"
PROFILE = {"read_bytes_sec": 50_000_000, "write_bytes_sec": 20_000_000, "total_iops_sec": 500}


def node_vars(hypervisor: str, accel: str, **overrides: Any) -> dict[str, Any]:
    """A typical node: 2 pinned vCPUs, 1 GiB on huge pages, a throttled root disk."""
    return {
        "ansible_managed": "Ansible managed",
        "inventory_hostname": "wn-01",
        "virtual_node_hypervisor": hypervisor,
        "virtual_node_accel": accel,
        "virtual_node_vcpus": 2,
        "virtual_node_memory_mb": 1024,
        "virtual_node_cpu_pinning": ["2", "3"],
        "virtual_node_hugepages": True,
        "virtual_node_disk_profile": PROFILE,
        "virtual_node_disk_path": "/var/lib/magellan/vm/wn-01.qcow2",
        "virtual_node_seed_path": "/var/lib/magellan/vm/wn-01-seed.iso",
        "virtual_node_kernel_path": "/var/lib/magellan/vm/vmlinuz",
        "virtual_node_initrd_path": "/var/lib/magellan/vm/initrd.img",
        "virtual_node_kernel_cmdline": "root=/dev/vda1 ro console=ttyS0",
        "virtual_node_mac": "52:54:00:d5:07:0b",
        "virtual_node_network": "magellan",
        "virtual_node_xen_bridge": "xenbr0",
        **overrides,
    }


def render(variables: dict[str, Any]) -> str:
    # The same whitespace handling as ansible.builtin.template (trim_blocks on, no autoescape).
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined, trim_blocks=True
    )
    return env.get_template("domain.xml.j2").render(variables)


def validate(xml: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("virt-xml-validate")
    if tool is None:
        pytest.fail("virt-xml-validate not found: `make bootstrap` installs libvirt-clients and libxml2-utils")
    path = tmp_path / "domain.xml"
    path.write_text(xml)
    return subprocess.run([tool, str(path), "domain"], capture_output=True, text=True)


def assert_valid(xml: str, tmp_path: Path) -> ET.Element:
    proc = validate(xml, tmp_path)
    assert proc.returncode == 0, f"virt-xml-validate rejected:\n{xml}\n{proc.stdout}{proc.stderr}"
    return ET.fromstring(xml)


def attr(domain: ET.Element, path: str, name: str) -> str | None:
    element = domain.find(path)
    assert element is not None, f"no {path}"
    return element.get(name)


def check_common(domain: ET.Element, disk_bus: str, prefix: str) -> None:
    assert domain.findtext("name") == "wn-01"
    assert domain.findtext("vcpu") == "2"
    assert domain.findtext("memory") == "1024" and attr(domain, "memory", "unit") == "MiB"
    assert domain.findtext("os/kernel") == "/var/lib/magellan/vm/vmlinuz"
    assert domain.findtext("os/initrd") == "/var/lib/magellan/vm/initrd.img"
    assert domain.findtext("os/cmdline") == "root=/dev/vda1 ro console=ttyS0"
    pins = [(p.get("vcpu"), p.get("cpuset")) for p in domain.findall("cputune/vcpupin")]
    assert pins == [("0", "2"), ("1", "3")]
    assert domain.find("memoryBacking/hugepages") is not None
    root, seed = domain.findall("devices/disk")
    assert attr(root, "source", "file") == "/var/lib/magellan/vm/wn-01.qcow2"
    assert (attr(root, "target", "dev"), attr(root, "target", "bus")) == (f"{prefix}a", disk_bus)
    assert attr(root, "driver", "type") == "qcow2" and root.find("readonly") is None
    assert {e.tag: int(e.text or "") for e in root.findall("iotune/*")} == PROFILE
    assert attr(seed, "source", "file") == "/var/lib/magellan/vm/wn-01-seed.iso"
    assert (attr(seed, "target", "dev"), attr(seed, "target", "bus")) == (f"{prefix}b", disk_bus)
    assert attr(seed, "driver", "type") == "raw" and seed.find("readonly") is not None
    assert attr(domain, "devices/interface/mac", "address") == "52:54:00:d5:07:0b"
    assert (domain.findtext("on_poweroff"), domain.findtext("on_crash")) == ("destroy", "destroy")


@pytest.mark.parametrize(("accel", "domain_type"), [("kvm", "kvm"), ("tcg", "qemu")])
def test_qemu_domain(accel: str, domain_type: str, tmp_path: Path) -> None:
    domain = assert_valid(render(node_vars("kvm", accel)), tmp_path)
    assert domain.get("type") == domain_type
    check_common(domain, "virtio", "vd")
    os_type = (attr(domain, "os/type", "arch"), attr(domain, "os/type", "machine"), domain.findtext("os/type"))
    assert os_type == ("x86_64", "pc", "hvm")
    assert domain.findtext("devices/emulator") == "/usr/bin/qemu-system-x86_64"
    assert attr(domain, "devices/interface", "type") == "network"
    assert attr(domain, "devices/interface/source", "network") == "magellan"
    assert attr(domain, "devices/interface/model", "type") == "virtio"
    assert attr(domain, "devices/console/target", "type") == "serial"
    assert domain.find("devices/serial") is not None
    assert attr(domain, "devices/memballoon", "model") == "virtio"
    cpu = domain.find("cpu")
    assert cpu is not None
    if accel == "kvm":
        assert cpu.get("mode") == "host-passthrough"
    else:  # TCG cannot pass the host CPU through
        assert cpu.get("mode") == "custom" and cpu.findtext("model") == "qemu64"


def test_xen_pv_domain(tmp_path: Path) -> None:
    domain = assert_valid(render(node_vars("xen", "xen")), tmp_path)
    assert domain.get("type") == "xen"
    check_common(domain, "xen", "xvd")
    assert (attr(domain, "os/type", "machine"), domain.findtext("os/type")) == ("xenpv", "linux")
    assert domain.find("devices/emulator") is None and domain.find("cpu") is None
    assert attr(domain, "devices/interface", "type") == "bridge"
    assert attr(domain, "devices/interface/source", "bridge") == "xenbr0"
    assert attr(domain, "devices/console/target", "type") == "xen"
    assert domain.find("devices/serial") is None


@pytest.mark.parametrize(("hypervisor", "accel"), [("kvm", "kvm"), ("kvm", "tcg"), ("xen", "xen")])
def test_without_pinning_hugepages_or_iotune(hypervisor: str, accel: str, tmp_path: Path) -> None:
    variables = node_vars(
        hypervisor, accel, virtual_node_cpu_pinning=[], virtual_node_hugepages=False, virtual_node_disk_profile={}
    )
    domain = assert_valid(render(variables), tmp_path)
    assert domain.find("cputune") is None
    assert domain.find("memoryBacking") is None
    assert domain.find("devices/disk/iotune") is None


def test_short_pinning_list_pins_only_the_vcpus_given(tmp_path: Path) -> None:
    variables = node_vars("kvm", "kvm", virtual_node_vcpus=4, virtual_node_cpu_pinning=["0-1"])
    domain = assert_valid(render(variables), tmp_path)
    assert domain.findtext("vcpu") == "4"
    assert [(p.get("vcpu"), p.get("cpuset")) for p in domain.findall("cputune/vcpupin")] == [("0", "0-1")]


def test_values_are_xml_escaped(tmp_path: Path) -> None:
    cmdline = "root=/dev/vda1 magellan.note='a<b & c'"
    domain = assert_valid(render(node_vars("kvm", "kvm", virtual_node_kernel_cmdline=cmdline)), tmp_path)
    assert domain.findtext("os/cmdline") == cmdline


def test_starts_with_the_ansible_managed_comment() -> None:
    assert render(node_vars("kvm", "kvm")).startswith("<!-- Ansible managed -->\n<domain type='kvm'>")


def test_missing_variable_is_an_error() -> None:
    variables = node_vars("kvm", "kvm")
    del variables["virtual_node_mac"]
    with pytest.raises(jinja2.UndefinedError, match="virtual_node_mac"):
        render(variables)


def test_validator_rejects_an_invalid_domain(tmp_path: Path) -> None:
    """Negative controls: the schema check above can fail."""
    xml = render(node_vars("kvm", "kvm")).replace("<apic/>", "<apic/>\n    <warp_drive/>")
    assert validate(xml, tmp_path).returncode != 0
    # libvirt forbids total_bytes_sec together with read/write_bytes_sec; the template passes the profile through
    both = {"total_bytes_sec": 1, "read_bytes_sec": 1}
    assert validate(render(node_vars("kvm", "kvm", virtual_node_disk_profile=both)), tmp_path).returncode != 0


def test_serial_console_is_logged_when_asked(tmp_path: Path) -> None:
    log = "/var/log/libvirt/qemu/wn-01-console.log"
    domain = assert_valid(render(node_vars("kvm", "tcg", virtual_node_console_log=log)), tmp_path)
    assert attr(domain, "devices/serial/log", "file") == log
    assert attr(domain, "devices/serial/log", "append") == "off"


DATA_DISKS = [
    {"name": "hdd0", "size_mb": 512, "rotational": True, "profile": {"read_bytes_sec": 10485760, "read_iops_sec": 100}},
    {"name": "ssd0", "size_mb": 512, "profile": {"total_bytes_sec": 41943040}},
]
DATA_PATHS = {"hdd0": "/var/lib/magellan/vm/wn-01-data-hdd0.raw", "ssd0": "/var/lib/magellan/vm/wn-01-data-ssd0.raw"}


@pytest.mark.parametrize(("hypervisor", "accel"), [("kvm", "kvm"), ("kvm", "tcg"), ("xen", "xen")])
def test_data_disks_carry_serial_rotation_and_throttles(hypervisor: str, accel: str, tmp_path: Path) -> None:
    variables = node_vars(
        hypervisor, accel, virtual_node_data_disks=DATA_DISKS, virtual_node_data_disk_paths=DATA_PATHS
    )
    domain = assert_valid(render(variables), tmp_path)
    disks = domain.findall("devices/disk")[2:]
    assert [attr(d, "source", "file") for d in disks] == list(DATA_PATHS.values())
    assert [d.findtext("serial") for d in disks] == ["hdd0", "ssd0"]
    assert {attr(d, "driver", "type") for d in disks} == {"raw"}
    if hypervisor == "xen":  # libxl: no SCSI, no rotation rate, no throttles (preflight refuses a profile there)
        assert [attr(d, "target", "dev") for d in disks] == ["xvdc", "xvdd"]
        assert domain.find("devices/controller[@type='scsi']") is None
        assert all(d.find("iotune") is None for d in disks)
        return
    assert attr(domain, "devices/controller[@type='scsi']", "model") == "virtio-scsi"
    targets = [(attr(d, "target", "dev"), attr(d, "target", "bus"), attr(d, "target", "rotation_rate")) for d in disks]
    assert targets == [("sda", "scsi", "7200"), ("sdb", "scsi", "1")]  # 1: the guest reads rotational 0, an SSD
    assert [attr(d, "address", "unit") for d in disks] == ["0", "1"]
    assert [{e.tag: int(e.text or "") for e in d.findall("iotune/*")} for d in disks] == [
        d["profile"] for d in DATA_DISKS
    ]


def test_no_data_disks_no_scsi_controller(tmp_path: Path) -> None:
    domain = assert_valid(render(node_vars("kvm", "tcg")), tmp_path)
    assert domain.find("devices/controller") is None and len(domain.findall("devices/disk")) == 2
