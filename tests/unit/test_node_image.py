"""The node image: the packages it carries beyond role os_tree's base (playbooks/vars/node_image.yml) are ones the
roles install, and role os_tree's customize.sh leaves no service enabled and no key behind that a node role has not
configured."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CUSTOMIZE = REPO / "roles" / "os_tree" / "files" / "customize.sh"


def _role_texts() -> dict[str, str]:
    """Role name -> the text of its tasks, vars and defaults (where its apt tasks name their packages)."""
    texts: dict[str, str] = {}
    for role in sorted((REPO / "roles").iterdir()):
        files = [*role.glob("tasks/*.yml"), *role.glob("vars/*.yml"), *role.glob("defaults/*.yml")]
        texts[role.name] = "\n".join(f.read_text() for f in files)
    return texts


def test_every_package_of_the_node_image_is_one_a_role_installs() -> None:
    packages = yaml.safe_load((REPO / "playbooks" / "vars" / "node_image.yml").read_text())["node_image_packages"]
    assert len(packages) == len(set(packages)), packages
    texts = _role_texts()
    orphans = [
        p for p in packages if not any(re.search(rf"(?<![\w.+-]){re.escape(p)}(?![\w.+-])", t) for t in texts.values())
    ]
    assert orphans == [], f"no role installs {orphans}: remove them from playbooks/vars/node_image.yml"


def _tree(root: Path, *, boots: bool) -> Path:
    """A tree as mmdebstrap leaves it with the extra packages installed (the files customize.sh looks at)."""
    (root / "etc" / "apt" / "apt.conf.d").mkdir(parents=True)
    lists = root / "var" / "lib" / "apt" / "lists"
    lists.mkdir(parents=True)
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages").write_text("Package: munge\n")
    (root / "etc" / "munge").mkdir()
    (root / "etc" / "munge" / "munge.key").write_bytes(b"\0" * 1024)
    if boots:
        (root / "etc" / "ssh").mkdir()
        (root / "etc" / "ssh" / "sshd_config").write_text("#PermitRootLogin prohibit-password\n")
        (root / "etc" / "ssh" / "ssh_host_ed25519_key").write_text("a host key\n")
        for target, units in {
            "multi-user.target.wants": ["munge.service", "slurmd.service", "mariadb.service", "e2scrub_reap.service"],
            "sockets.target.wants": ["mariadb.socket"],
            "timers.target.wants": ["apt-daily.timer"],
        }.items():
            wants = root / "etc" / "systemd" / "system" / target
            wants.mkdir(parents=True)
            for unit in units:
                (wants / unit).symlink_to(f"/lib/systemd/system/{unit}")
    return root


def _customize(tree: Path, kind: str) -> None:
    done = subprocess.run(
        ["sh", str(CUSTOMIZE), str(tree), "bookworm", "http://deb.debian.org/debian", kind],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _wanted(tree: Path) -> set[str]:
    return {p.name for p in (tree / "etc" / "systemd" / "system").glob("*.wants/*")}


def test_a_node_tree_keeps_only_sshd_enabled_no_key_and_its_package_lists(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "node", boots=True)
    _customize(tree, "node")
    assert _wanted(tree) == {"ssh.service", "e2scrub_reap.service", "apt-daily.timer"}
    assert not (tree / "etc" / "munge" / "munge.key").exists()
    assert not list((tree / "etc" / "ssh").glob("ssh_host_*"))
    assert list((tree / "var" / "lib" / "apt" / "lists").glob("*_Packages"))
    assert "PermitRootLogin prohibit-password" in (tree / "etc" / "ssh" / "sshd_config").read_text()


@pytest.mark.parametrize("kind", ["guest", "node"])
def test_a_tree_that_does_not_boot_has_no_package_lists_and_no_key(tmp_path: Path, kind: str) -> None:
    """A CHOS environment's tree (no sshd): its first apt run refreshes the lists; no MUNGE key either."""
    tree = _tree(tmp_path / "chos", boots=False)
    _customize(tree, kind)
    assert not list((tree / "var" / "lib" / "apt" / "lists").glob("*_Packages"))
    assert not (tree / "etc" / "munge" / "munge.key").exists()


def test_a_guest_tree_keeps_its_units_for_customize_guest(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "guest", boots=True)
    _customize(tree, "guest")
    assert "mariadb.socket" in _wanted(tree)  # customize-guest.sh names what a guest does not start
    assert list((tree / "var" / "lib" / "apt" / "lists").glob("*_Packages"))
