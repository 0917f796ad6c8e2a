#!/usr/bin/python3
"""Events/s of one run of the CPU workload on this node, and what it runs on.

Usage: simulate_rate.py DURATION — prints JSON: events_per_second, and accel/hypervisor from the node's local fact
(role virtual_node) or null on bare metal.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

WORKLOAD = "/opt/magellan/venv/bin/magellan-workload"
FACT = Path("/etc/ansible/facts.d/magellan.fact")


def main() -> None:
    duration = sys.argv[1]
    argv = [WORKLOAD, "simulate", "--duration", duration, "--job-id", f"bench-rate-{time.time_ns()}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    virtual = json.loads(FACT.read_text()).get("virtual", {}) if FACT.exists() else {}
    print(
        json.dumps(
            {
                "events_per_second": float(json.loads(out.strip().splitlines()[-1])["events_per_second"]),
                "accel": virtual.get("accel"),
                "hypervisor": virtual.get("hypervisor"),
            }
        )
    )


if __name__ == "__main__":
    main()
