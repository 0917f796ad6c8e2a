"""ROOT files for the ATLAS-like workloads: `simulate --output` writes events, `analyze` reads them.

The events are `events`, one entry per event, in one of ROOT's two layouts for event data
(magellan.contract.FORMATS), both written by uproot 5.7:
- `rntuple` (the default, contract.DEFAULT_FORMAT): a ROOT::RNTuple written with `mkrntuple`, fields `number`,
  `n_tracks`, `n_jets` (int32), `leading_jet_pt`, `met`, `track_pt_sum` (float32) and three collections, each a
  field holding a variable-length list of records: `particle` {pt, eta, phi: float32, species, charge: int8},
  `hit` (tracker hits) {layer: int8, r, phi: float32}, `tower` (calorimeter towers) {eta, phi, et: float32};
- `ttree`: a TTree written with `mktree`, the same summary branches and each collection as counted branches the
  way uproot writes jagged records (CMS NanoAOD's layout too): an int32 counter `nparticle` and one branch per
  field, `particle_pt[nparticle]`, ... (`ttree_branch`).

Both are written in steps of CLUSTER_EVENTS events (one `extend` each): an RNTuple cluster of 1000 entries with
one page per column, or one TTree basket of 1000 entries per branch; pages and baskets ZLIB level 4 (the file's
COMPRESSION, which uproot applies to both). A 5000-event file is ~14.4 MB as an RNTuple, ~14.7 MB as a TTree.

`Analysis` reads either: it looks at what `events` is in each file and reads it in steps of STEP_EVENTS. Needs
uproot, awkward, numpy and hist (imported here only: `simulate` without --output stays standard-library Python).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
import uproot

from magellan import contract
from workloads.conditions import Conditions
from workloads.output import AtomicOutput, replacing
from workloads.progress import JobError
from workloads.simulate import Detail, Event

TREE = "events"
CLUSTER_EVENTS = 1000  # events per RNTuple cluster / TTree basket
# Events per chunk that analyze reads: whole clusters, ~60 MB of arrays. Each chunk costs a fixed ~9 ms of awkward
# and uproot bookkeeping whatever its size, so chunks of 2000 events made analyze ~12 % slower than uproot's own
# default step (100 MB) on the 5000-event input; this reads that input in one chunk too.
STEP_EVENTS = 10 * CLUSTER_EVENTS
COMPRESSION = uproot.ZLIB(4)
SUMMARY = ("number", "n_tracks", "n_jets", "leading_jet_pt", "met", "track_pt_sum")
COLLECTIONS: dict[str, tuple[tuple[str, str], ...]] = {  # collection -> (field, dtype)
    "particle": (("pt", "f4"), ("eta", "f4"), ("phi", "f4"), ("species", "i1"), ("charge", "i1")),
    "hit": (("layer", "i1"), ("r", "f4"), ("phi", "f4")),
    "tower": (("eta", "f4"), ("phi", "f4"), ("et", "f4")),
}
# What `events` is in a file, as uproot names its class, and the format that is.
CLASSES = {"ROOT::RNTuple": "rntuple", "TTree": "ttree"}
# Selection of `analyze`: events with a hard jet and some missing transverse energy.
JET_PT_CUT = 30.0  # GeV
MET_CUT = 20.0  # GeV


class RootFileError(JobError):
    """A ROOT file that cannot be read as the workloads' events; the message names the file."""


def ttree_branch(collection: str, name: str) -> str:
    """The TTree branch of a collection's field: `particle_pt` (uproot's field_name for records in a TTree)."""
    return f"{collection}_{name}"


def ttree_counter(collection: str) -> str:
    """The TTree branch counting a collection's entries per event: `nparticle` (uproot's counter_name)."""
    return f"n{collection}"


def branches(fmt: str) -> list[str]:
    """The names uproot gives the events' columns in a file of format `fmt` (RNTuple fields `particle.pt`)."""
    if fmt == "ttree":
        jagged = [ttree_counter(c) for c in COLLECTIONS]
        jagged += [ttree_branch(c, name) for c, fields in COLLECTIONS.items() for name, _ in fields]
    else:
        jagged = [f"{c}.{name}" for c, fields in COLLECTIONS.items() for name, _ in fields]
    return [*SUMMARY, *jagged]


