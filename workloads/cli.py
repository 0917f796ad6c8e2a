"""magellan-workload: run an ATLAS-like job and report its progress for the job exporter."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
import traceback
from types import FrameType

from workloads.progress import ProgressWriter, valid_job_id
from workloads.simulate import Simulator

DEFAULT_JOBS_DIR = "/var/lib/magellan/jobs"
SIGNAL_MESSAGES = {signal.SIGTERM: "terminated", signal.SIGINT: "interrupted"}


class StopFlag:
    """Set by SIGTERM/SIGINT; the event loop looks at it between events (no exception mid-write)."""

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def install(self) -> None:
        for signum in SIGNAL_MESSAGES:
            signal.signal(signum, self)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="magellan-workload", description=__doc__)
    sub = p.add_subparsers(dest="workload", metavar="WORKLOAD")
    sub.required = True
    s = sub.add_parser("simulate", help="CPU-bound event generation with a simplified detector response")
    s.add_argument("--job-id", required=True, help="unique id, [A-Za-z0-9_.-]{1,128}; names the progress file")
    s.add_argument(
        "--jobs-dir",
        default=os.environ.get("MAGELLAN_JOBS_DIR", DEFAULT_JOBS_DIR),
        help="where the progress file goes (default: $MAGELLAN_JOBS_DIR or %(default)s)",
    )
    s.add_argument("--events", type=int, default=0, help="stop after this many events (0: no limit)")
    s.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: no limit)")
    s.add_argument("--seed", type=int, default=12345, help="random seed; the same seed gives the same events")
    s.add_argument("--progress-interval", type=float, default=1.0, help="seconds between progress writes")
    return p


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject what argparse cannot: exit 2 with a message saying what to change."""
    if args.events < 0 or not 0 <= args.duration < math.inf:
        parser.error("--events and --duration must not be negative (and --duration finite)")
    if not 0 < args.progress_interval < math.inf:
        parser.error("--progress-interval must be a positive number of seconds")
    if not args.events and not args.duration:
        parser.error("give --events N or --duration SECONDS (or both): the job needs a stopping condition")
    if not valid_job_id(args.job_id):
        parser.error(f"--job-id {args.job_id!r}: use 1-128 characters of A-Z a-z 0-9 _ . -")
    if not os.path.isdir(args.jobs_dir) or not os.access(args.jobs_dir, os.W_OK):
        parser.error(f"--jobs-dir {args.jobs_dir}: not a writable directory (create it, or set MAGELLAN_JOBS_DIR)")


def simulate(args: argparse.Namespace, stop: StopFlag) -> int:
    """Run events until --events or --duration is reached (or a signal arrives); write progress throughout."""
    writer = ProgressWriter(args.jobs_dir, args.job_id, "simulate", args.events)
    sim = Simulator(args.seed)
    writer.update(0)
    start = time.monotonic()
    next_write = start + args.progress_interval
    try:
        while not stop.signum:
            sim.event()
            now = time.monotonic()
            if (args.events and sim.events >= args.events) or (args.duration and now - start >= args.duration):
                break
            if now >= next_write:
                writer.update(sim.events)
                next_write = now + args.progress_interval
    except Exception as exc:  # the job fails, and says why, in its progress file
        writer.update(sim.events, "failed", f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    if stop.signum:
        writer.update(sim.events, "failed", SIGNAL_MESSAGES[signal.Signals(stop.signum)])
        return 128 + stop.signum
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
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    stop = StopFlag()
    stop.install()  # before anything slow, so an early SIGTERM is not lost
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    return simulate(args, stop)


if __name__ == "__main__":
    sys.exit(main())
