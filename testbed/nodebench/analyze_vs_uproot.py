#!/usr/bin/env python3
"""analyze's events per CPU second against a bare uproot loop's doing the same work on the same file, per format.

Usage: analyze_vs_uproot.py DATA_DIR PASSES REPEAT — prints JSON with the per-run figures, medians and, per format
(magellan.contract.FORMATS), the ratio analyze / bare loop. Runs with the project's Python, which has uproot and
magellan-workload: on a node the venv's (testbed.bench gives Ansible's script module that interpreter), in a
checkout `.venv/bin/python testbed/nodebench/analyze_vs_uproot.py ...`.

Both sides do the same work, PASSES reads of the same warm input (analyze: the input given PASSES times), each in a
process of its own, timed alike: its CPU seconds (user + system, from the kernel's rusage of the waited-for child,
start-up and imports included), interleaved (A B A B). The bare loop is `uproot.open(file)["events"].iterate()`
with uproot's default step, the same cuts and the same histogram fills as analyze (workloads.rootio's histograms
and cuts), and nothing else: no progress file, no command line. Both must select the same events. The input is
the campaign's (contract.JobSpec.input_path), made here with `magellan-workload simulate --output --format` when
it is missing.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from typing import Any

from magellan import contract

WORKLOAD = [sys.executable, "-m", "workloads.cli"]  # magellan-workload of this interpreter's installation


def bare(path: str, fmt: str, passes: int) -> None:
    """The reference loop: read `path` `passes` times, select, fill; one JSON line."""
    import awkward as ak  # noqa: PLC0415 - only in the reference's own process
    import numpy as np  # noqa: PLC0415
    import uproot  # noqa: PLC0415

    from workloads.rootio import JET_PT_CUT, MET_CUT, histograms  # noqa: PLC0415

    # A collection's field: an RNTuple's record field, a TTree's counted branch (uproot's names for both).
    pt: str | tuple[str, str] = ("particle", "pt") if fmt == "rntuple" else "particle_pt"
    r: str | tuple[str, str] = ("hit", "r") if fmt == "rntuple" else "hit_r"
    et: str | tuple[str, str] = ("tower", "et") if fmt == "rntuple" else "tower_et"
    h = histograms()
    events = selected = 0
    for _ in range(passes):
        with uproot.open(path) as f:
            for chunk in f["events"].iterate(library="ak"):
                events += len(chunk)
                sel = chunk[(chunk.leading_jet_pt > JET_PT_CUT) & (chunk.met > MET_CUT)]
                selected += len(sel)
                h["leading_jet_pt"].fill(np.asarray(sel.leading_jet_pt))
                h["met"].fill(np.asarray(sel.met))
                h["n_tracks"].fill(np.asarray(sel.n_tracks))
                h["particle_pt"].fill(np.asarray(ak.flatten(sel[pt])))
                h["hit_r"].fill(np.asarray(ak.flatten(sel[r])))
                h["tower_et_sum"].fill(np.asarray(ak.sum(sel[et], axis=1)))
    print(json.dumps({"events": events, "selected": selected}))


def timed(argv: list[str]) -> tuple[dict[str, Any], float]:
    """Run argv; its last JSON line and the CPU seconds the kernel counted for it (and the children it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return json.loads(out.strip().splitlines()[-1]), cpu


def make_input(path: str, fmt: str, events: int, seed: int, jobs_dir: str) -> None:
    partial = path + ".partial"
    argv = [*WORKLOAD, "simulate", "--job-id", f"bench-input-{fmt}", "--jobs-dir", jobs_dir, "--seed", str(seed)]
    subprocess.run([*argv, "--events", str(events), "--format", fmt, "--output", partial], check=True, stdout=2)
    os.replace(partial, path)


def main() -> None:
    if sys.argv[1:2] == ["bare"]:  # the reference, in a process of its own
        bare(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    data, passes, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    runs: dict[str, dict[str, list[float]]] = {fmt: {"analyze": [], "bare": []} for fmt in contract.FORMATS}
    inputs = {}
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as jobs:  # not the node's jobs dir: no exporter series
        for fmt in contract.FORMATS:
            spec = contract.JobSpec(workload="analyze", format=fmt)
            inputs[fmt] = spec.input_path(data)
            if not os.path.exists(inputs[fmt]):
                make_input(inputs[fmt], fmt, spec.input_events, spec.seed, jobs)
        for rep in range(repeat):  # A B A B, both formats in each round
            for fmt, path in inputs.items():
                job = [*WORKLOAD, "analyze", "--job-id", f"bench-{fmt}-{rep}", "--jobs-dir", jobs]
                summary, cpu = timed([*job, "--input", *[path] * passes])
                if summary.get("format") != fmt:
                    raise SystemExit(f"analyze read {summary.get('format')} from {path}, expected {fmt}")
                runs[fmt]["analyze"].append(summary["events"] / cpu)
                reference, cpu = timed([sys.executable, __file__, "bare", path, fmt, str(passes)])
                if (reference["events"], reference["selected"]) != (summary["events"], summary["selected"]):
                    raise SystemExit(f"{path}: analyze {summary} and the bare loop {reference}: not the same work")
                runs[fmt]["bare"].append(reference["events"] / cpu)
    medians = {fmt: {side: statistics.median(v) for side, v in sides.items()} for fmt, sides in runs.items()}
    ratios = {fmt: m["analyze"] / m["bare"] for fmt, m in medians.items()}
    print(json.dumps({"inputs": inputs, "passes": passes, "runs": runs, "medians": medians, "ratio": ratios}))


if __name__ == "__main__":
    main()
