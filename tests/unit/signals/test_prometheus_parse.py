"""Dynamo frontend Prometheus text -> per-target samples -> window figures (pure)."""

from __future__ import annotations

import pytest

from devtools.dynamo_frontend import TTFT_BUCKETS, FrontendMetrics
from dynamo_ecs import metric_names as names
from dynamo_ecs.signals.prometheus_scrape import (
    ITL,
    TTFT,
    NotPrometheusTextError,
    PreviousScrape,
    compute_window,
    parse_metrics_text,
    sample_to_state,
)


def text(metrics: FrontendMetrics) -> str:
    return metrics.text().decode()


def test_newer_names_queue_depth_counts_every_queue_stage_split_by_phase() -> None:
    metrics = FrontendMetrics(newer_names=True)
    metrics.set_load(
        active=7,
        queued_by_stage={
            ("preprocess", ""): 2,
            ("route", "prefill"): 3,
            ("route", "decode"): 1,
            ("dispatch", "decode"): 5,
        },
    )
    sample = parse_metrics_text(text(metrics))
    assert sample.queue is not None
    assert (sample.queue.frontend, sample.queue.prefill, sample.queue.total) == (8, 3, 11)
    assert sample.active == 7


def test_older_names_are_read_too() -> None:
    metrics = FrontendMetrics(newer_names=False)
    metrics.set_load(active=4, queued_by_stage={("", ""): 9})
    sample = parse_metrics_text(text(metrics))
    assert sample.queue is not None
    assert (sample.active, sample.queue.frontend, sample.queue.prefill) == (4, 9, None)
    published = {(d.metric, d.service) for d in compute_window({"a": sample}, {}, 0.0, 300).data()}
    assert (names.QUEUE_DEPTH, "frontend") in published
    assert (names.QUEUE_DEPTH, "prefill") not in published  # no phase split: unknown, not zero


def test_histograms_sum_label_sets_and_keep_dynamo_buckets() -> None:
    metrics = FrontendMetrics()
    metrics.observe(ttft=[0.05, 0.3], requests=2, model="a")
    metrics.observe(ttft=[0.3], requests=1, model="b")
    sample = parse_metrics_text(text(metrics))
    ttft = sample.histograms[TTFT]
    assert ttft.count == 3
    assert list(ttft.bounds[:-1]) == TTFT_BUCKETS
    assert sample.requests_total == 3
    assert ITL not in sample.histograms  # never observed: Dynamo exposes no series yet


def test_text_without_type_lines_parses_the_same() -> None:
    metrics = FrontendMetrics()
    metrics.observe(ttft=[0.2], requests=1)
    bare = "\n".join(line for line in text(metrics).splitlines() if not line.startswith("#"))
    assert parse_metrics_text(bare) == parse_metrics_text(text(metrics))


@pytest.mark.parametrize(
    "body",
    ["<html><body>It works</body></html>", '{"status": "ok"}', "", "Internal Server Error", "OK"],
)
def test_bodies_that_are_not_prometheus_text_are_refused(body: str) -> None:
    with pytest.raises(NotPrometheusTextError):
        parse_metrics_text(body)


def test_window_rate_is_per_target_over_its_own_window_and_first_sight_is_a_baseline() -> None:
    # Given two targets: "a" scraped 60 s ago with 100 requests, "b" never seen
    a_then, a_now, b_now = FrontendMetrics(), FrontendMetrics(), FrontendMetrics()
    a_then.observe(ttft=[0.1] * 10, requests=100)
    a_now.observe(ttft=[0.1] * 10 + [0.3] * 4, requests=160)
    b_now.observe(ttft=[9.0] * 50, requests=500)
    previous = {"a": PreviousScrape.from_state(sample_to_state(parse_metrics_text(text(a_then)), 1000.0))}
    samples = {"a": parse_metrics_text(text(a_now)), "b": parse_metrics_text(text(b_now))}
    # When the window is computed at t=1060
    window = compute_window(samples, previous, now=1060.0, max_window_s=300)
    # Then a's 60 new requests over 60 s make 1/s; b only sets its baseline
    assert window.request_rate == pytest.approx(1.0)
    assert window.baseline_targets == ["b"]
    assert window.latency[TTFT].count == 4
    data = {d.metric: d for d in window.data()}
    assert data[names.TTFT_P50].value == pytest.approx(0.22 * 1000 + (0.47 - 0.22) * 1000 * 0.5)
    assert data[names.TTFT_P50].unit == "Milliseconds"
    assert data[names.REQUEST_RATE].unit == "Count/Second"
    assert names.ITL_P50 not in data  # no observation: no value rather than zero


def test_a_previous_scrape_older_than_max_window_is_only_a_baseline() -> None:
    metrics = FrontendMetrics()
    metrics.observe(ttft=[0.1], requests=1)
    sample = parse_metrics_text(text(metrics))
    previous = {"a": PreviousScrape.from_state(sample_to_state(sample, 0.0))}
    window = compute_window({"a": sample}, previous, now=1000.0, max_window_s=300)
    assert window.baseline_targets == ["a"]
    assert window.request_rate is None
    assert window.latency == {}


