"""NATS core's view of the workers, on /connz captured next to a real Dynamo 1.6.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.signals.collector import default_collector
from dynamo_ecs.signals.nats_core import NotConnzDocumentError, parse_connz, worker_subscriptions

FIXTURES = Path(__file__).parent / "fixtures"
PREFIXES = DeploymentConfig().signals.nats_request_subjects


def connz(scenario: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (FIXTURES / f"dynamo_1_6_1_{scenario}_nats_connz_loaded.json").read_text()
    )
    return document


def test_over_the_nats_request_plane_each_worker_holds_one_request_subscription_and_no_backlog() -> None:
    # Given NATS under a burst of 48 requests with --request-plane nats (decode the bottleneck)
    found = worker_subscriptions([connz("nats")], PREFIXES)
    # Then NATS holds nothing for the workers: the 40 waiting requests sit in the decode engine
    assert found.subscriptions == {"frontend": 1, "prefill": 1}
    assert found.pending_bytes == {"frontend": 0, "prefill": 0}
    published = {(d.metric, d.service): d.value for d in found.data()}
    assert published[(names.NATS_WORKER_SUBSCRIPTIONS, "frontend")] == 1
    assert published[(names.NATS_WORKER_PENDING_BYTES, "prefill")] == 0


@pytest.mark.parametrize("scenario", ["tcp", "tcp_events_nats"])
def test_over_the_tcp_request_plane_no_worker_subscribes_for_requests(scenario: str) -> None:
    # tcp_events_nats, the default specs' planes: the frontend's event subscriptions
    # (namespace.dynamo.component.<component>.endpoint.generate.kv_metrics, ...) are no requests
    found = worker_subscriptions([connz(scenario)], PREFIXES)
    assert found.subscriptions == {"frontend": 0, "prefill": 0}


def test_pending_bytes_of_a_slow_worker_connection_count_once_per_connection() -> None:
    document = connz("nats")
    worker = next(
        c for c in document["connections"]
        if any(s["subject"].startswith("dynamo_backend.generate-") for s in c["subscriptions_list_detail"])
    )  # fmt: skip
    worker["pending_bytes"] = 4096
    views = [document, {"server_id": "other", "connections": []}]  # a second cluster server
    assert worker_subscriptions(views, PREFIXES).pending_bytes["frontend"] == 4096


@pytest.mark.parametrize("body", [b"<html></html>", b'{"server_id": "x"}', b"\xff"])
def test_answers_that_are_not_connz_documents_are_refused(body: bytes) -> None:
    with pytest.raises(NotConnzDocumentError):
        parse_connz(body)


def test_nats_sources_are_built_only_when_asked_for() -> None:
    default = {s.name for s in default_collector(DeploymentConfig()).sources}
    assert default == {"frontend", "gpu", "workers_frontend", "workers_prefill"}
    asked = DeploymentConfig.model_validate(
        {"signals": {"jetstream_streams": ["mine"], "nats_request_plane": True}}
    )
    assert {"jetstream", "nats_core"} <= {s.name for s in default_collector(asked).sources}
