"""Figures the attack suite and the benchmarks report."""

from __future__ import annotations


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank value at `share` (0 to 1) of `values`; 0.0 for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))] if ordered else 0.0
