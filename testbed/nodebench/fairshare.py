#!/usr/bin/python3
"""Fair share over time on the Slurm controller: each project's users keep a backlog of equal jobs waiting on one
partition for MINUTES; print JSON with each project's share of the CPU-seconds the partition gave them, summed
from the start, after each minute, next to its configured share.

Usage: fairshare.py PARTITION MINUTES JOB_SECONDS PROJECT:USER[:SHARES] ...

Slurm's fair share counts allocated CPU-seconds, so the jobs sleep: they cost the host no CPU. Slurm computes the
fair-share factors and the waiting jobs' priorities once per PriorityCalcPeriod (a minute at least): between two
computations every freed slot goes to the same project, so the summed shares reach the configured ones only over
many minutes. The bench's jobs are named after this script and cancelled at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime

NAME = "magellan-fairshare-bench"
BACKLOG = 6  # jobs each user keeps waiting (the local site's theory QOS allows 20 per user)


def run(argv: list[str], user: str | None = None) -> str:
    if user and user != "root":
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=True, cwd="/tmp").stdout


def waiting(user: str) -> int:
    out = run(["squeue", "--noheader", f"--name={NAME}", f"--user={user}", "--states=PENDING", "--format=%i"])
    return len(out.split())


def submit(partition: str, project: str, user: str, seconds: int, count: int) -> None:
    for _ in range(count):
        run(
            ["sbatch", "--parsable", f"--partition={partition}", f"--account={project}", f"--job-name={NAME}",
             "--time=5", "--output=/dev/null", f"--wrap=sleep {seconds}"],
            user,
        )  # fmt: skip


def shares() -> dict[str, int]:
    """Each project's configured fair share (sshare RawShares of the account row)."""
    out = run(["sshare", "--noheader", "--parsable2", "--format=Account,User,RawShares"])
    rows = [line.split("|") for line in out.splitlines()]
    return {r[0].strip(): int(r[2]) for r in rows if len(r) == 3 and not r[1] and r[2].isdigit()}


def allocations(since: str) -> list[tuple[str, float, float, int]]:
    """(project, start, end, cpus) of the bench's jobs that started, from sacct (an unfinished job ends now)."""
    out = run(["sacct", "--allusers", "--noheader", "--parsable2", "--allocations", f"--name={NAME}",
               f"--starttime={since}", "--format=Account,Start,End,AllocCPUS"])  # fmt: skip
    now = time.time()
    rows: list[tuple[str, float, float, int]] = []
    for line in out.splitlines():
        account, start, end, cpus = line.split("|")
        if start in ("", "Unknown", "None"):
            continue
        t0 = datetime.fromisoformat(start).timestamp()
        t1 = now if end in ("", "Unknown", "None") else datetime.fromisoformat(end).timestamp()
        rows.append((account, t0, t1, int(cpus or 1)))
    return rows


def main() -> None:
    partition, minutes, seconds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    projects = [arg.split(":")[:2] for arg in sys.argv[4:]]
    configured = shares()
    total = sum(configured[p] for p, _ in projects)
    expected = {p: configured[p] / total for p, _ in projects}
    start = time.time()
    since = datetime.fromtimestamp(start).strftime("%Y-%m-%dT%H:%M:%S")
    try:
        while time.time() - start < minutes * 60:
            for project, user in projects:
                submit(partition, project, user, seconds, max(0, BACKLOG - waiting(user)))
            time.sleep(5)
        rows = allocations(since)
    finally:
        subprocess.run(["scancel", f"--name={NAME}"], check=False)
    curve = []
    for minute in range(1, int(minutes) + 1):
        t = start + 60 * minute
        used = {p: sum(c * max(0.0, min(t1, t) - t0) for a, t0, t1, c in rows if a == p) for p, _ in projects}
        all_used = sum(used.values()) or 1.0
        curve.append({"minute": minute, **{p: round(used[p] / all_used, 4) for p, _ in projects}})
    print(json.dumps({"partition": partition, "minutes": minutes, "job_seconds": seconds, "jobs": len(rows),
                      "expected": expected, "curve": curve}))  # fmt: skip


if __name__ == "__main__":
    main()
