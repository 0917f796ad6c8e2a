"""Verify the grafana role's files: grafana.ini's settings, the password kept out of it, the provisioning files
valid against the schemas of Grafana's documented format, and the dashboards in their folders."""

import configparser
import json
from pathlib import Path

import jsonschema
import yaml

from magellan import contract

testinfra_hosts = ["podman://molecule-grafana"]
REPO = Path(__file__).resolve().parents[5]
GENERATED = REPO / "dashboards" / "generated"
SCHEMAS = REPO / "tests" / "fixtures" / "grafana"
DASHBOARDS = "/var/lib/grafana/dashboards/magellan"


def ini(host):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(host.file("/etc/grafana/grafana.ini").content_string)
    return parser


def test_grafana_ini_turns_off_what_a_site_would_not_want(host):
    f = host.file("/etc/grafana/grafana.ini")
    assert (f.user, f.group, f.mode) == ("root", "grafana", 0o640)
    cfg = ini(host)
    assert cfg["server"]["http_addr"] == "127.0.0.1"
    assert cfg["server"]["http_port"] == str(contract.PORTS["grafana"])
    assert cfg["auth.anonymous"]["enabled"] == "false"
    assert cfg["users"]["allow_sign_up"] == "false"
    for key in ("reporting_enabled", "check_for_updates", "check_for_plugin_updates"):
        assert cfg["analytics"][key] == "false", key
    assert cfg["snapshots"]["external_enabled"] == "false"
    assert cfg["paths"]["provisioning"] == "/etc/grafana/provisioning"


def test_the_admin_password_is_in_a_file_of_its_own(host):
    secret = host.file("/etc/grafana/admin_password")
    assert (secret.user, secret.group, secret.mode) == ("root", "grafana", 0o640)
    password = secret.content_string
    assert len(password) == 24
    assert ini(host)["security"]["admin_password"] == "$__file{/etc/grafana/admin_password}"
    for path in ("/etc/grafana/grafana.ini", "/etc/grafana/provisioning/datasources/magellan.yml"):
        assert password not in host.file(path).content_string, path


def provisioning(host, kind):
    text = host.file(f"/etc/grafana/provisioning/{kind}/magellan.yml").content_string
    data = yaml.safe_load(text)
    jsonschema.validate(data, json.loads((SCHEMAS / f"provisioning-{kind}.schema.json").read_text()))
    return data


def test_the_datasource_is_the_sites_prometheus_with_a_stable_uid(host):
    (ds,) = provisioning(host, "datasources")["datasources"]
    assert (ds["uid"], ds["type"], ds["isDefault"]) == ("magellan-prometheus", "prometheus", True)
    assert ds["url"] == f"https://127.0.0.1:{contract.PORTS['prometheus']}"  # the scenario's web security is on
    assert ds["jsonData"]["timeInterval"] == "5s"  # the scenario's prometheus_scrape_interval


def test_the_datasource_verifies_prometheus_and_logs_in_with_a_password_of_its_own_file(host):
    (ds,) = provisioning(host, "datasources")["datasources"]
    assert (ds["basicAuth"], ds["basicAuthUser"], ds["jsonData"]["tlsAuthWithCACert"]) == (True, "prometheus", True)
    secret = host.file("/etc/grafana/prometheus_password")
    assert (secret.user, secret.group, secret.mode, secret.content_string) == (
        "root",
        "grafana",
        0o640,
        "molecule-query",
    )
    assert ds["secureJsonData"] == {
        "basicAuthPassword": "$__file{/etc/grafana/prometheus_password}",
        "tlsCACert": "$__file{/etc/magellan/tls/ca.crt}",
    }
    assert "molecule-query" not in host.file("/etc/grafana/provisioning/datasources/magellan.yml").content_string


def generated():
    return [json.loads(p.read_text()) for p in sorted(GENERATED.glob("*.json"))]


def test_one_folder_per_area_with_the_folders_push_uses(host):
    providers = provisioning(host, "dashboards")["providers"]
    want = {contract.dashboard_folder(d["uid"], d["tags"]) for d in generated()}
    assert {(p["folderUid"], p["folder"]) for p in providers} == want
    for p in providers:
        assert p["options"]["path"] == f"{DASHBOARDS}/{p['folderUid']}"
        assert p["allowUiUpdates"] is False  # the generated JSON is the source: edits in Grafana would be lost


def test_every_generated_dashboard_is_in_its_folder_and_retired_ones_are_gone(host):
    for dash in generated():
        folder, _ = contract.dashboard_folder(dash["uid"], dash["tags"])
        f = host.file(f"{DASHBOARDS}/{folder}/{dash['uid']}.json")
        assert json.loads(f.content_string) == dash
    assert not host.file(f"{DASHBOARDS}/magellan-retired/magellan-retired.json").exists
