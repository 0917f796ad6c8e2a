"""Per-core scores in DB12 units (DIRAC Benchmark 2012), the HEP unit grid sites already publish for their slots.

DB12 (https://github.com/DIRACGrid/DB12) times 12.5 M draws of random.normalvariate(10, 1) on one core and
reports 250 / CPU seconds: "250 HS06-seconds of work". `measure()` runs that loop (scaled by `fraction`, result
normalised back to the full loop; the raw Python 3 score, without DB12's per-Python-version correction table).

A job's per-core score expresses its own throughput in the same unit: events per CPU second divided by the
events per CPU second that one DB12 of CPU power delivers for that workload (the catalogue's
`magellan.contract.Workload.events_per_db12_second`; `score` is `magellan.contract.db12_score`). Those
constants were calibrated once, on the build machine (`magellan-workload db12` and the workload on one idle core,
Python 3.11, see workloads/README.md), so a job scores what DB12 scores on a core that runs this workload as
fast, relative to DB12's loop, as the build machine did. A platform that is slower for the workload than DB12
predicts (I/O waits do not count: the score is per CPU second) shows up as a score below the node's DB12.
"""

from __future__ import annotations

import random
import time

from magellan import contract

FULL_DRAWS = 12_500_000
CALIBRATION = 250.0


def measure(fraction: float = 0.1, seed: int | None = None) -> float:
    """DB12 score of the current core: the benchmark's loop at `fraction` of its length, normalised to it."""
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    draws = int(FULL_DRAWS * fraction)
    rng = random.Random(seed)
    total = squares = 0.0
    start = time.process_time()
    for _ in range(draws):
        t = rng.normalvariate(10, 1)
        total += t
        squares += t * t
    cpu = time.process_time() - start
    return CALIBRATION * fraction / cpu if cpu > 0 else 0.0


def score(workload: str, events: float, cpu_seconds: float) -> float | None:
    """Per-core score of a job in DB12 units (contract.db12_score: a storm scores as its analyze readers); None
    for a workload outside the catalogue or before any CPU time."""
    return contract.db12_score(workload, events, cpu_seconds)
