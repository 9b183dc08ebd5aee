"""The worker parser on system-port ``/metrics`` captured from real Dynamo 1.6.1 mockers."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.signals.base import RoundContext
from dynamo_ecs.signals.collector import default_collector
from dynamo_ecs.signals.prometheus_scrape import NotPrometheusTextError
from dynamo_ecs.signals.workers import WorkerSource, parse_worker_metrics, worker_data

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / f"dynamo_1_6_1_{name}.txt").read_text()


def test_a_busy_decode_worker_s_queue_is_its_engine_s_waiting_requests() -> None:
    # Given the decode mocker (4 sequences at a time) 1.5 s into a burst of 48
    sample = parse_worker_metrics(fixture("tcp_worker_decode_loaded"))
    # Then 40 wait in its engine (the work handler's own queue is empty) of the 44 it holds
    assert (sample.queue_depth, sample.active) == (40, 44)


def test_the_prefill_mocker_has_no_engine_gauge_only_the_handler_queue() -> None:
    sample = parse_worker_metrics(fixture("tcp_prefill_bound_worker_prefill_loaded"))
    # The router queued the backlog (44): the worker holds 1, queues nothing itself
    assert (sample.queue_depth, sample.active) == (0, 1)


def test_worker_data_sums_the_service_s_workers() -> None:
    busy = parse_worker_metrics(fixture("tcp_worker_decode_loaded"))
    done = parse_worker_metrics(fixture("tcp_worker_decode_after"))
    data = {(d.metric, d.service): d.value for d in worker_data("frontend", [busy, done])}
    assert data == {
        (names.WORKER_QUEUE_DEPTH, "frontend"): 40,
        (names.WORKER_ACTIVE_REQUESTS, "frontend"): 44,
    }
    assert worker_data("prefill", []) == []  # no worker read: no value, not zero


def test_a_frontend_body_is_not_a_worker_queue() -> None:
    sample = parse_worker_metrics(fixture("tcp_frontend_loaded"))
    assert (sample.queue_depth, sample.active) == (None, None)
    with pytest.raises(NotPrometheusTextError):
        parse_worker_metrics("<html>no</html>")


def test_the_worker_source_is_built_only_for_a_configured_system_port() -> None:
    config = DeploymentConfig.model_validate({"prefill": {"system_port": 9090}})
    names_of = [s.name for s in default_collector(config).sources]
    assert "workers_prefill" in names_of and "workers_frontend" not in names_of
    with pytest.raises(ValueError, match=r"frontend\.system_port"):
        WorkerSource(config, "frontend")
    reading = WorkerSource(config, "prefill").read(RoundContext(now=0.0, cluster=None), None)
    assert (reading.targets, reading.errors, reading.data) == (1, 1, [])  # no cluster: one error
