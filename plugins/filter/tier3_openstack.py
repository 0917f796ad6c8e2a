"""Filters of playbooks/tier3_openstack.yml: what a Tier-3 spec makes on OpenStack, from the same code as the Python
provider (testbed.tier3: one owner of the spec's rules, the names, the label, the servers' metadata, the security
rules and the image's identity). The playbook only hands the results to the openstack.cloud modules.

`tier3_openstack_plan(path, ports, srun_port_range)`: the spec file at `path` (testbed.tier3.spec.load) as a dict
of names and values; `ports` and `srun_port_range` are the site's magellan_ports and magellan_srun_port_range.
`tier3_openstack_floating_ip(plan, on_head, labelled, port_id, external_id)`: the attributes of the head's floating
IP for openstack.cloud.resource, choosing as the provider does: the one already on the head's port, else an
unassociated one labelled as this Tier-3's, else a new one (labelled) made on the head's port.
`tier3_openstack_extra_servers(servers, plan)`: the names of the Tier-3's servers the spec no longer has (scaled
down). An error names the key or variable to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError


def tier3_openstack_plan(path: Any, ports: Any, srun_port_range: Any) -> dict[str, Any]:
    # Imported here, not at the top: Ansible loads every filter file in every task's worker process, and
    # testbed.tier3.openstack imports openstacksdk (0.7 s a task and host; tests/unit/test_filter_imports.py).
    from testbed.tier3 import Tier3Error  # noqa: PLC0415
    from testbed.tier3.inventory import LABEL, server_metadata  # noqa: PLC0415
    from testbed.tier3.openstack import (  # noqa: PLC0415
        IMAGE_PROPERTY,
        image_digest,
        image_name,
        image_tag,
        label,
        public_key,
        resource_name,
        security_rules,
        worker_name,
    )
    from testbed.tier3.spec import Tier3SpecError, load  # noqa: PLC0415

    if not isinstance(path, str) or not path:
        raise AnsibleFilterError(
            "tier3_openstack: tier3_spec is not set; run with -e tier3_spec=inventories/tier3/<your spec>.yml"
        )
    if not isinstance(ports, Mapping) or not isinstance(srun_port_range, str):
        raise AnsibleFilterError(
            f"tier3_openstack: magellan_ports ({ports!r}) or magellan_srun_port_range ({srun_port_range!r}) is not the"
            " site's: run from the repository (its ansible.cfg enables plugins/vars/magellan_contract.py)"
        )
    try:
        spec = load(Path(path))
        if spec.provider != "openstack":
            raise Tier3SpecError(f"{path}: provider: is {spec.provider!r}; this playbook makes provider openstack")
        digest = image_digest(spec.image_path)
        key = public_key(spec)
        rules = security_rules(spec, {str(k): int(v) for k, v in ports.items()}, srun_port_range)
    except (Tier3SpecError, Tier3Error, ValueError) as exc:
        raise AnsibleFilterError(f"tier3_openstack: {exc}") from None
    t3 = spec.name
    sg = resource_name(t3, "sg")
    servers = [{"name": resource_name(t3, "head"), "flavour": spec.head_flavour, "role": "head"}]
    servers += [
        {"name": worker_name(t3, i), "flavour": spec.worker_flavour, "role": "worker"}
        for i in range(1, spec.workers + 1)
    ]
    return {
        "name": t3,
        "cloud": spec.cloud,
        "external_network": spec.external_network,
        "label": label(t3),
        "label_key": LABEL,
        "network": resource_name(t3, "net"),
        "subnet": resource_name(t3, "subnet"),
        "cidr": str(spec.cidr),
        "router": resource_name(t3, "router"),
        "security_group": sg,
        "security_group_description": f"{label(t3)}: the site's ports only",
        "security_group_rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": r.port_min, "port_range_max": r.port_max}
            | {"ether_type": r.ethertype}
            | ({"remote_ip_prefix": r.remote_ip_prefix} if r.remote_ip_prefix else {"remote_group": sg})
            for r in rules
        ]
        + [{"direction": "egress", "ether_type": e} for e in ("IPv4", "IPv6")],  # Neutron's defaults: kept
        "keypair": resource_name(t3, "key"),
        "public_key": key,
        "image": {
            "path": str(spec.image_path),
            "format": spec.image_format,
            "name": image_name(digest),
            "tag": image_tag(digest),
            "properties": {IMAGE_PROPERTY: digest},
        },
        "head": servers[0]["name"],
        "flavours": sorted({spec.head_flavour, spec.worker_flavour}),
        "servers": [s | {"metadata": server_metadata(t3, s["role"])} for s in servers],
        "volume": {"name": resource_name(t3, "storage"), "size": spec.storage_gb, "metadata": {LABEL: t3}},
        "ssh_user": spec.ssh_user,
    }


def tier3_openstack_floating_ip(
    plan: Mapping[str, Any], on_head: Any, labelled: Any, port_id: str, external_id: str
) -> dict[str, Any]:
    wanted = {"floating_network_id": external_id, "port_id": port_id}
    for ip in on_head or []:
        if ip.get("floating_network_id") != external_id:
            raise AnsibleFilterError(
                f"tier3_openstack: floating IP {ip.get('floating_ip_address')} of {plan['head']}: is from network "
                f"{ip.get('floating_network_id')}, not from the external network {external_id}; disassociate it "
                f"(openstack floating ip unset --port {ip.get('id')}) or name its network as network.external"
            )
        return wanted | {"id": ip["id"]}
    free = [ip for ip in labelled or [] if not ip.get("port_id") and ip.get("floating_network_id") == external_id]
    if free:
        return wanted | {"id": free[0]["id"]}
    return wanted | {"description": plan["label"]}


def tier3_openstack_extra_servers(servers: Any, plan: Mapping[str, Any]) -> list[str]:
    wanted = {s["name"] for s in plan["servers"]}
    return sorted(
        str(s["name"])
        for s in servers or []
        if (s.get("metadata") or {}).get(plan["label_key"]) == plan["name"] and s["name"] not in wanted
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "tier3_openstack_plan": tier3_openstack_plan,
            "tier3_openstack_floating_ip": tier3_openstack_floating_ip,
            "tier3_openstack_extra_servers": tier3_openstack_extra_servers,
        }
