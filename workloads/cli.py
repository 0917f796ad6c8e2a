"""magellan-workload: run an ATLAS-like job and report its progress for the job exporter."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from types import FrameType

from workloads.progress import ProgressWriter, valid_job_id
from workloads.simulate import Simulator

DEFAULT_JOBS_DIR = "/var/lib/magellan/jobs"


class Terminated(Exception):
    """SIGTERM arrived."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="magellan-workload", description=__doc__)
    sub = p.add_subparsers(dest="workload", required=True)
    s = sub.add_parser("simulate", help="CPU-bound event generation with a simplified detector response")
    s.add_argument("--job-id", required=True, help="unique id, [A-Za-z0-9_.-]{1,128}; names the progress file")
    s.add_argument("--jobs-dir", default=os.environ.get("MAGELLAN_JOBS_DIR", DEFAULT_JOBS_DIR))
    s.add_argument("--events", type=int, default=0, help="stop after this many events (0: no limit)")
    s.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: no limit)")
    s.add_argument("--seed", type=int, default=12345)
    s.add_argument("--progress-interval", type=float, default=1.0, help="seconds between progress writes")
    return p


def simulate(args: argparse.Namespace) -> int:
    writer = ProgressWriter(args.jobs_dir, args.job_id, "simulate", args.events)
    sim = Simulator(args.seed)
    writer.update(0)
    start = time.monotonic()
    next_write = start + args.progress_interval
    try:
        while True:
            sim.event()
            now = time.monotonic()
            if (args.events and sim.events >= args.events) or (args.duration and now - start >= args.duration):
                break
            if now >= next_write:
                writer.update(sim.events)
                next_write = now + args.progress_interval
    except Terminated:
        writer.update(sim.events, "failed", "terminated")
        return 143
    except Exception as exc:  # the job fails, and says why, in its progress file
        writer.update(sim.events, "failed", f"{type(exc).__name__}: {exc}")
        raise
    writer.update(sim.events, "finished")
    rec = writer.record
    wall = rec["finished_at"] - rec["started_at"]
    summary = {
        "job_id": args.job_id,
        "workload": "simulate",
        "events": sim.events,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": rec["cpu_seconds"],
        "events_per_second": round(sim.events / wall, 3) if wall > 0 else 0.0,
        "checksum": sim.checksum,
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.events < 0 or args.duration < 0 or args.progress_interval <= 0:
        parser.error("--events and --duration must not be negative, --progress-interval must be positive")
    if not args.events and not args.duration:
        parser.error("give --events N or --duration SECONDS (or both): the job needs a stopping condition")
    if not valid_job_id(args.job_id):
        parser.error(f"--job-id {args.job_id!r}: use 1-128 characters of A-Z a-z 0-9 _ . -")
    if not os.path.isdir(args.jobs_dir) or not os.access(args.jobs_dir, os.W_OK):
        parser.error(f"--jobs-dir {args.jobs_dir}: not a writable directory (create it, or set MAGELLAN_JOBS_DIR)")
    signal.signal(signal.SIGTERM, _on_sigterm)
    return simulate(args)


if __name__ == "__main__":
    sys.exit(main())
