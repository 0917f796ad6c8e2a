"""Read the site's inventory through ansible-inventory, so that the CLI sees what the playbooks see."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magellan import contract


class InventoryError(RuntimeError):
    """The inventory could not be read or lacks what the command needs."""


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    platform: str
    profile: dict[str, Any] = field(default_factory=dict)
    jobs_dir: str = contract.JOBS_DIR  # the site's magellan_* variables, as the node's hostvars have them
    data_dir: str = contract.DATA_DIR
    prefix: str = contract.PREFIX


@dataclass(frozen=True)
class Inventory:
    path: Path
    groups: dict[str, list[str]]
    hostvars: dict[str, dict[str, Any]]

    def nodes(self, group: str) -> list[Node]:
        if group not in self.groups:
            known = ", ".join(sorted(g for g in self.groups if g not in ("all", "ungrouped")))
            raise InventoryError(f"group '{group}' is not in inventory {self.path}; its groups are: {known}")
        hosts = self.groups[group]
        if not hosts:
            raise InventoryError(f"group '{group}' of inventory {self.path} has no hosts")
        return [self.node(h) for h in hosts]

    def node(self, host: str) -> Node:
        hv = self.hostvars.get(host, {})
        address = contract.site_address(hv, host)
        profile = hv.get("testbed_node_profile") or {}
        site = {k: str(hv[var]) for k in ("jobs_dir", "data_dir", "prefix") if (var := contract.site_var(k)) in hv}
        return Node(host, address, str(hv.get("testbed_platform", "unknown")), dict(profile), **site)

    def port(self, host: str, service: str) -> int:
        """The port of `service` (a key of contract.PORTS) as the site's magellan_ports gives it to `host`: what the
        roles configured there, an inventory's override included."""
        ports = self.hostvars.get(host, {}).get(contract.site_var("ports"), contract.PORTS)
        value = ports.get(service, contract.PORTS[service]) if isinstance(ports, dict) else None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise InventoryError(
                f"{contract.site_var('ports')}.{service} of {host} in inventory {self.path} is {value!r}: give a "
                "TCP port (1-65535) as a number"
            )
        return value

    def prometheus_url(self) -> str:
        """The site's Prometheus, on its host's site address and port: https when the site's web security is on."""
        servers = self.groups.get("prometheus", [])
        if len(servers) != 1:
            raise InventoryError(f"inventory {self.path} needs exactly one host in group 'prometheus'")
        scheme = "https" if self.hostvars.get(servers[0], {}).get(contract.site_var("web_security")) else "http"
        return f"{scheme}://{self.node(servers[0]).address}:{self.port(servers[0], 'prometheus')}"


def _collect_groups(data: dict[str, Any], name: str, seen: set[str]) -> list[str]:
    if name in seen:
        return []
    seen.add(name)
    entry = data.get(name, {})
    hosts = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts += [h for h in _collect_groups(data, child, seen) if h not in hosts]
    return hosts


REPO = Path(__file__).resolve().parent.parent


def ansible_env(json_result: bool = False, one_task: bool = False) -> dict[str, str]:
    """Environment for Ansible commands: the repository's ansible.cfg, and with json_result the play's result as
    one JSON document on stdout (ansible.posix.json; read it with play_result). With one_task (an ad-hoc run)
    Ansible's own linear strategy: Mitogen's start-up pays off only over many tasks (an ad-hoc run took 6-9 s
    with it here, 2.3 s without)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    if one_task:
        env["ANSIBLE_STRATEGY"] = "linear"
    if json_result:
        env.update(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    return env


def play_result(output: str) -> dict[str, Any]:
    """The ansible.posix.json document in output, after or before other callbacks' lines (profile_tasks);
    ValueError when there is none."""
    doc, _ = json.JSONDecoder().raw_decode(output[output.index("{") :])
    if not isinstance(doc, dict) or "plays" not in doc:
        raise ValueError("not an ansible.posix.json result")
    return doc


def task_results(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(task name, host, result) of every task of a play_result document, in the order they ran."""
    for play in doc["plays"]:
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                yield task.get("task", {}).get("name", ""), host, result


def ad_hoc(inventory: str, host: str, module: str, args: str) -> tuple[dict[str, Any] | None, str]:
    """One module run on one host through Ansible (its linear strategy, the JSON callback): the host's result, or
    None when Ansible gave none, and Ansible's stderr."""
    cmd = [ansible_command("ansible"), "-i", inventory, host, "-m", module, "-a", args]
    env = ansible_env(json_result=True, one_task=True)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    try:
        return dict(play_result(proc.stdout)["plays"][0]["tasks"][0]["hosts"][host]), proc.stderr
    except (ValueError, KeyError, IndexError):
        return None, f"ansible exit {proc.returncode}: {proc.stderr[-2000:]}"


def ansible_command(name: str) -> str:
    """The Ansible command next to this Python (the project venv), else the one on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def load_inventory(path: Path, ansible_inventory: str | None = None) -> Inventory:
    """Run `ansible-inventory --list` on path and flatten group membership (children included)."""
    ansible_inventory = ansible_inventory or ansible_command("ansible-inventory")
    try:
        # The repository's ansible.cfg wherever this runs from: its any_unparsed_is_failed turns an inventory that
        # does not parse into an error (with Ansible's defaults, outside the repository, it was an empty inventory).
        proc = subprocess.run(
            [ansible_inventory, "-i", str(path), "--list"],
            capture_output=True,
            text=True,
            check=False,
            env=ansible_env(),
        )
    except FileNotFoundError as exc:
        raise InventoryError(f"{ansible_inventory} not found: run 'make bootstrap' first") from exc
    if proc.returncode != 0:
        raise InventoryError(f"ansible-inventory failed on {path}: {proc.stderr.strip()}")
    data = json.loads(proc.stdout)
    groups = {g: _collect_groups(data, g, set()) for g in data if g != "_meta"}
    return Inventory(path, groups, data.get("_meta", {}).get("hostvars", {}))
