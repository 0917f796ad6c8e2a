"""The openstack provider of a virtual Tier-3, against recorded OpenStack API responses (tests/fixtures/openstack,
replayed by tests/unit/openstack_cloud.py through requests-mock). No cloud is used."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests_mock
import yaml

from magellan import contract
from testbed import cli
from testbed.tier3 import Tier3Error, inventory, spec
from testbed.tier3.openstack import OpenStackProvider, label, security_rules
from tests.unit.openstack_cloud import Cloud, demo_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    with requests_mock.Mocker() as mock:
        c = Cloud(mock)
        c.public = c.add("network", name="public", **{"router:external": True})  # type: ignore[attr-defined]
        yield c


@pytest.fixture
def t3(tmp_path: Path) -> spec.Tier3Spec:
    return spec.parse(demo_spec(tmp_path))


def provider(cloud: Cloud) -> OpenStackProvider:
    return OpenStackProvider(cloud.connection(), wait=5, interval=0)


def posts(cloud: Cloud, since: int = 0) -> Counter[str]:
    return Counter(path.rsplit("/", 1)[-1] for method, path in cloud.writes()[since:] if method == "POST")


def servers(cloud: Cloud) -> list[str]:
    return sorted(s["name"] for s in cloud.state["server"].values())


def test_up_creates_each_resource_once_and_labels_it(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    outcome = provider(cloud).up(t3)
    made = posts(cloud)
    assert made["networks"] == made["subnets"] == made["routers"] == made["security-groups"] == 1
    assert made["security-group-rules"] == len(security_rules(t3))
    assert made["os-keypairs"] == made["images"] == made["volumes"] == made["floatingips"] == 1
    assert made["servers"] == 3 and made["os-volume_attachments"] == 1
    assert servers(cloud) == ["magellan-demo-head", "magellan-demo-worker-01", "magellan-demo-worker-02"]
    for kind in ("network", "subnet", "router", "security_group", "floatingip"):
        assert all(label("demo") in r["tags"] for r in cloud.state[kind].values() if r.get("name") != "public"), kind
    head = cloud.named("server", "magellan-demo-head")[0]
    assert head["metadata"] == inventory.server_metadata("demo", "head")
    assert head["metadata"]["magellan_groups"].startswith("head_nodes,slurm_controller")
    (image,) = cloud.state["image"].values()
    assert image["magellan_sha256"] == spec_digest(t3) and image["status"] == "active"
    assert f"magellan_sha256={spec_digest(t3)}" in image["tags"]
    (router,) = (r for r in cloud.state["router"].values())
    assert router["external_gateway_info"]["network_id"] == cloud.public["id"]  # type: ignore[attr-defined]
    assert outcome.floating_ip == "198.51.100.101"
    hosts = inventory.inventory(outcome.servers, "demo")
    assert hosts["all"]["hosts"]["magellan-demo-head"]["ansible_host"] == "198.51.100.101"
    assert hosts["all"]["children"]["slurm_compute"]["hosts"].keys() == {
        "magellan-demo-worker-01",
        "magellan-demo-worker-02",
    }


def spec_digest(t3: spec.Tier3Spec) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(t3.image_path.read_bytes()).hexdigest()


def test_second_up_changes_nothing(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    p = provider(cloud)
    p.up(t3)
    before = len(cloud.writes())
    outcome = p.up(t3)
    assert cloud.writes()[before:] == []  # no POST, PUT or DELETE at all
    assert outcome.created == [] and outcome.deleted == []
    assert len(cloud.state["floatingip"]) == 1 and len(cloud.state["server"]) == 3


def test_the_security_group_opens_only_the_sites_ports(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    rules = security_rules(t3)
    from_controller = {r.port_min for r in rules if r.remote_ip_prefix == "203.0.113.0/24"}
    assert from_controller == {22, contract.PORTS["prometheus"], contract.PORTS["grafana"]}
    internal = {(r.port_min, r.port_max) for r in rules if r.remote_ip_prefix is None}
    low, high = (int(n) for n in contract.SRUN_PORT_RANGE.split("-"))
    assert internal == {(p, p) for p in (22, *contract.PORTS.values())} | {(low, high)}
    p = provider(cloud)
    p.up(t3)
    (group,) = cloud.state["security_group"].values()
    stray = cloud.add("security_group_rule", security_group_id=group["id"], protocol="tcp", port_range_min=80,
                      port_range_max=80, remote_ip_prefix="0.0.0.0/0")  # fmt: skip
    before = len(cloud.writes())
    p.up(t3)
    assert cloud.writes()[before:] == [("DELETE", f"/v2.0/security-group-rules/{stray['id']}")]


def test_server_create_500_is_reported_and_the_next_up_resumes(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    p = provider(cloud)
    cloud.fail("POST", r"/servers$", 500)  # the head's create fails
    with pytest.raises(Tier3Error, match=r"server magellan-demo-head \(create\): HTTP 500.*run `testbed tier3 up`"):
        p.up(t3)
    assert servers(cloud) == []
    before = len(cloud.writes())
    p.up(t3)
    assert posts(cloud, before)["networks"] == 0 and posts(cloud, before)["images"] == 0  # kept, not made twice
    assert posts(cloud, before)["servers"] == 3
    assert servers(cloud) == ["magellan-demo-head", "magellan-demo-worker-01", "magellan-demo-worker-02"]


def test_a_server_in_error_is_named_and_made_anew(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    p = provider(cloud)
    cloud.boot_errors.add("magellan-demo-worker-02")
    with pytest.raises(Tier3Error, match=r"server magellan-demo-worker-02: went to ERROR .No valid host was found"):
        p.up(t3)
    cloud.boot_errors.clear()
    broken = cloud.named("server", "magellan-demo-worker-02")[0]["id"]
    before = len(cloud.writes())
    p.up(t3)
    assert ("DELETE", f"/v2.1/servers/{broken}") in cloud.writes()[before:]
    assert posts(cloud, before)["servers"] == 1
    assert servers(cloud) == ["magellan-demo-head", "magellan-demo-worker-01", "magellan-demo-worker-02"]
    assert all(s["status"] == "ACTIVE" for s in cloud.state["server"].values())


def test_scale_up_then_down(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    p = provider(cloud)
    p.up(t3)
    before = len(cloud.writes())
    p.scale(t3, 4)
    assert posts(cloud, before) == Counter({"servers": 2})
    before = len(cloud.writes())
    outcome = p.scale(t3, 1)
    assert [m for m, _ in cloud.writes()[before:]] == ["DELETE"] * 3
    assert servers(cloud) == ["magellan-demo-head", "magellan-demo-worker-01"]
    assert "server magellan-demo-worker-04 (scaled down)" in outcome.deleted


def test_down_removes_only_what_carries_the_label(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    p = provider(cloud)
    p.up(t3)
    foreign_net = cloud.add("network", name="magellan-other-net", tags=[label("other")])
    foreign_server = cloud.add("server", name="magellan-demo-lookalike", status="ACTIVE", metadata={})
    foreign_ip = cloud.add("floatingip", floating_network_id=cloud.public["id"], floating_ip_address="198.51.100.7")  # type: ignore[attr-defined]
    outcome = p.down("demo")
    assert cloud.state["server"] == {foreign_server["id"]: foreign_server}
    assert set(cloud.state["network"]) == {foreign_net["id"], cloud.public["id"]}  # type: ignore[attr-defined]
    assert cloud.state["floatingip"] == {foreign_ip["id"]: foreign_ip}
    for kind in ("subnet", "router", "security_group", "volume", "keypair", "port"):
        assert cloud.state[kind] == {}, kind
    assert len(cloud.state["image"]) == 1  # the certified image is shared by every Tier-3: kept
    assert "keypair magellan-demo-key" in outcome.deleted
    assert p.down("demo").deleted == []


def test_floating_ip_reuses_an_unassociated_one_of_its_own_and_not_a_foreign_one(
    cloud: Cloud, t3: spec.Tier3Spec
) -> None:
    public = cloud.public["id"]  # type: ignore[attr-defined]
    foreign = cloud.add("floatingip", floating_network_id=public, floating_ip_address="198.51.100.7")
    mine = cloud.add(
        "floatingip", floating_network_id=public, floating_ip_address="198.51.100.8", description=label("demo")
    )
    outcome = provider(cloud).up(t3)
    assert posts(cloud)["floatingips"] == 0
    assert ("PUT", f"/v2.0/floatingips/{mine['id']}") in cloud.writes()
    assert outcome.floating_ip == "198.51.100.8" and foreign["port_id"] is None


def test_floating_ip_on_another_network_is_refused(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    p = provider(cloud)
    p.up(t3)
    (ip,) = cloud.state["floatingip"].values()
    ip["floating_network_id"] = cloud.add("network", name="campus", **{"router:external": True})["id"]
    with pytest.raises(Tier3Error, match=r"network.external"):  # now two external networks: the spec must say which
        p.up(t3)
    t3 = spec.parse({**_raw(t3), "network": {"cidr": "10.213.41.0/24", "external": "public"}})
    with pytest.raises(Tier3Error, match=r"floating IP 198\.51\.100\.101 of magellan-demo-head: is from network"):
        p.up(t3)


def _raw(t3: spec.Tier3Spec) -> dict[str, Any]:
    return {
        "name": t3.name,
        "provider": "openstack",
        "cloud": "recorded",
        "head": {"flavour": t3.head_flavour},
        "workers": {"count": t3.workers, "flavour": t3.worker_flavour},
        "image": {"path": str(t3.image_path), "format": t3.image_format},
        "storage_gb": t3.storage_gb,
        "network": {"cidr": str(t3.cidr)},
        "controller_cidr": str(t3.controller_cidr),
        "ssh": {"public_key": str(t3.ssh_public_key)},
        "slurm": {"accounts": [{"name": "atlas", "users": ["alice"]}]},
    }


def test_the_wrong_network_is_not_picked(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    campus = cloud.add("network", name="campus", **{"router:external": True})
    with pytest.raises(Tier3Error, match=r"2 external networks \(campus .*, public .*\); name the one"):
        provider(cloud).up(t3)
    assert cloud.writes() == []  # nothing made before the choice
    chosen = spec.parse({**_raw(t3), "network": {"cidr": "10.213.41.0/24", "external": "campus"}})
    provider(cloud).up(chosen)
    (router,) = cloud.state["router"].values()
    assert router["external_gateway_info"]["network_id"] == campus["id"]
    assert {ip["floating_network_id"] for ip in cloud.state["floatingip"].values()} == {campus["id"]}
    unknown = spec.parse({**_raw(t3), "network": {"cidr": "10.213.41.0/24", "external": "nowhere"}})
    with pytest.raises(Tier3Error, match=r"'nowhere' is not an external network.*campus"):
        provider(cloud).up(unknown)


def test_image_is_found_by_its_content_hash_and_a_broken_upload_replaced(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    tag = f"magellan_sha256={spec_digest(t3)}"
    leftover = cloud.add("image", name="magellan-certified-x", status="queued", tags=[tag])
    p = provider(cloud)
    p.up(t3)
    assert ("DELETE", f"/v2/images/{leftover['id']}") in cloud.writes()
    assert posts(cloud)["images"] == 1
    other = spec.parse({**_raw(t3), "name": "second", "network": {"cidr": "10.213.42.0/24"}})
    before = len(cloud.writes())
    p.up(other)
    assert posts(cloud, before)["images"] == 0  # the second Tier-3 reuses the uploaded image
    assert posts(cloud, before)["servers"] == 3


def test_keypair_with_another_key_and_unknown_flavour_are_refused(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    cloud.state["keypair"]["magellan-demo-key"] = {"name": "magellan-demo-key", "public_key": "ssh-rsa OTHER x"}
    with pytest.raises(Tier3Error, match=r"keypair magellan-demo-key: exists with another public key"):
        provider(cloud).up(t3)
    del cloud.state["keypair"]["magellan-demo-key"]
    big = spec.parse({**_raw(t3), "workers": {"count": 1, "flavour": "m9.huge"}})
    with pytest.raises(Tier3Error, match=r"workers.flavour: flavour 'm9.huge' is not one of .*m1.large"):
        provider(cloud).up(big)


def test_status_lists_what_exists_and_what_is_missing(cloud: Cloud, t3: spec.Tier3Spec) -> None:
    p = provider(cloud)
    assert ("server", "magellan-demo-head", "missing") in p.status(t3)
    p.up(t3)
    rows = p.status(t3)
    assert ("server", "magellan-demo-worker-02", "ACTIVE (worker)") in rows
    assert any(kind == "floating IP" and state.startswith("on port") for kind, _, state in rows)
    assert not any(state == "missing" for _, _, state in rows)


def test_cli_up_writes_the_inventory(
    cloud: Cloud, t3: spec.Tier3Spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openstack  # noqa: PLC0415

    monkeypatch.setattr(openstack, "connect", lambda cloud=None: cloud_conn)
    cloud_conn = cloud.connection()
    path = tmp_path / "demo.yml"
    path.write_text(yaml.safe_dump(_raw(t3) | {"network": {"cidr": "10.213.41.0/24"}}))
    out = tmp_path / "hosts.yml"
    assert cli.main(["tier3", "up", str(path), "--workers", "1", "--inventory-out", str(out)]) == 0
    hosts = yaml.safe_load(out.read_text())
    assert sorted(hosts["all"]["hosts"]) == ["magellan-demo-head", "magellan-demo-worker-01"]
    assert cli.main(["tier3", "down", "demo", "--cloud", "recorded"]) == 0
    assert cloud.state["server"] == {}


def test_cli_local_provider_is_not_available(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tier3", "up", str(REPO / "inventories" / "tier3" / "demo.yml")]) == 2
    assert "local Tier-3 provider is not available in this version" in capsys.readouterr().out


def test_cli_bad_spec_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("name: Demo\n")
    assert cli.main(["tier3", "up", str(path)]) == 1
    assert "name: is 'Demo'" in capsys.readouterr().out
