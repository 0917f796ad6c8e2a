"""ROOT files of the workloads: layout and contents on a fixed seed, the analysis' counts, bad files, the storm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot

from workloads import cli
from workloads.rootio import JET_PT_CUT, MET_CUT, Analysis, EventWriter
from workloads.simulate import Simulator

EVENTS = 300
Sample = tuple[Path, list[Any]]  # the file, and per event (Event, particles, hits, first tower)


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    path = tmp_path_factory.mktemp("root") / "events.root"
    sim = Simulator(7, record=True)
    writer = EventWriter(path)
    kept = []
    for _ in range(EVENTS):
        event = sim.event()
        writer.add(event, sim.detail)
        kept.append((event, len(sim.detail.particles), len(sim.detail.hits), sim.detail.towers[:1]))
    writer.close()
    return path, kept


def test_layout(events_file: Sample) -> None:
    path, _ = events_file
    with uproot.open(path) as f:
        tree = f["events"]
        assert tree.num_entries == EVENTS
        names = set(tree.keys())
        for branch in ("number", "n_tracks", "n_jets", "leading_jet_pt", "met", "track_pt_sum"):
            assert branch in names
        for collection, fields in (
            ("particle", ("pt", "eta", "phi", "species", "charge")),
            ("hit", ("layer", "r", "phi")),
            ("tower", ("eta", "phi", "et")),
        ):
            assert {f"{collection}.{x}" for x in fields} <= names, names
        assert isinstance(f.file.compression, uproot.ZLIB) and f.file.compression.level == 4
    assert path.stat().st_size < EVENTS * 6000  # compressed: a few kB per event


def test_contents_match_the_simulation(events_file: Sample) -> None:
    path, kept = events_file
    with uproot.open(path) as f:
        a = f["events"].arrays()
    assert a.number.tolist() == list(range(1, EVENTS + 1))
    assert ak.num(a.particle).tolist() == [k[1] for k in kept]
    assert ak.num(a.hit).tolist() == [k[2] for k in kept]
    assert np.allclose(np.asarray(a.met), [k[0].met for k in kept], rtol=1e-6)
    assert np.allclose(np.asarray(a.leading_jet_pt), [k[0].leading_jet_pt for k in kept], rtol=1e-6)
    first_tower = kept[0][3][0]
    assert a.tower.et[0][0] == pytest.approx(first_tower[2], rel=1e-6)
    assert set(np.unique(ak.flatten(a.hit.layer)).tolist()) <= set(range(7))
    assert set(np.unique(ak.flatten(a.particle.charge)).tolist()) <= {-1, 0, 1}


def test_same_seed_same_file_contents(tmp_path: Path, events_file: Sample) -> None:
    path, _ = events_file
    again = tmp_path / "again.root"
    sim, writer = Simulator(7, record=True), EventWriter(again)
    for _ in range(EVENTS):
        writer.add(sim.event(), sim.detail)
    writer.close()
    with uproot.open(path) as f1, uproot.open(again) as f2:
        assert ak.to_list(f1["events"].arrays()) == ak.to_list(f2["events"].arrays())


def test_histogram_counts(events_file: Sample) -> None:
    path, kept = events_file
    analysis = Analysis()
    for chunk in analysis.chunks(path, step=70):  # several chunks
        analysis.fill(chunk)
    expected = [e for e, *_ in kept if e.leading_jet_pt > JET_PT_CUT and e.met > MET_CUT]
    assert analysis.events == EVENTS
    assert analysis.selected == len(expected) > 0
    assert analysis.hists["met"].sum(flow=True) == len(expected)
    assert analysis.hists["n_tracks"].sum(flow=True) == len(expected)
    assert analysis.hists["leading_jet_pt"].sum(flow=True) == len(expected)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    # Unbuffered, as CI's machines run Python: print() then writes a line's text and its newline apart.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "workloads.cli", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)


def test_analyze_writes_histograms(tmp_path: Path, events_file: Sample) -> None:
    path, _ = events_file
    out = tmp_path / "hists.root"
    proc = run("analyze", "--job-id", "a1", "--jobs-dir", str(tmp_path), "--input", str(path), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["events"] == EVENTS and summary["input_bytes"] == path.stat().st_size
    with uproot.open(out) as f:
        assert f["met"].to_hist().sum(flow=True) == summary["selected"]
    assert json.loads((tmp_path / "a1.json").read_text())["state"] == "finished"


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_bad_file_fails_the_job_and_names_the_file(
    tmp_path: Path,
    events_file: Sample,
    damage: str,
) -> None:
    path, _ = events_file
    bad = tmp_path / "bad.root"
    data = path.read_bytes()
    bad.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"not a ROOT file at all" * 100)
    proc = run("analyze", "--job-id", "a2", "--jobs-dir", str(tmp_path), "--input", str(bad))
    assert proc.returncode == 1
    assert str(bad) in proc.stderr
    record = json.loads((tmp_path / "a2.json").read_text())
    assert record["state"] == "failed" and str(bad) in record["message"]


def test_storm_runs_n_readers(tmp_path: Path, events_file: Sample) -> None:
    path, _ = events_file
    argv = ["storm", "--job-id", "st", "--jobs-dir", str(tmp_path), "--readers", "3", "--input", str(path), "--cold"]
    proc = run(*argv)
    assert proc.returncode == 0, proc.stderr
    *readers, summary = (json.loads(line) for line in proc.stdout.splitlines())
    assert sorted(r["job_id"] for r in readers) == ["st-0", "st-1", "st-2"]
    assert summary["readers"] == 3 and summary["failed"] == 0 and summary["events"] == 3 * EVENTS
    assert 0 < summary["cpu_efficiency_per_job"] <= 1.05
    # --cold: the readers read the storage, not the page cache
    assert summary["aggregate_mb_per_second"] > 0
    records = [json.loads((tmp_path / f"st-{i}.json").read_text()) for i in range(3)]
    assert {r["state"] for r in records} == {"finished"} and len({r["pid"] for r in records}) == 3
    assert sum(r["bytes_read"] for r in records) >= path.stat().st_size


def test_storm_with_a_bad_input_fails_every_reader(tmp_path: Path) -> None:
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"garbage" * 100)
    proc = run("storm", "--job-id", "sb", "--jobs-dir", str(tmp_path), "--readers", "2", "--input", str(bad))
    assert proc.returncode == 1
    assert json.loads(proc.stdout.splitlines()[-1])["failed"] == 2
    assert str(bad) in proc.stderr


def test_bad_storm_and_missing_input_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["storm", "--job-id", "s", "--jobs-dir", str(tmp_path), "--readers", "0", "--input", "x"])
    assert "--readers 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["analyze", "--job-id", "s", "--jobs-dir", str(tmp_path), "--input", str(tmp_path / "nope.root")])
    assert "no such file" in capsys.readouterr().err


def test_analyze_stops_at_its_duration_inside_a_long_pass(tmp_path: Path, events_file: Sample) -> None:
    """Many inputs make one pass long: --duration still ends the job mid-pass, counting the bytes it read."""
    path, _ = events_file
    inputs = [str(path)] * 400
    proc = run("analyze", "--job-id", "long", "--jobs-dir", str(tmp_path), "--duration", "1", "--input", *inputs)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["wall_seconds"] < 20 and summary["events"] < 400 * EVENTS
    assert 0 < summary["input_bytes"] <= summary["events"] / EVENTS * path.stat().st_size + 1
