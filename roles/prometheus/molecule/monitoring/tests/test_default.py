"""Verify the monitoring roles: packages, files, services, sockets, and that Prometheus really scrapes."""

import json
import time
import urllib.parse

import yaml

from magellan import contract

testinfra_hosts = ["podman://molecule-monitoring"]
PROM = f"https://127.0.0.1:{contract.PORTS['prometheus']}"  # Prometheus too serves the site's web security
JOBS = contract.JOBS_DIR
WEB = "/etc/magellan/tls"


def prom_api(host, path, query=""):
    """Prometheus' API on the node, as the site's clients reach it: HTTPS with the scenario's CA and password."""
    script = (
        "import base64,ssl,sys,urllib.request;"
        f"ctx=ssl.create_default_context(cafile='{WEB}/ca.crt');"
        f"r=urllib.request.Request('{PROM}'+sys.argv[1]);"
        "r.add_header('Authorization','Basic '+base64.b64encode(b'prometheus:molecule-scrape').decode());"
        "print(urllib.request.urlopen(r,context=ctx,timeout=5).read().decode())"
    )
    path += f"?{urllib.parse.urlencode({'query': query})}" if query else ""
    body = json.loads(host.check_output("python3 -c %s %s", script, path))
    assert body["status"] == "success", body
    return body["data"]


def prom_query(host, expr):
    return prom_api(host, "/api/v1/query", expr)["result"]


def wait_for(host, expr, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        result = prom_query(host, expr)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(2)


def test_packages(host):
    assert host.package("prometheus").is_installed
    assert host.package("prometheus-node-exporter").is_installed


def test_config_files(host):
    cfg = host.file("/etc/prometheus/prometheus.yml")
    assert cfg.group == "prometheus"
    assert cfg.mode == 0o640
    assert "job_name: node" in cfg.content_string
    assert "job_name: magellan_job" in cfg.content_string
    assert host.run("promtool check config /etc/prometheus/prometheus.yml").rc == 0
    prof = host.file(f"{contract.TEXTFILE_DIR}/magellan_profile.prom")
    assert 'magellan_node_profile_cpus{node="molecule-monitoring",platform="molecule"} 0.5' in prof.content_string


def test_alert_rules_loaded(host):
    rules = host.file("/etc/prometheus/magellan.rules.yml")
    assert rules.group == "prometheus" and rules.mode == 0o640
    assert host.run("promtool check rules /etc/prometheus/magellan.rules.yml").rc == 0
    groups = prom_api(host, "/api/v1/rules")["groups"]
    names = {r["name"] for g in groups for r in g["rules"]}
    assert {"MagellanPlatformRegression", "MagellanPlatformAboveProfile"} <= names


def test_services(host):
    for name, user in (("prometheus", "prometheus"), ("prometheus-node-exporter", "prometheus"),
                       ("magellan-job-exporter", "magellan-exporter")):  # fmt: skip
        svc = host.service(name)
        assert svc.is_running, name
        assert svc.is_enabled, name
        pid = host.check_output(f"systemctl show --property=MainPID --value {name}")
        assert host.check_output(f"ps -o user= -p {pid}") == user, name  # none of them root


def test_sockets_on_the_site_address_only(host):
    # The scenario's site address is 127.0.0.1 (testbed_address in molecule.yml): each service listens there only.
    for port in (contract.PORTS[name] for name in ("prometheus", "node_exporter", "job_exporter")):
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, port
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, port
        assert not host.socket(f"tcp://:::{port}").is_listening, port


def fetch(host, url, auth=None, ca=True):
    """HTTP status of a GET on the node ("refused" when no HTTP answer comes: TLS refused, plain HTTP on TLS)."""
    script = (
        "import base64,ssl,sys,urllib.error,urllib.request\n"
        f"ctx=ssl.create_default_context(cafile='{WEB}/ca.crt') if {ca} else None\n"
        "r=urllib.request.Request(sys.argv[1])\n"
        "if sys.argv[2]: r.add_header('Authorization','Basic '+base64.b64encode(sys.argv[2].encode()).decode())\n"
        "try: print(urllib.request.urlopen(r,context=ctx,timeout=10).status)\n"
        "except urllib.error.HTTPError as e: print(e.code)\n"
        "except (OSError, ssl.SSLError): print('refused')\n"
    )
    return host.check_output("python3 -c %s %s %s", script, url, auth or "")


def test_prometheus_and_the_exporters_answer_only_over_tls_with_the_password(host):
    web = host.file(contract.WEB_CONFIG)
    assert web.mode == 0o644 and "basic_auth_users" in web.content_string
    assert "molecule-scrape" not in web.content_string  # the hash only
    for port in (contract.PORTS[name] for name in ("prometheus", "node_exporter", "job_exporter")):
        url = f"https://127.0.0.1:{port}/metrics"
        assert fetch(host, url, "prometheus:molecule-scrape") == "200", port
        assert fetch(host, url, "prometheus:wrong") == "401", port
        assert fetch(host, url) == "401", port
        # Plain HTTP gets no metrics: Go's servers answer 400 ("HTTP request to an HTTPS server"), ours closes.
        assert fetch(host, f"http://127.0.0.1:{port}/metrics", ca=False) in ("400", "refused"), port
    cfg = host.file("/etc/prometheus/prometheus.yml").content_string
    jobs = yaml.safe_load(cfg)["scrape_configs"]
    assert {j["job_name"]: j.get("scheme") for j in jobs} == {j["job_name"]: "https" for j in jobs}  # itself too
    assert "password_file: " in cfg and "molecule-scrape" not in cfg
    secret = host.file("/etc/prometheus/magellan-scrape-password")
    assert (secret.group, secret.mode, secret.content_string) == ("prometheus", 0o640, "molecule-scrape")


def test_every_target_is_up(host):
    """The targets Prometheus scrapes (its targets API), all up at once within a minute: one scrape that timed out on
    a loaded machine is not a target that is down. Not the `up` series: Debian's package starts Prometheus with its
    own configuration when it is installed (localhost:9090 and localhost:9100, where no node_exporter of the site
    listens), and after the role's restart those series stay in queries for the 5-minute lookback, targets no more."""
    deadline = time.monotonic() + 60
    while True:
        active = prom_api(host, "/api/v1/targets?state=active")["activeTargets"]
        down = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in active if t["health"] != "up"]
        if (len(active) >= 3 and not down) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert len(active) >= 3 and not down, f"not every target up within a minute: {down or active}"
    assert {t["labels"]["job"] for t in active} == {"prometheus", "node", "magellan_job"}


