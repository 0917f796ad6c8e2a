"""Scrape cost of the job exporter on a synthetic tree: `python -m exporters.bench --jobs 1000`.

Builds N progress files (running, finished and failed jobs plus a few corrupt ones) in a temporary directory,
starts the exporter as a separate process on a free loopback port, scrapes it repeatedly and prints the median
and p95 scrape time, the exporter's resident memory and the number of series; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def build_tree(jobs: Path, n: int) -> None:
    t0 = time.time() - 3600
    states = ("running", "finished", "failed")
    for i in range(n):
        job_id = f"bench-{i:05d}"
        state = states[i % 3]
        record = {
            "schema": 1, "job_id": job_id, "workload": "simulate", "state": state, "pid": 4_000_000 + i,
            "pid_starttime": 1, "events_processed": 1000 + i, "events_target": 0, "started_at": t0,
            "updated_at": t0 + 60, "finished_at": None if state == "running" else t0 + 60, "cpu_seconds": 59.0,
            "bytes_read": 1 << 20, "bytes_written": 1 << 16,
        }  # fmt: skip
        (jobs / f"{job_id}.json").write_text(json.dumps(record))
    for i in range(max(1, n // 100)):
        (jobs / f"corrupt-{i}.json").write_text('{"schema": 1, "job_id": ')


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exporters.bench", description=__doc__)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--scrapes", type=int, default=50)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = Path(tmp)
        build_tree(jobs, args.jobs)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "exporters.job", f"--web.listen-address=127.0.0.1:{port}", f"--path.jobs={jobs}",
               "--log.level=error"]  # fmt: skip
        proc = subprocess.Popen(cmd, env=dict(os.environ))
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(url, timeout=5).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("exporter did not start") from None
                    time.sleep(0.2)
            times, body = [], b""
            for _ in range(args.scrapes):
                start = time.perf_counter()
                body = urllib.request.urlopen(url, timeout=30).read()
                times.append((time.perf_counter() - start) * 1000)
            rss = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    times.sort()
    figures = {
        "jobs": args.jobs,
        "scrape_ms_median": round(statistics.median(times), 2),
        "scrape_ms_p95": round(times[int(0.95 * (len(times) - 1))], 2),
        "rss_mb": round(rss, 1),
        "series": series,
    }
    print(
        f"{args.jobs} jobs: scrape median {figures['scrape_ms_median']} ms, p95 {figures['scrape_ms_p95']} ms, "
        f"RSS {figures['rss_mb']} MB, {series} series"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
