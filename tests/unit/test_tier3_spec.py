"""A Tier-3's description is checked before anything is made; each error names the key, what was wrong and what
to write. The dynamic inventory maps servers' metadata to the site's groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.tier3 import inventory, spec

REPO = Path(__file__).resolve().parents[2]
GOOD: dict[str, Any] = {
    "name": "t3",
    "provider": "openstack",
    "cloud": "mycloud",
    "head": {"flavour": "m1.medium"},
    "workers": {"count": 2, "flavour": "m1.large"},
    "image": {"path": "/images/root.qcow2", "format": "qcow2"},
    "storage_gb": 100,
    "network": {"cidr": "10.213.41.0/24"},
    "controller_cidr": "203.0.113.0/24",
    "slurm": {"accounts": [{"name": "atlas", "users": ["alice", "bob"]}]},
}


def test_the_example_files_are_valid() -> None:
    demo = spec.load(REPO / "inventories" / "tier3" / "demo.yml")
    assert (demo.name, demo.provider, demo.workers, demo.cloud) == ("demo", "local", 2, None)
    example = spec.load(REPO / "inventories" / "tier3" / "openstack-example.yml")
    assert (example.provider, example.cloud, example.external_network) == ("openstack", "mycloud", None)
    assert [a.name for a in example.accounts] == ["atlas"]


def test_a_good_spec() -> None:
    t3 = spec.parse(GOOD)
    assert t3.workers == 2 and str(t3.cidr) == "10.213.41.0/24" and t3.accounts[0].users == ("alice", "bob")
    assert t3.with_workers(5).workers == 5
    with pytest.raises(spec.Tier3SpecError, match=r"--workers: is -1"):
        t3.with_workers(-1)


def _with(path: str, value: Any) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("name", "Demo", "name: is 'Demo'; give 1-24 characters"),
        ("provider", "aws", "provider: is 'aws'; give one of local, openstack"),
        ("cloud", None, "cloud: is missing; write e.g. cloud: mycloud"),
        ("head", None, "head: is missing; write e.g. head: {flavour: m1.medium}"),
        ("workers.count", "two", "workers.count: is 'two'; give a whole number of workers"),
        ("workers.count", True, "workers.count: is True"),
        ("image.format", "vmdk", "image.format: is 'vmdk'; give one of qcow2, raw"),
        ("storage_gb", 0, "storage_gb: is 0; give a whole number from 1"),
        ("network.cidr", "10.0.0.0/33", "network.cidr: '10.0.0.0/33' is not a network"),
        ("network.cidr", "8.8.8.0/24", "is not a private IPv4 network"),
        ("network.cidr", "10.0.0.0/29", "is too small for 2 workers"),
        ("controller_cidr", None, "controller_cidr: is missing: SSH and the dashboards"),
        ("slurm.accounts", [], "slurm.accounts: is []"),
        ("slurm.accounts", [{"name": "atlas", "users": ["Alice"]}], "'Alice' is not a user name"),
        (
            "slurm.accounts",
            [{"name": "a", "users": ["x"]}, {"name": "a", "users": ["y"]}],
            "account 'a' is given twice",
        ),
        ("flavor", "m1", "flavor: unknown key; use only"),
    ],
)
def test_bad_specs_say_which_key_and_what_to_do(path: str, value: Any, message: str) -> None:
    with pytest.raises(spec.Tier3SpecError, match=r"^tier3 spec: ") as info:
        spec.parse(_with(path, value))
    assert message in str(info.value)


def test_local_provider_takes_no_cloud() -> None:
    with pytest.raises(spec.Tier3SpecError, match=r"cloud: is given for provider local; remove it"):
        spec.parse(_with("provider", "local"))
    local = _with("provider", "local")
    del local["cloud"]
    assert spec.parse(local).provider == "local"


def test_load_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(spec.Tier3SpecError, match=r"nope.yml: cannot be read"):
        spec.load(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [demo\n")
    with pytest.raises(spec.Tier3SpecError, match=r"bad.yml: is not valid YAML"):
        spec.load(bad)


def _server(name: str, role: str, tier3: str = "t3", floating: str | None = None) -> dict[str, Any]:
    addresses = [{"addr": f"10.213.41.{len(name)}", "version": 4, "OS-EXT-IPS:type": "fixed"}]
    if floating:
        addresses.append({"addr": floating, "version": 4, "OS-EXT-IPS:type": "floating"})
    return {"name": name, "metadata": inventory.server_metadata(tier3, role), "addresses": {"net": addresses}}


def test_inventory_maps_metadata_to_the_sites_groups() -> None:
    servers = [
        _server("magellan-t3-worker-01", "worker"),
        _server("magellan-t3-head", "head", floating="198.51.100.5"),
        _server("magellan-other-head", "head", tier3="other", floating="198.51.100.6"),
        {"name": "unlabelled", "metadata": {}, "addresses": {}},
    ]
    inv = inventory.inventory(servers, "t3", ssh_user="debian")
    hosts = inv["all"]["hosts"]
    assert sorted(hosts) == ["magellan-t3-head", "magellan-t3-worker-01"]
    assert hosts["magellan-t3-head"]["ansible_host"] == "198.51.100.5"
    worker = hosts["magellan-t3-worker-01"]
    assert worker["ansible_host"].startswith("10.213.41.")
    assert worker["ansible_ssh_common_args"] == "-o ProxyJump=debian@198.51.100.5"
    children = inv["all"]["children"]
    assert list(children["slurm_controller"]["hosts"]) == ["magellan-t3-head"]
    assert list(children["chos_nodes"]["hosts"]) == ["magellan-t3-worker-01"]
    assert sorted(children["node_exporter"]["hosts"]) == ["magellan-t3-head", "magellan-t3-worker-01"]


def test_every_group_a_tier3_uses_is_a_group_of_the_site() -> None:
    site = yaml.safe_load((REPO / "inventories" / "local" / "hosts.yml").read_text())
    groups = set(site["all"]["children"])
    for role, names in inventory.GROUPS.items():
        assert set(names) <= groups, role
        assert len(",".join(names)) <= 255  # a Nova metadata value


def test_inventory_is_written_whole(tmp_path: Path) -> None:
    out = tmp_path / "t3" / "hosts.yml"
    inventory.write(out, inventory.inventory([_server("magellan-t3-head", "head", floating="198.51.100.5")], "t3"))
    assert yaml.safe_load(out.read_text())["all"]["vars"] == {"magellan_tier3": "t3"}
    assert [p.name for p in out.parent.iterdir()] == ["hosts.yml"]  # no temporary file left
