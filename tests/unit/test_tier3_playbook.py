"""playbooks/tier3_openstack.yml (openstack.cloud) against the recorded replay cloud of tests/unit/openstack_cloud.py,
served on 127.0.0.1 by a thread of this process: the venv's ansible-playbook runs its modules in processes of their
own, which requests-mock cannot reach. No cloud is used; nothing leaves the loopback interface."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from magellan import contract
from testbed.tier3 import spec
from testbed.tier3.inventory import server_metadata
from testbed.tier3.openstack import image_tag, label, security_rules
from tests.unit.openstack_cloud import Cloud, demo_spec, serve

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "tier3_openstack.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
RECAP = re.compile(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")
SERVERS = ["magellan-demo-head", "magellan-demo-worker-01", "magellan-demo-worker-02"]


@pytest.fixture
def t3_file(tmp_path: Path) -> Path:
    path = tmp_path / "demo.yml"
    path.write_text(yaml.safe_dump(demo_spec(tmp_path)))
    return path


class Served:
    def __init__(self, cloud: Cloud, clouds_yaml: Path) -> None:
        self.cloud = cloud
        self.clouds_yaml = clouds_yaml

    def run(self, t3_file: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], tuple[int, ...]]:
        env = os.environ | {
            "OS_CLIENT_CONFIG_FILE": str(self.clouds_yaml),
            "ANSIBLE_STRATEGY": "linear",  # a local play: nothing for mitogen to save
            "ANSIBLE_NOCOLOR": "1",
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
        }
        env.pop("OS_CLOUD", None)
        done = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), str(PLAYBOOK), "-e", f"tier3_spec={t3_file}", *extra],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        recap = RECAP.search(done.stdout)
        return done, tuple(int(n) for n in recap.groups()) if recap else ()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    cloud = Cloud()
    cloud.public = cloud.add("network", name="public", **{"router:external": True})  # type: ignore[attr-defined]
    with serve(cloud) as auth_url:
        clouds_yaml = tmp_path / "clouds.yaml"
        clouds_yaml.write_text(
            yaml.safe_dump(
                {
                    "clouds": {
                        "recorded": {
                            "auth": {
                                "auth_url": auth_url,
                                "username": "tier3-operator",
                                "password": "recorded",
                                "project_name": "magellan",
                                "user_domain_name": "Default",
                                "project_domain_name": "Default",
                            },
                            "region_name": "RegionOne",
                            "identity_api_version": 3,
                        }
                    }
                }
            )
        )
        yield Served(cloud, clouds_yaml)


def posts(cloud: Cloud, since: int = 0) -> Counter[str]:
    return Counter(path.rsplit("/", 1)[-1] for method, path in cloud.writes()[since:] if method == "POST")


def test_syntax_check(t3_file: Path) -> None:
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "--syntax-check", str(PLAYBOOK), "-e", f"tier3_spec={t3_file}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_create_then_nothing_to_change_then_check_mode(served: Served, t3_file: Path) -> None:
    cloud = served.cloud
    done, recap = served.run(t3_file)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert cloud.errors == []
    made = posts(cloud)
    t3 = spec.load(t3_file)
    assert made["networks"] == made["subnets"] == made["routers"] == made["security-groups"] == 1, made
    assert made["security-group-rules"] == 1, made  # one bulk POST
    ingress = [r for r in cloud.state["security_group_rule"].values() if r["direction"] == "ingress"]
    assert len(ingress) == len(security_rules(t3))
    assert sorted((r["port_range_min"], r["port_range_max"]) for r in ingress) == sorted(
        (r.port_min, r.port_max) for r in security_rules(t3)
    )
    assert made["os-keypairs"] == made["images"] == made["volumes"] == made["floatingips"] == 1, made
    assert made["servers"] == 3 and made["os-volume_attachments"] == 1, made
    assert sorted(s["name"] for s in cloud.state["server"].values()) == SERVERS
    for server in cloud.state["server"].values():
        role = "head" if server["name"].endswith("head") else "worker"
        assert server["metadata"] == server_metadata("demo", role)
    (image,) = cloud.state["image"].values()
    assert image["tags"] == [image_tag(image["magellan_sha256"])] and image["status"] == "active"
    (fip,) = cloud.state["floatingip"].values()
    assert fip["description"] == label("demo") and fip["port_id"]
    (volume,) = cloud.state["volume"].values()
    assert volume["metadata"] == {"magellan_tier3": "demo"} and volume["attachments"]
    first = len(cloud.writes())
    print(f"first run: recap {recap}, POSTs {sum(made.values())} {dict(made)}, writes {first}")

    done, recap = served.run(t3_file)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert recap[1] == 0, done.stdout[-6000:]
    assert cloud.writes()[first:] == []
    print(f"second run: recap {recap}, writes {len(cloud.writes()) - first}")

    done, recap = served.run(t3_file, "--check", "--diff")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert recap[1] == 0, done.stdout[-6000:]
    assert cloud.writes()[first:] == []
    assert cloud.errors == []
    print(f"check run: recap {recap}, writes {len(cloud.writes()) - first}")


def _filters() -> Any:
    loaded = importlib.util.spec_from_file_location("tier3_filter", REPO / "plugins" / "filter" / "tier3_openstack.py")
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def test_plan_names_and_rules_are_the_providers_with_the_sites_ports(t3_file: Path) -> None:
    filters = _filters()
    ports = dict(contract.PORTS) | {"prometheus": 19090}  # a site that moved Prometheus
    plan = filters.tier3_openstack_plan(str(t3_file), ports, "61001-61100")
    t3 = spec.load(t3_file)
    ingress = {
        (r["port_range_min"], r["port_range_max"], r.get("remote_ip_prefix"))
        for r in plan["security_group_rules"]
        if r["direction"] == "ingress"
    }
    assert ingress == {(r.port_min, r.port_max, r.remote_ip_prefix) for r in security_rules(t3, ports, "61001-61100")}
    assert (19090, 19090, "203.0.113.0/24") in ingress and (61001, 61100, None) in ingress
    assert (contract.PORTS["prometheus"],) * 2 + ("203.0.113.0/24",) not in ingress
    assert [s["name"] for s in plan["servers"]] == SERVERS
    assert plan["servers"][0]["metadata"] == server_metadata("demo", "head")
    assert plan["label"] == label("demo") and plan["image"]["tag"] == image_tag(
        plan["image"]["properties"]["magellan_sha256"]
    )


def test_plan_refuses_a_local_spec_naming_the_key(tmp_path: Path, t3_file: Path) -> None:
    local = tmp_path / "local.yml"
    data = yaml.safe_load(t3_file.read_text())
    del data["cloud"]
    local.write_text(yaml.safe_dump(data | {"provider": "local"}))
    with pytest.raises(AnsibleFilterError, match=r"provider: is 'local'; this playbook makes provider openstack"):
        _filters().tier3_openstack_plan(str(local), dict(contract.PORTS), contract.SRUN_PORT_RANGE)
    with pytest.raises(AnsibleFilterError, match="tier3_spec is not set"):
        _filters().tier3_openstack_plan("", dict(contract.PORTS), contract.SRUN_PORT_RANGE)


def test_floating_ip_on_the_head_then_a_free_labelled_one_then_a_new_labelled_one() -> None:
    choose = _filters().tier3_openstack_floating_ip
    plan = {"label": label("demo"), "head": "magellan-demo-head"}
    on_head = [{"id": "ip-head", "floating_network_id": "ext", "port_id": "p1"}]
    free = [
        {"id": "ip-used", "floating_network_id": "ext", "port_id": "p9"},
        {"id": "ip-other-net", "floating_network_id": "ext2", "port_id": None},
        {"id": "ip-free", "floating_network_id": "ext", "port_id": None},
    ]
    assert choose(plan, on_head, free, "p1", "ext") == {"floating_network_id": "ext", "port_id": "p1", "id": "ip-head"}
    assert choose(plan, [], free, "p1", "ext")["id"] == "ip-free"
    new = choose(plan, [], free[:2], "p1", "ext")
    assert "id" not in new and new["description"] == label("demo")
    with pytest.raises(AnsibleFilterError, match="not from the external network ext"):
        choose(plan, [{"id": "x", "floating_network_id": "ext2", "port_id": "p1"}], [], "p1", "ext")
