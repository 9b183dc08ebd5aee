"""Only the stack's two GPU roles ever reach RegisterTaskDefinition, on every path, against moto server.

The handlers run with the environment the stack gives them (``DYNAMO_ECS_GPU_*_ROLE_ARN``,
template.yaml) and Dynamo's example files, which name the generic ``ecsTaskExecutionRole``.
Every RegisterTaskDefinition request any client of the operator's session sends is recorded
(`passed_roles`): moto would register any role, AWS refuses the ones the operator's
iam:PassRole does not allow.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from devtools.aws_faults import recording
from devtools.cloudformation_stub import CloudFormationStub
from devtools.ecs_world import (
    EcsWorld,
    build_world,
    fill_account_placeholders,
    task_private_ip,
    task_state_change_event,
)
from devtools.handlers import load_handler_module
from dynamo_ecs import aws
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.endpoints.reconcile import EndpointReconciler, digest
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.specs import load_default_spec
from dynamo_ecs.state import StateStore

REGION = "us-east-1"
EXECUTION = "arn:aws:iam::123456789012:role/dynamo-GpuExecutionRole-AbC123"
TASK = "arn:aws:iam::123456789012:role/dynamo-GpuTaskRole-DeF456"
GENERIC = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
CONFIG = DeploymentConfig(gpu_execution_role_arn=EXECUTION, gpu_task_role_arn=TASK)
IMAGE = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0"


@dataclass
class LambdaContext:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:dynamo-endpoints"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


@dataclass
class Handlers:
    watcher: Any
    redeploy: Any
    bootstrap: Any


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Handlers]:
    """The endpoint functions, cold-started with the stack's role variables."""
    monkeypatch.setenv("DYNAMO_ECS_GPU_EXECUTION_ROLE_ARN", EXECUTION)
    monkeypatch.setenv("DYNAMO_ECS_GPU_TASK_ROLE_ARN", TASK)
    names = ("infra_watcher", "redeploy", "bootstrap")
    loaded = [load_handler_module(name, fresh=True) for name in names]
    yield Handlers(*loaded)
    for name in names:  # the next test cold-starts them again with its own environment
        sys.modules.pop(f"functions_{name}_app", None)


@pytest.fixture
def world(state_table: str) -> EcsWorld:
    """Today's manual setup: the example files, roles and all, on the infra task running now."""
    world = build_world(CONFIG, region=REGION)
    world.create_gpu_services(pasted_ip=task_private_ip(world.run_infra_task()))
    return world


