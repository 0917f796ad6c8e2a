"""A guest from the project's image boots on the hypervisor node, on the accelerator that really works, and runs
Slurm jobs in the partition named after that accelerator."""

import json
import re

import pytest
import testinfra

testinfra_hosts = ["podman://molecule-vhead"]
GUEST = "molecule-vm1"
HV = testinfra.get_host("podman://molecule-hv")
DOMAINS = "/etc/magellan/domains"


@pytest.fixture(scope="module")
def accel():
    fact = json.loads(HV.check_output("cat /etc/ansible/facts.d/magellan_hypervisor.fact"))
    assert fact["hypervisor"] == "kvm" and fact["accel"] in ("kvm", "tcg")
    # The choice comes from the probe (a kernel booted under KVM, or why not), never from a default.
    if not HV.file("/dev/kvm").exists:
        assert (fact["accel"], fact["evidence"]) == ("tcg", "no /dev/kvm")
    elif fact["accel"] == "kvm":
        assert fact["evidence"] == "a kernel booted under KVM"
    else:  # these machines: /dev/kvm is there but cannot run a Linux guest (MISSION.md)
        assert fact["evidence"].startswith("KVM did not boot a kernel")
    return fact["accel"]


def test_guest_is_idle_in_its_accelerators_partition(host, accel):
    out = host.check_output(f"sinfo --noheader --Node --nodes={GUEST} --format='%N %P %t'")
    assert out.replace("*", "").split() == [GUEST, accel, "idle"]  # * marks the default partition


def test_srun_runs_on_the_guest(host, accel):
    assert host.check_output(f"srun -p {accel} hostname") == GUEST


def test_guest_runs_the_project_image(host, accel):
    assert re.match(r"^12\.\d+$", host.check_output(f"srun -p {accel} cat /etc/debian_version"))
    assert host.check_output(f"srun -p {accel} findmnt -no SOURCE /") == "/dev/vda"
    assert host.check_output(f"srun -p {accel} blkid -s LABEL -o value /dev/vda") == "magellan-root"
    # The guest records what it runs on (the node exporter and Slurm read this local fact).
    fact = json.loads(host.check_output(f"srun -p {accel} cat /etc/ansible/facts.d/magellan.fact"))
    assert fact["virtual"] == {
        "hypervisor": "kvm",
        "accel": accel,
        "platform": accel,
        "hypervisor_host": "molecule-hv",
        "vcpus": 1,
        "memory_mb": 1024,
    }


def test_domain_is_what_the_inventory_asked_for(accel):
    info = HV.check_output(f"virsh dominfo {GUEST}")
    assert re.search(r"^State:\s+running$", info, re.M)
    assert re.search(r"^CPU\(s\):\s+1$", info, re.M)
    assert re.search(r"^Max memory:\s+1048576 KiB$", info, re.M)
    tune = HV.check_output(f"virsh blkdeviotune {GUEST} vda")
    assert re.search(r"^read_bytes_sec\s*:\s*20971520$", tune, re.M)
    assert re.search(r"^write_bytes_sec\s*:\s*10485760$", tune, re.M)
    xml = HV.check_output(f"virsh dumpxml {GUEST}")
    assert f"<domain type='{'kvm' if accel == 'kvm' else 'qemu'}'" in xml


@pytest.mark.parametrize(("name", "domain_type"), [(GUEST, None), (f"{GUEST}-xen", "xen")])
def test_domain_xml_passes_virt_xml_validate(name, domain_type, accel):
    path = f"{DOMAINS}/{name}.xml"
    result = HV.run(f"virt-xml-validate {path} domain")
    assert result.rc == 0, result.stdout + result.stderr
    expected = domain_type or ("kvm" if accel == "kvm" else "qemu")
    assert f"<domain type='{expected}'>" in HV.check_output(f"cat {path}")


def test_virt_xml_validate_rejects_a_broken_domain():
    HV.check_output(f"sed 's|<vcpu |<vcpus |; s|</vcpu>|</vcpus>|' {DOMAINS}/{GUEST}.xml > /tmp/broken.xml")
    assert HV.run("virt-xml-validate /tmp/broken.xml domain").rc != 0
