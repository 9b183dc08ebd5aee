"""Percentiles and means over a window, from two scrapes of a cumulative Prometheus histogram.

Pure functions. A histogram here is what one process exposes for one metric (its label sets
summed): cumulative counts per upper bound ``le`` (the last bound is +Inf), the total count
and the sum of observations. The window's histogram is the difference of two scrapes.

Rules:
- a counter reset (the process restarted: any bucket, the count or the sum went down, or the
  bucket layout changed) means the window counts from zero: the delta is the current scrape,
  never a negative number;
- histograms of several processes are added up on the bucket bounds they all share (a
  cumulative count at a shared bound is exact for every process, so the sum is exact too);
- a quantile interpolates linearly inside the bucket its rank falls in (as Prometheus'
  ``histogram_quantile`` does); the first bucket starts at 0; a rank in the +Inf bucket
  answers the largest finite bound, the most the histogram can say.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts at increasing upper bounds, the last one +Inf; count and sum."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]
    count: float
    sum: float

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.cumulative) or not self.bounds:
            raise ValueError("a histogram needs one cumulative count per bound and at least +Inf")
        if not math.isinf(self.bounds[-1]):
            raise ValueError("the last bucket of a histogram must be +Inf")
        if any(b >= a for a, b in zip(self.bounds[1:], self.bounds, strict=False)):
            raise ValueError("histogram bounds must increase")

    @classmethod
    def empty(cls, bounds: Sequence[float]) -> Histogram:
        return cls(tuple(bounds), tuple(0.0 for _ in bounds), 0.0, 0.0)

    def to_json(self) -> dict[str, list[float] | float]:
        return {
            "le": [_encode(b) for b in self.bounds],
            "c": list(self.cumulative),
            "n": self.count,
            "s": self.sum,
        }

    @classmethod
    def from_json(cls, data: dict[str, list[float] | float]) -> Histogram:
        bounds = data["le"]
        cumulative = data["c"]
        assert isinstance(bounds, list) and isinstance(cumulative, list)
        return cls(
            tuple(_decode(b) for b in bounds),
            tuple(float(c) for c in cumulative),
            float(data["n"]),  # type: ignore[arg-type]
            float(data["s"]),  # type: ignore[arg-type]
        )


def _encode(bound: float) -> float:
    # JSON has no infinity: +Inf is stored as -1 (bounds of latency histograms are never negative).
    return -1.0 if math.isinf(bound) else bound


def _decode(bound: float) -> float:
    return math.inf if bound == -1.0 else float(bound)


def went_backwards(previous: Histogram, current: Histogram) -> bool:
    """True when ``current`` cannot follow ``previous`` in one process: it restarted."""
    if previous.bounds != current.bounds:
        return True
    if current.count < previous.count or current.sum < previous.sum:
        return True
    return any(c < p for p, c in zip(previous.cumulative, current.cumulative, strict=True))


def window_delta(previous: Histogram | None, current: Histogram) -> Histogram:
    """The observations made between two scrapes; a reset counts from zero, never negative."""
    if previous is None or went_backwards(previous, current):
        return current
    return Histogram(
        current.bounds,
        tuple(c - p for p, c in zip(previous.cumulative, current.cumulative, strict=True)),
        current.count - previous.count,
        current.sum - previous.sum,
    )


def merge(histograms: Iterable[Histogram]) -> Histogram | None:
    """Add histograms up on the bounds they all share (+Inf always is). None for none."""
    items = list(histograms)
    if not items:
        return None
    shared = set(items[0].bounds)
    for item in items[1:]:
        shared &= set(item.bounds)
    bounds = tuple(sorted(shared))
    totals = [0.0] * len(bounds)
    for item in items:
        at = dict(zip(item.bounds, item.cumulative, strict=True))
        for i, bound in enumerate(bounds):
            totals[i] += at[bound]
    return Histogram(bounds, tuple(totals), sum(i.count for i in items), sum(i.sum for i in items))


def quantile(q: float, histogram: Histogram) -> float | None:
    """The ``q``-quantile (0 < q < 1) of the observations, or None when there are none."""
    if not 0 < q < 1:
        raise ValueError("quantile q must be in (0, 1)")
    total = histogram.cumulative[-1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in zip(histogram.bounds, histogram.cumulative, strict=True):
        if cumulative >= rank and cumulative > lower_count:
            if math.isinf(bound):
                finite = [b for b in histogram.bounds if not math.isinf(b)]
                return finite[-1] if finite else None
            if bound <= 0:
                return bound
            fraction = (rank - lower_count) / (cumulative - lower_count)
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, cumulative
    return None  # unreachable for a well-formed histogram: +Inf holds every observation


def mean(histogram: Histogram) -> float | None:
    """Mean of the observations (sum / count), or None when there are none."""
    return histogram.sum / histogram.count if histogram.count > 0 else None
