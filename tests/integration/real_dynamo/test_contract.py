"""What the operator and the template assume of Dynamo, checked on the real 1.6.1 processes.

Metrics the collector reads exist with the labels it expects; health endpoints behave as
measured (FACTS.md §3): the frontend's /health is 200 even with no worker, /live is 200 while
the process is up, ``model_ready`` follows whether the model can serve, and a worker's
system /health turns 200 only with DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS (the stack's GPU
container checks rely on it: 1.6.1 logs the variable as deprecated, yet acts on it).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.local_ecs.client import chat, first_success, get
from devtools.local_ecs.deployment import MODEL, LocalDeployment, local_deployment
from devtools.services import MotoServer
from dynamo_ecs import metric_names as names
from dynamo_ecs.signals.prometheus_scrape import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    PreviousScrape,
    compute_window,
    parse_metrics_text,
    sample_to_state,
)
from dynamo_ecs.specs import load_default_spec

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time

SYSTEM_PORT = 9090


def with_system_port(role: str, endpoint_health: bool) -> dict[str, Any]:
    spec = copy.deepcopy(load_default_spec(role))  # type: ignore[arg-type]
    environment = spec["containerDefinitions"][0]["environment"]
    environment.append({"name": "DYN_SYSTEM_PORT", "value": str(SYSTEM_PORT)})
    if endpoint_health:
        environment.append({"name": "DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS", "value": '["generate"]'})
    return spec


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Iterator[LocalDeployment]:
    """One deployment for the module: prefill with its system port and endpoint health on."""
    moto.reset()
    import os

    from devtools.services import aws_test_environment
    from dynamo_ecs import aws

    saved = dict(os.environ)
    os.environ.update(aws_test_environment(moto.url))
    aws.reset_clients()
    try:
        specs = {
            "prefill": with_system_port("prefill", endpoint_health=True),
            "frontend": with_system_port("frontend", endpoint_health=False),
        }
        with local_deployment(tmp_path_factory.mktemp("contract"), specs=specs) as deployment:
            assert first_success(deployment.frontend_url(), MODEL, 60, on_wait=deployment.runner.tick)
            for _ in range(5):
                assert chat(deployment.frontend_url(), MODEL).ok
            yield deployment
    finally:
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_clients()


def families(url: str) -> dict[str, Any]:
    status, body = get(f"{url}/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(body)}


def label_sets(family: Any) -> list[dict[str, str]]:
    return [s.labels for s in family.samples]


def test_every_frontend_metric_the_collector_reads_exists_with_its_labels(served: LocalDeployment) -> None:
    found = families(served.frontend_url())
    for histogram in (
        "time_to_first_token_seconds",
        "inter_token_latency_seconds",
        "request_duration_seconds",
        "input_sequence_tokens",
        "output_sequence_tokens",
    ):
        family = found[f"dynamo_frontend_{histogram}"]
        assert family.type == "histogram"
        assert {s.labels.get("model") for s in family.samples if s.name.endswith("_count")} == {MODEL}
    requests = found["dynamo_frontend_requests"]  # the parser drops _total from counter names
    assert {"endpoint", "request_type", "status", "model"} <= set(label_sets(requests)[0])
    stages = {(s["stage"], s["phase"]) for s in label_sets(found["dynamo_frontend_stage_requests"])}
    assert {"preprocess", "route", "dispatch"} <= {stage for stage, _ in stages}
    assert {s["worker_type"] for s in label_sets(found["dynamo_frontend_router_queue_pending_requests"])} >= {
        "prefill",
        "decode",
    }
    for gauge in ("active_requests", "inflight_requests", "queued_requests", "model_ready"):
        assert f"dynamo_frontend_{gauge}" in found, gauge
    assert "dynamo_frontend_requests_started" in found


def test_the_collectors_parser_reads_the_real_frontend(served: LocalDeployment) -> None:
    _, body = get(f"{served.frontend_url()}/metrics")
    sample = parse_metrics_text(body)
    assert sample.requests_total is not None and sample.requests_total >= 6
    assert sample.active is not None and sample.queue is not None
    ttft = sample.histograms["dynamo_frontend_time_to_first_token_seconds"]
    assert ttft.count >= 6
    # The token rates: the sequence-length histograms' sums grow with the requests served
    assert set(sample.token_sums) == {INPUT_TOKENS, OUTPUT_TOKENS}
    previous = {"frontend": PreviousScrape.from_state(sample_to_state(sample, 0.0))}
    for _ in range(3):
        assert chat(served.frontend_url(), MODEL, max_tokens=8).ok
    _, body = get(f"{served.frontend_url()}/metrics")
    later = parse_metrics_text(body)
    rates = compute_window({"frontend": later}, previous, now=10.0, max_window_s=300).token_rates
    # three prompts (a few tokens each) and three outputs of at most 8 tokens, over 10 s
    assert 3 / 10 <= rates[names.INPUT_TOKEN_RATE] <= 3 * 200 / 10, rates
    assert 3 / 10 <= rates[names.OUTPUT_TOKEN_RATE] <= 3 * 8 / 10, rates


def test_frontend_health_is_200_without_any_worker_and_live_is_200(served: LocalDeployment) -> None:
    # The load balancer cannot use /health for readiness: it answers 200 with no worker at all.
    # A frontend of its own on another instance, with no worker anywhere in its namespace:
    status, body = get(f"{served.frontend_url()}/health")
    assert status == 200 and json.loads(body)["status"] == "healthy"
    assert get(f"{served.frontend_url()}/live")[0] == 200


def test_model_ready_follows_the_prefill_side(served: LocalDeployment) -> None:
    runner = served.runner

    def model_ready() -> float:
        family = families(served.frontend_url())["dynamo_frontend_model_ready"]
        return float(next(s.value for s in family.samples if s.labels.get("model") == MODEL))

    assert model_ready() == 1
    # When the prefill service goes to zero tasks
    served.set_desired("prefill", 0)
    runner.tick()
    deadline = time.monotonic() + 30
    while model_ready() != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    # Then the model is not ready and requests are refused
    assert model_ready() == 0
    refused = chat(served.frontend_url(), MODEL)
    assert refused.status == 503, refused
    # When a prefill task runs again, Then it serves again
    served.set_desired("prefill", 1)
    runner.tick()
    assert first_success(served.frontend_url(), MODEL, 60, on_wait=runner.tick)
    assert model_ready() == 1


def test_a_workers_system_health_is_200_only_with_endpoint_health_status(
    served: LocalDeployment, aws_env: MotoServer, tmp_path: Path
) -> None:
    # With DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS (the module's deployment), serving means 200
    prefill = served.runner.running("prefill")[0]
    url = f"http://{prefill.address}:{SYSTEM_PORT}"
    assert get(f"{url}/health")[0] == 200
    assert "dynamo_component_inflight_requests" in get(f"{url}/metrics")[1]
    assert "dynamo_work_handler_queue_depth" in get(f"{url}/metrics")[1]
    # Without it, the frontend task's decode worker answers 503 while it serves (the stack's
    # container checks set it: docs/template.md, "Readiness and scale-in"). Only the worker
    # binds DYN_SYSTEM_PORT, though the frontend process shares the container's environment.
    frontend = served.runner.running("frontend")[0]
    assert chat(served.frontend_url(), MODEL).ok
    status, body = get(f"http://{frontend.address}:{SYSTEM_PORT}/health")
    assert status == 503 and json.loads(body)["status"] == "notready"
    assert "dynamo_component_inflight_requests" in get(f"http://{frontend.address}:{SYSTEM_PORT}/metrics")[1]
