"""Benchmarks (`make bench`): cold and warm `make testbed`, the job exporter's scrape cost, the cluster's job start
latency and CHOS/native ratio, analyze against fio on the same storage and against a bare uproot loop on the same
file (events per CPU second, RNTuple and TTree), the exporters' cost to a job, and virtual
nodes: a guest's time from define to SSH and the bare-metal/virtual events/s ratio, with the accelerator; the storage
exporter's scrape cost against node_exporter's, each array's fio limits against what analyze reads from it over
XRootD, and a drill's rebuild rate idle against under readers; and the projects' fair shares converging over minutes.

Prints figures measured in this one run, side by side, with their ratio; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.table import Table

from magellan import contract
from testbed import arrays
from testbed.inventory import ad_hoc, ansible_command, load_inventory

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], log: Path) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    return elapsed, proc.stdout


def site_changed(output: str) -> int:
    """Sum of changed= over the PLAY RECAP of the site stage (the first recap block of the run)."""
    recaps = output.split("PLAY RECAP")
    if len(recaps) < 2:
        return -1
    block = recaps[1].split("\n\n")[0]
    return sum(int(n) for n in re.findall(r"changed=(\d+)", block))


def on_node(inventory: str, host: str, script: str, *args: str, python: str | None = None) -> dict[str, Any]:
    """Run one of testbed/nodebench's scripts on an inventory host through Ansible; return its JSON line. `python`:
    the interpreter to run it with (the project's venv on the node, for a script that imports uproot), instead of
    the script's own #! line."""
    executable = [f"executable={python}"] if python else []
    argv = " ".join([*executable, str(REPO / "testbed" / "nodebench" / script), *args])
    result, stderr = ad_hoc(inventory, host, "ansible.builtin.script", argv)
    if result is None:
        raise SystemExit(f"{script} on {host}: no result ({stderr})")
    if result.get("rc", 1) != 0:
        raise SystemExit(f"{script} on {host} failed: {result.get('stderr', '')}{result.get('msg', '')}")
    return cast(dict[str, Any], json.loads(result["stdout"].strip().splitlines()[-1]))


def cluster_rows(inventory: str, head: str, node: str, env: str) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """Slurm job start latency and the CPU workload's events/s inside CHOS vs native on one node."""
    latency = on_node(inventory, head, "slurm_latency.py", node, "10")
    chos = on_node(inventory, node, "chos_ratio.py", env, "20000", "3")
    rows = [
        (
            "slurm job start latency (submit → running)",
            f"{latency['median_s']:.2f} s median",
            f"max {latency['max_s']:.2f} s, {latency['jobs']} jobs, partition {latency['partition']}, node {node}",
        ),
        (
            f"simulate events/s native / CHOS {env}",
            f"{chos['medians']['native']:.0f} / {chos['medians']['chos']:.0f}",
            f"medians of {len(chos['runs']['chos'])} interleaved runs on {node}",
        ),
        (f"CHOS {env} / native ratio", f"{chos['ratio']:.3f}", "expected ~1.00 (a chroot costs no CPU)"),
    ]
    return rows, {"latency": latency, "chos": chos}


def workload_rows(inventory: str, node: str) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """analyze's MB/s against fio's sequential-read limit, its events per CPU second against a bare uproot loop's
    on the same file (each format), and simulate's events/s with exporters on vs off."""
    io = on_node(inventory, node, "analyze_vs_fio.py", "/var/lib/magellan/data", "10", "2")
    python = f"{contract.venv()}/bin/python"
    bare = on_node(inventory, node, "analyze_vs_uproot.py", contract.DATA_DIR, "60", "3", python=python)
    ex = on_node(inventory, node, "exporter_overhead.py", "3000", "3")
    m = io["medians"]
    rows = [
        (
            "analyze events/s per core (cold input)",
            f"{m['analyze_events_per_cpu_s']:,.0f}",
            f"events per CPU second, node {node}",
        ),
        ("analyze / fio sequential read MB/s", f"{m['analyze_mb_s']:.2f} / {m['fio_mb_s']:.2f}", "same storage"),
        ("analyze / fio ratio", f"{io['ratio']:.3f}", "1.00: analyze reads as fast as the storage allows"),
        *(
            (
                f"analyze / bare uproot loop events per CPU-s ({fmt})",
                f"{bare['ratio'][fmt]:.3f}",
                f"{bare['medians'][fmt]['analyze']:,.0f} / {bare['medians'][fmt]['bare']:,.0f}, medians of "
                f"{len(bare['runs'][fmt]['bare'])} interleaved runs of {bare['passes']} warm passes; 1.00: the job "
                "costs no more than its uproot loop",
            )
            for fmt in contract.FORMATS
        ),
        (
            "simulate events/s exporters running / stopped",
            f"{ex['medians']['running']:.0f} / {ex['medians']['stopped']:.0f}",
            f"medians of {len(ex['runs']['running'])} interleaved runs on {node}",
        ),
        ("exporters running / stopped ratio", f"{ex['ratio']:.3f}", "1.00: monitoring costs the job nothing"),
    ]
    return rows, {"analyze_vs_fio": io, "analyze_vs_uproot": bare, "exporter_overhead": ex}


def fairshare_rows(
    inventory: str, head: str, partition: str, minutes: int
) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """Each project's share of the partition over `minutes` while all keep a backlog waiting, against its fair share
    (slurm_projects): the curve of the shares summed from the start, minute by minute."""
    projects = load_inventory(REPO / inventory).hostvars.get(head, {}).get("slurm_projects") or []
    pairs = [f"{p['name']}:{p['users'][0]}" for p in projects if p.get("users")]
    if len(pairs) < 2:
        return [("fair share", "skipped", f"fewer than two projects with users in {inventory}'s slurm_projects")], {}
    fair = on_node(inventory, head, "fairshare.py", partition, str(minutes), "20", *pairs)
    names = list(fair["expected"])
    curve = "  ".join(f"{c['minute']}′ " + "/".join(f"{c[n]:.2f}" for n in names) for c in fair["curve"])
    last = fair["curve"][-1] if fair["curve"] else {}
    rows = [
        (
            f"fair share {' / '.join(names)}, summed from the start, per minute",
            curve,
            f"{fair['jobs']} jobs of 20 s on partition {partition}, every project keeping a backlog",
        ),
        (
            f"fair share after {minutes} min / configured",
            " / ".join(f"{last.get(n, 0):.2f}" for n in names)
            + "  vs  "
            + " / ".join(f"{fair['expected'][n]:.2f}" for n in names),
            "converges as Slurm recomputes priorities once per PriorityCalcPeriod (1 min here)",
        ),
    ]
    return rows, fair


BOOT = re.compile(r"([\w.-]+): ([0-9.]+) s from define to SSH \(accel (\w+)\)")


def virtual_rows(
    inventory: str, bare: str, guest: str, repeat: int = 3
) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """The CPU workload on a bare-metal node and a guest, interleaved (A B A B); then the guest is removed and the
    site converged: the guest is defined again, timed from define to SSH by role virtual_node, and rejoins."""
    runs: dict[str, list[float]] = {bare: [], guest: []}
    accel = None
    for _ in range(repeat):
        for host in (bare, guest):
            figures = on_node(inventory, host, "simulate_rate.py", "20")
            runs[host].append(figures["events_per_second"])
            accel = figures["accel"] or accel
    medians = {host: statistics.median(values) for host, values in runs.items()}
    playbook = [ansible_command("ansible-playbook"), "-i", inventory]
    logs = REPO / ".testbed" / "bench"
    _run(
        [*playbook, "playbooks/virtual.yml", "--limit", guest, "-e", "virtual_node_state=absent"],
        logs / "vm-absent.log",
    )
    # The whole site: virtual.yml alone lacks the guest image's facts (infrastructure.yml sets them).
    _, out = _run([*playbook, "playbooks/site.yml"], logs / "vm-boot.log")
    boot = next((m for m in BOOT.finditer(out) if m.group(1) == guest), None)
    if boot is None:
        raise SystemExit(f"no define-to-SSH time for {guest} in {logs / 'vm-boot.log'}")
    rows = [
        (f"guest define → SSH ({guest})", f"{float(boot.group(2)):.0f} s", f"accel {boot.group(3)}"),
        (
            f"simulate events/s {bare} / {guest}",
            f"{medians[bare]:.0f} / {medians[guest]:.0f}",
            f"medians of {repeat} interleaved 20 s runs, {guest} on accel {accel}",
        ),
        (
            "bare-metal / virtual ratio",
            f"{medians[bare] / medians[guest]:.2f}",
            f"accel {accel}: ~1.0-1.1 under KVM; TCG (emulation) measured 17-35x slower here",
        ),
    ]
    return rows, {"runs": runs, "medians": medians, "accel": accel, "boot_s": float(boot.group(2))}


STORAGE_TREES = {  # the same trees for both exporters (tests/fixtures/storage/README.md)
    "diskstats and mdstat of 18 arrays (procfs' test data)": REPO / "tests" / "fixtures" / "storage" / "procfs",
    "md in storage1 while rebuilding (mdstat and md sysfs)": REPO
    / "tests"
    / "fixtures"
    / "storage"
    / "guest"
    / "recovering",
}


def scrape_cost_rows() -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """The storage exporter's scrape time against node_exporter 1.5's on the same recorded trees (issue 16's goal: at
    most twice). node_exporter reads /proc/mdstat only; the storage exporter also each array's md sysfs (the sync
    speed, the members' states), which a tree of md alone shows most."""
    rows, figures = [], {}
    for what, tree in STORAGE_TREES.items():
        proc = subprocess.run([sys.executable, "-m", "exporters.bench", "--storage", str(tree)],
                              cwd=REPO, capture_output=True, text=True, check=True)  # fmt: skip
        f = figures[what] = json.loads(proc.stdout.strip().splitlines()[-1])
        ms = f"{f['storage_ms_median']:.2f} / {f['node_exporter_ms_median']:.2f} ms = {f['ratio']:.2f}"
        rows.append((f"storage exporter / node_exporter 1.5 scrape, {what}", ms,
                     f"median of {f['scrapes']} scrapes each, {tree.relative_to(REPO)}; goal: <= 2"))  # fmt: skip
    return rows, figures


def _ok(result: dict[str, Any] | None, stderr: str, what: str) -> dict[str, Any]:
    if result is None or result.get("rc", 0) != 0 or result.get("failed"):
        raise SystemExit(f"{what}: {(result or {}).get('stderr') or (result or {}).get('msg') or stderr}")
    return result


def array_rows(inventory: str, node: str, repeat: int = 2) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """Each storage array's fio limits (testbed arrays: sequential and random reads against the model), and analyze on
    `node` reading one of its inputs from the array over XRootD, the server's page cache dropped before each run: the
    MB/s one reader gets against what the array delivers."""
    inv = load_inventory(Path(inventory))
    data = REPO / ".testbed" / "bench" / "xrootd-events.root"
    first = f"ls {contract.DATA_DIR}/*.root | head -n1"
    listing = _ok(*ad_hoc(inventory, node, "ansible.builtin.shell", first), "inputs")
    _ok(*ad_hoc(inventory, node, "ansible.builtin.fetch", f"src={listing['stdout'].strip()} dest={data} flat=yes"),
        "fetch an input")  # fmt: skip
    rows, figures = [], {}
    for host in inv.groups.get(arrays.GROUP, []):
        for m in arrays.measure(inv, host):
            a = m.array
            staged = f"/srv/arrays/{a.name}/magellan-bench"
            served = f"{staged}/events.root"
            _ok(*ad_hoc(inventory, host, "ansible.builtin.file", f"path={staged} state=directory mode=0755"), "stage")
            _ok(*ad_hoc(inventory, host, "ansible.builtin.copy", f"src={data} dest={served} mode=0644"), "stage")
            url = f"root://{inv.node(host).address}:{contract.PORTS['xrootd']}/{served}"
            runs = []
            for _ in range(repeat):
                _ok(*ad_hoc(inventory, host, "ansible.builtin.shell", "sync && echo 3 > /proc/sys/vm/drop_caches"),
                    "drop caches")  # fmt: skip
                job = _ok(*ad_hoc(inventory, node, "ansible.builtin.shell", f"{contract.workload_command()} analyze "
                          f"--job-id bench-xrd --jobs-dir /tmp/magellan-bench --input {url}"), "analyze")  # fmt: skip
                runs.append(float(json.loads(job["stdout"])["mb_per_second"]))
            _ok(*ad_hoc(inventory, host, "ansible.builtin.file", f"path={staged} state=absent"), "clean up")
            analyze, fio = statistics.median(runs), m.read_bytes_per_s / 1e6
            figures[f"{host}:{a.name}"] = {"analyze_mb_s": runs, "fio_mb_s": fio, "fio_iops": m.read_iops,
                                           "accel": m.accel}  # fmt: skip
            rows += [
                (f"{a.name} array fio seq read MB/s / random IOPS", f"{fio:.1f} / {m.read_iops:.0f}",
                 f"{host}, accel {m.accel}; model {a.seq_read_bytes_per_s() / 1e6:.1f} MB/s, "
                 f"{a.random_read_iops():.0f} IOPS"),
                (f"{a.name} array: analyze over XRootD / fio seq read MB/s", f"{analyze:.2f} / {fio:.1f}",
                 f"one reader on {node}, server cache dropped, median of {repeat}: the share one job takes"),
            ]  # fmt: skip
    return rows, figures


def rebuild_rows(inventory: str) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """`testbed drill` on the default array: its rebuild rate idle and under a storm of readers, in one run."""
    result = REPO / ".testbed" / "bench" / "drill.json"
    _run([sys.executable, "-m", "testbed.cli", "drill", "--inventory", inventory, "--no-alert", "--result",
          str(result)], result.with_suffix(".log"))  # fmt: skip
    r = json.loads(result.read_text())
    rate = {p["load"]: p["rebuild_rate"] / 1e6 for p in r["phases"]}
    readers = next((p["readers"]["readers"] for p in r["phases"] if p["load"] == "readers"), 0)
    return [
        (f"{r['array']} array rebuild MB/s idle / under {readers} readers",
         f"{rate.get('idle', 0):.1f} / {rate.get('readers', 0):.1f}",
         f"{r['node']}, accel {r['accel']}, member {r['disk']} pulled ({r['pull']}); {r['bytes_lost']} bytes lost"),
    ], r  # fmt: skip


def storage_section(args: argparse.Namespace, console: Console) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """The storage exporter's scrape cost; with --storage and storage nodes in the inventory, the arrays and a drill."""
    console.print("storage: the exporter's scrape cost, the arrays (fio, analyze over XRootD), rebuilds (drill)…")
    rows, scrape = scrape_cost_rows()
    figures: dict[str, Any] = {"scrape": scrape}
    if args.storage and load_inventory(Path(args.inventory)).groups.get(arrays.GROUP):
        rows_a, figures["arrays"] = array_rows(args.inventory, args.node)
        rows_r, figures["drill"] = rebuild_rows(args.inventory)
        rows += rows_a + rows_r
    return rows, figures


def optional_rows(
    args: argparse.Namespace, console: Console
) -> tuple[list[tuple[str, str, str]], dict[str, Any], dict[str, Any]]:
    """The virtual-node rows (unless --guest is empty) and the fair-share curve (unless --fairshare-minutes 0)."""
    rows: list[tuple[str, str, str]] = []
    virtual: dict[str, Any] = {}
    if args.guest:
        console.print(f"virtual: simulate on {args.node} vs {args.guest}, then {args.guest} defined and booted again…")
        guest_rows, virtual = virtual_rows(args.inventory, args.node, args.guest)
        rows += guest_rows
    fairshare: dict[str, Any] = {}
    if args.fairshare_minutes:
        console.print(f"fair share: the projects' jobs on {args.partition} for {args.fairshare_minutes} min…")
        share_rows, fairshare = fairshare_rows(args.inventory, args.head, args.partition, args.fairshare_minutes)
        rows += share_rows
    return rows, virtual, fairshare


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="testbed.bench", description=__doc__)
    p.add_argument("--skip-cold", action="store_true", help="do not run make clean + cold make testbed")
    p.add_argument("--jobs", type=int, default=1000, help="jobs in the exporter's fixture tree")
    p.add_argument("--inventory", default="inventories/local")
    p.add_argument("--head", default="head", help="Slurm controller (submits the latency jobs)")
    p.add_argument("--node", default="compute1", help="CHOS node for the latency and CHOS/native figures")
    p.add_argument("--chos-env", default="bookworm", help="CHOS environment compared with the node's native one")
    p.add_argument("--guest", default="vm1", help="virtual node compared with --node and booted again (empty: skip)")
    p.add_argument("--fairshare-minutes", type=int, default=10, help="fair-share curve length in minutes (0: skip)")
    p.add_argument("--partition", default="chos", help="partition the fair-share jobs share")
    p.add_argument("--storage", action=argparse.BooleanOptionalAction, default=True,
                   help="the storage arrays: fio, analyze over XRootD, a drill's rebuilds (default: on)")  # fmt: skip
    args = p.parse_args(argv)
    console = Console()
    logs = REPO / ".testbed" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    table = Table(title="magellan-testbed benchmarks")
    for col in ("measurement", "value", "note"):
        table.add_column(col)

    make = ["make", "--no-print-directory", f"INVENTORY={args.inventory}"]
    cold = None
    if not args.skip_cold:
        console.print("cold: make clean, then make testbed (OS trees, images, nodes, packages, comparison)…")
        subprocess.run([*make, "clean"], cwd=REPO, capture_output=True, check=False)
        logs.mkdir(parents=True, exist_ok=True)  # make clean removed .testbed
        cold, out = _run([*make, "testbed"], logs / "cold.log")
        table.add_row("cold make testbed", f"{cold:.0f} s", f"site changed={site_changed(out)}")
    console.print("warm: make testbed again…")
    warm, out = _run([*make, "testbed"], logs / "warm.log")
    changed = site_changed(out)
    table.add_row("warm make testbed", f"{warm:.0f} s", f"second converge changed={changed}")
    if cold:
        table.add_row("warm / cold", f"{warm / cold:.2f}", "")

    console.print(f"exporter: fixture tree of {args.jobs} jobs…")
    proc = subprocess.run(
        [sys.executable, "-m", "exporters.bench", "--jobs", str(args.jobs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, value in figures.items():
        table.add_row(f"exporter {key}", str(value), f"{args.jobs} jobs")
    console.print(f"cluster: Slurm job start latency and CHOS/native on {args.node}…")
    rows, cluster = cluster_rows(args.inventory, args.head, args.node, args.chos_env)
    console.print(f"workloads: analyze vs fio, exporters running vs stopped on {args.node}…")
    more, workloads = workload_rows(args.inventory, args.node)
    storage_rows, storage = storage_section(args, console)
    more += storage_rows
    optional, virtual, fairshare = optional_rows(args, console)
    more += optional
    for row in rows + more:
        table.add_row(*row)
    console.print(table)
    (logs / "bench.json").write_text(
        json.dumps(
            {
                "cold_s": cold,
                "warm_s": warm,
                "warm_changed": changed,
                "exporter": figures,
                "cluster": cluster,
                "workloads": workloads,
                "virtual": virtual,
                "fairshare": fairshare,
                "storage": storage,
            },
            indent=2,
        )
    )
    return 0 if changed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
