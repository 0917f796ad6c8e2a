"""ROOT files of the workloads in both formats: layout and contents on a fixed seed, the analysis' counts (the same
for an RNTuple and a TTree of the same events), bad files, the storm."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot

from magellan import contract
from workloads import cli
from workloads.rootio import (
    CLUSTER_EVENTS,
    COLLECTIONS,
    JET_PT_CUT,
    MET_CUT,
    SUMMARY,
    Analysis,
    EventWriter,
    RootFileError,
    ttree_branch,
    ttree_counter,
)
from workloads.simulate import Simulator

EVENTS = 1300  # two clusters (baskets), the second one partial
Sample = tuple[Path, list[Any]]  # the file, and per event (Event, particles, hits, first tower)


def write(paths: dict[str, Path], seed: int = 7) -> list[Any]:
    """EVENTS events of one seed, written to each of `paths` (format -> file)."""
    sim = Simulator(seed, record=True)
    writers = [EventWriter(path, fmt) for fmt, path in paths.items()]
    kept = []
    for _ in range(EVENTS):
        event = sim.event()
        for writer in writers:
            writer.add(event, sim.detail)
        kept.append((event, len(sim.detail.particles), len(sim.detail.hits), sim.detail.towers[:1]))
    for writer in writers:
        writer.close()
        assert writer.written == EVENTS
    return kept


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    """The same events (one seed) in each format."""
    tmp = tmp_path_factory.mktemp("root")
    paths = {fmt: tmp / f"events-{fmt}.root" for fmt in contract.FORMATS}
    kept = write(paths)
    return {fmt: (path, kept) for fmt, path in paths.items()}


@pytest.fixture(scope="module", params=contract.FORMATS)
def events_file(request: pytest.FixtureRequest, samples: dict[str, Sample]) -> Sample:
    return samples[request.param]


@pytest.fixture(scope="module")
def both(samples: dict[str, Sample]) -> dict[str, Path]:
    return {fmt: path for fmt, (path, _) in samples.items()}


def fmt_of(path: Path) -> str:
    return "ttree" if "ttree" in path.name else "rntuple"


def test_rntuple_layout(both: dict[str, Path]) -> None:
    """uproot's RNTuple: summary fields and the collections as lists of records, clusters of CLUSTER_EVENTS."""
    with uproot.open(both["rntuple"]) as f:
        assert f.classname_of("events") == "ROOT::RNTuple"
        ntuple = f["events"]
        assert ntuple.num_entries == EVENTS
        names = set(ntuple.keys())
        assert set(SUMMARY) <= names
        for collection, fields in COLLECTIONS.items():
            assert {collection} | {f"{collection}.{x}" for x, _ in fields} <= names, names
        assert [c.num_entries for c in ntuple.cluster_summaries] == [CLUSTER_EVENTS, EVENTS - CLUSTER_EVENTS]
        assert isinstance(f.file.compression, uproot.ZLIB) and f.file.compression.level == 4
    assert both["rntuple"].stat().st_size < EVENTS * 3500  # ZLIB-compressed pages: ~6 kB of arrays per event


def test_ttree_layout(both: dict[str, Path]) -> None:
    """uproot's TTree: summary branches, each collection an int32 counter and counted branches, baskets of
    CLUSTER_EVENTS entries, ZLIB level 4."""
    with uproot.open(both["ttree"]) as f:
        assert f.classname_of("events") == "TTree"
        tree = f["events"]
        assert tree.num_entries == EVENTS
        types = tree.typenames()
        assert types["met"] == "float" and types["n_tracks"] == "int32_t"
        for collection, fields in COLLECTIONS.items():
            assert types[ttree_counter(collection)] == "int32_t"
            for name, _ in fields:
                assert types[ttree_branch(collection, name)].endswith("[]")
                assert tree[ttree_branch(collection, name)].count_branch.name == ttree_counter(collection)
        pt = tree[ttree_branch("particle", "pt")]
        assert pt.num_baskets == 2
        assert [int(pt.basket_entry_start_stop(i)[1]) for i in range(2)] == [CLUSTER_EVENTS, EVENTS]
        assert pt.compressed_bytes < pt.uncompressed_bytes
        assert isinstance(f.file.compression, uproot.ZLIB) and f.file.compression.level == 4


