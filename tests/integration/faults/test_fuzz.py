"""Malformed events and payloads for every handler: a clear error or an ignore, and zero AWS writes.

Generators: `devtools.fuzz_inputs`. Every AWS call the handler makes is recorded through
botocore's hooks (`devtools.aws_faults.recording`) against a real deployment on moto server,
so "changes nothing" is measured, not assumed. Under ``CI=true`` the examples are a fixed,
smaller sequence; ``FUZZ_EXAMPLES=2000`` hunts longer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from devtools.aws_faults import AwsCalls, recording
from devtools.cloudformation_stub import CloudFormationStub
from devtools.ecs_world import build_world, task_private_ip
from devtools.fuzz_inputs import (
    Case,
    bootstrap_cases,
    collector_cases,
    infra_event_cases,
    plane_credentials_cases,
    redeploy_cases,
    scaler_cases,
)
from devtools.handlers import load_handler_module
from dynamo_ecs.config import DeploymentConfig

CI = os.environ.get("CI") == "true"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25" if CI else "60"))
settings.register_profile(
    "fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CI,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ = settings.get_profile("fuzz")
CONFIG = DeploymentConfig()


@dataclass
class LambdaContext:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:dynamo-fuzz"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def calls(state_table: str) -> Iterator[AwsCalls]:
    """A deployment on moto (infra task, both GPU services), then every AWS call recorded."""
    world = build_world(CONFIG, region="us-east-1")
    first = world.run_infra_task()
    world.create_gpu_services(pasted_ip=task_private_ip(first))
    with recording() as record:
        yield record


def check(calls: AwsCalls, case: Case, result: dict[str, Any], status: str, reason_key: str) -> None:
    assert result["status"] == status, (case, result)
    assert case.names in str(result[reason_key]), (case, result)
    assert calls.writes == [], (case, calls.writes)


@FUZZ
@given(case=redeploy_cases())
def test_redeploy_refuses_bad_payloads_and_writes_nothing(calls: AwsCalls, case: Case) -> None:
    calls.clear()
    result = load_handler_module("redeploy").lambda_handler(case.event, LambdaContext())
    check(calls, case, result, "refused", "error")


@FUZZ
@given(case=scaler_cases(CONFIG))
def test_scaler_ignores_malformed_and_foreign_events_and_writes_nothing(calls: AwsCalls, case: Case) -> None:
    calls.clear()
    result = load_handler_module("scaler").lambda_handler(case.event, None)
    check(calls, case, result, "ignored", "reason")


@FUZZ
@given(case=collector_cases())
def test_collector_ignores_what_is_not_a_schedule_event_and_writes_nothing(
    calls: AwsCalls, case: Case
) -> None:
    calls.clear()
    result = load_handler_module("metrics_collector").lambda_handler(case.event, None)
    check(calls, case, result, "ignored", "reason")
    assert calls.calls == []


@FUZZ
@given(case=infra_event_cases())
def test_infra_watcher_ignores_malformed_events_and_writes_nothing(calls: AwsCalls, case: Case) -> None:
    calls.clear()
    result = load_handler_module("infra_watcher").lambda_handler(case.event, LambdaContext())
    check(calls, case, result, "ignored", "reason")
    assert calls.calls == []


@FUZZ
@given(data=bootstrap_cases(response_url="http://127.0.0.1:1/unused"))
def test_bootstrap_answers_failed_naming_the_property_and_writes_nothing(
    calls: AwsCalls, cloudformation: CloudFormationStub, data: Case
) -> None:
    # Given a request whose answer goes to the local CloudFormation stand-in
    event = dict(data.event) | {"ResponseURL": cloudformation.url}
    calls.clear()
    # When the custom resource handles it
    result = load_handler_module("bootstrap").lambda_handler(event, LambdaContext())
    # Then CloudFormation hears FAILED with the property named, and nothing in AWS changed
    assert result["status"] == "FAILED", (data, result)
    assert data.names in cloudformation.answers[-1]["Reason"], (data, cloudformation.answers[-1])
    assert calls.writes == [], (data, calls.writes)


@pytest.mark.parametrize("event", [None, 1, "x", [], {"RequestType": "Create"}, {"ResponseURL": "ftp://x"}])
def test_bootstrap_without_a_url_to_answer_ignores_the_event(calls: AwsCalls, event: Any) -> None:
    result = load_handler_module("bootstrap").lambda_handler(event, LambdaContext())
    assert result["status"] == "ignored" and "ResponseURL" in result["reason"]
    assert calls.calls == []


@FUZZ
@given(data=plane_credentials_cases(response_url="http://127.0.0.1:1/unused"))
def test_plane_credentials_answer_failed_naming_the_property_and_write_nothing(
    calls: AwsCalls, cloudformation: CloudFormationStub, data: Case
) -> None:
    event = dict(data.event) | {"ResponseURL": cloudformation.url}
    calls.clear()
    result = load_handler_module("plane_credentials").lambda_handler(event, LambdaContext())
    assert result["status"] == "FAILED", (data, result)
    assert data.names in cloudformation.answers[-1]["Reason"], (data, cloudformation.answers[-1])
    assert calls.writes == [], (data, calls.writes)
