"""The moto-built Dynamo-on-ECS world that integration tests, demo and benchmarks start from."""

from __future__ import annotations

from devtools.ecs_world import build_world, task_private_ip, task_state_change_event
from devtools.services import MotoServer
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig


def test_world_has_a_running_infra_task_and_gpu_services(aws_env: MotoServer) -> None:
    config = DeploymentConfig()
    world = build_world(config, region="us-east-1")
    first = world.run_infra_task()
    world.create_gpu_services(pasted_ip=task_private_ip(first))
    second = world.replace_infra_task(first["taskArn"])

    assert task_private_ip(second) != task_private_ip(first)
    assert world.describe_task(config.infra.cluster, first["taskArn"])["lastStatus"] == "STOPPED"
    assert second["lastStatus"] == "RUNNING"
    assert second["group"] == f"service:{config.infra.service}"
    services = aws.client("ecs").describe_services(
        cluster=config.gpu_cluster, services=[config.frontend.service, config.prefill.service]
    )["services"]
    assert [s["desiredCount"] for s in services] == [1, 1]
    frontend = world.run_gpu_task("frontend")
    assert frontend["containerInstanceArn"] == world.gpu_instances[0]["containerInstanceArn"]

    event = task_state_change_event(second, version=3, region="us-east-1", event_id="e-1")
    assert event["detail"]["version"] == 3
    assert event["detail-type"] == "ECS Task State Change"


def test_find_infra_endpoint_follows_the_replacement(aws_env: MotoServer) -> None:
    from dynamo_ecs.infra import find_infra_endpoint

    config = DeploymentConfig()
    world = build_world(config, region="us-east-1")
    first = world.run_infra_task()
    found = find_infra_endpoint(config.infra, aws.client("ecs")).endpoint
    assert found is not None and found.ip == task_private_ip(first)

    second = world.replace_infra_task(first["taskArn"])
    found = find_infra_endpoint(config.infra, aws.client("ecs")).endpoint
    assert found is not None and found.task_arn == second["taskArn"]

    world.stop_task(config.infra.cluster, second["taskArn"])
    assert find_infra_endpoint(config.infra, aws.client("ecs")).endpoint is None
