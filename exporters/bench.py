"""Scrape cost of the job exporter on a synthetic tree: `python -m exporters.bench --jobs 1000`.

Builds N progress files in a temporary directory (a third each running, finished and failed; the running ones
point at a live process with its real start time, so /proc is read as in production; plus 1 % corrupt files),
starts the exporter as a separate process on a free loopback port, scrapes it repeatedly and prints the median
and p95 scrape time, the exporter's resident memory and the number of series; the last line is JSON.

`python -m exporters.bench --storage TREE` instead times the storage exporter against node_exporter 1.5 on the same
tree (TREE/proc, TREE/sys; e.g. tests/fixtures/storage/procfs): both serve their diskstats and md collectors, are
scraped in turn, and the ratio of their median scrape times is printed (issue 16: at most 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from exporters.paths import Paths
from magellan.contract import RUNNING, STATES, Progress, parse_proc_stat


def build_tree(jobs: Path, n: int, live_pid: int, live_starttime: int, now: float) -> int:
    """Write n valid progress files and n/100 (at least 1) corrupt ones; return the number of corrupt files."""
    t0 = now - 3600
    for i in range(n):
        job_id = f"bench-{i:05d}"
        state = STATES[i % 3]
        record = Progress(
            job_id=job_id, workload="simulate", state=state, pid=live_pid, pid_starttime=live_starttime,
            events_processed=1000 + i, events_target=0, started_at=t0, updated_at=t0 + 60,
            finished_at=None if state == RUNNING else t0 + 60, cpu_seconds=59.0, bytes_read=1 << 20,
            bytes_written=1 << 16,
        )  # fmt: skip
        (jobs / record.path_name).write_text(record.to_json())
    corrupt = max(1, n // 100)
    for i in range(corrupt):
        (jobs / f"corrupt-{i}.json").write_text('{"schema": 1, "job_id": ')
    return corrupt


def rss_mb(paths: Paths, pid: int) -> float:
    """VmRSS of /proc/<pid>/status in MB."""
    for line in paths.proc(pid, "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the exporter exited with status {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise SystemExit(f"the exporter did not answer on {url} within {timeout:.0f} s") from None
            time.sleep(0.1)


def median_ms(url: str, scrapes: int) -> float:
    times = []
    for _ in range(scrapes):
        start = time.perf_counter()
        urllib.request.urlopen(url, timeout=30).read()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def storage_vs_node_exporter(tree: Path, scrapes: int, node_exporter: str) -> int:
    """Median scrape time of the storage exporter and of node_exporter on `tree`, side by side, and their ratio."""
    sysfs = tree / "sys"
    with tempfile.TemporaryDirectory(prefix="magellan-bench-") as empty:
        if not sysfs.is_dir():
            sysfs = Path(empty)  # node_exporter refuses a missing sysfs
        ports = free_port(), free_port()
        ours = [sys.executable, "-m", "exporters.storage", f"--web.listen-address=127.0.0.1:{ports[0]}",
                f"--path.procfs={tree / 'proc'}", f"--path.sysfs={sysfs}", "--no-collector.filesystem",
                "--no-collector.smart", "--log.level=error"]  # fmt: skip
        theirs = [node_exporter, f"--web.listen-address=127.0.0.1:{ports[1]}", f"--path.procfs={tree / 'proc'}",
                  f"--path.sysfs={sysfs}", f"--path.udev.data={empty}", "--collector.disable-defaults",
                  "--collector.diskstats", "--collector.mdadm", "--log.level=error"]  # fmt: skip
        procs = [subprocess.Popen(cmd, stderr=subprocess.DEVNULL) for cmd in (ours, theirs)]
        urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
        try:
            for i, proc in enumerate(procs):
                wait_ready(urls[i], proc)
            rounds = [(median_ms(urls[0], scrapes), median_ms(urls[1], scrapes)) for _ in range(3)]  # in turn
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)
    storage_ms = statistics.median(r[0] for r in rounds)
    node_ms = statistics.median(r[1] for r in rounds)
    figures = {"tree": str(tree), "scrapes": 3 * scrapes, "storage_ms_median": round(storage_ms, 3),
               "node_exporter_ms_median": round(node_ms, 3), "ratio": round(storage_ms / node_ms, 2)}  # fmt: skip
    ms = f"storage exporter {storage_ms:.3f} ms, node_exporter 1.5 {node_ms:.3f} ms"
    print(f"{tree}: {ms} a scrape (median of {3 * scrapes} each): ratio {figures['ratio']}")
    print(json.dumps(figures, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exporters.bench", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000, help="valid progress files (default: %(default)s)")
    p.add_argument("--scrapes", type=int, default=50, help="timed scrapes (default: %(default)s)")
    p.add_argument("--storage", type=Path, metavar="TREE", help="time the storage exporter against node_exporter on "
                   "TREE/proc and TREE/sys instead")  # fmt: skip
    p.add_argument("--node-exporter", default="/usr/bin/prometheus-node-exporter", help="(default: %(default)s)")
    args = p.parse_args(argv)
    if args.jobs < 0 or args.scrapes < 1:
        p.error("--jobs must be >= 0 and --scrapes >= 1")
    if args.storage is not None:
        if not (args.storage / "proc").is_dir():
            p.error(f"--storage {args.storage}: no proc directory there (try tests/fixtures/storage/procfs)")
        if not os.access(args.node_exporter, os.X_OK):
            p.error(f"{args.node_exporter} is not an executable: apt-get install prometheus-node-exporter")
        return storage_vs_node_exporter(args.storage, args.scrapes, args.node_exporter)
    paths = Paths()
    me = os.getpid()
    with tempfile.TemporaryDirectory(prefix="magellan-bench-") as tmp:
        jobs = Path(tmp)
        starttime = parse_proc_stat(paths.proc(me, "stat").read_text()).starttime
        corrupt = build_tree(jobs, args.jobs, me, starttime, time.time())
        port = free_port()
        cmd = [
            sys.executable, "-m", "exporters.job", f"--web.listen-address=127.0.0.1:{port}", f"--path.jobs={jobs}",
            "--node.name=bench", "--node.platform=bench", "--log.level=error",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd)
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            wait_ready(url, proc)
            times, body = [], b""
            for _ in range(args.scrapes):
                start = time.perf_counter()
                body = urllib.request.urlopen(url, timeout=30).read()
                times.append((time.perf_counter() - start) * 1000)
            rss = rss_mb(paths, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    times.sort()
    figures = {
        "jobs": args.jobs,
        "corrupt_files": corrupt,
        "scrapes": args.scrapes,
        "scrape_ms_median": round(statistics.median(times), 2),
        "scrape_ms_p95": round(times[math.ceil(0.95 * len(times)) - 1], 2),  # nearest rank
        "rss_mb": round(rss, 1),
        "series": series,
        "bytes": len(body),
    }
    print(
        f"{args.jobs} jobs (+{corrupt} corrupt), {args.scrapes} scrapes: median {figures['scrape_ms_median']} ms, "
        f"p95 {figures['scrape_ms_p95']} ms, exporter RSS {figures['rss_mb']} MB, {series} series"
    )
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
