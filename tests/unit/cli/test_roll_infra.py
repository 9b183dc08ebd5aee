"""When an infra member's service counts as steady enough for the next member to be rolled."""

from __future__ import annotations

from typing import Any

from dynamo_ecs_cli.roll_infra import steadiness


def service(*deployments: dict[str, Any], desired: int = 1) -> dict[str, Any]:
    return {"serviceName": "dynamo-infra-0", "desiredCount": desired, "deployments": list(deployments)}


PRIMARY = {"id": "ecs-svc/2", "status": "PRIMARY", "rolloutState": "COMPLETED"}
RUNNING_HEALTHY = {"lastStatus": "RUNNING", "healthStatus": "HEALTHY"}


def test_one_completed_deployment_with_its_task_running_and_healthy_is_steady() -> None:
    state = steadiness(service(PRIMARY), [RUNNING_HEALTHY], health_checked=True)
    assert state.steady and state.deployment_id == "ecs-svc/2"


def test_a_deployment_still_replacing_the_old_one_is_not_steady() -> None:
    old = {"id": "ecs-svc/1", "status": "ACTIVE", "rolloutState": "COMPLETED"}
    state = steadiness(service(PRIMARY, old), [RUNNING_HEALTHY], health_checked=True)
    assert not state.steady and "2 deployments" in state.why


def test_a_deployment_in_progress_is_not_steady_and_says_so() -> None:
    rolling = {**PRIMARY, "rolloutState": "IN_PROGRESS", "rolloutStateReason": "ECS deployment in progress."}
    state = steadiness(service(rolling), [RUNNING_HEALTHY], health_checked=True)
    assert not state.steady and "IN_PROGRESS" in state.why


def test_a_task_missing_or_not_yet_running_is_not_steady() -> None:
    assert not steadiness(service(PRIMARY), [], health_checked=False).steady
    pending = {"lastStatus": "PENDING", "healthStatus": "UNKNOWN"}
    assert "0 of 1 tasks running" in steadiness(service(PRIMARY), [pending], health_checked=False).why


def test_a_health_checked_task_counts_only_once_healthy() -> None:
    starting = {"lastStatus": "RUNNING", "healthStatus": "UNKNOWN"}
    state = steadiness(service(PRIMARY), [starting], health_checked=True)
    assert not state.steady and "UNKNOWN" in state.why
    # without a container health check, RUNNING is all ECS can tell
    assert steadiness(service(PRIMARY), [starting], health_checked=False).steady


def test_a_member_scaled_to_zero_is_not_steady() -> None:
    assert "desired count is 0" in steadiness(service(PRIMARY, desired=0), [], health_checked=False).why
