"""The vars plugin plugins/vars/magellan_contract.py, through ansible-inventory and this repository's ansible.cfg:
every host gets magellan.contract.site_vars(), and whatever an inventory sets wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from magellan import contract

ROOT = Path(__file__).resolve().parents[2]

HOSTS = """\
all:
  hosts:
    plain:
  children:
    g:
      hosts:
        member:
"""


def hostvars(inventory: Path) -> dict[str, dict[str, Any]]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["ansible-inventory", "-i", str(inventory), "--list"], capture_output=True, text=True, env=env, cwd=inventory
    )
    assert proc.returncode == 0, proc.stderr
    meta: dict[str, dict[str, Any]] = json.loads(proc.stdout)["_meta"]["hostvars"]
    return meta


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_every_host_gets_the_contracts_site_vars(tmp_path: Path) -> None:
    write(tmp_path / "hosts.yml", HOSTS)
    got = hostvars(tmp_path)
    assert set(got) == {"plain", "member"}
    for host in got.values():
        assert {k: host.get(k) for k in contract.site_vars()} == contract.site_vars()
    assert got["plain"]["magellan_ports"]["job_exporter"] == contract.PORTS["job_exporter"]


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("group_vars/all.yml", "magellan_jobs_dir: /site/jobs\n"),
        ("group_vars/g.yml", "magellan_jobs_dir: /site/jobs\n"),
        ("host_vars/member.yml", "magellan_jobs_dir: /site/jobs\n"),
        ("hosts.yml", HOSTS.replace("all:\n", "all:\n  vars:\n    magellan_jobs_dir: /site/jobs\n")),
    ],
)
def test_the_inventory_overrides_the_plugin(tmp_path: Path, where: str, text: str) -> None:
    write(tmp_path / "hosts.yml", HOSTS)
    write(tmp_path / where, text)
    member = hostvars(tmp_path)["member"]
    assert member["magellan_jobs_dir"] == "/site/jobs"
    assert member["magellan_data_dir"] == contract.DATA_DIR  # the names the inventory leaves alone stay


def test_a_mapping_is_replaced_whole(tmp_path: Path) -> None:
    """Ansible replaces a mapping (hash_behaviour=replace): a site that moves one port gives every port."""
    write(tmp_path / "hosts.yml", HOSTS)
    write(tmp_path / "group_vars" / "g.yml", "magellan_ports: {job_exporter: 19810}\n")
    got = hostvars(tmp_path)
    assert got["member"]["magellan_ports"] == {"job_exporter": 19810}
    assert got["plain"]["magellan_ports"] == dict(contract.PORTS)


def site_check(tmp_path: Path, *, plugin: bool) -> subprocess.CompletedProcess[str]:
    """Role magellan_site (every role that reads magellan_* depends on it) on localhost, with or without the plugin."""
    write(tmp_path / "inventory" / "hosts.yml", "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    write(tmp_path / "play.yml", "- hosts: all\n  gather_facts: false\n  roles: [magellan_site]\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_STRATEGY"] = "linear"
    if not plugin:
        env["ANSIBLE_VARS_ENABLED"] = "host_group_vars"
    return subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "inventory"), str(tmp_path / "play.yml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def test_the_site_check_passes_with_the_plugin(tmp_path: Path) -> None:
    proc = site_check(tmp_path, plugin=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_without_the_plugin_the_site_check_names_what_is_missing(tmp_path: Path) -> None:
    proc = site_check(tmp_path, plugin=False)
    out = " ".join(proc.stdout.split())
    assert proc.returncode == 2, out
    missing = ", ".join(contract.site_vars())
    assert f"Host localhost: {missing} undefined." in out
    assert "plugins/vars/magellan_contract.py" in out


def test_the_site_checks_names_are_the_contracts() -> None:
    names = yaml.safe_load((ROOT / "roles" / "magellan_site" / "vars" / "main.yml").read_text())["_magellan_site_vars"]
    assert names == list(contract.site_vars())
