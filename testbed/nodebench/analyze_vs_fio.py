#!/usr/bin/python3
"""analyze's read MB/s and events/s per core against fio's sequential-read limit of the same storage, interleaved.

Usage: analyze_vs_fio.py DATA_DIR SECONDS REPEAT — prints JSON with the per-run figures, medians and the ratio.
Both read cold data from DATA_DIR, so both meet the same device and the same blkio throttle: fio with direct I/O
(1 MiB sequential reads, the storage's limit), analyze --cold through the page cache after evicting its input.
"""

import glob
import json
import os
import statistics
import subprocess
import sys

WORKLOAD = "/opt/magellan/venv/bin/magellan-workload"


def run_json(argv: list[str]) -> dict[str, float]:
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    summary: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return summary


def fio_mb_per_second(path: str, seconds: int) -> float:
    argv = ["fio", "--name=seqread", f"--filename={path}", "--rw=read", "--bs=1M", "--size=256M", "--direct=1"]
    argv += ["--ioengine=psync", "--time_based", f"--runtime={seconds}", "--output-format=json"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out[out.index("{") :])["jobs"][0]["read"]["bw_bytes"]) / 1e6


def main() -> None:
    data, seconds, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    inputs = sorted(glob.glob(os.path.join(data, "events-s*-n*.root")))
    if not inputs:  # no campaign ran here yet: make an input as testbed compare would
        inputs = [os.path.join(data, "events-s12345-n5000.root")]
        run_json(
            [
                WORKLOAD,
                "simulate",
                "--job-id",
                "bench-input",
                "--seed",
                "12345",
                "--events",
                "5000",
                "--output",
                inputs[0],
            ]
        )
    target = os.path.join(data, "fio-seqread.dat")
    if not os.path.exists(target):  # lay the file out once (writes are not throttled)
        subprocess.run(
            [
                "fio",
                "--name=layout",
                f"--filename={target}",
                "--rw=write",
                "--bs=1M",
                "--size=256M",
                "--output-format=terse",
            ],
            capture_output=True,
            check=True,
        )
    runs: dict[str, list[float]] = {"fio_mb_s": [], "analyze_mb_s": [], "analyze_events_per_cpu_s": []}
    for rep in range(repeat):  # A B A B
        runs["fio_mb_s"].append(fio_mb_per_second(target, seconds))
        a = run_json(
            [
                WORKLOAD,
                "analyze",
                "--job-id",
                f"bench-analyze-{rep}",
                "--cold",
                "--duration",
                str(seconds),
                "--input",
                inputs[0],
            ]
        )
        runs["analyze_mb_s"].append(a["mb_per_second"])
        runs["analyze_events_per_cpu_s"].append(a["events"] / a["cpu_seconds"] if a["cpu_seconds"] else 0.0)
    medians = {k: statistics.median(v) for k, v in runs.items()}
    ratio = medians["analyze_mb_s"] / medians["fio_mb_s"] if medians["fio_mb_s"] else 0.0
    print(json.dumps({"input": inputs[0], "seconds": seconds, "runs": runs, "medians": medians, "ratio": ratio}))


if __name__ == "__main__":
    main()
