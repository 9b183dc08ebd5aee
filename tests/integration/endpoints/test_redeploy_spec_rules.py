"""What a redeploy's whole spec may name, against moto server through the redeploy handler.

A spec is run as written or refused with the field and the fix, dry run or not, and a
refusal writes nothing (every AWS call is recorded on the operator's session).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from devtools.aws_faults import recording
from devtools.ecs_world import EcsWorld, build_world, fill_account_placeholders, task_private_ip
from devtools.handlers import load_handler_module
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.specs import load_default_spec

REGION = "us-east-1"
CONFIG = DeploymentConfig()


@dataclass
class LambdaContext:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:dynamo-redeploy"


@pytest.fixture
def world(state_table: str) -> EcsWorld:
    """Today's manual setup: both GPU services on the infra task running now."""
    world = build_world(CONFIG, region=REGION)
    world.create_gpu_services(pasted_ip=task_private_ip(world.run_infra_task()))
    return world


@pytest.fixture
def redeploy() -> Any:
    return load_handler_module("redeploy")


def users_file(role: ServiceRole) -> dict[str, Any]:
    """Dynamo's example task definition as a user sends it: account and region filled in, no family.

    Its roles are left out too, so the stack's are used (a user's own role is refused:
    test_task_roles.py).
    """
    spec = fill_account_placeholders(load_default_spec(role), REGION)
    for key in ("family", "executionRoleArn", "taskRoleArn"):
        spec.pop(key)
    for container in spec["containerDefinitions"]:
        container.setdefault("memory", 512)  # moto places tasks only with container-level memory
    return spec


def running_family(role: ServiceRole) -> str:
    ecs = aws.client("ecs")
    [service] = ecs.describe_services(cluster=CONFIG.gpu_cluster, services=[CONFIG.service(role).service])[
        "services"
    ]
    return str(
        ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]["family"]
    )


@pytest.mark.parametrize("dry_run", [False, True], ids=["for real", "dry run"])
def test_a_spec_for_a_service_the_redeploy_does_not_select_is_refused(
    world: EcsWorld, redeploy: Any, dry_run: bool
) -> None:
    # Given a redeploy that selects the frontend but whose spec holds only the prefill's
    payload = {"services": ["frontend"], "spec": {"prefill": users_file("prefill")}, "dry_run": dry_run}
    # When it is sent
    with recording() as calls:
        result = redeploy.lambda_handler(payload, LambdaContext())
    # Then it is refused, naming the spec and the fix, and nothing was called at all
    assert result["status"] == "refused", result
    assert "spec.prefill" in result["error"] and "add 'prefill' to services" in result["error"]
    assert calls.calls == []


@pytest.mark.parametrize("dry_run", [False, True], ids=["for real", "dry run"])
def test_a_spec_naming_another_family_is_refused_and_changes_nothing(
    world: EcsWorld, redeploy: Any, dry_run: bool
) -> None:
    # Given a user's prefill file that names a family of its own
    spec = users_file("prefill") | {"family": "my-prefill"}
    # When it is redeployed
    with recording() as calls:
        result = redeploy.lambda_handler({"spec": {"prefill": spec}, "dry_run": dry_run}, LambdaContext())
    # Then it is refused naming the field and the stack's family, and nothing was written
    assert result["status"] == "refused", result
    assert "spec.prefill.family: 'my-prefill'" in result["error"]
    assert repr(CONFIG.prefill.family) in result["error"]
    assert calls.writes == []
    assert running_family("prefill") == CONFIG.prefill.family


@pytest.mark.parametrize("family", [None, CONFIG.prefill.family], ids=["left out", "the stack's"])
def test_a_spec_with_the_stacks_family_or_none_is_registered_in_that_family(
    world: EcsWorld, redeploy: Any, family: str | None
) -> None:
    spec = copy.deepcopy(users_file("prefill"))
    if family:
        spec["family"] = family
    spec["containerDefinitions"][0]["image"] = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0"
    result = redeploy.lambda_handler({"services": ["prefill"], "spec": {"prefill": spec}}, LambdaContext())
    assert result["status"] == "applied", result
    assert running_family("prefill") == CONFIG.prefill.family


@pytest.mark.parametrize("dry_run", [False, True], ids=["for real", "dry run"])
def test_with_a_worker_queue_target_a_spec_whose_worker_serves_no_metrics_there_is_refused(
    world: EcsWorld, monkeypatch: pytest.MonkeyPatch, dry_run: bool
) -> None:
    # Given prefill scaled on its workers' own queue, which the collector reads on 9090
    monkeypatch.setenv("DYNAMO_ECS_PREFILL__TARGETS__WORKER_QUEUE_PER_REPLICA", "4")
    redeploy = load_handler_module("redeploy", fresh=True)
    before = running_family_revision("prefill")
    # When a user's prefill file without DYN_SYSTEM_PORT, then one binding another port, is sent
    for environment, says in (([], "sets no DYN_SYSTEM_PORT"), ([("DYN_SYSTEM_PORT", "9345")], "=9345")):
        spec = users_file("prefill")
        spec["containerDefinitions"][0]["environment"] += [{"name": n, "value": v} for n, v in environment]
        with recording() as calls:
            result = redeploy.lambda_handler({"spec": {"prefill": spec}, "dry_run": dry_run}, LambdaContext())
        # Then it is refused naming the target, the port and both fixes, and nothing was written
        # (without it no WorkerQueueDepth: missing data would block every scale-in of prefill)
        assert result["status"] == "refused", result
        error = result["error"]
        assert "spec.prefill.containerDefinitions" in error and says in error, error
        assert (
            '"value": "9090"' in error
            and "DYNAMO_ECS_PREFILL__TARGETS__WORKER_QUEUE_PER_REPLICA=null" in error
        )
        assert calls.writes == []
        assert running_family_revision("prefill") == before
    # And the same file with the port the collector reads is applied
    spec = users_file("prefill")
    spec["containerDefinitions"][0]["environment"].append({"name": "DYN_SYSTEM_PORT", "value": "9090"})
    result = redeploy.lambda_handler({"spec": {"prefill": spec}, "dry_run": dry_run}, LambdaContext())
    assert result["status"] == ("dry_run" if dry_run else "applied"), result


def running_family_revision(role: ServiceRole) -> str:
    ecs = aws.client("ecs")
    [service] = ecs.describe_services(cluster=CONFIG.gpu_cluster, services=[CONFIG.service(role).service])[
        "services"
    ]
    return str(service["taskDefinition"])