def test_contents_match_the_simulation(events_file: Sample) -> None:
    path, kept = events_file
    with uproot.open(path) as f:
        a = f["events"].arrays()
    if fmt_of(path) == "ttree":  # counted branches: zip them into the RNTuple's records to compare alike
        a = ak.zip(
            {
                **{name: a[name] for name in SUMMARY},
                **{c: ak.zip({x: a[ttree_branch(c, x)] for x, _ in fields}) for c, fields in COLLECTIONS.items()},
            },
            depth_limit=1,
        )
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
    write({fmt_of(path): again})
    with uproot.open(path) as f1, uproot.open(again) as f2:
        assert ak.to_list(f1["events"].arrays()) == ak.to_list(f2["events"].arrays())


def test_histogram_counts(events_file: Sample) -> None:
    path, kept = events_file
    analysis = Analysis()
    for chunk in analysis.chunks(path, step=700):  # several chunks, across clusters
        analysis.fill(chunk)
    expected = [e for e, *_ in kept if e.leading_jet_pt > JET_PT_CUT and e.met > MET_CUT]
    assert analysis.format == fmt_of(path)
    assert analysis.events == EVENTS
    assert analysis.selected == len(expected) > 0
    assert analysis.hists["met"].sum(flow=True) == len(expected)
    assert analysis.hists["n_tracks"].sum(flow=True) == len(expected)
    assert analysis.hists["leading_jet_pt"].sum(flow=True) == len(expected)
    assert analysis.hists["particle_pt"].sum(flow=True) == sum(k[1] for k in kept if k[0] in expected)


class RunScales:
    """Conditions as Analysis uses them: a jet energy scale per run (0.5 in the first run, 2 after), MET unscaled."""

    def scales(self, numbers: Any) -> Iterator[tuple[Any, dict[str, float]]]:
        runs = np.asarray(numbers) // contract.EVENTS_PER_RUN
        for run in np.unique(runs):
            yield runs == run, {"JES": 0.5 if run == 0 else 2.0, "MET": 1.0}


def test_a_pass_keeps_no_cache_of_its_file(monkeypatch: pytest.MonkeyPatch, events_file: Sample) -> None:
    """Analysis opens its inputs without uproot's object and array caches (a reader looping over its input held 475 MB
    with them, 114 MB without: hundreds of storm readers must fit a node)."""
    opened: list[Any] = []
    real = uproot.open

    def spy(*args: Any, **kwargs: Any) -> Any:
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(uproot, "open", spy)
    a = Analysis()
    for chunk in a.chunks(events_file[0]):
        a.fill(chunk)
    assert a.events == EVENTS and len(opened) == 1
    assert (opened[0].file.array_cache, opened[0].file.object_cache) == (None, None)


def test_conditions_scale_each_event_by_its_run_before_the_selection(events_file: Sample) -> None:
    path, kept = events_file
    analysis = Analysis(conditions=RunScales())  # type: ignore[arg-type]
    for chunk in analysis.chunks(path, step=700):
        analysis.fill(chunk)
    jes = {e.number: 0.5 if e.number < contract.EVENTS_PER_RUN else 2.0 for e, *_ in kept}
    expected = [e for e, *_ in kept if np.float32(e.leading_jet_pt) * jes[e.number] > JET_PT_CUT and e.met > MET_CUT]
    plain = [e for e, *_ in kept if e.leading_jet_pt > JET_PT_CUT and e.met > MET_CUT]
    assert analysis.selected == len(expected) and expected != plain
    assert analysis.hists["leading_jet_pt"].sum(flow=True) == len(expected)


