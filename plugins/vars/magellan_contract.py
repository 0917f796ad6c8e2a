"""Vars plugin magellan_contract: every host gets the site's shared variables from magellan.contract.site_vars().

The variables are magellan_prefix, magellan_jobs_dir, magellan_data_dir, magellan_textfile_dir, magellan_ports
(a mapping of service name to TCP port) and magellan_site_address (an expression: each host's address on the site
network, where its exporters listen and Prometheus scrapes them). Roles read these, never a copy of their own, so
that the workload that writes a progress file and the exporter that reads it agree on the directory, and
Prometheus on the ports. Those
roles depend on roles/magellan_site, which stops a run without this plugin, naming the missing variables.

Enabled by this repository's ansible.cfg and by molecule/base.yml (molecule runs roles with an inventory of its
own): `vars_plugins = plugins/vars` and `vars_plugins_enabled = magellan_contract,host_group_vars`.

Precedence: the lowest of the inventory. The plugin runs when the inventory is parsed (stage "all" includes
"inventory") and gives the values to the group `all` only for the names the inventory file's `all: vars:` does not
set. Anything a site writes therefore wins: its `group_vars/all.yml` or `group_vars/<group>.yml`, `host_vars/`,
host or group variables in hosts.yml, play vars and -e. Checked with
  ansible -i inventories/local localhost -m debug -a var=magellan_jobs_dir      # the contract's value
and with `magellan_jobs_dir: /srv/jobs` in a temporary inventory's group_vars/all.yml, which prints /srv/jobs
(tests/unit/test_vars_plugin.py does both through ansible-inventory --list). When the plugin is asked again while
tasks run, the `all` group already holds every name, so it adds nothing above the site's group_vars. It is listed
before host_group_vars: with run_vars_plugins=start both run while the inventory is parsed, and the later one wins.

A mapping is replaced whole, never merged (Ansible's hash_behaviour=replace): a site that moves one port gives
magellan_ports with every port. A host-list inventory ("-i n1,") has no directory and is not seen by vars plugins
while it is parsed; a playbook run on it still gets the values (the plugin answers for the playbook's directory
then), an ad-hoc `ansible` run does not.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from ansible.errors import AnsibleError  # type: ignore[import-untyped]
from ansible.inventory.group import Group  # type: ignore[import-untyped]
from ansible.plugins.vars import BaseVarsPlugin  # type: ignore[import-untyped]
from ansible.template import trust_as_template  # type: ignore[import-untyped]

DOCUMENTATION = r"""
name: magellan_contract
short_description: The site's shared directories and ports (magellan_*) from magellan.contract
description:
  - Gives the group all the variables of magellan.contract.site_vars() (magellan_prefix, magellan_jobs_dir,
    magellan_data_dir, magellan_textfile_dir, magellan_ports, magellan_site_address), below everything an inventory
    sets.
requirements:
  - Enabled in configuration (vars_plugins_enabled).
  - The project's package magellan, installed in the controller's Python or found at this repository's root.
options:
  stage:
    description:
      - When the plugin runs. Fixed at all (no ini or environment setting), since its precedence relies on running
        when the inventory is parsed.
    type: str
    default: all
    choices: [all]
"""

_ROOT = Path(__file__).resolve().parents[2]  # plugins/vars/<this file>: the repository


@cache
def _contract() -> ModuleType:
    """magellan.contract, from the installed project or else from this repository's root."""
    if importlib.util.find_spec("magellan") is None:
        sys.path.append(str(_ROOT))
        if importlib.util.find_spec("magellan") is None:
            raise AnsibleError(
                f"vars plugin magellan_contract: {sys.executable} cannot import magellan.contract, nor can it from "
                f"{_ROOT}: run Ansible from the project's venv ('make bootstrap' installs the project into .venv)."
            )
    return importlib.import_module("magellan.contract")


def _trusted(value: Any) -> Any:
    """value with its strings trusted as Ansible 2.19 trusts a group_vars file's: plain strings to the consumers of
    ansible-inventory --list (testbed.inventory), where untrusted ones come out as {"__ansible_unsafe": ...}."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trusted(v) for k, v in value.items()}
    return value


class VarsModule(BaseVarsPlugin):  # type: ignore[misc]  # ansible-core is not typed
    REQUIRES_ENABLED = True
    is_stateless = True

    def get_vars(self, loader: Any, path: str, entities: Any) -> dict[str, Any]:
        super().get_vars(loader, path, entities)
        if not isinstance(entities, list):
            entities = [entities]
        data: dict[str, Any] = {}
        for entity in entities:
            if isinstance(entity, Group) and entity.name == "all":
                present = entity.get_vars()
                data.update({k: _trusted(v) for k, v in _contract().site_vars().items() if k not in present})
        return data
