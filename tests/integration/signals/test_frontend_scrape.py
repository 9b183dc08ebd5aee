"""Frontend scrapes over real HTTP: percentiles, bad targets, counter resets."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import pytest

from devtools.dynamo_frontend import ITL_BUCKETS, TTFT_BUCKETS, Behaviour, MetricsServer
from devtools.services import LOOPBACK, free_port
from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.signals.base import RoundContext, SourceReading
from dynamo_ecs.signals.discovery import ScrapeTarget
from dynamo_ecs.signals.prometheus_scrape import FrontendSource

StartServer = Callable[[Behaviour], MetricsServer]
# A scrape's time-out is generous: on a busy two-core machine a healthy answer has taken over
# 0.5 s (a fresh-clone CI run lost one that way). Only the hanging target's test waits it out.
CONFIG = DeploymentConfig.model_validate({"signals": {"scrape_timeout_s": 10.0}})
HANG_CONFIG = DeploymentConfig.model_validate({"signals": {"scrape_timeout_s": 2.0}})


def target(server: MetricsServer, key: str) -> ScrapeTarget:
    return ScrapeTarget(key, server.url)


def true_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def bucket_of(value: float, bounds: list[float]) -> int:
    return next((i for i, b in enumerate(bounds) if value <= b), len(bounds))


def within_one_bucket(estimate_ms: float, truth_s: float, bounds: list[float]) -> bool:
    return abs(bucket_of(estimate_ms / 1000.0, bounds) - bucket_of(truth_s, bounds)) <= 1


def values(reading: SourceReading) -> dict[str, float]:
    return {d.metric: d.value for d in reading.data if d.service == "frontend"}


def test_percentiles_over_the_window_are_within_one_bucket_of_the_truth(metrics_server: StartServer) -> None:
    # Given two frontends that served traffic before the first scrape
    rng = random.Random(42)
    servers = [metrics_server("ok"), metrics_server("ok")]
    for server in servers:
        server.metrics.observe(ttft=[rng.uniform(2, 5) for _ in range(200)], requests=200)
    source = FrontendSource(CONFIG, targets=[target(s, f"task-{i}") for i, s in enumerate(servers)])
    first = source.read(RoundContext(now=1000.0, cluster=None), None)
    assert first.errors == 0 and names.TTFT_P90 not in values(first)  # first sight: a baseline

    # When they serve known requests during the next window
    ttft = [rng.lognormvariate(math.log(0.3), 0.6) for _ in range(400)]
    itl = [rng.lognormvariate(math.log(0.02), 0.4) for _ in range(4000)]
    servers[0].metrics.observe(ttft=ttft[:150], itl=itl[:1000], requests=150)
    servers[1].metrics.observe(ttft=ttft[150:], itl=itl[1000:], requests=250)
    second = source.read(RoundContext(now=1060.0, cluster=None), first.state)

    # Then p50/p90/p99 are within one bucket of the true values, the mean is exact
    got = values(second)
    for q, metric in ((0.5, names.TTFT_P50), (0.9, names.TTFT_P90), (0.99, names.TTFT_P99)):
        assert within_one_bucket(got[metric], true_quantile(ttft, q), TTFT_BUCKETS), metric
    for q, metric in ((0.5, names.ITL_P50), (0.9, names.ITL_P90), (0.99, names.ITL_P99)):
        assert within_one_bucket(got[metric], true_quantile(itl, q), ITL_BUCKETS), metric
    assert got[names.TTFT_MEAN] == pytest.approx(sum(ttft) / len(ttft) * 1000, rel=1e-6)
    assert got[names.REQUEST_RATE] == pytest.approx(400 / 60)


def test_bad_targets_are_skipped_and_counted(metrics_server: StartServer) -> None:
    # Given a healthy frontend, one that hangs, one that answers 500, one that answers HTML
    # and an address where nothing listens
    healthy = metrics_server("ok")
    healthy.metrics.set_load(active=3, queued_by_stage={("route", "prefill"): 2})
    bad = [metrics_server(b) for b in ("hang", "error500", "garbage")]
    refused = ScrapeTarget("task-refused", f"http://{LOOPBACK}:{free_port()}/metrics")
    targets = [target(healthy, "task-ok"), *(target(s, f"task-{s.behaviour}") for s in bad), refused]
    # When one round scrapes them
    reading = FrontendSource(HANG_CONFIG, targets=targets).read(
        RoundContext(now=time.time(), cluster=None), None
    )
    # Then the healthy one counts, the four others are scrape errors, and nothing raised
    assert (reading.targets, reading.errors) == (5, 4)
    assert values(reading)[names.ACTIVE_REQUESTS] == 3
    prefill = {d.metric: d.value for d in reading.data if d.service == "prefill"}
    assert (values(reading)[names.QUEUE_DEPTH], prefill[names.QUEUE_DEPTH]) == (0, 2)
    notes = " ".join(reading.notes)
    assert "no complete answer" in notes and "HTTP 500" in notes and "not Prometheus text" in notes
    assert "refused" in notes
    assert reading.state is not None and list(reading.state["targets"]) == ["task-ok"]


def test_counter_reset_counts_from_zero(metrics_server: StartServer) -> None:
    # Given a frontend with a long history
    server = metrics_server("ok")
    server.metrics.observe(ttft=[0.1] * 1000, requests=1000)
    source = FrontendSource(CONFIG, targets=[target(server, "task-a")])
    first = source.read(RoundContext(now=0.0, cluster=None), None)
    # When its process restarts and serves 6 slow requests before the next scrape
    server.restart_process()
    server.metrics.observe(ttft=[3.0] * 6, requests=6)
    second = source.read(RoundContext(now=60.0, cluster=None), first.state)
    # Then the window holds those 6 requests only, nothing negative
    got = values(second)
    assert got[names.REQUEST_RATE] == pytest.approx(6 / 60)
    assert got[names.TTFT_MEAN] == pytest.approx(3000.0)
    assert 2200 <= got[names.TTFT_P50] <= 4700
    assert any("counter reset" in note for note in second.notes)


def test_a_failed_target_keeps_its_last_good_scrape(metrics_server: StartServer) -> None:
    server = metrics_server("ok")
    server.metrics.observe(ttft=[0.1] * 10, requests=10)
    source = FrontendSource(CONFIG, targets=[target(server, "task-a")])
    first = source.read(RoundContext(now=0.0, cluster=None), None)
    server.behaviour = "error500"
    second = source.read(RoundContext(now=60.0, cluster=None), first.state)
    assert second.state == first.state
    server.behaviour = "ok"
    server.metrics.observe(ttft=[0.1] * 12, requests=12)
    third = source.read(RoundContext(now=120.0, cluster=None), second.state)
    assert third.errors == 0, third.notes
    assert values(third)[names.REQUEST_RATE] == pytest.approx(12 / 120)
