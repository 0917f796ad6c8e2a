"""Dashboards as code: deterministic, committed, described, and every query valid on a real Prometheus."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dashboards import storage_arrays, virtual_nodes
from dashboards.__main__ import BUILDERS, GENERATED, render
from dashboards.queries import check_dashboards, expand, panel_queries, template_values
from testbed.model import Comparison, NodeResult
from testbed.prom import PromClient
from testbed.results import exposition
from testbed.storage import DeviceModel, Economics, array_economics, catalogue_exposition
from tests.conftest import free_port
from tests.unit.test_report import T0

REPO = Path(__file__).resolve().parents[2]
VIRSH = REPO / "tests" / "fixtures" / "virsh"
STORAGE = REPO / "tests" / "fixtures" / "storage"
NODES = ["platform", "node"]
FILTERS = {  # each dashboard's variables besides $datasource
    "magellan-platform-comparison": NODES,
    "magellan-storage-concurrency": NODES,
    "magellan-virtual-nodes": NODES,
    "magellan-cluster-health": NODES,
    "magellan-accounting": ["account", "user", "partition"],
    "magellan-campaign-history": ["group", "workload", *NODES],
    "magellan-storage-arrays": NODES,
}


def dashboards() -> list[dict[str, object]]:
    return [json.loads(render(b)[1]) for b in BUILDERS]


def test_generation_is_deterministic_and_committed() -> None:
    for builder in BUILDERS:
        uid, text = render(builder)
        assert render(builder) == (uid, text)
        assert (GENERATED / f"{uid}.json").read_text() == text, "run make dashboards and commit the result"


def test_check_detects_drift(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "dashboards", "--out", str(tmp_path)]
    assert subprocess.run([*run, "--check"], cwd=REPO, capture_output=True).returncode == 1  # missing files
    assert subprocess.run(run, cwd=REPO, capture_output=True).returncode == 0
    assert subprocess.run([*run, "--check"], cwd=REPO, capture_output=True).returncode == 0
    path = tmp_path / "magellan-platform-comparison.json"
    path.write_text(path.read_text().replace("Events per second", "Events per minute"))
    proc = subprocess.run([*run, "--check"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and "make dashboards" in proc.stderr


def test_every_panel_is_described_typed_and_queried() -> None:
    for dash in dashboards():
        names = [v["name"] for v in dash["templating"]["list"]]  # type: ignore[index]
        assert names == ["datasource", *FILTERS[dash["uid"]]], dash["uid"]  # type: ignore[index]
        panels = [p for p in dash["panels"] if p["type"] != "row"]  # type: ignore[union-attr]
        assert len(panels) >= 8
        for p in panels:
            assert p.get("description"), p["title"]
            assert p["fieldConfig"]["defaults"].get("unit"), p["title"]
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]


def test_expand_leaves_no_variable() -> None:
    for dash in dashboards():
        for q in panel_queries(dash):
            assert "$" not in expand(q.expr, template_values(dash)), q
    assert expand('x{node=~"$node"}[$__rate_interval]', {"node": "compute1"}) == 'x{node=~"compute1"}[1m]'
    with pytest.raises(KeyError, match=r"\$nope"):
        expand('up{x=~"$nope"}')


def test_every_query_parses_on_real_prometheus(
    live_prometheus: Callable[[list[str]], PromClient],
) -> None:
    prom = live_prometheus([])
    # Emptiness is checked against the live site in the integration test; here only validity.
    assert check_dashboards(prom, GENERATED, require_data=False) == []
    bad = GENERATED.parent / "nonexistent"
    assert check_dashboards(prom, bad) == []


def virtual_dashboard() -> dict[str, object]:
    return json.loads(render(virtual_nodes.build)[1])  # type: ignore[no-any-return]


def test_virtual_nodes_legends_name_hypervisor_and_accel() -> None:
    dash = virtual_dashboard()
    assert dash["title"] == "Virtual nodes"
    queries = panel_queries(dash)
    panels: list[dict[str, Any]] = dash["panels"]  # type: ignore[assignment]
    legends = {(p["title"], t["refId"]): t["legendFormat"] for p in panels for t in p.get("targets", [])}
    own = ("magellan_virt_up", "magellan_virt_scrape_errors_total", "magellan_virt_scrape_duration_seconds")
    per_domain = [q for q in queries if "magellan_virt_" in q.expr and not any(m in q.expr for m in own)]
    assert len(per_domain) == 10  # vCPU, steal, block r/w, net rx/tx, balloon, RSS, state, domains running
    for q in per_domain:
        assert "{{hypervisor}}" in legends[q.panel, q.ref_id] and "{{accel}}" in legends[q.panel, q.ref_id], q
    for q in queries:
        if "magellan_virt_" in q.expr:
            assert 'platform=~"$platform", node=~"$node"' in q.expr, q


def virtual_comparison(reference: str) -> Comparison:
    """A published simulate comparison: bare metal at full and half CPU, two virtual nodes (TCG, KVM); one has an
    accel label, the other only its platform."""
    nodes = [
        NodeResult("compute1", "bare-metal", "a", 1.0, 45000, 30.0, 29.9, 1500.0),
        NodeResult("compute2", "bare-metal-halfcpu", "b", 0.5, 22500, 30.0, 15.0, 750.0),
        NodeResult("vm-tcg", "tcg", "c", 1.0, 11250, 30.0, 29.9, 375.0, accel="tcg"),
        NodeResult("vm-kvm", "kvm", "d", 1.0, 42750, 30.0, 29.9, 1425.0),  # accel "none", as compare publishes it now
    ]
    return Comparison("simulate", {"run_id": "cmp-virt"}, reference, T0, T0, nodes)


@pytest.fixture
def comparison_target() -> Iterator[str]:
    """host:port serving the comparison's metrics as testbed compare publishes them (reference: compute2)."""
    yield from serve(exposition(virtual_comparison("compute2"), tolerance_pct=15.0).encode())


