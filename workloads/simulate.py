"""CPU-bound ATLAS-like simulation: event generation plus a simplified detector response.

Per event: a hard scatter (two back-to-back partons fragmenting into collimated particles) plus a Poisson
number of soft particles, each a pion, photon, electron or muon with a falling pT spectrum. Charged particles
are propagated through a silicon tracker in a 2 T solenoid (hits on seven barrel layers, smeared, then fitted
for the curvature, plus a multiple-scattering term: sigma(pT)/pT = a*pT (+) b); everything but muons showers in a
coarse eta-phi calorimeter (sampling resolution, shower spread over neighbouring cells, noise, threshold);
seeded cone jets are found over the cells and the missing transverse energy is computed. Small, deterministic
for a seed, and it spends its time the way simulation does: many small floating-point updates.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from magellan import contract

ETA_MAX = 2.5
N_ETA = 50  # cells of 0.1 in eta
N_PHI = 64  # cells of ~0.1 in phi
CELL_ETA = 2 * ETA_MAX / N_ETA
CELL_PHI = 2 * math.pi / N_PHI
# (name, cumulative probability, charged)
SPECIES = (("pi", 0.60, True), ("gamma", 0.85, False), ("e", 0.93, True), ("mu", 1.0, True))
SPECIES_INDEX = {name: i for i, (name, _, _) in enumerate(SPECIES)}

B_FIELD = 2.0  # tesla
# Barrel layers: (radius in m, r-phi hit resolution in m): three pixel layers, four strip layers.
LAYERS = (
    (0.050, 10e-6),
    (0.088, 10e-6),
    (0.122, 10e-6),
    (0.299, 17e-6),
    (0.371, 17e-6),
    (0.443, 17e-6),
    (0.514, 17e-6),
)
HIT_EFFICIENCY = 0.98
MIN_HITS = 5
MS_TERM = 0.01  # relative pT resolution from multiple scattering
TRACK_PT_MIN = 0.5  # GeV

# Builtin generics are fine at runtime on Python 3.9 (bullseye CHOS trees); `X | Y` only in annotations.
Cell = tuple[int, int]
Particle = tuple[float, float, float]  # pT (GeV), eta, phi
Tower = tuple[float, float, float]  # eta, phi, ET (GeV)


@dataclass
class Detail:
    """What `Simulator(record=True)` keeps of an event for writing it out: particles, tracker hits, calo towers."""

    particles: list[tuple[float, float, float, int, int]]  # pT, eta, phi, species index, charge (0: neutral)
    hits: list[tuple[int, float, float]]  # layer, r (m), measured phi
    towers: list[Tower]  # eta, phi, ET


@dataclass(frozen=True)
class Event:
    number: int
    n_particles: int
    n_tracks: int
    n_cells: int
    n_jets: int
    leading_jet_pt: float
    met: float
    track_pt_sum: float


class Simulator:
    """Generates and 'reconstructs' events; `checksum` is a running CRC-32 of every event's summary."""

    def __init__(
        self,
        seed: int = contract.DEFAULT_SEED,
        mean_particles: float = 50.0,
        noise_cells: int = 40,
        record: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.mean_particles = mean_particles
        self.noise_cells = noise_cells
        self.events = 0
        self.checksum = 0
        # Recording keeps each event's particles, hits and towers in `detail`; it draws no random numbers, so the
        # events (and the checksum) are the same with and without it.
        self.record = record
        self.detail = Detail([], [], [])

    def _poisson(self, mean: float) -> int:
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def _pt(self) -> float:
        """Power law above 0.5 GeV (dN/dpT ~ pT^-4), capped at 1 TeV."""
        return min(0.5 * float((1.0 - self.rng.random()) ** (-1.0 / 3.0)), 1000.0)

    def _species(self) -> tuple[str, bool]:
        u = self.rng.random()
        for name, edge, charged in SPECIES:
            if u <= edge:
                return name, charged
        return SPECIES[0][0], SPECIES[0][2]

    def _hard_scatter(self) -> list[Particle]:
        """Two back-to-back partons (pT from 20 GeV, falling) fragmenting into collimated particles."""
        rng = self.rng
        pt = min(20.0 * float((1.0 - rng.random()) ** (-1.0 / 3.0)), 2000.0)
        phi0 = rng.uniform(-math.pi, math.pi)
        out = []
        for side in (0.0, math.pi):
            eta0 = rng.uniform(-2.0, 2.0)
            remaining = pt * rng.uniform(0.85, 1.0)
            while remaining > 0.5:
                frag = max(0.5, rng.betavariate(1.0, 3.0) * remaining)
                remaining -= frag
                phi = phi0 + side + rng.gauss(0.0, 0.08)
                phi = (phi + math.pi) % (2 * math.pi) - math.pi
                out.append((frag, max(-ETA_MAX, min(ETA_MAX, eta0 + rng.gauss(0.0, 0.08))), phi))
        return out

    def track(self, pt: float, phi0: float, charge: int) -> float | None:
        """Propagate through the tracker, smear the hits, fit the curvature: the measured pT, or None."""
        rng = self.rng
        radius = pt / (0.3 * B_FIELD)  # of curvature, m
        hits: list[tuple[float, float]] = []  # (r, measured phi)
        for layer, (r, sigma) in enumerate(LAYERS):
            if r >= 2 * radius:
                break  # the particle curls up before this layer
            if rng.random() > HIT_EFFICIENCY:
                continue
            phi = phi0 + charge * math.asin(r / (2 * radius))
            hits.append((r, phi + rng.gauss(0.0, sigma) / r))
            if self.record:
                self.detail.hits.append((layer, r, hits[-1][1]))
        n = len(hits)
        if n < MIN_HITS:
            return None
        # Least squares phi = a + k*r, k = charge * 0.3 B / (2 pT) for small curvature.
        mr = sum(r for r, _ in hits) / n
        mp = sum(p for _, p in hits) / n
        sxx = sum((r - mr) ** 2 for r, _ in hits)
        k = sum((r - mr) * (p - mp) for r, p in hits) / sxx
        if k == 0.0:
            return None
        measured = 0.3 * B_FIELD / (2 * abs(k)) * rng.gauss(1.0, MS_TERM)
        return measured if measured > TRACK_PT_MIN else None

    def _deposit(self, cells: dict[Cell, float], eta: float, phi: float, energy: float, radius: int) -> None:
        ieta = min(N_ETA - 1, max(0, int((eta + ETA_MAX) / CELL_ETA)))
        iphi = int((phi + math.pi) / CELL_PHI) % N_PHI
        width2 = 2 * (0.6 * radius + 0.4) ** 2
        weights = []
        for de in range(-radius, radius + 1):
            if not 0 <= ieta + de < N_ETA:
                continue
            for dp in range(-radius, radius + 1):
                weights.append(((ieta + de, (iphi + dp) % N_PHI), math.exp(-(de * de + dp * dp) / width2)))
        total = sum(w for _, w in weights)
        for cell, w in weights:
            cells[cell] = cells.get(cell, 0.0) + energy * w / total

    def event(self) -> Event:
        rng = self.rng
        cells: dict[Cell, float] = {}
        soft = [
            (self._pt(), rng.uniform(-ETA_MAX, ETA_MAX), rng.uniform(-math.pi, math.pi))
            for _ in range(self._poisson(self.mean_particles))
        ]
        particles = self._hard_scatter() + soft
        tracks, track_pt = 0, 0.0
        if self.record:
            self.detail = Detail([], [], [])
        for pt, eta, phi in particles:
            name, charged = self._species()
            charge = 0
            if charged:
                charge = 1 if rng.random() < 0.5 else -1
                measured = self.track(pt, phi, charge)
                if measured is not None:
                    tracks += 1
                    track_pt += measured
            if self.record:
                self.detail.particles.append((pt, eta, phi, SPECIES_INDEX[name], charge))
            if name == "mu":
                self._deposit(cells, eta, phi, 2.0, 0)  # minimum ionising
                continue
            energy = pt * math.cosh(eta)
            em = name in ("e", "gamma")
            resolution = (0.10 if em else 0.50) / math.sqrt(max(energy, 0.1))
            measured_e = max(0.0, energy * rng.gauss(1.0, math.hypot(resolution, 0.02)))
            self._deposit(cells, eta, phi, measured_e, 1 if em else 2)
        for _ in range(self.noise_cells):
            cell = (rng.randrange(N_ETA), rng.randrange(N_PHI))
            cells[cell] = cells.get(cell, 0.0) + abs(rng.gauss(0.0, 0.1))
        towers = self._towers(cells)
        if self.record:
            self.detail.towers = towers
        jets = self._jets(towers)
        mex = -sum(et * math.cos(p) for _, p, et in towers)
        mey = -sum(et * math.sin(p) for _, p, et in towers)
        self.events += 1
        ev = Event(
            number=self.events,
            n_particles=len(particles),
            n_tracks=tracks,
            n_cells=len(towers),
            n_jets=len(jets),
            leading_jet_pt=jets[0] if jets else 0.0,
            met=math.hypot(mex, mey),
            track_pt_sum=track_pt,
        )
        self.checksum = zlib.crc32(_pack(ev), self.checksum)
        return ev

    @staticmethod
    def _towers(cells: dict[Cell, float]) -> list[Tower]:
        """(eta, phi, ET) of the cells above the 0.1 GeV ET threshold."""
        out = []
        for (ie, ip), energy in cells.items():
            eta = -ETA_MAX + (ie + 0.5) * CELL_ETA
            et = energy / math.cosh(eta)
            if et > 0.1:
                out.append((eta, -math.pi + (ip + 0.5) * CELL_PHI, et))
        return out

    @staticmethod
    def _jets(towers: list[Tower], radius: float = 0.4) -> list[float]:
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

    def run(self, events: int | None = None) -> Iterator[Event]:
        """Events one after another; endless when `events` is None."""
        while events is None or self.events < events:
            yield self.event()


def _pack(ev: Event) -> bytes:
    """The event summary as bytes for the checksum (floats rounded: robust to last-bit libm differences)."""
    return struct.pack(
        "<5i3d",
        ev.number,
        ev.n_particles,
        ev.n_tracks,
        ev.n_cells,
        ev.n_jets,
        round(ev.leading_jet_pt, 6),
        round(ev.met, 6),
        round(ev.track_pt_sum, 6),
    )
