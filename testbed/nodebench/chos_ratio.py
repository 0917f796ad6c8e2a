#!/usr/bin/python3
"""Events/s of the CPU workload in the node's native environment and inside a CHOS environment, interleaved.

Usage: chos_ratio.py ENV EVENTS REPEAT — prints JSON with the per-run figures and their medians.
"""

import json
import statistics
import subprocess
import sys

WORKLOAD = "/opt/magellan/venv/bin/magellan-workload"


def events_per_second(prefix: list[str], job_id: str, events: int) -> float:
    argv = [*prefix, WORKLOAD, "simulate", "--events", str(events), "--job-id", job_id]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["events_per_second"])


def main() -> None:
    env, events, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    runs: dict[str, list[float]] = {"native": [], "chos": []}
    for rep in range(repeat):  # A B A B: drift on the shared host hits both alike
        runs["native"].append(events_per_second([], f"bench-native-{rep}", events))
        runs["chos"].append(events_per_second(["chos", "run", "-e", env, "--"], f"bench-chos-{rep}", events))
    medians = {k: statistics.median(v) for k, v in runs.items()}
    print(
        json.dumps(
            {
                "env": env,
                "events": events,
                "runs": runs,
                "medians": medians,
                "ratio": medians["chos"] / medians["native"],
            }
        )
    )


if __name__ == "__main__":
    main()