def test_counter_reset_counts_from_zero_and_is_reported() -> None:
    before, after = FrontendMetrics(), FrontendMetrics()
    before.observe(ttft=[0.1] * 500, requests=500)
    after.observe(ttft=[0.3] * 3, requests=3)  # the process restarted
    previous = {"a": PreviousScrape.from_state(sample_to_state(parse_metrics_text(text(before)), 0.0))}
    window = compute_window({"a": parse_metrics_text(text(after))}, previous, now=60.0, max_window_s=300)
    assert window.reset_targets == ["a"]
    assert window.request_rate == pytest.approx(3 / 60)
    assert window.latency[TTFT].count == 3


def test_no_new_request_publishes_rate_zero_and_no_latency() -> None:
    metrics = FrontendMetrics()
    metrics.observe(ttft=[0.1], requests=1)
    sample = parse_metrics_text(text(metrics))
    previous = {"a": PreviousScrape.from_state(sample_to_state(sample, 0.0))}
    window = compute_window({"a": sample}, previous, now=60.0, max_window_s=300)
    published = {d.metric: d.value for d in window.data()}
    assert published[names.REQUEST_RATE] == 0
    assert not any(m.startswith("TimeToFirstToken") for m in published)


def test_a_frontend_that_served_nothing_yet_is_a_valid_target() -> None:
    # Dynamo declares labeled families before their first series exists: TYPE lines, no samples
    sample = parse_metrics_text(text(FrontendMetrics()))
    assert sample.histograms == {} and sample.requests_total is None
    with pytest.raises(NotPrometheusTextError):
        parse_metrics_text("# just a comment\n")


def test_token_rates_add_label_sets_and_targets_over_their_own_windows() -> None:
    # Given frontend "a" scraped 60 s ago and now, two models' prompts in between
    a_then, a_now = FrontendMetrics(), FrontendMetrics()
    a_then.observe(requests=2, input_tokens=[1000, 500], output_tokens=[100, 100])
    a_now.observe(requests=2, input_tokens=[1000, 500], output_tokens=[100, 100])
    a_now.observe(requests=3, input_tokens=[2000, 2000], output_tokens=[300], model="b")
    a_now.observe(requests=1, input_tokens=[2000], output_tokens=[300, 300])
    # and frontend "b" scraped 30 s ago with no request yet, now with one
    b_then, b_now = FrontendMetrics(), FrontendMetrics()
    b_now.observe(requests=1, input_tokens=[600], output_tokens=[60])
    previous = {
        "a": PreviousScrape.from_state(sample_to_state(parse_metrics_text(text(a_then)), 1000.0)),
        "b": PreviousScrape.from_state(sample_to_state(parse_metrics_text(text(b_then)), 1030.0)),
    }
    samples = {"a": parse_metrics_text(text(a_now)), "b": parse_metrics_text(text(b_now))}
    # When the window is computed at t=1060
    data = {d.metric: d for d in compute_window(samples, previous, now=1060.0, max_window_s=300).data()}
    # Then each target's increase over its own window, added: a 6,000/60 s, b 600/30 s
    assert data[names.INPUT_TOKEN_RATE].value == pytest.approx(6000 / 60 + 600 / 30)
    assert data[names.OUTPUT_TOKEN_RATE].value == pytest.approx(900 / 60 + 60 / 30)
    assert (data[names.INPUT_TOKEN_RATE].service, data[names.INPUT_TOKEN_RATE].unit) == (
        "frontend",
        "Count/Second",
    )


def test_a_restart_counts_token_sums_from_zero_even_past_the_old_sums() -> None:
    # Given a frontend that restarted between scrapes and has already served longer prompts
    before, after = FrontendMetrics(), FrontendMetrics()
    before.observe(ttft=[0.1] * 5, requests=5, input_tokens=[100] * 5)
    after.observe(ttft=[0.1] * 2, requests=2, input_tokens=[4000, 4000])
    previous = {"a": PreviousScrape.from_state(sample_to_state(parse_metrics_text(text(before)), 0.0))}
    window = compute_window({"a": parse_metrics_text(text(after))}, previous, now=60.0, max_window_s=300)
    # Then the restart is seen (its request counter went down) and the tokens count from zero
    assert window.reset_targets == ["a"]
    assert window.token_rates[names.INPUT_TOKEN_RATE] == pytest.approx(8000 / 60)


def test_a_scrape_record_from_before_token_sums_is_their_baseline() -> None:
    # Given the previous scrape stored by a collector that did not keep token sums
    metrics = FrontendMetrics()
    metrics.observe(requests=1, input_tokens=[500])
    stored = sample_to_state(parse_metrics_text(text(metrics)), 0.0)
    del stored["t"]
    metrics.observe(requests=1, input_tokens=[500])
    window = compute_window(
        {"a": parse_metrics_text(text(metrics))}, {"a": PreviousScrape.from_state(stored)}, 60.0, 300
    )
    # Then the request rate is published, the token rates only from the next round on
    assert window.request_rate == pytest.approx(1 / 60)
    assert window.token_rates == {}