@dataclass
class EventWriter:
    """Buffers events and writes them as `format` (contract.FORMATS), CLUSTER_EVENTS at a time, to a temporary
    beside `path` (output.AtomicOutput): close() renames it onto `path`, discard() removes it."""

    path: Path
    format: str = contract.DEFAULT_FORMAT
    _out: Any = None
    _file: Any = None
    _tree: Any = None
    _rows: list[tuple[Event, Detail]] = field(default_factory=list)
    written: int = 0

    def __post_init__(self) -> None:
        if self.format not in contract.FORMATS:
            raise ValueError(f"format {self.format!r}: one of {', '.join(contract.FORMATS)}")
        self._out = AtomicOutput(self.path)
        self._file = uproot.recreate(self._out.partial, compression=COMPRESSION)

    def add(self, event: Event, detail: Detail) -> None:
        self._rows.append((event, detail))  # the simulator starts a new Detail for every event
        if len(self._rows) >= CLUSTER_EVENTS:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        data = _columns(self._rows)
        if self._tree is not None:
            self._tree.extend(data)
        elif self.format == "ttree":
            self._tree = self._file.mktree(TREE, data, counter_name=ttree_counter, field_name=_ttree_field)
        else:
            self._tree = self._file.mkrntuple(TREE, data)
        self.written += len(self._rows)
        self._rows = []

    def close(self) -> None:
        """Write what is buffered and make the file `path`."""
        self.flush()
        self._file.close()
        self._out.commit()

    def discard(self) -> None:
        """Drop the events: `path` stays as it was (after close(): nothing to do)."""
        with contextlib.suppress(Exception):  # the file is dropped: an error closing it changes nothing
            self._file.close()
        self._out.discard()


def _ttree_field(outer: str, inner: str) -> str:
    """uproot's field_name: a top-level name stays, a record's field is its collection's (ttree_branch)."""
    return inner if not outer else ttree_branch(outer, inner)


def _columns(rows: list[tuple[Event, Detail]]) -> dict[str, Any]:
    def jagged(items: list[list[tuple[Any, ...]]], fields: tuple[tuple[str, str], ...]) -> ak.Array:
        counts = [len(x) for x in items]
        flat = [v for x in items for v in x]
        return ak.zip(
            {
                name: ak.unflatten(np.array([v[i] for v in flat], dtype=dtype), counts)
                for i, (name, dtype) in enumerate(fields)
            }
        )

    events = [e for e, _ in rows]
    out: dict[str, Any] = {
        name: np.array(
            [getattr(e, name) for e in events], dtype=np.float32 if "pt" in name or name == "met" else np.int32
        )
        for name in SUMMARY
    }
    out["particle"] = jagged([d.particles for _, d in rows], COLLECTIONS["particle"])
    out["hit"] = jagged([d.hits for _, d in rows], COLLECTIONS["hit"])
    out["tower"] = jagged([d.towers for _, d in rows], COLLECTIONS["tower"])
    return out


def histograms() -> dict[str, hist.Hist[Any]]:
    return {
        "leading_jet_pt": hist.Hist.new.Reg(50, 0, 500, name="pt", label="leading jet pT [GeV]").Double(),
        "met": hist.Hist.new.Reg(50, 0, 250, name="met", label="missing ET [GeV]").Double(),
        "n_tracks": hist.Hist.new.Reg(60, 0, 120, name="n", label="tracks").Double(),
        "particle_pt": hist.Hist.new.Reg(50, 0, 100, name="pt", label="particle pT [GeV]").Double(),
        "hit_r": hist.Hist.new.Reg(60, 0, 0.6, name="r", label="hit radius [m]").Double(),
        "tower_et_sum": hist.Hist.new.Reg(50, 0, 1000, name="et", label="sum of tower ET [GeV]").Double(),
    }


def file_format(path: Path | str, f: Any) -> str:
    """The format of `events` in the open file `f`; RootFileError when it is missing or neither an RNTuple nor a
    TTree."""
    if TREE not in f:
        raise RootFileError(f"{path}: no '{TREE}' (keys: {', '.join(f.keys()) or 'none'})")
    classname = f.classname_of(TREE)
    fmt = CLASSES.get(classname)
    if fmt is None:
        raise RootFileError(f"{path}: '{TREE}' is a {classname}, neither an RNTuple nor a TTree")
    return fmt


def _depth(fmt: str, name: str) -> int:
    """How deep a column of branches(fmt) is: 1 for one number per event, 2 for a list of them per event."""
    flat = name in SUMMARY or (fmt == "ttree" and name in {ttree_counter(c) for c in COLLECTIONS})
    return 1 if flat else 2