@pytest.fixture
def passed_roles(world: EcsWorld) -> Iterator[list[tuple[str, str | None, str | None]]]:
    """(family, executionRoleArn, taskRoleArn) of every RegisterTaskDefinition sent after the setup."""
    found: list[tuple[str, str | None, str | None]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        found.append((params["family"], params.get("executionRoleArn"), params.get("taskRoleArn")))

    aws.reset_clients()
    aws.events().register("before-parameter-build.ecs.RegisterTaskDefinition", record)
    yield found
    aws.events().unregister("before-parameter-build.ecs.RegisterTaskDefinition", record)
    aws.reset_clients()


def running_definition(role: ServiceRole) -> dict[str, Any]:
    ecs = aws.client("ecs")
    [service] = ecs.describe_services(cluster=CONFIG.gpu_cluster, services=[CONFIG.service(role).service])[
        "services"
    ]
    return dict(ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"])


def users_file(role: ServiceRole) -> dict[str, Any]:
    """Dynamo's example file as a user sends it: account and region filled, the stack's family."""
    spec = fill_account_placeholders(load_default_spec(role), REGION)
    spec["family"] = CONFIG.service(role).family
    for container in spec["containerDefinitions"]:
        container.setdefault("memory", 512)  # moto places tasks only with container-level memory
    return spec


def only_stack_roles(passed: list[tuple[str, str | None, str | None]]) -> bool:
    return bool(passed) and all((execution, task) == (EXECUTION, TASK) for _, execution, task in passed)


def test_an_infra_replacement_registers_the_stacks_roles_and_says_which_it_replaced(
    world: EcsWorld, handlers: Handlers, passed_roles: list[Any]
) -> None:
    # Given services set up by hand from the example files (ecsTaskExecutionRole), no stored spec,
    # and a new infra task RUNNING
    new = world.run_infra_task()
    # When the infra task's replacement is reconciled
    event = task_state_change_event(new, version=3, region=REGION, event_id="e-roles")
    result = handlers.watcher.lambda_handler(event, LambdaContext())
    # Then every revision it registered names the stack's two roles, and nothing else was passed
    assert result["status"] == "applied", result
    assert only_stack_roles(passed_roles), passed_roles
    for role in SERVICE_ROLES:
        definition = running_definition(role)
        assert (definition["executionRoleArn"], definition["taskRoleArn"]) == (EXECUTION, TASK)
    # And the result and the decision log say which role of the spec was replaced, per service
    for change in result["changes"]:
        assert any(f"executionRoleArn: the spec names {GENERIC}" in note for note in change["notes"])
        assert any(f"taskRoleArn: the spec names {GENERIC}" in note for note in change["notes"])
    [entry] = StateStore(CONFIG.state_table, CONFIG.deployment).decisions(kind="endpoints")
    assert all(TASK in " ".join(change["notes"]) for change in entry["changes"])


@pytest.mark.parametrize("dry_run", [False, True], ids=["for real", "dry run"])
def test_a_users_file_naming_another_role_is_refused_with_the_role_to_write(
    world: EcsWorld, handlers: Handlers, passed_roles: list[Any], dry_run: bool
) -> None:
    # Given Dynamo's prefill example file, which names ecsTaskExecutionRole for both roles
    payload = {"services": ["prefill"], "spec": {"prefill": users_file("prefill")}, "dry_run": dry_run}
    # When it is redeployed
    with recording() as calls:
        result = handlers.redeploy.lambda_handler(payload, LambdaContext())
    # Then it is refused naming each field and the stack's role to write, and nothing was written
    assert result["status"] == "refused", result
    assert f"spec.prefill.executionRoleArn: '{GENERIC}' is not a role this stack may pass" in result["error"]
    assert f"write '{EXECUTION}' or leave executionRoleArn out" in result["error"]
    assert f"write '{TASK}' or leave taskRoleArn out" in result["error"]
    assert calls.writes == [] and passed_roles == []


@pytest.mark.parametrize("written", ["left out", "the stack's"])
def test_a_users_file_with_the_stacks_roles_or_none_runs_with_the_stacks_roles(
    world: EcsWorld, handlers: Handlers, passed_roles: list[Any], written: str
) -> None:
    spec = users_file("prefill")
    spec.pop("executionRoleArn"), spec.pop("taskRoleArn")
    if written == "the stack's":  # with the account as a placeholder, as the example files write it
        spec |= {"executionRoleArn": EXECUTION.replace("123456789012", "AWS_ID"), "taskRoleArn": TASK}
    spec["containerDefinitions"][0]["image"] = IMAGE
    result = handlers.redeploy.lambda_handler(
        {"services": ["prefill"], "spec": {"prefill": spec}}, LambdaContext()
    )
    assert result["status"] == "applied", result
    assert only_stack_roles(passed_roles), passed_roles
    definition = running_definition("prefill")
    assert (definition["executionRoleArn"], definition["taskRoleArn"]) == (EXECUTION, TASK)
    assert definition["containerDefinitions"][0]["image"] == IMAGE


def test_a_dry_run_says_which_roles_it_would_replace_and_registers_nothing(
    world: EcsWorld, handlers: Handlers, passed_roles: list[Any]
) -> None:
    # Given no stored spec: a new image goes onto the default spec (ecsTaskExecutionRole)
    with recording() as calls:
        result = handlers.redeploy.lambda_handler({"image": IMAGE, "dry_run": True}, LambdaContext())
    assert result["status"] == "dry_run", result
    for change in result["changes"]:
        assert change["diff"]["$.executionRoleArn"] == {"old": GENERIC, "new": EXECUTION}
        assert any("executionRoleArn: the spec names" in note for note in change["notes"])
    assert calls.writes == [] and passed_roles == []


def test_the_last_look_before_registering_refuses_any_other_role(
    world: EcsWorld, passed_roles: list[Any]
) -> None:
    # Given a rendering that names the generic role (whatever path it came from)
    reconciler = EndpointReconciler(
        CONFIG, StateStore(CONFIG.state_table, CONFIG.deployment), aws.client("ecs"), "123456789012", REGION
    )
    rendered = users_file("frontend")
    # When it is about to be registered
    with pytest.raises(InvalidInputError, match=r"executionRoleArn '.+' is not the stack's"):
        reconciler.revision_for(rendered, digest(rendered))
    # Then it never reaches RegisterTaskDefinition
    assert passed_roles == []


def create_request(url: str, **overrides: str) -> dict[str, Any]:
    properties = {
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:dynamo-bootstrap",
        "Image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
        "Model": "Qwen/Qwen3-0.6B",
        "ExecutionRoleArn": EXECUTION,
        "TaskRoleArn": TASK,
        "FrontendLogGroup": "/dynamo/frontend",
        "PrefillLogGroup": "/dynamo/prefill",
    } | overrides
    return {
        "RequestType": "Create",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/dynamo/1",
        "RequestId": "req-create",
        "ResourceType": "Custom::DynamoGpuServices",
        "LogicalResourceId": "GpuServices",
        "ResourceProperties": properties,
    }


@pytest.fixture
def fresh_world(state_table: str) -> EcsWorld:
    """No GPU services yet: the bootstrap's Create makes them."""
    world = build_world(CONFIG, region=REGION)
    world.run_infra_task()
    return world


def test_the_bootstrap_registers_the_stacks_roles(
    fresh_world: EcsWorld, handlers: Handlers, cloudformation: CloudFormationStub
) -> None:
    found: list[tuple[str | None, str | None]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        found.append((params.get("executionRoleArn"), params.get("taskRoleArn")))

    aws.reset_clients()
    aws.events().register("before-parameter-build.ecs.RegisterTaskDefinition", record)
    try:
        handlers.bootstrap.lambda_handler(create_request(cloudformation.url), LambdaContext())
    finally:
        aws.events().unregister("before-parameter-build.ecs.RegisterTaskDefinition", record)
    assert cloudformation.answers[-1]["Status"] == "SUCCESS", cloudformation.answers[-1]
    assert found == [(EXECUTION, TASK)] * 2


def test_the_bootstrap_refuses_a_role_other_than_the_one_it_may_pass(
    fresh_world: EcsWorld, handlers: Handlers, cloudformation: CloudFormationStub
) -> None:
    # Given properties whose execution role is not the one the function's configuration names
    request = create_request(cloudformation.url, ExecutionRoleArn=GENERIC)
    # When CloudFormation sends the Create
    with recording() as calls:
        handlers.bootstrap.lambda_handler(request, LambdaContext())
    # Then it fails naming the property and the role it may pass, and creates nothing
    answer = cloudformation.answers[-1]
    assert answer["Status"] == "FAILED"
    assert f"ExecutionRoleArn: '{GENERIC}' is not the role the operator may pass" in answer["Reason"]
    assert EXECUTION in answer["Reason"]
    assert "RegisterTaskDefinition" not in calls.calls and "CreateService" not in calls.calls