def test_both_formats_give_the_same_histograms(both: dict[str, Path]) -> None:
    """The same events as an RNTuple and as a TTree: the same selection and the same histograms, bin for bin,
    whatever the chunking."""
    results = {}
    for fmt, path in both.items():
        for step in (250, 10_000):
            analysis = Analysis()
            for chunk in analysis.chunks(path, step=step):
                analysis.fill(chunk)
            assert analysis.format == fmt
            results[fmt, step] = (
                analysis.events,
                analysis.selected,
                {name: h.values(flow=True).tolist() for name, h in analysis.hists.items()},
            )
    first, *others = results.values()
    assert first[0] == EVENTS and first[1] > 0
    assert all(sum(v) > 0 for v in first[2].values())
    assert all(r == first for r in others)


def test_an_events_object_of_another_kind_or_without_the_branches_is_named(tmp_path: Path) -> None:
    hist_file, partial, neither = tmp_path / "hist.root", tmp_path / "partial.root", tmp_path / "none.root"
    with uproot.recreate(hist_file) as f:
        f["events"] = np.histogram(np.arange(10.0))
    with uproot.recreate(partial) as f:
        f.mktree("events", {"met": np.zeros(3, np.float32), "leading_jet_pt": np.zeros(3, np.float32)})
    with uproot.recreate(neither) as f:
        f["other"] = np.histogram(np.arange(10.0))
    for path, message in (
        (hist_file, "'events' is a TH1D, neither an RNTuple nor a TTree"),
        (partial, "'events' (ttree) lacks hit_layer, hit_phi, hit_r, n_jets, "),
        (neither, "no 'events' (keys: other"),
    ):
        with pytest.raises(RootFileError, match=re.escape(message)) as err:
            list(Analysis().chunks(path))
        assert str(path) in str(err.value)


def test_a_column_of_the_wrong_shape_or_kind_is_named(tmp_path: Path) -> None:
    """Every column present, but a list per event where a number is expected (a number where a list is expected:
    test_workload_faults's misshapen file)."""
    jagged = tmp_path / "jagged.root"
    columns: dict[str, Any] = {name: np.zeros(3, np.int32) for name in SUMMARY}
    columns |= {c: ak.zip({n: ak.Array([[0.0], [], [1.0]]) for n, _ in fields}) for c, fields in COLLECTIONS.items()}
    columns["met"] = ak.Array([[1.0], [2.0, 3.0], []])
    with uproot.recreate(jagged) as f:
        f["events"] = columns  # uproot writes each collection as a counter and counted branches (its TTree layout)
    with pytest.raises(RootFileError, match=re.escape("column met holds var * float64 per event, not a number")) as err:
        list(Analysis().chunks(jagged))
    assert str(jagged) in str(err.value)


def test_inputs_of_two_formats_are_refused(both: dict[str, Path]) -> None:
    analysis = Analysis()
    for chunk in analysis.chunks(both["rntuple"]):
        analysis.fill(chunk)
    with pytest.raises(RootFileError, match="ttree, the inputs before it rntuple: give inputs of one format"):
        list(analysis.chunks(both["ttree"]))


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
    assert summary["format"] == fmt_of(path)
    with uproot.open(out) as f:
        assert f["met"].to_hist().sum(flow=True) == summary["selected"]
    record = contract.parse_progress((tmp_path / "a1.json").read_text())
    assert (record.state, record.format) == ("finished", fmt_of(path))


def test_analyze_reads_an_input_given_as_a_url_as_the_file_itself(tmp_path: Path, events_file: Sample) -> None:
    """A URL input (root://<server>/<path> on a site; file:// here, through the same code path: uproot opens the URL,
    the input check leaves it to the server, the bytes read are the source's size) gives the file's own figures."""
    path, _ = events_file
    argv = ["analyze", "--jobs-dir", str(tmp_path), "--cold", "--input"]
    local = json.loads(run(*argv[:1], "--job-id", "local", *argv[1:], str(path)).stdout)
    proc = run(*argv[:1], "--job-id", "url", *argv[1:], path.resolve().as_uri())
    assert proc.returncode == 0, proc.stderr
    remote = json.loads(proc.stdout)
    assert (remote["events"], remote["selected"], remote["input_bytes"]) == (
        local["events"], local["selected"], path.stat().st_size)  # fmt: skip
    assert cli.remote("root://storage1//srv/arrays/ssd/a.root") and not cli.remote("/srv/arrays/ssd/a.root")


