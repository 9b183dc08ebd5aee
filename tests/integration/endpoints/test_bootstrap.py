"""The Custom::DynamoGpuServices resource against moto server, answering a local CloudFormation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from devtools.cloudformation_stub import CloudFormationStub
from devtools.ecs_world import EcsWorld, build_world, task_private_ip
from devtools.handlers import load_handler_module
from devtools.services import STACK_GPU_EXECUTION_ROLE_ARN, STACK_GPU_TASK_ROLE_ARN
from dynamo_ecs import aws, capacity
from dynamo_ecs.config import DeploymentConfig

CONFIG = DeploymentConfig()


@dataclass
class LambdaContext:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:dynamo-bootstrap"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


def properties(**overrides: str) -> dict[str, str]:
    base = {
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:dynamo-bootstrap",
        "Deployment": "dynamo",
        "Image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
        "Model": "Qwen/Qwen3-0.6B",
        "ExecutionRoleArn": STACK_GPU_EXECUTION_ROLE_ARN,
        "TaskRoleArn": STACK_GPU_TASK_ROLE_ARN,
        "NgcSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ngc-AbCdEf",
        "FrontendLogGroup": "/dynamo/frontend",
        "PrefillLogGroup": "/dynamo/prefill",
        "FrontendInitialCount": "1",
        "PrefillInitialCount": "2",
    }
    return base | overrides


def request(kind: str, url: str, props: dict[str, str], old: dict[str, str] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/dynamo/1",
        "RequestId": f"req-{kind}",
        "ResourceType": "Custom::DynamoGpuServices",
        "LogicalResourceId": "GpuServices",
        "ResourceProperties": props,
    }
    if kind != "Create":
        event["PhysicalResourceId"] = "dynamo-gpu-services"
    if old is not None:
        event["OldResourceProperties"] = old
    return event


def services() -> dict[str, dict[str, Any]]:
    names = [CONFIG.frontend.service, CONFIG.prefill.service]
    found = aws.client("ecs").describe_services(cluster=CONFIG.gpu_cluster, services=names)["services"]
    return {s["serviceName"]: s for s in found if s["status"] == "ACTIVE"}


def container_of(service: dict[str, Any]) -> dict[str, Any]:
    definition = aws.client("ecs").describe_task_definition(taskDefinition=service["taskDefinition"])
    return dict(definition["taskDefinition"]["containerDefinitions"][0])


@pytest.fixture
def world(state_table: str) -> EcsWorld:
    return build_world(CONFIG, region="us-east-1")


def test_create_update_delete_round_trip(world: EcsWorld, cloudformation: CloudFormationStub) -> None:
    bootstrap = load_handler_module("bootstrap")
    infra = world.run_infra_task()
    ip = task_private_ip(infra)
    # Create: both services on the infra address, with the stack's image, secret and logs
    bootstrap.lambda_handler(request("Create", cloudformation.url, properties()), LambdaContext())
    assert cloudformation.answers[-1]["Status"] == "SUCCESS", cloudformation.answers[-1]
    created = services()
    assert {s["desiredCount"] for s in created.values()} == {1, 2}
    frontend = container_of(created["dynamo-frontend"])
    assert {"name": "NATS_SERVER", "value": f"nats://{ip}:4222"} in frontend["environment"]
    assert frontend["repositoryCredentials"]["credentialsParameter"].endswith("secret:ngc-AbCdEf")
    assert frontend["logConfiguration"]["options"]["awslogs-group"] == "/dynamo/frontend"
    # Given the scaler changed a desired count
    aws.client("ecs").update_service(cluster=CONFIG.gpu_cluster, service="dynamo-prefill", desiredCount=3)
    # Update with a new image: rolls out at the current address, counts untouched
    new = properties(Image="nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0")
    bootstrap.lambda_handler(request("Update", cloudformation.url, new, old=properties()), LambdaContext())
    assert cloudformation.answers[-1]["Status"] == "SUCCESS"
    updated = services()
    assert updated["dynamo-prefill"]["desiredCount"] == 3
    assert container_of(updated["dynamo-frontend"])["image"].endswith(":1.6.0")
    assert {"name": "ETCD_ENDPOINTS", "value": f"http://{ip}:2379"} in container_of(
        updated["dynamo-prefill"]
    )["environment"]
    # A second identical Update writes nothing new
    revisions_before = aws.client("ecs").list_task_definitions(familyPrefix=CONFIG.frontend.family)[
        "taskDefinitionArns"
    ]
    bootstrap.lambda_handler(request("Update", cloudformation.url, new, old=new), LambdaContext())
    assert (
        aws.client("ecs").list_task_definitions(familyPrefix=CONFIG.frontend.family)["taskDefinitionArns"]
        == revisions_before
    )
    # Delete: services gone, revisions deregistered; a repeated Delete still succeeds
    for _ in range(2):
        bootstrap.lambda_handler(request("Delete", cloudformation.url, new), LambdaContext())
        assert cloudformation.answers[-1]["Status"] == "SUCCESS"
    assert services() == {}
    active = aws.client("ecs").list_task_definitions(familyPrefix=CONFIG.frontend.family, status="ACTIVE")
    assert active["taskDefinitionArns"] == []


def test_a_repeated_create_creates_nothing_twice(world: EcsWorld, cloudformation: CloudFormationStub) -> None:
    bootstrap = load_handler_module("bootstrap")
    world.run_infra_task()
    for _ in range(2):
        bootstrap.lambda_handler(request("Create", cloudformation.url, properties()), LambdaContext())
    assert [a["Status"] for a in cloudformation.answers] == ["SUCCESS", "SUCCESS"]
    assert (
        len(aws.client("ecs").list_task_definitions(familyPrefix=CONFIG.prefill.family)["taskDefinitionArns"])
        == 1
    )


@pytest.mark.parametrize(("name", "bad"), [("FrontendInitialCount", "many"), ("InstanceType", "m5.large")])
def test_bad_properties_fail_with_the_field_and_create_nothing(
    world: EcsWorld, cloudformation: CloudFormationStub, name: str, bad: str
) -> None:
    bootstrap = load_handler_module("bootstrap")
    world.run_infra_task()
    bootstrap.lambda_handler(
        request("Create", cloudformation.url, properties(**{name: bad})), LambdaContext()
    )
    answer = cloudformation.answers[-1]
    assert answer["Status"] == "FAILED" and name in answer["Reason"]
    assert services() == {}
    # And the Delete CloudFormation sends after a failed Create succeeds
    bootstrap.lambda_handler(request("Delete", cloudformation.url, properties()), LambdaContext())
    assert cloudformation.answers[-1]["Status"] == "SUCCESS"


def test_no_infra_task_fails_create_with_the_reason(
    world: EcsWorld, cloudformation: CloudFormationStub
) -> None:
    bootstrap = load_handler_module("bootstrap")
    bootstrap.lambda_handler(request("Create", cloudformation.url, properties()), LambdaContext())
    answer = cloudformation.answers[-1]
    assert answer["Status"] == "FAILED" and "no RUNNING task of service:dynamo-infra" in answer["Reason"]
    assert services() == {}


def test_a_bad_configuration_answers_failed_with_the_fix_and_its_rollback_succeeds(
    cloudformation: CloudFormationStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the environment a stack with GpuBudget=1 and the default minimums (1 + 1) hands over
    monkeypatch.setenv("DYNAMO_ECS_GPU_BUDGET", "1")
    # When the function is loaded (a cold start) and CloudFormation sends the Create
    bootstrap = load_handler_module("bootstrap", fresh=True)
    bootstrap.lambda_handler(request("Create", cloudformation.url, properties()), LambdaContext())
    # Then CloudFormation hears FAILED at once, with the problem and the variable that fixes it
    [answer] = cloudformation.answers
    assert answer["Status"] == "FAILED"
    assert "gpu_budget (1) < GPUs the minimums need (2)" in answer["Reason"]
    assert "DYNAMO_ECS_GPU_BUDGET" in answer["Reason"]
    # And the rollback's Delete (same physical id, same bad environment) succeeds without AWS
    delete = request("Delete", cloudformation.url, properties())
    delete["PhysicalResourceId"] = answer["PhysicalResourceId"]
    bootstrap.lambda_handler(delete, LambdaContext())
    assert cloudformation.answers[-1]["Status"] == "SUCCESS"
    assert cloudformation.answers[-1]["PhysicalResourceId"] == answer["PhysicalResourceId"]


def test_a_bad_configuration_fails_an_update_too(
    cloudformation: CloudFormationStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYNAMO_ECS_FRONTEND__MAX", "1")
    monkeypatch.setenv("DYNAMO_ECS_FRONTEND__MIN", "2")
    bootstrap = load_handler_module("bootstrap", fresh=True)
    bootstrap.lambda_handler(request("Update", cloudformation.url, properties()), LambdaContext())
    [answer] = cloudformation.answers
    assert answer["Status"] == "FAILED" and "frontend.max (1) < frontend.min (2)" in answer["Reason"]
    assert answer["PhysicalResourceId"] == "dynamo-gpu-services"  # unchanged: no replacement


def test_tasks_are_sized_for_the_stacks_instance_type(
    world: EcsWorld, cloudformation: CloudFormationStub
) -> None:
    # Given the stack's instance type is a g5.xlarge (4 vCPUs, 16 GiB, 1 GPU)
    bootstrap = load_handler_module("bootstrap")
    world.run_infra_task()
    props = properties(InstanceType="g5.xlarge")
    # When CloudFormation creates the GPU services
    bootstrap.lambda_handler(request("Create", cloudformation.url, props), LambdaContext())
    assert cloudformation.answers[-1]["Status"] == "SUCCESS", cloudformation.answers[-1]
    # Then every task asks for what one g5.xlarge can give (not the example's 40 GiB)
    size = capacity.task_size("g5.xlarge")
    for service in services().values():
        definition = aws.client("ecs").describe_task_definition(taskDefinition=service["taskDefinition"])
        task = definition["taskDefinition"]
        assert (task["cpu"], task["memory"]) == (str(size.cpu), str(size.memory_mib))
        assert int(task["memory"]) <= capacity.INSTANCE_TYPES["g5.xlarge"].registered_memory_mib
        [gpu] = task["containerDefinitions"][0]["resourceRequirements"]
        assert gpu == {"type": "GPU", "value": "1"}
