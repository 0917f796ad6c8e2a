"""The description of a virtual Tier-3: a small YAML file, parsed and checked before anything is created.

Every error names the key, what was wrong and what to write instead (Tier3SpecError), never a traceback.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

PROVIDERS = ("local", "openstack")
IMAGE_FORMATS = ("qcow2", "raw")
# A Tier-3's name is a prefix of every resource it creates and a label value: host-name characters, short.
NAME = re.compile(r"[a-z][a-z0-9-]{0,23}")
ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # a Slurm account and a Unix user name
MAX_WORKERS = 1000
KEYS = {
    "name",
    "provider",
    "cloud",
    "head",
    "workers",
    "image",
    "storage_gb",
    "network",
    "controller_cidr",
    "ssh",
    "slurm",
}


class Tier3SpecError(ValueError):
    """A Tier-3 description that cannot be used; the message names the key, what was wrong and what to write."""


@dataclass(frozen=True)
class Account:
    name: str
    users: tuple[str, ...]


@dataclass(frozen=True)
class Tier3Spec:
    name: str
    provider: str
    head_flavour: str
    workers: int
    worker_flavour: str
    image_path: Path
    image_format: str
    storage_gb: int
    cidr: ipaddress.IPv4Network
    accounts: tuple[Account, ...]
    cloud: str | None = None
    external_network: str | None = None  # None: the only external network of the cloud, else an error
    controller_cidr: ipaddress.IPv4Network | ipaddress.IPv6Network = field(
        default_factory=lambda: ipaddress.ip_network("0.0.0.0/0")
    )
    ssh_public_key: Path = Path("~/.ssh/id_ed25519.pub")
    ssh_user: str = "debian"

    def with_workers(self, workers: int) -> Tier3Spec:
        return replace(self, workers=_workers(workers, "--workers"))


def _fail(source: str, key: str, what: str, todo: str) -> Tier3SpecError:
    return Tier3SpecError(f"{source}: {key}: {what}; {todo}")


def _mapping(value: Any, source: str, key: str, example: str) -> dict[str, Any]:
    if value is None:
        raise _fail(source, key, "is missing", f"write e.g. {example}")
    if not isinstance(value, dict):
        raise _fail(source, key, f"is {type(value).__name__} {value!r}, not a mapping", f"write e.g. {example}")
    return value


def _text(value: Any, source: str, key: str, example: str) -> str:
    if value is None:
        raise _fail(source, key, "is missing", f"write e.g. {key}: {example}")
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, key, f"is {value!r}, not a non-empty string", f"write e.g. {key}: {example}")
    return value.strip()


def _int(value: Any, source: str, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(source, key, f"is {value!r}", f"give a whole number from {low} to {high}")
    return value


def _workers(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WORKERS:
        raise Tier3SpecError(f"{key}: is {value!r}; give a whole number of workers from 0 to {MAX_WORKERS}")
    return value


def _cidr(value: Any, source: str, key: str, example: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(_text(value, source, key, example))
    except ValueError as exc:
        raise _fail(source, key, f"{value!r} is not a network ({exc})", f"write e.g. {key}: {example}") from None


def _accounts(value: Any, source: str) -> tuple[Account, ...]:
    slurm = _mapping(value, source, "slurm", "slurm: {accounts: [{name: atlas, users: [alice]}]}")
    unknown = set(slurm) - {"accounts"}
    if unknown:
        raise _fail(source, "slurm", f"unknown keys {sorted(unknown)}", "give only slurm.accounts")
    items = slurm.get("accounts")
    if not isinstance(items, list) or not items:
        raise _fail(source, "slurm.accounts", f"is {items!r}", "give a list of {name: ACCOUNT, users: [USER, ...]}")
    accounts: list[Account] = []
    for i, item in enumerate(items):
        key = f"slurm.accounts[{i}]"
        entry = _mapping(item, source, key, "{name: atlas, users: [alice, bob]}")
        name = entry.get("name")
        if not isinstance(name, str) or not ACCOUNT.fullmatch(name):
            raise _fail(source, f"{key}.name", f"is {name!r}", "give a lower-case account name ([a-z_][a-z0-9_-]*)")
        users = entry.get("users")
        if not isinstance(users, list) or not users:
            raise _fail(source, f"{key}.users", f"is {users!r}", "give a non-empty list of user names")
        for user in users:
            if not isinstance(user, str) or not ACCOUNT.fullmatch(user):
                raise _fail(source, f"{key}.users", f"{user!r} is not a user name", "use [a-z_][a-z0-9_-]*")
        if any(a.name == name for a in accounts):
            raise _fail(source, f"{key}.name", f"account {name!r} is given twice", "give each account once")
        accounts.append(Account(name, tuple(dict.fromkeys(users))))
    return tuple(accounts)


def _access(top: dict[str, Any], source: str, provider: str) -> dict[str, Any]:
    """controller_cidr and ssh: how the controller reaches the Tier-3."""
    extra: dict[str, Any] = {}
    if "controller_cidr" in top:
        extra["controller_cidr"] = _cidr(top["controller_cidr"], source, "controller_cidr", "203.0.113.0/24")
    elif provider == "openstack":
        raise _fail(
            source,
            "controller_cidr",
            "is missing: SSH and the dashboards would be open to nobody or to everybody",
            "give the network your controller connects from, e.g. controller_cidr: 203.0.113.0/24",
        )
    if "ssh" in top:
        ssh = _mapping(top["ssh"], source, "ssh", "ssh: {public_key: ~/.ssh/id_ed25519.pub, user: debian}")
        unknown = set(ssh) - {"public_key", "user"}
        if unknown:
            raise _fail(source, "ssh", f"unknown keys {sorted(unknown)}", "give only ssh.public_key and ssh.user")
        if "public_key" in ssh:
            extra["ssh_public_key"] = Path(_text(ssh["public_key"], source, "ssh.public_key", "~/.ssh/id_ed25519.pub"))
        if "user" in ssh:
            extra["ssh_user"] = _text(ssh["user"], source, "ssh.user", "debian")
    return extra


def parse(data: Any, source: str = "tier3 spec") -> Tier3Spec:
    """A Tier3Spec from the YAML document `data`; `source` names it in errors (the file's path)."""
    top = _mapping(data, source, "(top level)", "name: demo, provider: local, ...")
    unknown = set(top) - KEYS
    if unknown:
        raise _fail(source, ", ".join(sorted(unknown)), "unknown key", f"use only {', '.join(sorted(KEYS))}")
    name = top.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _fail(
            source, "name", f"is {name!r}", "give 1-24 characters of a-z 0-9 '-', starting with a letter (e.g. demo)"
        )
    provider = top.get("provider")
    if provider not in PROVIDERS:
        raise _fail(source, "provider", f"is {provider!r}", f"give one of {', '.join(PROVIDERS)}")
    cloud = None
    if provider == "openstack":
        cloud = _text(top.get("cloud"), source, "cloud", "mycloud  (an entry of your clouds.yaml)")
    elif "cloud" in top:
        raise _fail(source, "cloud", "is given for provider local", "remove it (only provider openstack uses it)")
    head = _mapping(top.get("head"), source, "head", "head: {flavour: m1.medium}")
    head_flavour = _text(head.get("flavour"), source, "head.flavour", "m1.medium")
    workers = _mapping(top.get("workers"), source, "workers", "workers: {count: 2, flavour: m1.large}")
    count = _workers(workers.get("count"), f"{source}: workers.count")
    worker_flavour = _text(workers.get("flavour"), source, "workers.flavour", "m1.large")
    image = _mapping(top.get("image"), source, "image", "image: {path: .../root.qcow2, format: qcow2}")
    image_path = Path(_text(image.get("path"), source, "image.path", "/var/cache/magellan/guest-images/x/root.qcow2"))
    image_format = image.get("format")
    if image_format not in IMAGE_FORMATS:
        raise _fail(source, "image.format", f"is {image_format!r}", f"give one of {', '.join(IMAGE_FORMATS)}")
    storage_gb = _int(top.get("storage_gb"), source, "storage_gb", 1, 100_000)
    network = _mapping(top.get("network"), source, "network", "network: {cidr: 10.213.40.0/24}")
    cidr = _cidr(network.get("cidr"), source, "network.cidr", "10.213.40.0/24")
    if not isinstance(cidr, ipaddress.IPv4Network) or not cidr.is_private or cidr.num_addresses < 8:
        raise _fail(
            source,
            "network.cidr",
            f"{cidr} is not a private IPv4 network of 8 addresses or more",
            "use e.g. 10.213.40.0/24",
        )
    if count + 4 > cidr.num_addresses - 3:
        raise _fail(source, "network.cidr", f"{cidr} is too small for {count} workers", "give a larger network")
    external = network.get("external")
    if external is not None:
        external = _text(external, source, "network.external", "public  (the cloud's external network)")
    if provider == "local" and external is not None:
        raise _fail(source, "network.external", "is given for provider local", "remove it (openstack only)")
    extra = _access(top, source, provider)
    return Tier3Spec(
        name=name,
        provider=provider,
        head_flavour=head_flavour,
        workers=count,
        worker_flavour=worker_flavour,
        image_path=image_path,
        image_format=image_format,
        storage_gb=storage_gb,
        cidr=cidr,
        accounts=_accounts(top.get("slurm"), source),
        cloud=cloud,
        external_network=external,
        **extra,
    )


def load(path: Path) -> Tier3Spec:
    """Read and check the Tier-3 description in `path`."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise Tier3SpecError(f"{path}: cannot be read ({exc.strerror}); give the path of a Tier-3 YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Tier3SpecError(f"{path}: is not valid YAML ({exc}); fix the syntax at the place shown") from None
    return parse(data, str(path))