def test_simulate_writes_the_format_asked_for(tmp_path: Path) -> None:
    """simulate --output --format: the file holds that format, the summary and the progress file say so; the
    events (their checksum) do not depend on it."""
    checksums = set()
    for fmt in contract.FORMATS:
        out = tmp_path / f"{fmt}.root"
        argv = ["simulate", "--job-id", f"s-{fmt}", "--jobs-dir", str(tmp_path), "--events", "20", "--seed", "3"]
        proc = run(*argv, "--format", fmt, "--output", str(out))
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["format"] == fmt and summary["output"] == str(out)
        assert contract.parse_progress((tmp_path / f"s-{fmt}.json").read_text()).format == fmt
        with uproot.open(out) as f:
            assert f.classname_of("events") == {"rntuple": "ROOT::RNTuple", "ttree": "TTree"}[fmt]
        checksums.add(summary["checksum"])
    assert len(checksums) == 1
    plain = run("simulate", "--job-id", "plain", "--jobs-dir", str(tmp_path), "--events", "5")
    assert "format" not in json.loads(plain.stdout)
    assert contract.parse_progress((tmp_path / "plain.json").read_text()).format is None


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
    ids = [contract.reader_job_id("st", i) for i in range(3)]
    assert sorted(r["job_id"] for r in readers) == ids == ["st_0", "st_1", "st_2"]
    assert {r["format"] for r in readers} == {summary["format"]} == {fmt_of(path)}
    assert summary["readers"] == 3 and summary["failed"] == 0 and summary["events"] == 3 * EVENTS
    assert 0 < summary["cpu_efficiency_per_job"] <= 1.05
    # --cold: the readers read the storage, not the page cache
    assert summary["aggregate_mb_per_second"] > 0
    records = [contract.parse_progress((tmp_path / f"{job_id}.json").read_text()) for job_id in ids]
    assert {(r.state, r.workload, r.format) for r in records} == {("finished", "analyze", fmt_of(path))}
    assert len({r.pid for r in records}) == 3
    assert sum(r.bytes_read for r in records) >= path.stat().st_size


def test_a_storm_whose_readers_read_two_formats_fails(tmp_path: Path, both: dict[str, Path]) -> None:
    inputs = [str(both["rntuple"]), str(both["ttree"])]
    proc = run("storm", "--job-id", "mix", "--jobs-dir", str(tmp_path), "--readers", "2", "--input", *inputs)
    assert proc.returncode == 1
    assert json.loads(proc.stdout.splitlines()[-1])["failed"] == 0
    assert "readers read different formats (rntuple, ttree): give inputs of one format" in proc.stderr


def test_storm_with_a_bad_input_fails_every_reader(tmp_path: Path) -> None:
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"garbage" * 100)
    proc = run("storm", "--job-id", "sb", "--jobs-dir", str(tmp_path), "--readers", "2", "--input", str(bad))
    assert proc.returncode == 1
    assert json.loads(proc.stdout.splitlines()[-1])["failed"] == 2
    assert str(bad) in proc.stderr


def test_bad_storm_and_missing_input_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for readers in (0, contract.READERS_MAX + 1):
        with pytest.raises(SystemExit):
            cli.main(["storm", "--job-id", "s", "--jobs-dir", str(tmp_path), "--readers", str(readers), "--input", "x"])
        assert f"--readers {readers}: a storm runs 1 to {contract.READERS_MAX}" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # reader 9's job id, 'x...x_9', would be 129 characters
        cli.main(["storm", "--job-id", "x" * 127, "--jobs-dir", str(tmp_path), "--readers", "10", "--input", "x"])
    assert "too long for its readers' job ids" in capsys.readouterr().err
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
