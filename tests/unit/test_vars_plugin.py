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
