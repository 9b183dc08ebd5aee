"""Classification of the sample events (AWS's documented shapes) into the guide's four kinds."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dynamo_ecs.config import DeploymentConfig, FrontendConfig, PrefillConfig
from dynamo_ecs.diagnostics.classify import GPU_INSTANCES, Finding, Resolution, classify, redact
from dynamo_ecs.errors import InvalidInputError

EVENTS = Path(__file__).resolve().parents[3] / "events"
CONFIG = DeploymentConfig(
    frontend=FrontendConfig(service="dynamo-frontend", family="dynamo-frontend"),
    prefill=PrefillConfig(service="dynamo-prefill", family="dynamo-prefill"),
)


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"diagnostics_{name}.json").read_text())
    return loaded


def finding(name: str) -> Finding:
    result = classify(sample(name), CONFIG)
    assert isinstance(result, Finding), result
    return result


@pytest.mark.parametrize(
    ("name", "signature"),
    [
        ("placement_failure", "no_gpu_capacity/frontend/placement-gpu"),
        ("asg_vcpu_limit", f"no_gpu_capacity/{GPU_INSTANCES}/quota"),
        ("asg_insufficient_capacity", f"no_gpu_capacity/{GPU_INSTANCES}/insufficient-capacity"),
        ("task_pull_failed", "registry_auth/frontend/pull-unauthorized"),
        ("task_pull_timeout", "network/prefill/pull-unreachable"),
        ("task_oom", "tasks_fail_to_start/frontend/out-of-memory"),
        ("task_exited", "tasks_fail_to_start/prefill/exited-1"),
        ("deployment_failed", "tasks_fail_to_start/prefill/deployment-failed"),
    ],
)
def test_each_sample_lands_in_its_kind(name: str, signature: str) -> None:
    found = finding(name)
    assert found.signature == signature
    assert found.fix and found.summary and found.evidence
    assert found.event_id == sample(name)["id"] and found.at == sample(name)["time"]


def test_the_evidence_is_what_aws_said_and_the_fix_names_the_knob() -> None:
    quota = finding("asg_vcpu_limit")
    assert "vCPU limit of 0" in quota.evidence and "us-east-1a" in quota.evidence
    assert "L-DB2E81BA" in quota.fix
    pull = finding("task_pull_failed")
    assert "401 Unauthorized" in pull.evidence and "NgcSecretArn" in pull.fix
    assert pull.task_arn and pull.container == "dynamo-vllm-frontend"
    assert "NAT" in finding("task_pull_timeout").fix


def test_steady_state_is_a_resolution_of_its_service() -> None:
    result = classify(sample("steady_state"), CONFIG)
    assert isinstance(result, Resolution) and result.service == "frontend"


def test_a_successful_launch_resolves_the_instance_group() -> None:
    event = sample("asg_vcpu_limit")
    event["detail-type"] = "EC2 Instance Launch Successful"
    result = classify(event, CONFIG)
    assert isinstance(result, Resolution) and result.service == GPU_INSTANCES


def test_a_scale_in_stop_is_nothing_wrong() -> None:
    assert classify(sample("task_scaled_in"), CONFIG) is None


def test_a_scale_in_that_ran_out_of_memory_is_still_a_finding() -> None:
    event = sample("task_scaled_in")
    event["detail"]["containers"][0]["reason"] = "OutOfMemoryError: Container killed due to memory usage"
    result = classify(event, CONFIG)
    assert isinstance(result, Finding) and result.cause == "out-of-memory"


def test_other_services_and_running_tasks_are_not_ours() -> None:
    other = sample("placement_failure")
    other["resources"] = ["arn:aws:ecs:us-east-1:123456789012:service/dynamo-gpu/someone-else"]
    assert classify(other, CONFIG) is None
    running = sample("task_pull_failed")
    running["detail"]["lastStatus"] = "RUNNING"
    assert classify(running, CONFIG) is None
    group = sample("task_pull_failed")
    group["detail"]["group"] = "family:dynamo-frontend"
    assert classify(group, CONFIG) is None


def test_unknown_fields_and_event_names_are_tolerated() -> None:
    event = sample("placement_failure")
    event["detail"]["somethingNew"] = {"x": 1}
    assert isinstance(classify(event, CONFIG), Finding)
    event["detail"]["eventName"] = "SERVICE_DESIRED_COUNT_UPDATED"
    assert classify(event, CONFIG) is None


def test_the_same_trouble_on_another_task_has_the_same_signature() -> None:
    first = sample("task_pull_failed")
    second = copy.deepcopy(first)
    second["id"] = "another"
    second["detail"]["taskArn"] = second["detail"]["taskArn"][:-4] + "beef"
    assert finding_of(first).signature == finding_of(second).signature


def finding_of(event: dict[str, Any]) -> Finding:
    result = classify(event, CONFIG)
    assert isinstance(result, Finding)
    return result


@pytest.mark.parametrize(
    ("reason", "kind", "cause"),
    [
        (
            "CannotPullContainerError: ref pull has been retried 1 time(s): manifest unknown",
            "tasks_fail_to_start",
            "image-not-found",
        ),
        (
            "ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
            "retrieval failed: unable to retrieve secret from asm: AccessDeniedException",
            "registry_auth",
            "pull-unauthorized",
        ),
        (
            "ResourceInitializationError: unable to pull secrets or registry auth: unable to retrieve "
            "secret from asm: context deadline exceeded",
            "network",
            "pull-unreachable",
        ),
        ("TaskFailedToStart: RESOURCE:MEMORY", "no_gpu_capacity", "placement-memory"),
        (
            "Task failed ELB health checks in (target-group arn:aws:elasticloadbalancing:...)",
            "tasks_fail_to_start",
            "health-check",
        ),
    ],
)
def test_stopped_reasons_of_the_ecs_troubleshooting_guide(reason: str, kind: str, cause: str) -> None:
    event = sample("task_exited")
    event["detail"]["stopCode"] = "TaskFailedToStart"
    event["detail"]["stoppedReason"] = reason
    event["detail"]["containers"][0].pop("exitCode")
    found = finding_of(event)
    assert (found.kind, found.cause) == (kind, cause)


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        (
            "Your requested instance type (g6e.2xlarge) is not supported in your requested Availability Zone "
            "(us-east-1e). Please retry your request by not specifying an Availability Zone.",
            "type-not-offered",
        ),
        ("Invalid IAM Instance Profile name. Launching EC2 instance failed.", "launch-failed"),
    ],
)
def test_other_launch_failures_are_still_no_gpu_capacity(message: str, cause: str) -> None:
    event = sample("asg_insufficient_capacity")
    event["detail"]["StatusMessage"] = message
    found = finding_of(event)
    assert (found.kind, found.cause) == ("no_gpu_capacity", cause)


def test_not_an_event_names_the_missing_fields() -> None:
    with pytest.raises(InvalidInputError, match="detail-type"):
        classify({"id": "x", "source": "aws.ecs", "time": "2026-11-28T11:00:00Z", "detail": {}}, CONFIG)


def test_redact_masks_keys_tokens_and_passwords() -> None:
    line = 'login {"username": "$oauthtoken", "password": "nvapi-AbCdEf0123456789"} HF_TOKEN=hf_abcdefghijkl'
    masked = redact(line)
    assert "nvapi-" not in masked and "hf_abc" not in masked and "AbCdEf" not in masked
    assert "username" in masked and "$oauthtoken" in masked
    assert redact("loading Qwen/Qwen3-0.6B") == "loading Qwen/Qwen3-0.6B"


@pytest.mark.parametrize(
    ("event_name", "cause"),
    [
        ("SERVICE_TASK_CONFIGURATION_FAILURE", "configuration"),
        ("SERVICE_TASK_START_IMPAIRED", "start-impaired"),
    ],
)
def test_service_actions_that_mean_tasks_fail_to_start(event_name: str, cause: str) -> None:
    event = sample("placement_failure")
    event["detail"]["eventName"] = event_name
    event["detail"]["reason"] = "something ECS said"
    found = finding_of(event)
    assert (found.kind, found.cause, found.service) == ("tasks_fail_to_start", cause, "frontend")
    assert found.evidence == f"{event_name}: something ECS said"


def test_a_completed_deployment_resolves_and_other_deployment_events_say_nothing() -> None:
    event = sample("deployment_failed")
    event["detail"]["eventName"] = "SERVICE_DEPLOYMENT_COMPLETED"
    assert isinstance(classify(event, CONFIG), Resolution)
    event["detail"]["eventName"] = "SERVICE_DEPLOYMENT_IN_PROGRESS"
    assert classify(event, CONFIG) is None