@pytest.fixture
def virt_exporter(tmp_path: Path) -> Iterator[str]:
    """host:port of the real magellan-virt-exporter process, its virsh a script answering with the captures of a
    libvirt 9.0 hypervisor: magellan-tcg1 running (TCG), magellan-kvm-off shut off."""
    virsh = tmp_path / "virsh"
    virsh.write_text(
        f'#!/bin/sh\nfor a in "$@"; do last=$a; done\ncase " $* " in\n'
        f'  *" domstats "*) cat {VIRSH}/domstats-running.txt ;;\n'
        f'  *" dumpxml "*) cat {VIRSH}/dumpxml-$last.xml ;;\nesac\n'
    )
    virsh.chmod(virsh.stat().st_mode | stat.S_IXUSR)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporters.virt", f"--web.listen-address=127.0.0.1:{port}", f"--virsh.path={virsh}",
         "--node.name=hv1"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_virtual_nodes_queries_answer_from_the_exporter_and_the_comparison(
    live_prometheus: Callable[[list[str]], PromClient], virt_exporter: str, comparison_target: str
) -> None:
    prom = live_prometheus([virt_exporter, comparison_target])
    dash = virtual_dashboard()
    queries = {q.panel + " " + q.ref_id: expand(q.expr, template_values(dash)) for q in panel_queries(dash)}
    deadline = time.monotonic() + 30
    while empty := [name for name, expr in queries.items() if not prom.query(expr)]:  # rates need two scrapes
        assert time.monotonic() < deadline, f"no data for {empty}"
        time.sleep(1)

    def values(panel: str, label: str) -> dict[str, float]:
        return {s.labels[label]: s.value for s in prom.query(queries[panel])}

    assert values("Memory: balloon and host RSS A", "domain") == {"magellan-tcg1": 268435456.0}
    assert values("Memory: balloon and host RSS B", "domain") == {"magellan-tcg1": 238387200.0}
    assert values("Domain state A", "domain") == {"magellan-tcg1": 1.0, "magellan-kvm-off": 1.0}
    assert {s.labels["state"] for s in prom.query(queries["Domain state A"])} == {"running", "shutoff"}
    assert values("Domains running A", "accel") == {"tcg": 1.0, "kvm": 0.0}
    assert prom.query(queries["Virt exporters up A"])[0].value == 1
    assert prom.query(queries["virsh errors in the time range A"])[0].value == 0
    for panel in ("vCPU utilisation A", "vCPU steal A", "Block I/O A", "Network I/O B"):
        assert {
            (s.labels["domain"], s.labels["hypervisor"], s.labels["accel"]) for s in prom.query(queries[panel])
        } == {("magellan-tcg1", "qemu", "tcg")}, panel  # a shut-off domain has no figures but its state
    # virtual simulate events/s over the fastest bare-metal node's, whichever node the comparison took as reference
    ratio = values("Simulate speed of virtual nodes relative to bare metal A", "node")
    assert ratio == pytest.approx({"vm-tcg": 0.25, "vm-kvm": 0.95})


