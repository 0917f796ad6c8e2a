"""ROOT files for the ATLAS-like workloads: `simulate --output` writes events, `analyze` reads them.

Tree `events`, one entry per event: the event summary (number, n_tracks, n_jets, leading_jet_pt, met,
track_pt_sum) and three jagged collections — `particle` (pt, eta, phi, species, charge), `hit` (tracker hits:
layer, r, phi) and `tower` (calorimeter towers: eta, phi, et) — in ZLIB level 4 baskets of `BASKET_EVENTS`
events, the way ATLAS derivations store per-event object lists. Needs uproot, awkward and numpy (imported here
only: `simulate` without --output stays standard-library Python).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
import uproot

from workloads.simulate import Detail, Event

TREE = "events"
BASKET_EVENTS = 1000
COMPRESSION = uproot.ZLIB(4)
SUMMARY = ("number", "n_tracks", "n_jets", "leading_jet_pt", "met", "track_pt_sum")
# Selection of `analyze`: events with a hard jet and some missing transverse energy.
JET_PT_CUT = 30.0  # GeV
MET_CUT = 20.0  # GeV


class RootFileError(RuntimeError):
    """A ROOT file that cannot be read as the workloads' events; the message names the file."""


@dataclass
class EventWriter:
    """Buffers events and writes them to `path` in baskets of BASKET_EVENTS."""

    path: Path
    _file: Any = None
    _rows: list[tuple[Event, Detail]] = field(default_factory=list)
    written: int = 0

    def __post_init__(self) -> None:
        self._file = uproot.recreate(self.path, compression=COMPRESSION)

    def add(self, event: Event, detail: Detail) -> None:
        self._rows.append((event, detail))  # the simulator starts a new Detail for every event
        if len(self._rows) >= BASKET_EVENTS:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        data = _columns(self._rows)
        if TREE in self._file:
            self._file[TREE].extend(data)
        else:
            self._file[TREE] = data
        self.written += len(self._rows)
        self._rows = []

    def close(self) -> None:
        self.flush()
        self._file.close()


def _columns(rows: list[tuple[Event, Detail]]) -> dict[str, Any]:
    def jagged(items: list[list[tuple[Any, ...]]], names: tuple[str, ...], types: tuple[str, ...]) -> ak.Array:
        counts = [len(x) for x in items]
        flat = [v for x in items for v in x]
        columns = {
            name: ak.unflatten(np.array([v[i] for v in flat], dtype=types[i]), counts) for i, name in enumerate(names)
        }
        return ak.zip(columns)

    events = [e for e, _ in rows]
    out: dict[str, Any] = {
        name: np.array(
            [getattr(e, name) for e in events], dtype=np.float32 if "pt" in name or name == "met" else np.int32
        )
        for name in SUMMARY
    }
    out["particle"] = jagged(
        [d.particles for _, d in rows], ("pt", "eta", "phi", "species", "charge"), ("f4", "f4", "f4", "i1", "i1")
    )
    out["hit"] = jagged([d.hits for _, d in rows], ("layer", "r", "phi"), ("i1", "f4", "f4"))
    out["tower"] = jagged([d.towers for _, d in rows], ("eta", "phi", "et"), ("f4", "f4", "f4"))
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


@dataclass
class Analysis:
    """Reads events file by file in chunks, selects them, fills histograms."""

    hists: dict[str, hist.Hist[Any]] = field(default_factory=histograms)
    events: int = 0
    selected: int = 0
    entries: int = 0  # events in the file being read

    def chunks(self, path: Path, step: int = 2000) -> Any:
        """Iterate over `path`'s events in chunks; a bad file raises RootFileError naming it."""
        try:
            with uproot.open(path) as f:
                if TREE not in f:
                    raise RootFileError(f"{path}: no '{TREE}' tree (keys: {', '.join(f.keys()) or 'none'})")
                tree = f[TREE]
                self.entries = tree.num_entries
                yield from tree.iterate(step_size=step, library="ak")
        except RootFileError:
            raise
        except Exception as exc:  # uproot raises many kinds on corrupt or truncated files
            raise RootFileError(f"{path}: not a readable events file ({type(exc).__name__}: {exc})") from exc

    def fill(self, chunk: Any) -> None:
        self.events += len(chunk)
        cut = (chunk.leading_jet_pt > JET_PT_CUT) & (chunk.met > MET_CUT)
        sel = chunk[cut]
        self.selected += len(sel)
        h = self.hists
        h["leading_jet_pt"].fill(np.asarray(sel.leading_jet_pt))
        h["met"].fill(np.asarray(sel.met))
        h["n_tracks"].fill(np.asarray(sel.n_tracks))
        h["particle_pt"].fill(np.asarray(ak.flatten(sel.particle.pt)))
        h["hit_r"].fill(np.asarray(ak.flatten(sel.hit.r)))
        h["tower_et_sum"].fill(np.asarray(ak.sum(sel.tower.et, axis=1)))

    def write(self, path: Path) -> None:
        with uproot.recreate(path) as f:
            for name, h in self.hists.items():
                f[name] = h
