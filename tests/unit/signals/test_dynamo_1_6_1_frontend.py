"""The frontend parser on ``/metrics`` text captured from a real Dynamo 1.6.1 frontend.

The fixtures come from ``python -m devtools.capture_dynamo_metrics`` (a frontend with
``--router-mode kv``, a decode and a prefill mocker, a burst of 48 chat completions); the
numbers asserted here are the ones the frontend printed in those files.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from dynamo_ecs import metric_names as names
from dynamo_ecs.signals.base import Datum
from dynamo_ecs.signals.prometheus_scrape import (
    INPUT_TOKENS,
    ITL,
    OUTPUT_TOKENS,
    TTFT,
    PreviousScrape,
    compute_window,
    parse_metrics_text,
    sample_to_state,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / f"dynamo_1_6_1_{name}.txt").read_text()


def bucket_around(value: float, bounds: tuple[float, ...]) -> tuple[float, float]:
    return next((lo, hi) for lo, hi in itertools.pairwise(bounds) if lo < value <= hi)


def published(window_data: list[Datum]) -> dict[tuple[str, str], float]:
    return {(d.metric, d.service): d.value for d in window_data}


def test_decode_bound_burst_queues_in_decode_dispatch_the_stage_the_old_definition_left_out() -> None:
    # Given the frontend 1.5 s into a burst of 48 requests, decode the bottleneck
    sample = parse_metrics_text(fixture("tcp_frontend_loaded"))
    # Then the queue is the 40 requests in dispatch (phase decode), none on the prefill side
    assert sample.queue is not None
    assert (sample.queue.frontend, sample.queue.prefill) == (40, 0)
    assert sample.active == 44
    assert (sample.requests_started, sample.requests_total) == (48, 4)
    # and the older queued_requests gauge (until the first token) agrees on this load
    assert 'dynamo_frontend_queued_requests{model="test-model"} 40' in fixture("tcp_frontend_loaded")


def test_prefill_bound_burst_is_prefill_side_queue_depth_and_the_router_queue_holds_it() -> None:
    # Given prefill the bottleneck and the KV router's queue on (--router-queue-threshold 0)
    sample = parse_metrics_text(fixture("tcp_prefill_bound_frontend_loaded"))
    # Then 44 wait in route and 1 in dispatch, all in the prefill phase
    assert sample.queue is not None
    assert (sample.queue.frontend, sample.queue.prefill) == (0, 45)
    # and the router's own queue is the route stage's 44, by worker type
    assert sample.router_queued == {"frontend": 0, "prefill": 44}
    data = published(compute_window({"t": sample}, {}, 0.0, 300).data())
    assert data[(names.QUEUE_DEPTH, "prefill")] == 45
    assert data[(names.QUEUE_DEPTH, "frontend")] == 0
    assert data[(names.QUEUE_DEPTH_TOTAL, "frontend")] == 45
    assert data[(names.ROUTER_QUEUED_REQUESTS, "prefill")] == 44


def test_without_a_prefill_worker_requests_are_refused_and_reach_no_stage() -> None:
    # Given a disaggregated frontend with only its decode worker, after 5 refused requests (503)
    sample = parse_metrics_text(fixture("tcp_frontend_no_prefill"))
    # Then no queue gauge counted them and no request started: only the Unavailable failures did
    assert sample.queue is None
    assert sample.requests_started is None
    assert sample.unavailable_total == 5


def test_refused_requests_become_a_rate_after_a_baseline() -> None:
    # Given the same frontend scraped 30 s earlier, before any request (nothing failed yet)
    refused = parse_metrics_text(fixture("tcp_frontend_no_prefill"))
    previous = {"t": PreviousScrape.from_state({"at": 1000.0, "h": {}, "r": None, "s": None, "u": 0.0})}
    # When the window is computed
    window = compute_window({"t": refused}, previous, now=1030.0, max_window_s=300)
    # Then 5 refusals over 30 s are the rate; no request started
    data = published(window.data())
    assert data[(names.UNAVAILABLE_REQUEST_RATE, "frontend")] == pytest.approx(5 / 30, abs=1e-6)
    assert data[(names.REQUEST_RATE, "frontend")] == 0


def test_request_rate_counts_starts_and_latency_means_come_from_the_real_histograms() -> None:
    # Given the frontend during and after the burst, 10 s apart
    loaded = parse_metrics_text(fixture("tcp_frontend_loaded"))
    after = parse_metrics_text(fixture("tcp_frontend_after"))
    previous = {"t": PreviousScrape.from_state(sample_to_state(loaded, 1000.0))}
    # When the window is computed
    window = compute_window({"t": after}, previous, now=1010.0, max_window_s=300)
    # Then every request had started already during the burst: the arrival rate is 0,
    assert window.request_rate == 0
    # and TTFT / ITL of the requests that finished in between have percentiles and means
    data = published(window.data())
    ttft = window.latency[TTFT]
    assert ttft.count == after.histograms[TTFT].count - loaded.histograms[TTFT].count > 0
    assert data[(names.TTFT_MEAN, "frontend")] == pytest.approx(
        1000 * (after.histograms[TTFT].sum - loaded.histograms[TTFT].sum) / ttft.count, abs=0.001
    )
    for metric in (names.TTFT_P50, names.TTFT_P90, names.TTFT_P99, names.ITL_MEAN, names.ITL_P90):
        assert data[(metric, "frontend")] > 0
    assert window.latency[ITL].count > 0


def test_real_bucket_layout_is_coarse_around_the_planner_targets() -> None:
    # 1.6.1's bounds: 0, then log-spaced with two significant figures; +Inf last
    sample = parse_metrics_text(fixture("tcp_frontend_after"))
    ttft, itl = sample.histograms[TTFT], sample.histograms[ITL]
    assert (ttft.bounds[1], ttft.bounds[-2], len(ttft.bounds) - 1) == (0.0022, 480.0, 18)
    assert (itl.bounds[1], itl.bounds[-2], len(itl.bounds) - 1) == (0.0018, 80.0, 20)
    # A p90 near 500 ms TTFT / 50 ms ITL is interpolated inside one wide bucket; a mean is exact
    assert bucket_around(0.5, ttft.bounds) == (0.47, 1.0)
    assert bucket_around(0.05, itl.bounds) == (0.035, 0.064)


def test_token_rates_come_from_the_real_sequence_length_histograms_sums() -> None:
    # Given the frontend during and after the burst of 48 requests, 10 s apart
    loaded = parse_metrics_text(fixture("tcp_frontend_loaded"))
    after = parse_metrics_text(fixture("tcp_frontend_after"))
    # Then the sums are the frontend's own: 8 prompts counted mid-burst (1,616 tokens), all 48 after
    assert loaded.token_sums == {INPUT_TOKENS: 1616, OUTPUT_TOKENS: 240}
    assert after.token_sums == {INPUT_TOKENS: 9696, OUTPUT_TOKENS: 2880}
    # and the workers' router histograms of the same lengths are not counted a second time
    assert "dynamo_component_router_input_sequence_tokens_sum" in fixture("tcp_frontend_after")
    # When the window is computed
    previous = {"t": PreviousScrape.from_state(sample_to_state(loaded, 1000.0))}
    data = published(compute_window({"t": after}, previous, now=1010.0, max_window_s=300).data())
    # Then the token rates are the sums' increase over the window, measured at the frontend
    assert data[(names.INPUT_TOKEN_RATE, "frontend")] == pytest.approx((9696 - 1616) / 10)
    assert data[(names.OUTPUT_TOKEN_RATE, "frontend")] == pytest.approx((2880 - 240) / 10)


def test_an_idle_frontend_has_no_token_histogram_and_publishes_no_token_rate() -> None:
    # Given a frontend that has served nothing, scraped twice (1.6.1 creates the histograms
    # with the first request)
    idle = parse_metrics_text(fixture("tcp_frontend_idle"))
    assert idle.token_sums == {}
    previous = {"t": PreviousScrape.from_state(sample_to_state(idle, 1000.0))}
    data = published(compute_window({"t": idle}, previous, now=1010.0, max_window_s=300).data())
    # Then no token rate is published (no data is not zero), while the request rate is
    assert (names.INPUT_TOKEN_RATE, "frontend") not in data
    assert (names.OUTPUT_TOKEN_RATE, "frontend") not in data
    # When its first requests are served, the histograms count from zero
    loaded = parse_metrics_text(fixture("tcp_frontend_loaded"))
    data = published(compute_window({"t": loaded}, previous, now=1010.0, max_window_s=300).data())
    assert data[(names.INPUT_TOKEN_RATE, "frontend")] == pytest.approx(1616 / 10)
    assert data[(names.OUTPUT_TOKEN_RATE, "frontend")] == pytest.approx(240 / 10)