def serve(body: bytes) -> Iterator[str]:
    """host:port of an HTTP server answering every GET with `body` as a Prometheus text exposition."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# Two arrays of role storage_array's catalogue on storage1 (made-up models: the arithmetic is testbed.storage's).
HDD = DeviceModel("hdd-16tb", "hdd", 16.0, 9.0, 5.0, 1.5, 15.0, "2026-01")
SSD = DeviceModel("ssd-3.84tb", "ssd", 3.84, 6.0, 1.5, 0.5, 60.0, "2026-01")
PRICED = [("hdd", array_economics(6, 4, 0, HDD, 5.0, 0.25)), ("ssd", array_economics(6, 4, 1, SSD, 5.0, 0.25))]


@pytest.fixture
def catalogue_target() -> Iterator[str]:
    """host:port serving the catalogue's textfile of PRICED as node_exporter would (its textfile collector)."""
    yield from serve(catalogue_exposition("storage1", "unknown", PRICED).encode())


@pytest.fixture
def storage_exporter(tmp_path: Path) -> Iterator[str]:
    """host:port of the real magellan-storage-exporter on procfs's recorded mdstat (md6 recovering, md7 degraded and
    idle, md127 clean) and the md links of that tree (md127 root, md7 hdd, md6 ssd); its diskstats with a line for each
    of these arrays added (synthetic figures: the recorded file has no md device)."""
    tree = tmp_path / "tree"
    shutil.copytree(STORAGE / "procfs", tree, symlinks=True)
    with (tree / "proc" / "diskstats").open("a") as f:
        for minor, name in ((127, "md127"), (7, "md7"), (6, "md6")):
            f.write(f"   9 {minor:>7} {name} 100 0 800 50 10 0 80 20 0 60 70 0 0 0 0 0 0\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporters.storage", f"--web.listen-address=127.0.0.1:{port}", "--node.name=storage1",
         f"--path.procfs={tree / 'proc'}", f"--path.sysfs={tree / 'sys'}", "--no-collector.smart",
         f"--collector.md.links-directory={tree / 'dev' / 'md'}"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_storage_arrays_queries_answer_from_the_exporter(
    live_prometheus: Callable[[list[str]], PromClient], storage_exporter: str, catalogue_target: str
) -> None:
    """Every query of "Storage arrays" on the storage exporter's series and the catalogue's answers on a real
    Prometheus, named by array; a sync figure is the running sync's, or 0 for an array without one (not "No data");
    the catalogue's ratios are testbed.storage's. The readers' panels are storage_concurrency's."""
    prom = live_prometheus([storage_exporter, catalogue_target])
    dash = json.loads(render(storage_arrays.build)[1])
    queries = {
        f"{q.panel} {q.ref_id}": expand(q.expr, template_values(dash))
        for q in panel_queries(dash)
        if "magellan_storage_" in q.expr
    }
    assert len(queries) == 22 + 7
    deadline = time.monotonic() + 30
    while empty := [name for name, expr in queries.items() if not prom.query(expr)]:  # rates need two scrapes
        assert time.monotonic() < deadline, f"no data for {empty}"
        time.sleep(1)

    def values(panel: str) -> dict[str, float]:
        return {s.labels["device"]: s.value for s in prom.query(queries[panel])}

    named = {(s.labels["device"], s.labels.get("array", "")) for s in prom.query(queries["Degraded members A"])}
    assert {("md6", "ssd"), ("md7", "hdd"), ("md127", "root"), ("md42", "")} <= named
    eta = values("Sync and rebuild time remaining (ETA) A")
    assert (eta["md6"], eta["md42"], eta["md7"], eta["md127"]) == (1020.0, 112086.0, 0.0, 0.0)  # idle: 0, not absent
    progress = values("Sync and rebuild progress A")
    assert (progress["md6"], progress["md7"], progress["md127"]) == (16775552 / 195310144, 0.0, 0.0)
    speed = values("Sync and rebuild speed A")
    assert (speed["md6"], speed["md7"]) == (259783 * 1024, 0.0)
    assert (values("Degraded members A")["md7"], values("Degraded members A")["md127"]) == (1.0, 0.0)
    assert values("Failed members A")["md7"] == 1.0
    actions = {s.labels["device"]: s.labels["action"] for s in prom.query(queries["Sync action A"])}
    assert (actions["md6"], actions["md7"], actions["md42"]) == ("recover", "idle", "reshape")
    assert set(values("Throughput per array A")) == {"md6", "md7", "md127"}  # the md devices of diskstats
    assert values("Queue depth per array A") == {"md6": 0.0, "md7": 0.0, "md127": 0.0}  # fixed counters: no I/O
    # the arrays' members among diskstats' devices (magellan_storage_md_member_info): not the system disk vda, nor
    # nvme0n1, mmcblk0, dm-0, sr0 or the md devices, which no array of the tree holds
    for panel in ("Throughput per device A", "IOPS per device B", "Average latency per device A", "Queue depth per "
                  "device A"):  # fmt: skip
        assert set(values(panel)) == {"sda", "sdb", "sdc"}, panel

    def priced(panel: str, by: str = "array") -> dict[str, float]:
        return {s.labels[by]: s.value for s in prom.query(queries[panel])}

    economics: dict[str, Economics] = dict(PRICED)
    assert priced("Price per TB usable A") == pytest.approx({n: e.per_tb(e.price) for n, e in PRICED})
    assert priced("Price per TB usable A", "model") == pytest.approx({"hdd-16tb": 30.0, "ssd-3.84tb": 150.0})
    watts = {(s.labels["array"], s.labels["state"]): s.value for s in prom.query(queries["Power per TB usable A"])}
    assert watts == pytest.approx({(n, "active"): e.per_tb(e.watts_active) for n, e in PRICED} | {
        (n, "idle"): e.per_tb(e.watts_idle) for n, e in PRICED})  # fmt: skip
    assert priced("Expected failed disks per year A") == pytest.approx({"hdd": 0.06, "ssd": 0.025})
    assert priced("Replacement cost per year A")["ssd"] == pytest.approx(economics["ssd"].replacement_per_year)
    assert priced("Cost of ownership over the service life A") == pytest.approx(
        {n: e.cost_of_ownership for n, e in PRICED})  # fmt: skip
    assert priced("Cost of ownership per TB usable A")["hdd"] == pytest.approx(economics["hdd"].per_tb(
        economics["hdd"].cost_of_ownership))  # fmt: skip
    assert priced("Service life A") == {"hdd": 5.0, "ssd": 5.0}
    assert {s.labels["device_class"] for s in prom.query(queries["Service life A"])} == {"hdd", "ssd"}