def test_profile_and_job_metrics_reach_prometheus(host):
    cpus = wait_for(host, 'magellan_node_profile_cpus{node="molecule-monitoring"}')
    assert float(cpus[0]["value"][1]) == 0.5
    up = wait_for(host, 'magellan_job_up{node="molecule-monitoring",platform="molecule"}')
    assert float(up[0]["value"][1]) == 1.0


def test_a_real_job_is_exported(host):
    run = host.run("magellan-workload simulate --job-id molecule-check --events 200 --seed 1")
    assert run.rc == 0, run.stderr
    result = wait_for(host, 'magellan_job_events_processed_total{job_id="molecule-check"} == 200')
    assert result, "the finished job's 200 events never reached Prometheus"
    assert result[0]["metric"]["node"] == "molecule-monitoring"


def test_old_progress_files_age_out(host):
    """job_exporter_jobs_max_age (7d): files not written for longer go, by their mtime (the exporter's reads keep the
    atime fresh), when systemd-tmpfiles-clean.timer runs; a fresh file stays."""
    conf = host.file("/etc/tmpfiles.d/magellan-jobs.conf").content_string
    assert f"e {JOBS} - - - m:7d" in conf.splitlines()
    assert host.service("systemd-tmpfiles-clean.timer").is_running
    old, new = f"{JOBS}/age-test-old", f"{JOBS}/age-test-new"
    host.check_output(f"touch -d '8 days ago' {old} && touch {new} && cat {old}")  # reading it: a fresh atime
    try:
        host.check_output("systemd-tmpfiles --clean /etc/tmpfiles.d/magellan-jobs.conf")
        assert not host.file(old).exists
        assert host.file(new).exists
    finally:
        host.run(f"rm -f {old} {new}")
