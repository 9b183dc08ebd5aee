"""Frontend targets and GPU instances discovered from ECS and EC2 (moto server)."""

from __future__ import annotations

from devtools.ecs_world import build_world, task_private_ip
from devtools.services import MotoServer
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.signals.discovery import read_cluster, scrape_target


def instance_ip(container_instance: dict[str, str]) -> str:
    reservations = aws.client("ec2").describe_instances(InstanceIds=[container_instance["ec2InstanceId"]])
    return str(reservations["Reservations"][0]["Instances"][0]["PrivateIpAddress"])


def test_host_mode_frontends_are_scraped_on_their_instance_ip(aws_env: MotoServer) -> None:
    # Given frontend tasks on two GPU instances and a prefill task (both host network)
    config = DeploymentConfig()
    world = build_world(config, region="us-east-1", gpu_instances=2)
    world.create_gpu_services(pasted_ip="10.0.0.9")
    frontends = [world.run_gpu_task("frontend", 0), world.run_gpu_task("frontend", 1)]
    prefill = world.run_gpu_task("prefill", 1)
    # When the cluster is read
    view = read_cluster(config, aws.client("ecs"), aws.client("ec2"))
    # Then each frontend task is scraped on its container instance's private IP, port 8000
    urls = {}
    for task in view.tasks["frontend"]:
        target, problem = scrape_target(task, config.frontend.metrics_port)
        assert problem is None and target is not None
        urls[target.key] = target.url
    assert urls == {
        frontends[i]["taskArn"]: f"http://{instance_ip(world.gpu_instances[i])}:8000/metrics" for i in (0, 1)
    }
    assert [t.task_arn for t in view.tasks["prefill"]] == [prefill["taskArn"]]
    assert view.tasks["prefill"][0].network_mode == "host"
    # And the GPU instances of each service are known
    assert view.instance_ids("frontend") == sorted(i["ec2InstanceId"] for i in world.gpu_instances)
    assert view.instance_ids("prefill") == [world.gpu_instances[1]["ec2InstanceId"]]


def test_stopped_tasks_are_not_targets(aws_env: MotoServer) -> None:
    config = DeploymentConfig()
    world = build_world(config, region="us-east-1", gpu_instances=1)
    world.create_gpu_services(pasted_ip="10.0.0.9")
    kept, stopped = world.run_gpu_task("frontend"), world.run_gpu_task("frontend")
    world.stop_task(config.gpu_cluster, stopped["taskArn"])
    view = read_cluster(config, aws.client("ecs"), aws.client("ec2"))
    assert [t.task_arn for t in view.tasks["frontend"]] == [kept["taskArn"]]


def test_awsvpc_frontends_are_scraped_on_their_eni_ip(aws_env: MotoServer) -> None:
    config = DeploymentConfig.model_validate({"frontend": {"family": "frontend-awsvpc"}})
    world = build_world(config, region="us-east-1", gpu_instances=1)
    ecs = aws.client("ecs")
    spec = world.gpu_spec("frontend")
    spec["networkMode"] = "awsvpc"
    for container in spec["containerDefinitions"]:
        container["portMappings"] = [{"containerPort": 8000, "protocol": "tcp"}]
    ecs.register_task_definition(**spec)
    task = ecs.run_task(
        cluster=config.gpu_cluster,
        taskDefinition=spec["family"],
        launchType="EC2",
        group=f"service:{config.frontend.service}",
        networkConfiguration=world._awsvpc(),
    )["tasks"][0]
    view = read_cluster(config, ecs, aws.client("ec2"))
    target, _ = scrape_target(view.tasks["frontend"][0], 8000)
    described = world.describe_task(config.gpu_cluster, task["taskArn"])
    assert target is not None and target.url == f"http://{task_private_ip(described)}:8000/metrics"
