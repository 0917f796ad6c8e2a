#!/usr/bin/python3
"""Job start latency on the Slurm controller: submit a short job, poll squeue until it runs; print JSON.

Usage: slurm_latency.py NODE JOBS (the job goes to the node's partition)
"""

import json
import statistics
import subprocess
import sys
import time


def state(job: str) -> str:
    out = subprocess.run(["squeue", "--noheader", f"--jobs={job}", "--format=%T"], capture_output=True, text=True)
    return out.stdout.strip() or "GONE"


def main() -> None:
    node, jobs = sys.argv[1], int(sys.argv[2])
    partition = subprocess.run(
        ["sinfo", "--noheader", "--Node", f"--nodes={node}", "--format=%R"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    latencies = []
    for _ in range(jobs):
        start = time.monotonic()
        job = (
            subprocess.run(
                [
                    "sbatch",
                    "--parsable",
                    f"--partition={partition}",
                    f"--nodelist={node}",
                    "--output=/dev/null",
                    "--wrap=sleep 2",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .split(";")[0]
        )
        while state(job) in ("PENDING", "CONFIGURING"):
            time.sleep(0.02)
        latencies.append(time.monotonic() - start)
        while state(job) != "GONE":
            time.sleep(0.2)
    print(
        json.dumps(
            {
                "partition": partition,
                "node": node,
                "jobs": jobs,
                "median_s": statistics.median(latencies),
                "max_s": max(latencies),
                "min_s": min(latencies),
            }
        )
    )


if __name__ == "__main__":
    main()