def check_columns(path: Path | str, fmt: str, chunk: Any) -> None:
    """RootFileError unless a chunk read from `path` holds every column of the events (branches(fmt)), each of
    numbers and as deep as the events' (a number or a list of numbers per event). It looks at the chunk, not at the
    file's metadata: listing an RNTuple's keys costs a few ms at every pass."""
    columns = {name: chunk[name] for name in chunk.fields}
    if fmt == "rntuple":
        for c in COLLECTIONS:
            if c in columns and columns[c].ndim == 2 and ak.fields(columns[c]):
                columns |= {f"{c}.{name}": columns[c][name] for name in ak.fields(columns[c])}
    missing = sorted(set(branches(fmt)) - set(columns))
    if missing:
        raise RootFileError(f"{path}: '{TREE}' ({fmt}) lacks {', '.join(missing)}: not written by simulate --output")
    for name in branches(fmt):
        column, depth = columns[name], _depth(fmt, name)
        leaf = ak.type(column).content  # the type of one event's value
        for _ in range(depth - 1):
            leaf = getattr(leaf, "content", leaf)
        numeric = isinstance(leaf, ak.types.NumpyType) and np.issubdtype(np.dtype(leaf.primitive), np.number)
        if column.ndim != depth or not numeric:
            want = "a number" if depth == 1 else "a list of numbers"
            raise RootFileError(
                f"{path}: '{TREE}' ({fmt}) column {name} holds {ak.type(column).content} per event, not {want}: "
                "not written by simulate --output"
            )


@dataclass
class Analysis:
    """Reads events file by file in chunks, selects them, fills histograms; every input must be of one format."""

    hists: dict[str, hist.Hist[Any]] = field(default_factory=histograms)
    events: int = 0
    selected: int = 0
    entries: int = 0  # events in the file being read
    format: str | None = None  # of the files read (contract.FORMATS); None before the first
    conditions: Conditions | None = None  # calibrations per run (analyze --conditions); None: none applied
    size: int = 0  # bytes of the file being read, as its source (local or remote) reports them

    def chunks(self, path: Path | str, step: int = STEP_EVENTS) -> Iterator[Any]:
        """Iterate over the events of `path` (a file, or a URL uproot opens: root://<server>/<path> reads through
        XRootD) in chunks; a bad file raises RootFileError naming it."""
        # root:// through XRootD's own Python bindings (Debian's python3-xrootd), not uproot's default fsspec route,
        # which would need fsspec-xrootd on top of them.
        xrootd = str(path).startswith(("root://", "roots://"))
        # Without uproot's object and array caches (100 objects, 100 MB a file by default): a pass reads each array
        # once, and with them a reader looping over its input held 475 MB (median over 15 s) against 114 MB without,
        # at the same speed; a storm of hundreds of readers has to fit the node.
        options = {"object_cache": None, "array_cache": None, **({"handler": uproot.XRootDSource} if xrootd else {})}
        try:
            with uproot.open(path, **options) as f:
                self.size = int(f.file.source.num_bytes)
                fmt = file_format(path, f)
                if self.format not in (None, fmt):
                    raise RootFileError(f"{path}: {fmt}, the inputs before it {self.format}: give inputs of one format")
                self.format = fmt
                tree = f[TREE]
                self.entries = tree.num_entries
                for i, chunk in enumerate(tree.iterate(step_size=step, library="ak")):
                    if i == 0:
                        check_columns(path, fmt, chunk)
                    yield chunk
        except RootFileError:
            raise
        except Exception as exc:  # uproot raises many kinds on corrupt or truncated files
            raise RootFileError(f"{path}: not a readable events file ({type(exc).__name__}: {exc})") from exc

    def fill(self, chunk: Any) -> None:
        """Select a chunk's events and fill the histograms (chunk: what chunks() yielded, in self.format); with
        conditions, each event's leading jet pT and missing ET are first scaled by its run's calibration."""
        self.events += len(chunk)
        jet, met = np.asarray(chunk.leading_jet_pt), np.asarray(chunk.met)
        if self.conditions is not None:
            jet, met = jet.astype(np.float64), met.astype(np.float64)
            for mask, calibration in self.conditions.scales(np.asarray(chunk.number)):
                jet[mask] *= calibration["JES"]
                met[mask] *= calibration["MET"]
        cut = (jet > JET_PT_CUT) & (met > MET_CUT)
        sel = chunk[cut]
        self.selected += len(sel)
        h = self.hists
        h["leading_jet_pt"].fill(jet[cut])
        h["met"].fill(met[cut])
        h["n_tracks"].fill(np.asarray(sel.n_tracks))
        h["particle_pt"].fill(np.asarray(ak.flatten(self._column(sel, "particle", "pt"))))
        h["hit_r"].fill(np.asarray(ak.flatten(self._column(sel, "hit", "r"))))
        h["tower_et_sum"].fill(np.asarray(ak.sum(self._column(sel, "tower", "et"), axis=1)))

    def _column(self, chunk: Any, collection: str, name: str) -> Any:
        """A collection's field, per event: a record field of an RNTuple's chunk, a counted branch of a TTree's."""
        return chunk[ttree_branch(collection, name)] if self.format == "ttree" else chunk[collection, name]

    def write(self, path: Path) -> None:
        """Write the histograms to `path`, whole or not at all (output.replacing)."""
        with replacing(path) as partial, uproot.recreate(partial) as f:
            for name, h in self.hists.items():
                f[name] = h
