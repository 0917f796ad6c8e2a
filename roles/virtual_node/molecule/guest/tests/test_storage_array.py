"""Role storage_array in the scenario's guest (md exists only in a guest kernel here): the arrays from the inventory,
their file systems aligned to the stripe and mounted with the asked options, the disks' schedulers by rotational flag,
readahead and stripe cache, periodic TRIM, and the arrays recorded for the next boot."""

import re
import shlex

import pytest

testinfra_hosts = ["podman://molecule-vhead"]
BY_ID = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_"


@pytest.fixture(scope="module")
def guest(host):
    """A command's output on the guest (as root, through Slurm: its partition is named after its accelerator)."""
    partition = host.check_output("sinfo --noheader --format=%P --nodes=molecule-vm1").rstrip("*")

    def run(command):
        # single quotes: $(...) is expanded on the guest, not by the shell that runs srun on the head
        return host.check_output(f"srun -p {partition} sh -c {shlex.quote(command)}")

    return run


def detail(guest, name):
    return dict(line.split("=", 1) for line in guest(f"mdadm --detail --export /dev/md/{name}").splitlines())


def test_the_arrays_are_the_inventorys(guest):
    mirror, fast = detail(guest, "mirror"), detail(guest, "fast")
    assert (mirror["MD_LEVEL"], mirror["MD_DEVICES"], mirror["MD_NAME"]) == ("raid1", "2", "molecule-vm1:mirror")
    assert (fast["MD_LEVEL"], fast["MD_DEVICES"], fast["MD_NAME"]) == ("raid5", "3", "molecule-vm1:fast")
    members = sorted(v for k, v in fast.items() if re.fullmatch(r"MD_DEVICE_dev_.*_DEV", k))
    ssds = sorted(guest(f"readlink -f {BY_ID}ssd{i}") for i in range(3))
    assert members == ssds
    assert re.search(r"md\d+ : active raid5 .*\n.*64k chunk", guest("cat /proc/mdstat"))


def test_file_systems_are_aligned_to_the_stripe_and_mounted_as_asked(guest):
    fs, options = guest("findmnt -no FSTYPE,OPTIONS /srv/arrays/fast").split()
    assert fs == "xfs" and "noatime" in options.split(",") and "discard" not in options.split(",")
    # 64-KiB chunk x 2 data disks, in 4-KiB blocks: sunit 16, swidth 32
    assert re.search(r"sunit=16\s+swidth=32 blks", guest("xfs_info /srv/arrays/fast"))
    fs, options = guest("findmnt -no FSTYPE,OPTIONS /srv/arrays/mirror").split()
    assert fs == "ext4" and "noatime" in options.split(",")
    uuid = guest("blkid -p -s UUID -o value /dev/md/mirror")  # mounted by its UUID, whatever md names the array
    assert re.search(rf"^UUID={uuid} /srv/arrays/mirror ext4 noatime,nofail ", guest("cat /etc/fstab"), re.M)


def test_each_disks_scheduler_follows_its_rotational_flag(guest):
    for disk, rotational, scheduler in (("hdd0", "1", "mq-deadline"), ("ssd0", "0", "none")):
        name = guest(f"basename $(readlink -f {BY_ID}{disk})")
        assert guest(f"cat /sys/block/{name}/queue/rotational") == rotational, disk
        assert f"[{scheduler}]" in guest(f"cat /sys/block/{name}/queue/scheduler"), disk


def test_readahead_and_stripe_cache_of_each_array(guest):
    mirror = guest("basename $(readlink -f /dev/md/mirror)")
    fast = guest("basename $(readlink -f /dev/md/fast)")
    assert guest(f"cat /sys/block/{mirror}/queue/read_ahead_kb") == "1024"
    assert guest(f"cat /sys/block/{fast}/queue/read_ahead_kb") == "4096"  # the role's default
    assert guest(f"cat /sys/block/{fast}/md/stripe_cache_size") == "1024"


def test_periodic_trim_and_the_arrays_are_kept_for_the_next_boot(guest):
    assert guest("systemctl is-enabled fstrim.timer") == "enabled"
    assert guest("systemctl is-active fstrim.timer") == "active"
    conf = guest("cat /etc/mdadm/mdadm.conf")
    for name in ("mirror", "fast"):
        assert re.search(rf"^ARRAY /dev/md/{name} .*name=molecule-vm1:{name} UUID=", conf, re.M), conf
    assert "spares=" not in conf
