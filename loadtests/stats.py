"""Percentiles of client-side samples (nearest rank: a value that was actually observed)."""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank `q` quantile (0 < q <= 1) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
