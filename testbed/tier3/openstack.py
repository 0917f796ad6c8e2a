"""The `openstack` provider of a virtual Tier-3, on openstacksdk.

`up` makes what the spec describes exist, once: it looks every resource up before it creates it, so a second run
creates nothing, and a run that failed half way is resumed by running it again. Everything created is named
`magellan-<tier3>-*` and labelled `magellan_tier3=<tier3>` (a Neutron tag, Nova/Cinder metadata, a floating IP's
description); `down` removes only what carries the label. The certified image is shared by every Tier-3 of the
project: it is uploaded once, found again by its sha256 (a Glance tag and the image property magellan_sha256), and
`down` keeps it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openstack import exceptions
from openstack.connection import Connection

from magellan import contract
from testbed.tier3 import Tier3Error
from testbed.tier3.inventory import LABEL, ROLE_KEY, server_metadata
from testbed.tier3.spec import Tier3Spec

SSH_PORT = 22
# Services the controller reaches from controller_cidr; every other port of the site is open inside the Tier-3 only.
FROM_CONTROLLER = ("prometheus", "grafana")
IMAGE_PROPERTY = "magellan_sha256"
__all__ = ["OpenStackProvider", "Outcome", "Tier3Error"]


def resource_name(tier3: str, what: str) -> str:
    return f"magellan-{tier3}-{what}"


def label(tier3: str) -> str:
    """The Neutron tag and floating-IP description that marks a resource as `tier3`'s."""
    return f"{LABEL}={tier3}"


def worker_name(tier3: str, index: int) -> str:
    return resource_name(tier3, f"worker-{index:02d}")


@dataclass(frozen=True)
class Rule:
    """An ingress rule of the Tier-3's security group: TCP ports from a network or from the group itself."""

    port_min: int
    port_max: int
    remote_ip_prefix: str | None = None  # None: from the members of the group (remote_group_id)
    ethertype: str = "IPv4"


def _srun_ports(srun_port_range: str) -> tuple[int, int]:
    low, _, high = srun_port_range.partition("-")
    return int(low), int(high or low)


def _rule_order(rule: Rule) -> tuple[int, int, str, str]:
    return rule.port_min, rule.port_max, rule.remote_ip_prefix or "", rule.ethertype


def security_rules(
    spec: Tier3Spec, ports: Mapping[str, int] | None = None, srun_port_range: str | None = None
) -> list[Rule]:
    """The ingress rules: SSH and the dashboards from the controller's network; SSH, the site's ports and srun's
    range between the Tier-3's own machines. Nothing else. `ports` and `srun_port_range` default to
    magellan.contract's; playbooks/tier3_openstack.yml passes the site's magellan_ports and magellan_srun_port_range."""
    ports = contract.PORTS if ports is None else ports
    controller = str(spec.controller_cidr)
    ethertype = f"IPv{spec.controller_cidr.version}"
    rules = {Rule(SSH_PORT, SSH_PORT, controller, ethertype)}
    rules |= {Rule(int(ports[s]), int(ports[s]), controller, ethertype) for s in FROM_CONTROLLER}
    rules |= {Rule(int(p), int(p)) for p in (SSH_PORT, *ports.values())}
    rules.add(Rule(*_srun_ports(contract.SRUN_PORT_RANGE if srun_port_range is None else srun_port_range)))
    return sorted(rules, key=_rule_order)


def image_name(digest: str) -> str:
    """The Glance name of the certified image whose sha256 is `digest` (its identity is the tag image_tag)."""
    return f"magellan-certified-{digest[:12]}"


def image_tag(digest: str) -> str:
    return f"{IMAGE_PROPERTY}={digest}"


def public_key(spec: Tier3Spec) -> str:
    """The controller's SSH public key the Tier-3's keypair holds (spec ssh.public_key)."""
    path = spec.ssh_public_key.expanduser()
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise Tier3Error(
            f"ssh.public_key {path}: cannot be read ({exc.strerror}); give the public key the controller logs in with"
            " (ssh-keygen -t ed25519 makes one)"
        ) from None


