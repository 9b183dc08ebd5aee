"""Percentiles and means from cumulative histogram deltas (pure)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo_ecs.signals.histogram import Histogram, mean, merge, quantile, went_backwards, window_delta

BOUNDS = (0.0, 0.1, 0.2, 0.5, 1.0, math.inf)


def cumulative(values: list[float], bounds: tuple[float, ...] = BOUNDS) -> Histogram:
    counts = tuple(float(sum(1 for v in values if v <= b)) for b in bounds)
    return Histogram(bounds, counts, float(len(values)), float(sum(values)))


def bucket_index(value: float, bounds: tuple[float, ...] = BOUNDS) -> int:
    return next(i for i, b in enumerate(bounds) if value <= b)


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    # Given 10 observations evenly in (0.1, 0.2]
    histogram = cumulative([0.11 + i * 0.009 for i in range(10)])
    # Then p50 is half-way through that bucket and p90 nine tenths of the way
    assert quantile(0.5, histogram) == pytest.approx(0.15)
    assert quantile(0.9, histogram) == pytest.approx(0.19)


def test_rank_in_the_inf_bucket_answers_the_largest_finite_bound() -> None:
    histogram = cumulative([5.0, 6.0, 7.0])
    assert quantile(0.99, histogram) == 1.0


def test_no_observations_means_no_value_not_zero() -> None:
    empty = Histogram.empty(BOUNDS)
    assert quantile(0.9, empty) is None
    assert mean(empty) is None


def test_window_delta_subtracts_the_previous_scrape() -> None:
    before = cumulative([0.05, 0.15])
    after = cumulative([0.05, 0.15, 0.4, 0.45])
    delta = window_delta(before, after)
    assert delta.count == 2
    assert delta.sum == pytest.approx(0.85)
    assert quantile(0.5, delta) == pytest.approx(0.35)  # both new ones are in (0.2, 0.5]


def test_counter_reset_counts_from_zero_never_negative() -> None:
    # Given a process that had 100 observations, restarted, and has 3 now
    before = cumulative([0.3] * 100)
    after = cumulative([0.05, 0.05, 0.9])
    assert went_backwards(before, after)
    # When the window is computed
    delta = window_delta(before, after)
    # Then it holds exactly the 3 observations since the restart
    assert delta == after
    assert all(c >= 0 for c in delta.cumulative)


def test_a_changed_bucket_layout_is_a_restart() -> None:
    before = cumulative([0.3])
    after = cumulative([0.3, 0.4], bounds=(0.0, 0.25, 0.5, math.inf))
    assert window_delta(before, after) == after


def test_merge_adds_processes_on_their_shared_bounds() -> None:
    one = cumulative([0.15, 0.6])
    other = cumulative([0.15, 0.3], bounds=(0.0, 0.2, 0.5, math.inf))
    merged = merge([one, other])
    assert merged is not None
    assert merged.bounds == (0.0, 0.2, 0.5, math.inf)
    assert merged.cumulative == (0.0, 2.0, 3.0, 4.0)
    assert merged.count == 4
    assert merge([]) is None


def test_json_round_trip_keeps_infinity() -> None:
    histogram = cumulative([0.1, 3.0])
    assert Histogram.from_json(histogram.to_json()) == histogram


def test_malformed_histograms_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\+Inf"):
        Histogram((0.1, 0.2), (1.0, 2.0), 2.0, 0.3)
    with pytest.raises(ValueError, match="increase"):
        Histogram((0.2, 0.1, math.inf), (1.0, 2.0, 2.0), 2.0, 0.3)


observations = st.lists(st.floats(min_value=0.0, max_value=2.0, allow_nan=False), min_size=1, max_size=200)


@given(observations, st.sampled_from([0.5, 0.9, 0.99]))
def test_quantile_lies_in_the_bucket_of_the_true_quantile(values: list[float], q: float) -> None:
    histogram = cumulative(values)
    estimate = quantile(q, histogram)
    assert estimate is not None
    truth = sorted(values)[max(0, math.ceil(q * len(values)) - 1)]
    true_bucket = bucket_index(truth)
    finite = [b for b in BOUNDS if not math.isinf(b)]
    upper = BOUNDS[true_bucket] if not math.isinf(BOUNDS[true_bucket]) else finite[-1]
    lower = BOUNDS[true_bucket - 1] if true_bucket > 0 else 0.0
    assert lower - 1e-9 <= estimate <= upper + 1e-9


@given(observations, observations)
def test_window_delta_is_never_negative(first: list[float], second: list[float]) -> None:
    before, after = cumulative(first), cumulative(second)
    delta = window_delta(before, after)
    assert delta.count >= 0 and delta.sum >= -1e-9
    assert all(c >= 0 for c in delta.cumulative)


def test_delta_of_growing_process_equals_the_new_observations() -> None:
    rng = random.Random(7)
    old = [rng.uniform(0, 1.5) for _ in range(50)]
    new = [rng.uniform(0, 1.5) for _ in range(30)]
    delta = window_delta(cumulative(old), cumulative(old + new))
    assert delta.cumulative == cumulative(new).cumulative
    assert delta.count == 30
