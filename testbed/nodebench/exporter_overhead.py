#!/usr/bin/python3
"""The CPU workload's events/s with the node's exporters running (and scraped) vs stopped, interleaved.

Usage: exporter_overhead.py EVENTS REPEAT — prints JSON with the per-run figures, medians and the ratio. The
exporters are started again whatever happens.
"""

import json
import statistics
import subprocess
import sys

WORKLOAD = "/opt/magellan/venv/bin/magellan-workload"
SERVICES = ["magellan-job-exporter", "prometheus-node-exporter"]


def events_per_second(job_id: str, events: int) -> float:
    argv = [WORKLOAD, "simulate", "--events", str(events), "--job-id", job_id]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["events_per_second"])


def main() -> None:
    events, repeat = int(sys.argv[1]), int(sys.argv[2])
    runs: dict[str, list[float]] = {"running": [], "stopped": []}
    try:
        for rep in range(repeat):  # A B A B
            runs["running"].append(events_per_second(f"bench-exporters-on-{rep}", events))
            subprocess.run(["systemctl", "stop", *SERVICES], check=True)
            runs["stopped"].append(events_per_second(f"bench-exporters-off-{rep}", events))
            subprocess.run(["systemctl", "start", *SERVICES], check=True)
    finally:
        subprocess.run(["systemctl", "start", *SERVICES], check=False)
    medians = {k: statistics.median(v) for k, v in runs.items()}
    print(
        json.dumps(
            {"events": events, "runs": runs, "medians": medians, "ratio": medians["running"] / medians["stopped"]}
        )
    )


if __name__ == "__main__":
    main()
