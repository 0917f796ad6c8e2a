"""The dynamic inventory of a Tier-3: its servers' metadata → the site's Ansible groups, so that the site's
playbooks run on it unchanged.

A server says what it is in its metadata (set by the provider when it creates it): `magellan_tier3=<name>` and
`magellan_groups=<group>,<group>,...`. `inventory()` is a pure function of the servers (as Nova returns them).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

LABEL = "magellan_tier3"
GROUPS_KEY = "magellan_groups"
ROLE_KEY = "magellan_role"
# The site's groups (inventories/local/hosts.yml) a Tier-3's head and workers belong to: the head runs slurmctld,
# slurmdbd/MariaDB, Prometheus and the accounting exporter; a worker is a Slurm compute node with CHOS environments.
GROUPS: Mapping[str, tuple[str, ...]] = {
    "head": (
        "head_nodes",
        "slurm_controller",
        "prometheus",
        "node_exporter",
        "accounting_exporter",
        "conditions_db",
    ),
    "worker": ("compute", "slurm_compute", "chos_nodes", "workload_nodes", "node_exporter", "job_exporter"),
}


def server_metadata(tier3: str, role: str) -> dict[str, str]:
    """The metadata a server of `tier3` in `role` (head, worker) is created with."""
    return {LABEL: tier3, ROLE_KEY: role, GROUPS_KEY: ",".join(GROUPS[role])}


def addresses(server: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(fixed, floating) IPv4 address of a Nova server dict."""
    fixed = floating = None
    for entries in (server.get("addresses") or {}).values():
        for entry in entries:
            if entry.get("version", 4) != 4:
                continue
            if entry.get("OS-EXT-IPS:type") == "floating":
                floating = floating or entry.get("addr")
            else:
                fixed = fixed or entry.get("addr")
    return fixed, floating


def inventory(servers: Iterable[Mapping[str, Any]], tier3: str, ssh_user: str = "debian") -> dict[str, Any]:
    """An Ansible YAML inventory of the servers of `tier3` (others are left out). The head is reached on its floating
    address; the workers, which have none, on their fixed address through the head (ProxyJump)."""
    mine = sorted((s for s in servers if (s.get("metadata") or {}).get(LABEL) == tier3), key=lambda s: s["name"])
    groups: dict[str, dict[str, Any]] = {}
    hosts: dict[str, dict[str, Any]] = {}
    jump = None
    for server in mine:
        fixed, floating = addresses(server)
        if (server.get("metadata") or {}).get(ROLE_KEY) == "head" and floating:
            jump = floating
    for server in mine:
        meta = server.get("metadata") or {}
        fixed, floating = addresses(server)
        host: dict[str, Any] = {"ansible_user": ssh_user, "magellan_tier3_fixed_address": fixed}
        host["ansible_host"] = floating or fixed
        if not floating and jump:
            host["ansible_ssh_common_args"] = f"-o ProxyJump={ssh_user}@{jump}"
        hosts[server["name"]] = host
        for group in filter(None, (g.strip() for g in str(meta.get(GROUPS_KEY, "")).split(","))):
            groups.setdefault(group, {"hosts": {}})["hosts"][server["name"]] = None
    return {"all": {"hosts": hosts, "children": dict(sorted(groups.items())), "vars": {LABEL: tier3}}}


def write(path: Path, data: Mapping[str, Any]) -> None:
    """Write the inventory to `path` whole or not at all: a temporary file beside it, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(
                "---\n# Written by `testbed tier3`: the servers of a Tier-3 and the site groups they belong to.\n"
            )
            yaml.safe_dump(dict(data), out, sort_keys=False, default_flow_style=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
