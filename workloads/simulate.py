"""CPU-bound ATLAS-like simulation: event generation plus a simplified detector response.

Per event: a Poisson number of primary particles (pions, photons, electrons, muons) with a falling pT
spectrum, a tracker that smears charged-particle momenta with a pT-dependent resolution, a coarse
eta-phi calorimeter where showers spread over neighbouring cells with a sampling resolution, electronic noise
and a threshold, a seeded cone jet algorithm over the cells, and missing transverse energy. It is small,
deterministic for a seed, and spends its time the way simulation does: many small floating-point updates.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

ETA_MAX = 2.5
N_ETA = 50  # cells of 0.1 in eta
N_PHI = 64  # cells of ~0.1 in phi
CELL_ETA = 2 * ETA_MAX / N_ETA
CELL_PHI = 2 * math.pi / N_PHI
SPECIES = (("pi", 0.60, True), ("gamma", 0.25, False), ("e", 0.08, True), ("mu", 0.07, True))
_CUMULATIVE = [sum(w for _, w, _ in SPECIES[: i + 1]) for i in range(len(SPECIES))]


@dataclass(frozen=True)
class Event:
    number: int
    n_particles: int
    n_tracks: int
    n_cells: int
    n_jets: int
    leading_jet_pt: float
    met: float


Cell = tuple[int, int]


class Simulator:
    """Generates and 'reconstructs' events; `checksum` summarises everything produced so far."""

    def __init__(self, seed: int = 12345, mean_particles: float = 30.0, noise_cells: int = 40):
        self.rng = random.Random(seed)
        self.mean_particles = mean_particles
        self.noise_cells = noise_cells
        self.events = 0
        self.checksum = 0

    def _poisson(self, mean: float) -> int:
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def _pt(self) -> float:
        # Power law above 0.5 GeV (dN/dpT ~ pT^-4), capped at 1 TeV.
        return min(0.5 * float((1.0 - self.rng.random()) ** (-1.0 / 3.0)), 1000.0)

    def _species(self) -> tuple[str, bool]:
        u = self.rng.random()
        for (name, _, charged), edge in zip(SPECIES, _CUMULATIVE, strict=False):
            if u <= edge:
                return name, charged
        return SPECIES[0][0], SPECIES[0][2]

    def _deposit(self, cells: dict[Cell, float], eta: float, phi: float, energy: float, radius: int) -> None:
        ieta = min(N_ETA - 1, max(0, int((eta + ETA_MAX) / CELL_ETA)))
        iphi = int((phi + math.pi) / CELL_PHI) % N_PHI
        width = 0.6 * radius + 0.4
        weights = []
        for de in range(-radius, radius + 1):
            for dp in range(-radius, radius + 1):
                if 0 <= ieta + de < N_ETA:
                    weights.append(((ieta + de, (iphi + dp) % N_PHI), math.exp(-(de * de + dp * dp) / (2 * width**2))))
        total = sum(w for _, w in weights)
        for cell, w in weights:
            cells[cell] = cells.get(cell, 0.0) + energy * w / total

    def _hard_scatter(self) -> list[tuple[float, float, float]]:
        """Two back-to-back partons (pT from 20 GeV, falling) fragmenting into collimated particles."""
        rng = self.rng
        pt = min(20.0 * float((1.0 - rng.random()) ** (-1.0 / 3.0)), 2000.0)
        phi0 = rng.uniform(-math.pi, math.pi)
        out = []
        for side in (0.0, math.pi):
            eta0 = rng.uniform(-2.0, 2.0)
            remaining = pt * rng.uniform(0.85, 1.0)
            while remaining > 0.5:
                z = rng.betavariate(1.0, 3.0)
                frag = max(0.5, z * remaining)
                remaining -= frag
                phi = phi0 + side + rng.gauss(0.0, 0.08)
                phi = (phi + math.pi) % (2 * math.pi) - math.pi
                out.append((frag, max(-ETA_MAX, min(ETA_MAX, eta0 + rng.gauss(0.0, 0.08))), phi))
        return out

    def event(self) -> Event:
        rng = self.rng
        cells: dict[Cell, float] = {}
        soft = [
            (self._pt(), rng.uniform(-ETA_MAX, ETA_MAX), rng.uniform(-math.pi, math.pi))
            for _ in range(self._poisson(self.mean_particles))
        ]
        particles = self._hard_scatter() + soft
        n = len(particles)
        tracks = 0
        for pt, eta, phi in particles:
            name, charged = self._species()
            if charged and pt > 0.5:
                sigma = math.hypot(0.0005 * pt, 0.01)
                if rng.gauss(1.0, sigma) * pt > 0.5:
                    tracks += 1
            energy = pt * math.cosh(eta)
            if name == "mu":
                self._deposit(cells, eta, phi, 2.0, 0)  # minimum ionising
                continue
            em = name in ("e", "gamma")
            resolution = (0.10 if em else 0.50) / math.sqrt(max(energy, 0.1))
            measured = max(0.0, energy * rng.gauss(1.0, math.hypot(resolution, 0.02)))
            self._deposit(cells, eta, phi, measured, 1 if em else 2)
        for _ in range(self.noise_cells):
            cell = (rng.randrange(N_ETA), rng.randrange(N_PHI))
            cells[cell] = cells.get(cell, 0.0) + abs(rng.gauss(0.0, 0.1))
        towers = self._towers(cells)
        jets = self._jets(towers)
        mex = -sum(et * math.cos(p) for _, p, et in towers)
        mey = -sum(et * math.sin(p) for _, p, et in towers)
        self.events += 1
        ev = Event(self.events, n, tracks, len(towers), len(jets), jets[0] if jets else 0.0, math.hypot(mex, mey))
        packed = struct.pack(
            "<5i2d",
            ev.number,
            n,
            tracks,
            ev.n_cells,
            ev.n_jets,
            round(ev.leading_jet_pt, 6),
            round(ev.met, 6),
        )
        self.checksum = zlib.crc32(packed, self.checksum)
        return ev

    @staticmethod
    def _towers(cells: dict[Cell, float]) -> list[tuple[float, float, float]]:
        """(eta, phi, ET) of the cells above the 0.1 GeV ET threshold."""
        out = []
        for (ie, ip), energy in cells.items():
            eta = -ETA_MAX + (ie + 0.5) * CELL_ETA
            et = energy / math.cosh(eta)
            if et > 0.1:
                out.append((eta, -math.pi + (ip + 0.5) * CELL_PHI, et))
        return out

    @staticmethod
    def _jets(towers: list[tuple[float, float, float]], radius: float = 0.4) -> list[float]:
        """Seeded cone jets (seed ET > 2 GeV, R = 0.4), jet pT > 10 GeV, descending."""
        used = [False] * len(towers)
        order = sorted(range(len(towers)), key=lambda i: -towers[i][2])
        jets = []
        r2 = radius * radius
        for s in order:
            seta, sphi, set_ = towers[s]
            if used[s] or set_ < 2.0:
                continue
            pt = 0.0
            for i, (eta, phi, et) in enumerate(towers):
                if used[i]:
                    continue
                dphi = abs(phi - sphi)
                if dphi > math.pi:
                    dphi = 2 * math.pi - dphi
                if (eta - seta) ** 2 + dphi * dphi < r2:
                    used[i] = True
                    pt += et
            if pt > 10.0:
                jets.append(pt)
        return sorted(jets, reverse=True)

    def run(self) -> Iterator[Event]:
        while True:
            yield self.event()