def image_digest(path: Path) -> str:
    """The sha256 of the image file: its identity in Glance."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as image:
            for block in iter(lambda: image.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise Tier3Error(
            f"image {path}: cannot be read ({exc.strerror}); build the certified image (roles/os_tree, "
            "os_tree_guest_image: true) or give its path as image.path"
        ) from None
    return digest.hexdigest()


@dataclass
class Outcome:
    """What a run did: resources created, reused and deleted ("kind name"), and the Tier-3's servers as dicts."""

    created: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    servers: list[dict[str, Any]] = field(default_factory=list)
    floating_ip: str | None = None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, exceptions.HttpException):
        details = exc.details or exc.message
        return f"HTTP {exc.status_code} {details}".strip()
    return str(exc)


class OpenStackProvider:
    """Creates, inspects, scales and removes Tier-3s through an openstacksdk Connection (injected: tests pass one
    whose HTTP is requests-mock's)."""

    def __init__(self, conn: Connection, *, wait: float = 900, interval: float = 5) -> None:
        self.conn = conn
        self.wait = wait
        self.interval = interval

    # -- steps ---------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _step(self, what: str) -> Iterator[None]:
        """Turn any SDK failure into a Tier3Error naming the resource and saying how to go on."""
        try:
            yield
        except Tier3Error:
            raise
        except exceptions.SDKException as exc:
            raise Tier3Error(
                f"{what}: {_reason(exc)}. What was made before is kept and labelled: run `testbed tier3 up` again "
                "to resume (nothing is created twice), or `testbed tier3 down` to remove it"
            ) from exc

    def _tagged(self, kind: str, tier3: str, name: str, outcome: Outcome, create: Callable[[], Any]) -> Any:
        """The Neutron resource `name` of kind `kind` (networks, subnets, routers, security_groups): found by name
        (and labelled if a failed run created it without its tag), else created and labelled."""
        lister = getattr(self.conn.network, kind)
        found = list(lister(name=name))
        mine = [r for r in found if label(tier3) in (r.tags or [])] or found
        if len(mine) > 1:
            ids = ", ".join(r.id for r in mine)
            raise Tier3Error(f"{kind} {name}: {len(mine)} exist ({ids}); delete all but one, then run up again")
        if mine:
            resource = mine[0]
            outcome.reused.append(f"{kind} {name}")
        else:
            resource = create()
            outcome.created.append(f"{kind} {name}")
        if label(tier3) not in (resource.tags or []):
            self.conn.network.set_tags(resource, [*(resource.tags or []), label(tier3)])
        return resource

    def _external_network(self, spec: Tier3Spec) -> Any:
        with self._step("external network"):
            external = list(self.conn.network.networks(is_router_external=True))
        names = sorted(f"{n.name} ({n.id})" for n in external)
        if spec.external_network:
            chosen = [n for n in external if spec.external_network in (n.name, n.id)]
            if len(chosen) != 1:
                raise Tier3Error(
                    f"network.external: {spec.external_network!r} is {'ambiguous' if chosen else 'not'} an external "
                    f"network of cloud {spec.cloud}; its external networks: {', '.join(names) or 'none'}"
                )
            return chosen[0]
        if len(external) != 1:
            raise Tier3Error(
                f"network.external: not given, and cloud {spec.cloud} has {len(external)} external networks "
                f"({', '.join(names) or 'none'}); name the one for the router and the floating IP in the spec "
                "(network: {external: NAME}) — the Tier-3 does not guess"
            )
        return external[0]

    def _network(self, spec: Tier3Spec, external: Any, outcome: Outcome) -> tuple[Any, Any]:
        t3 = spec.name
        with self._step(f"network {resource_name(t3, 'net')}"):
            net = self._tagged(
                "networks",
                t3,
                resource_name(t3, "net"),
                outcome,
                lambda: self.conn.network.create_network(name=resource_name(t3, "net")),
            )
        with self._step(f"subnet {resource_name(t3, 'subnet')}"):
            subnet = self._tagged(
                "subnets",
                t3,
                resource_name(t3, "subnet"),
                outcome,
                lambda: self.conn.network.create_subnet(
                    name=resource_name(t3, "subnet"), network_id=net.id, ip_version=4, cidr=str(spec.cidr)
                ),
            )
            if subnet.cidr != str(spec.cidr):
                raise Tier3Error(
                    f"subnet {subnet.name}: has {subnet.cidr}, the spec says {spec.cidr}; give network.cidr: "
                    f"{subnet.cidr} or remove the Tier-3 first (`testbed tier3 down {t3}`)"
                )
        with self._step(f"router {resource_name(t3, 'router')}"):
            router = self._tagged(
                "routers",
                t3,
                resource_name(t3, "router"),
                outcome,
                lambda: self.conn.network.create_router(
                    name=resource_name(t3, "router"), external_gateway_info={"network_id": external.id}
                ),
            )
            gateway = (router.external_gateway_info or {}).get("network_id")
            if gateway != external.id:
                self.conn.network.update_router(router, external_gateway_info={"network_id": external.id})
                outcome.created.append(f"router gateway {external.name}")
            interfaces = list(self.conn.network.ports(device_id=router.id, network_id=net.id))
            if not interfaces:
                self.conn.network.add_interface_to_router(router, subnet=subnet.id)
                outcome.created.append(f"router interface {subnet.name}")
        return net, subnet

    def _security_group(self, spec: Tier3Spec, outcome: Outcome) -> Any:
        t3 = spec.name
        name = resource_name(t3, "sg")
        with self._step(f"security group {name}"):
            group = self._tagged(
                "security_groups",
                t3,
                name,
                outcome,
                lambda: self.conn.network.create_security_group(
                    name=name, description=f"{label(t3)}: the site's ports only"
                ),
            )
            wanted = set(security_rules(spec))
            have: dict[Rule, list[Any]] = {}
            for rule in self.conn.network.security_group_rules(security_group_id=group.id, direction="ingress"):
                key = Rule(
                    rule.port_range_min or 0,
                    rule.port_range_max or 0,
                    None if rule.remote_group_id == group.id else rule.remote_ip_prefix,
                    rule.ether_type,
                )
                exact = rule.protocol == "tcp" and (rule.remote_group_id in (None, group.id))
                have.setdefault(key if exact else Rule(-1, -1, rule.id), []).append(rule)
            for key, rules in have.items():
                for rule in rules[1:] if key in wanted else rules:  # only the site's ports, each once
                    self.conn.network.delete_security_group_rule(rule)
                    outcome.deleted.append(f"security group rule {rule.id}")
            for missing in sorted(wanted - set(have), key=_rule_order):
                self.conn.network.create_security_group_rule(
                    security_group_id=group.id,
                    direction="ingress",
                    ether_type=missing.ethertype,
                    protocol="tcp",
                    port_range_min=missing.port_min,
                    port_range_max=missing.port_max,
                    remote_ip_prefix=missing.remote_ip_prefix,
                    remote_group_id=None if missing.remote_ip_prefix else group.id,
                )
                outcome.created.append(f"security group rule tcp {missing.port_min}-{missing.port_max}")
        return group

    def _find_keypair(self, name: str) -> Any:
        try:
            return self.conn.compute.get_keypair(name)
        except exceptions.NotFoundException:
            return None

    def _keypair(self, spec: Tier3Spec, outcome: Outcome) -> str:
        name = resource_name(spec.name, "key")
        key = public_key(spec)
        with self._step(f"keypair {name}"):
            existing = self._find_keypair(name)
            if existing is None:
                self.conn.compute.create_keypair(name=name, public_key=key)
                outcome.created.append(f"keypair {name}")
            elif existing.public_key.split()[:2] != key.split()[:2]:
                raise Tier3Error(
                    f"keypair {name}: exists with another public key than {spec.ssh_public_key.expanduser()}; give "
                    "that key as ssh.public_key, "
                    f"or delete the keypair (openstack keypair delete {name}) and run up again"
                )
            else:
                outcome.reused.append(f"keypair {name}")
        return name

    def _image(self, spec: Tier3Spec, outcome: Outcome) -> Any:
        digest = image_digest(spec.image_path)
        tag = image_tag(digest)
        name = image_name(digest)
        with self._step(f"image {name} ({spec.image_path})"):
            for image in self.conn.image.images(tag=tag):
                if image.status == "active" and image.properties.get(IMAGE_PROPERTY, digest) == digest:
                    outcome.reused.append(f"image {image.name}")
                    return image
                if image.status in ("queued", "saving", "killed", "deleted"):  # an upload that did not finish
                    self.conn.image.delete_image(image.id)
                    outcome.deleted.append(f"image {image.name} ({image.status}, an unfinished upload)")
            image = self.conn.image.create_image(
                name,
                filename=str(spec.image_path),
                disk_format=spec.image_format,
                container_format="bare",
                tags=[tag],
                sha256=digest,
                allow_duplicates=True,  # identity is the content hash, not the name
                validate_checksum=False,
                wait=True,
                meta={IMAGE_PROPERTY: digest},
            )
            outcome.created.append(f"image {name}")
            return image

    def _flavours(self, spec: Tier3Spec) -> dict[str, str]:
        with self._step("flavours"):
            flavours = {f.name: f.id for f in self.conn.compute.flavors()}
        for key, wanted in (("head.flavour", spec.head_flavour), ("workers.flavour", spec.worker_flavour)):
            if wanted not in flavours:
                raise Tier3Error(
                    f"{key}: flavour {wanted!r} is not one of cloud {spec.cloud}'s: {', '.join(sorted(flavours))}"
                )
        return flavours

    def _servers(self, tier3: str) -> list[Any]:
        with self._step("servers"):
            return sorted(
                (s for s in self.conn.compute.servers() if (s.metadata or {}).get(LABEL) == tier3),
                key=lambda s: s.name,
            )

    def _delete_servers(self, servers: list[Any], outcome: Outcome, why: str = "") -> None:
        for server in servers:
            with self._step(f"server {server.name} (delete)"):
                self.conn.compute.delete_server(server)
        for server in servers:
            with self._step(f"server {server.name} (delete)"):
                self.conn.compute.wait_for_delete(server, interval=self.interval, wait=self.wait)
            outcome.deleted.append(f"server {server.name}{why}")

    def _converge_servers(self, spec: Tier3Spec, image: Any, net: Any, group: Any, key: str, outcome: Outcome) -> Any:
        t3 = spec.name
        flavours = self._flavours(spec)
        wanted = {resource_name(t3, "head"): ("head", spec.head_flavour)}
        wanted |= {worker_name(t3, i): ("worker", spec.worker_flavour) for i in range(1, spec.workers + 1)}
        existing = self._servers(t3)
        broken = [s for s in existing if s.status == "ERROR" and s.name in wanted]
        extra = [s for s in existing if s.name not in wanted]
        self._delete_servers(broken, outcome, " (was ERROR, made again)")
        self._delete_servers(extra, outcome, " (scaled down)")
        have = {s.name: s for s in existing if s not in broken and s not in extra}
        pending = []
        for name, (role, flavour) in wanted.items():
            if name in have:
                outcome.reused.append(f"server {name}")
                pending.append(have[name])
                continue
            with self._step(f"server {name} (create)"):
                server = self.conn.compute.create_server(
                    name=name,
                    flavor_id=flavours[flavour],
                    image_id=image.id,
                    networks=[{"uuid": net.id}],
                    key_name=key,
                    security_groups=[{"name": group.name}],
                    metadata=server_metadata(t3, role),
                )
            outcome.created.append(f"server {name}")
            pending.append(server)
        head = None
        for booting in pending:  # they boot at once; wait for each
            server = booting
            if server.status != "ACTIVE":
                try:
                    server = self.conn.compute.wait_for_server(
                        booting, failures=["ERROR"], interval=self.interval, wait=self.wait
                    )
                except exceptions.ResourceFailure:
                    fault = (self.conn.compute.get_server(server.id).fault or {}).get("message", "no fault given")
                    raise Tier3Error(
                        f"server {server.name}: went to ERROR ({fault}); run `testbed tier3 up` again to make it "
                        "anew (the other resources are kept), or check the cloud's quota and flavour"
                    ) from None
                except exceptions.SDKException as exc:
                    raise Tier3Error(f"server {server.name} (boot): {_reason(exc)}; run up again to resume") from exc
            if server.name == resource_name(t3, "head"):
                head = server
        return head

    def _volume(self, spec: Tier3Spec, head: Any, outcome: Outcome) -> None:
        name = resource_name(spec.name, "storage")
        with self._step(f"volume {name}"):
            found = [
                v
                for v in self.conn.block_storage.volumes(details=True, name=name)
                if (v.metadata or {}).get(LABEL) == spec.name
            ]
            usable = [v for v in found if v.status not in ("error", "error_deleting")]
            for broken in (v for v in found if v not in usable):
                self.conn.block_storage.delete_volume(broken.id)
                outcome.deleted.append(f"volume {name} ({broken.status})")
            if usable:
                volume = usable[0]
                outcome.reused.append(f"volume {name}")
            else:
                volume = self.conn.block_storage.create_volume(
                    name=name, size=spec.storage_gb, metadata={LABEL: spec.name}
                )
                outcome.created.append(f"volume {name}")
            if volume.status != "available" and not volume.attachments:
                volume = self.conn.block_storage.wait_for_status(
                    volume, "available", failures=["error"], interval=self.interval, wait=int(self.wait)
                )
            if not any(a.get("server_id") == head.id for a in volume.attachments or []):
                self.conn.compute.create_volume_attachment(head, volume=volume.id)
                outcome.created.append(f"volume attachment {name} → {head.name}")

    def _floating_ip(self, spec: Tier3Spec, head: Any, net: Any, external: Any, outcome: Outcome) -> str:
        """The head's floating IP, without leaking one: the one already on the head, else an unassociated one
        labelled as this Tier-3's, else a new one allocated straight onto the head's port."""
        t3 = spec.name
        with self._step(f"floating IP of {head.name}"):
            ports = [p for p in self.conn.network.ports(device_id=head.id) if p.network_id == net.id]
            if not ports:
                raise Tier3Error(f"server {head.name}: has no port on network {net.name}; run up again")
            port = ports[0]
            ips = list(self.conn.network.ips())
            on_head = [ip for ip in ips if ip.port_id == port.id]
            for ip in on_head:
                if ip.floating_network_id != external.id:
                    raise Tier3Error(
                        f"floating IP {ip.floating_ip_address} of {head.name}: is from network "
                        f"{ip.floating_network_id}, not from the external network {external.name} ({external.id}); "
                        f"disassociate it (openstack floating ip unset --port {ip.id}) or name its network as "
                        "network.external"
                    )
                outcome.reused.append(f"floating IP {ip.floating_ip_address}")
                return str(ip.floating_ip_address)
            free = [
                ip
                for ip in ips
                if ip.port_id is None
                and ip.floating_network_id == external.id
                and (label(t3) in (ip.tags or []) or ip.description == label(t3))
            ]
            if free:
                ip = self.conn.network.update_ip(free[0], port_id=port.id)
                outcome.reused.append(f"floating IP {ip.floating_ip_address} (associated)")
            else:
                ip = self.conn.network.create_ip(
                    floating_network_id=external.id, port_id=port.id, description=label(t3)
                )
                outcome.created.append(f"floating IP {ip.floating_ip_address}")
            if label(t3) not in (ip.tags or []):
                self.conn.network.set_tags(ip, [*(ip.tags or []), label(t3)])
            return str(ip.floating_ip_address)

    # -- commands ------------------------------------------------------------------------------------------------

    def up(self, spec: Tier3Spec) -> Outcome:
        """Make the Tier-3 of `spec` exist as described (workers beyond spec.workers are removed)."""
        outcome = Outcome()
        external = self._external_network(spec)
        net, _subnet = self._network(spec, external, outcome)
        group = self._security_group(spec, outcome)
        key = self._keypair(spec, outcome)
        image = self._image(spec, outcome)
        head = self._converge_servers(spec, image, net, group, key, outcome)
        self._volume(spec, head, outcome)
        outcome.floating_ip = self._floating_ip(spec, head, net, external, outcome)
        outcome.servers = [s.to_dict() for s in self._servers(spec.name)]
        return outcome

    def scale(self, spec: Tier3Spec, workers: int) -> Outcome:
        """Grow or shrink the Tier-3 to `workers` workers (the highest-numbered ones go first)."""
        return self.up(spec.with_workers(workers))

    def status(self, spec: Tier3Spec) -> list[tuple[str, str, str]]:
        """(kind, name, state) of every labelled resource of the Tier-3; state "missing" for what up would make."""
        t3 = spec.name
        rows: list[tuple[str, str, str]] = []
        with self._step("status"):
            for kind, what in (("networks", "net"), ("subnets", "subnet"), ("routers", "router")):
                found = list(getattr(self.conn.network, kind)(tags=label(t3)))
                rows += [(kind[:-1], r.name, str(getattr(r, "status", None) or "present")) for r in found] or [
                    (kind[:-1], resource_name(t3, what), "missing")
                ]
            groups = list(self.conn.network.security_groups(tags=label(t3)))
            rows += [("security group", g.name, "present") for g in groups] or [
                ("security group", resource_name(t3, "sg"), "missing")
            ]
            servers = self._servers(t3)
            names = {s.name for s in servers}
            rows += [("server", s.name, f"{s.status} ({(s.metadata or {}).get(ROLE_KEY, '?')})") for s in servers]
            wanted = [resource_name(t3, "head")] + [worker_name(t3, i) for i in range(1, spec.workers + 1)]
            rows += [("server", n, "missing") for n in wanted if n not in names]
            for ip in self.conn.network.ips():
                if label(t3) in (ip.tags or []) or ip.description == label(t3):
                    state = f"on port {ip.port_id}" if ip.port_id else "unassociated"
                    rows.append(("floating IP", str(ip.floating_ip_address), state))
        return rows

    def down(self, tier3: str) -> Outcome:
        """Remove every resource labelled as `tier3`'s, and nothing else (the shared certified image stays)."""
        outcome = Outcome()
        tag = label(tier3)
        self._delete_servers(self._servers(tier3), outcome)
        with self._step("floating IPs (delete)"):
            for ip in list(self.conn.network.ips()):
                if tag in (ip.tags or []) or ip.description == tag:
                    self.conn.network.delete_ip(ip)
                    outcome.deleted.append(f"floating IP {ip.floating_ip_address}")
        with self._step("volumes (delete)"):
            for found in list(self.conn.block_storage.volumes(details=True)):
                if (found.metadata or {}).get(LABEL) != tier3:
                    continue
                volume = found
                if volume.status not in ("available", "error"):
                    volume = self.conn.block_storage.wait_for_status(
                        found, "available", failures=["error"], interval=self.interval, wait=int(self.wait)
                    )
                self.conn.block_storage.delete_volume(volume.id)
                outcome.deleted.append(f"volume {volume.name}")
        with self._step("routers (delete)"):
            for router in list(self.conn.network.routers(tags=tag)):
                for port in list(self.conn.network.ports(device_id=router.id)):
                    if port.device_owner == "network:router_interface":
                        self.conn.network.remove_interface_from_router(router, port=port.id)
                self.conn.network.delete_router(router)
                outcome.deleted.append(f"router {router.name}")
        for kind, deleter, what in (
            ("subnets", self.conn.network.delete_subnet, "subnet"),
            ("networks", self.conn.network.delete_network, "network"),
            ("security_groups", self.conn.network.delete_security_group, "security group"),
        ):
            with self._step(f"{kind} (delete)"):
                for resource in list(getattr(self.conn.network, kind)(tags=tag)):
                    deleter(resource)
                    outcome.deleted.append(f"{what} {resource.name}")
        with self._step("keypair (delete)"):
            key = self._find_keypair(resource_name(tier3, "key"))
            if key is not None:
                self.conn.compute.delete_keypair(key)
                outcome.deleted.append(f"keypair {key.name}")
        return outcome
