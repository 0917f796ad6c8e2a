"""Role nfs_export in the scenario's guest (the host kernel has neither an NFS server nor a client): the arrays exported
read-only over NFSv4 only, to the guest itself (group nfs_clients), and a file of an array read back through a mount."""

import shlex

import pytest

testinfra_hosts = ["podman://molecule-vhead"]
MOUNT = "/mnt/magellan-nfs-test"


@pytest.fixture(scope="module")
def guest(host):
    """A command's output on the guest (as root, through Slurm: its partition is named after its accelerator)."""
    partition = host.check_output("sinfo --noheader --format=%P --nodes=molecule-vm1").rstrip("*")

    def run(command, check=True):
        argv = f"srun -p {partition} sh -c {shlex.quote(command)}"
        return host.check_output(argv) if check else host.run(argv)

    return run


def test_the_server_runs_nfsv4_only(guest):
    assert guest("systemctl is-enabled nfs-server; systemctl is-active nfs-server").split() == ["enabled", "active"]
    versions = guest("cat /proc/fs/nfsd/versions").split()
    assert "-3" in versions and "+4.2" in versions, versions


def test_the_arrays_are_exported_read_only_to_the_client_only(guest):
    address = guest("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -n1")
    table = guest("exportfs -s")
    line = next(x for x in table.splitlines() if x.startswith("/srv/arrays "))
    client, options = line.split()[1].split("(", 1)
    assert client == address, table
    assert {"ro", "sync", "root_squash", "no_subtree_check", "crossmnt", "sec=sys"} <= set(
        options.rstrip(")").split(",")
    )


def test_a_file_on_an_array_reads_back_through_an_nfsv4_mount(guest):
    address = guest("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -n1")
    probe = "/srv/arrays/fast/nfs-probe.bin"
    guest(f"head -c 1048576 /dev/urandom > {probe} && mkdir -p {MOUNT}")
    try:
        guest(f"mount -t nfs4 -o ro,vers=4.2 {address}:/srv/arrays {MOUNT}")
        local, remote = guest(f"sha256sum < {probe}; sha256sum < {MOUNT}/fast/nfs-probe.bin").splitlines()
        assert local == remote
        assert "nfs4" in guest(f"findmnt -no FSTYPE {MOUNT}")
        refused = guest(f"mount -o remount,rw {MOUNT} 2>&1; touch {MOUNT}/fast/written 2>&1", check=False)
        assert "Read-only file system" in refused.stdout + refused.stderr, refused
        assert guest("test -e /srv/arrays/fast/written; echo $?") == "1"
    finally:
        guest(f"umount {MOUNT} 2>/dev/null; rm -f {probe}; true")
