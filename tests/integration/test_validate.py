"""validate.yml stops bad inventories early, naming the host, the variable and the fix."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import ansible_playbook

pytestmark = pytest.mark.integration


def _validate(extra_vars: dict[str, object]) -> str:
    proc = ansible_playbook("validate.yml", "-e", json.dumps(extra_vars), check=False)
    assert proc.returncode != 0, "validate.yml accepted a bad inventory"
    return " ".join(proc.stdout.split())  # messages as one line, however the callback wraps them


def test_good_inventory_passes() -> None:
    ansible_playbook("validate.yml")


def test_unknown_profile_key() -> None:
    out = _validate({"testbed_node_profile": {"cpu": 1}})
    assert "testbed_node_profile has unknown key(s)" in out
    assert "Host compute1" in out or "Host head" in out
    assert "allowed keys are cpus" in out


def test_profile_out_of_range() -> None:
    out = _validate({"testbed_node_profile": {"cpus": 64}})
    assert "testbed_node_profile.cpus=64 is out of range" in out


def test_bad_memory_and_blkio() -> None:
    out = _validate({"testbed_node_profile": {"memory": "lots", "read_bps": "10mb"}})
    assert "testbed_node_profile.memory=lots must be a size" in out


@pytest.mark.parametrize("profile", [{"read_bps": "fast"}, {"read_bps": "5mb", "blkio_device": "sda"}])
def test_bad_block_io_throttle(profile: dict[str, str]) -> None:
    out = _validate({"testbed_node_profile": profile})
    assert "block I/O throttles need blkio_device 'auto'" in out


def test_subnet_clash_with_podman_default_network() -> None:
    # podman's own default network is 10.88.0.0/16 on every host with podman.
    out = _validate({"testbed_network_subnet": "10.88.0.0/24"})
    assert "testbed_network_subnet=10.88.0.0/24" in out
    assert "overlaps" in out


def test_address_outside_subnet() -> None:
    out = _validate({"testbed_network_subnet": "10.214.0.0/24", "testbed_network_gateway": "10.214.0.1"})
    assert "must be an address inside testbed_network_subnet=10.214.0.0/24" in out


def test_slurm_values_out_of_range() -> None:
    out = _validate({"slurm_memory_fraction": 2})
    assert "Slurm settings out of range" in out
    assert "slurm_memory_fraction=2" in out


def test_slurm_partition_without_nodes() -> None:
    out = _validate({"slurm_partitions": [{"name": "chos", "group": "nosuchgroup"}]})
    assert "group must name an inventory group" in out


def test_slurm_node_override_out_of_range() -> None:
    out = _validate({"slurm_node_cpus": 0})
    assert "slurm_node_cpus=0 must be 1-4096" in out


def test_guest_larger_than_its_hypervisor() -> None:
    out = _validate({"virtual_node_vcpus": 64})
    assert "Host vm1: virtual_node_vcpus=64 and virtual_node_memory_mb=1536 must fit its hypervisor hv1" in out
    out = _validate({"virtual_node_memory_mb": 10_000_000})
    assert "Host vm1: virtual_node_vcpus=1 and virtual_node_memory_mb=10000000 must fit its hypervisor hv1" in out


def test_unknown_hypervisor() -> None:
    out = _validate({"virtual_node_hypervisor": "vmware"})
    assert "Host vm1:" in out and "virtual_node_hypervisor=vmware one of kvm, xen (hypervisors the testbed" in out


def test_missing_guest_image() -> None:
    out = _validate({"virtual_node_image": "centos7"})
    assert "Host vm1: virtual_node_image=centos7 is not an image of its hypervisor hv1" in out


def test_bad_hypervisor_settings() -> None:
    out = _validate({"kvm_host_uplink": "not an interface"})
    assert (
        "Host hv1: kvm_host_hypervisor=kvm" in out
        and "kvm_host_uplink=not an interface and kvm_host_bridge=mgvirt0 interface names" in out
    )


def test_bad_data_disk() -> None:
    out = _validate({"virtual_node_data_disks": [{"name": "Disk 1", "size_mb": 8}]})
    assert "Host storage1: data disk" in out and "of virtual_node_data_disks needs name (lower-case letters" in out


def test_bad_storage_array() -> None:
    out = _validate({"storage_array_arrays": [{"name": "hdd", "level": 4, "members": ["/dev/sdb"]}]})
    assert "roles/storage_array: storage_array_arrays: array 'hdd': level: 4 is not one of 0, 1, 5, 6, 10" in out
