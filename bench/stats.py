"""Percentiles and medians, by the nearest-rank rule (no interpolation, no numpy)."""

from __future__ import annotations

import math
import statistics
from typing import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(value: float, floor: float) -> float | None:
    return round(value / floor, 2) if floor > 0 else None
