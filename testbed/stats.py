"""Ratios with their spread, and when a difference is real.

Repetitions run interleaved (A B A B …), so repetition i of a node and of the reference ran next to each other
and share the host's drift: the ratio is taken per pair, then summarised by its median and its spread (half the
range of the paired ratios). A difference from 1 (or from an expected ratio) is called real only when it is
larger than that spread; with a single repetition there is no spread and no verdict.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

REAL = "real"
NOISE = "within noise"
SINGLE = "one run: no spread"


@dataclass(frozen=True)
class Ratio:
    median: float
    low: float
    high: float
    n: int

    @property
    def spread(self) -> float | None:
        """Half the range of the paired ratios; None with fewer than two pairs."""
        return (self.high - self.low) / 2 if self.n >= 2 else None

    def verdict(self, against: float = 1.0) -> str:
        """Whether the ratio differs from `against` by more than its spread."""
        if self.spread is None:
            return SINGLE
        return REAL if abs(self.median - against) > self.spread else NOISE


def paired_ratio(values: Sequence[float | None], reference: Sequence[float | None]) -> Ratio:
    """Median and range of values[i] / reference[i] over the repetitions both have (None: a failed repetition;
    reference values > 0)."""
    pairs = [v / r for v, r in zip(values, reference, strict=False) if v is not None and r]
    if not pairs:
        raise ValueError("no repetition with a positive reference value to pair with")
    return Ratio(statistics.median(pairs), min(pairs), max(pairs), len(pairs))
