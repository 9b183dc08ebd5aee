"""A Dynamo-on-ECS deployment built in moto, as users have it today (see dynamo_ecs/specs).

Used by integration tests, the demo and the benchmarks: a VPC, the Fargate infra cluster and
service with a RUNNING etcd + NATS task, the EC2 GPU cluster with GPU container instances,
and the frontend and prefill services. Task definitions come from the example files.

moto quirks handled here (docs/testing.md): the VPC needs DNS hostnames for task ENIs,
services start no tasks (tasks are run explicitly with ``group=service:<name>``), and
``ListTasks(serviceName=...)`` is not filtered by moto.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from devtools.local_ecs import addresses
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.infra import eni_private_ip
from dynamo_ecs.specs import load_default_spec

ACCOUNT_ID = "123456789012"  # moto's default account
GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"


def load_example_taskdef(name: Literal["frontend", "prefill", "infra"]) -> dict[str, Any]:
    """One of the Dynamo ECS example files (frontend, prefill, infra), unchanged."""
    return load_default_spec(name)


def fill_account_placeholders(spec: dict[str, Any], region: str, account: str = ACCOUNT_ID) -> dict[str, Any]:
    """What a user does by hand before registering: AWS_ID and AWS_REGION filled in."""
    text = json.dumps(spec).replace("AWS_ID", account).replace("AWS_REGION", region)
    filled: dict[str, Any] = json.loads(text)
    return filled


def with_ip(spec: dict[str, Any], ip: str) -> dict[str, Any]:
    """The manual step of today: paste the infra task's IP over IP_ADDRESS."""
    text = json.dumps(spec).replace("IP_ADDRESS", ip)
    filled: dict[str, Any] = json.loads(text)
    return filled


@dataclass
class EcsWorld:
    config: DeploymentConfig
    region: str
    vpc_id: str = ""
    subnet_ids: list[str] = field(default_factory=list)
    security_group_id: str = ""
    infra_task_definition: str = "Dynamo-tasks"  # family or ARN the infra service runs
    gpu_instances: list[dict[str, Any]] = field(default_factory=list)
    image_id: str = ""

    @property
    def ecs(self) -> Any:
        return aws.client("ecs")

    @property
    def ec2(self) -> Any:
        return aws.client("ec2")

    # -- network ---------------------------------------------------------------------------

    def create_network(self) -> None:
        vpc = self.ec2.create_vpc(CidrBlock=addresses.vpc_cidr())["Vpc"]["VpcId"]
        self.ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        self.vpc_id = vpc
        self.subnet_ids = [
            self.ec2.create_subnet(VpcId=vpc, CidrBlock=addresses.subnet_cidr(i))["Subnet"]["SubnetId"]
            for i in (1, 2)
        ]
        self.security_group_id = self.ec2.create_security_group(
            GroupName="dynamo-infra", Description="etcd and NATS", VpcId=vpc
        )["GroupId"]

    # -- infra (etcd + NATS on Fargate) ---------------------------------------------------------

    def create_infra(self) -> None:
        infra = self.config.infra
        self.ecs.create_cluster(clusterName=infra.cluster)
        spec = fill_account_placeholders(load_example_taskdef("infra"), self.region)
        for container in spec["containerDefinitions"]:
            container.setdefault("memory", 1024)  # moto needs container-level memory
        self.ecs.register_task_definition(**spec)
        self.ecs.create_service(
            cluster=infra.cluster,
            serviceName=infra.service,
            taskDefinition=spec["family"],
            desiredCount=1,
            launchType="FARGATE",
            networkConfiguration=self._awsvpc(),
        )

    def run_infra_task(self) -> dict[str, Any]:
        """Start an infra task as the service scheduler would; returns the described task."""
        infra = self.config.infra
        task = self.ecs.run_task(
            cluster=infra.cluster,
            taskDefinition=self.infra_task_definition,
            launchType="FARGATE",
            group=f"service:{infra.service}",
            startedBy=f"ecs-svc/{infra.service}",
            networkConfiguration=self._awsvpc(),
        )["tasks"][0]
        return self.describe_task(infra.cluster, task["taskArn"])

    def replace_infra_task(self, old_task_arn: str) -> dict[str, Any]:
        """Fargate replaces the infra task: the new one runs first, then the old one stops."""
        new = self.run_infra_task()
        self.stop_task(self.config.infra.cluster, old_task_arn, "Task replaced by the service scheduler")
        return new

    def stop_task(self, cluster: str, task_arn: str, reason: str = "stopped") -> dict[str, Any]:
        self.ecs.stop_task(cluster=cluster, task=task_arn, reason=reason)
        return self.describe_task(cluster, task_arn)

    def describe_task(self, cluster: str, task_arn: str) -> dict[str, Any]:
        task: dict[str, Any] = self.ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
        return task

    # -- GPU cluster and services ---------------------------------------------------------------

    def create_gpu_cluster(self, instances: int = 2) -> None:
        self.ecs.create_cluster(clusterName=self.config.gpu_cluster)
        for _ in range(instances):
            self.add_gpu_instance()

    def add_gpu_instance(self) -> dict[str, Any]:
        """Launch an EC2 instance and register it as a GPU container instance."""
        if not self.image_id:  # the ECS GPU AMI, as the stack's GpuAmiId resolves it
            parameter = aws.client("ssm").get_parameter(Name=GPU_AMI_PARAMETER)
            self.image_id = parameter["Parameter"]["Value"]
        image = self.image_id
        instance = self.ec2.run_instances(
            ImageId=image, InstanceType="g6e.2xlarge", MinCount=1, MaxCount=1, SubnetId=self.subnet_ids[0]
        )["Instances"][0]
        document = json.dumps({"instanceId": instance["InstanceId"], "region": self.region})
        container_instance = self.ecs.register_container_instance(
            cluster=self.config.gpu_cluster, instanceIdentityDocument=document
        )["containerInstance"]
        self.gpu_instances.append(container_instance)
        return dict(container_instance)

    def gpu_spec(self, role: ServiceRole, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """The example file for ``role`` (or ``base``) with account and region filled in, IP_ADDRESS left."""
        spec = fill_account_placeholders(base or load_example_taskdef(role), self.region)
        spec["family"] = self.config.service(role).family
        for container in spec["containerDefinitions"]:
            container.setdefault("memory", 512)  # moto places tasks only with container-level memory
        return spec

    def create_gpu_services(
        self,
        pasted_ip: str | None = None,
        desired: int | Mapping[str, int] = 1,
        specs: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """Register both GPU task definitions and create their services.

        ``pasted_ip`` mimics today's manual step; None leaves the ``IP_ADDRESS`` placeholder.
        ``specs`` replaces a role's default spec (account and region filled in the same way);
        ``desired`` is both services' count, or one per role.
        """
        for role in ("frontend", "prefill"):
            svc = self.config.service(role)
            spec = self.gpu_spec(role, (specs or {}).get(role))
            if pasted_ip:
                spec = with_ip(spec, pasted_ip)
            registered = self.ecs.register_task_definition(**copy.deepcopy(spec))["taskDefinition"]
            self.ecs.create_service(
                cluster=self.config.gpu_cluster,
                serviceName=svc.service,
                taskDefinition=registered["taskDefinitionArn"],
                desiredCount=desired if isinstance(desired, int) else desired[role],
                launchType="EC2",
                deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
            )

    def create_settled_gpu_services(self, desired: int) -> None:
        """Both GPU services at ``desired`` tasks with their first deployment COMPLETED.

        moto keeps a deployment IN_PROGRESS forever when a service is created with tasks it
        never runs; created at 0 and then scaled, the deployment is complete and moto counts
        the tasks as running (the state the scaler may scale in from).
        """
        self.create_gpu_services(desired=0)
        for role in ("frontend", "prefill"):
            svc = self.config.service(role)
            self.ecs.update_service(
                cluster=self.config.gpu_cluster, service=svc.service, desiredCount=desired
            )

    def run_gpu_task(self, role: ServiceRole, instance_index: int = 0) -> dict[str, Any]:
        """Place one task of the service's current task definition on a GPU container instance."""
        svc = self.config.service(role)
        service = self.ecs.describe_services(cluster=self.config.gpu_cluster, services=[svc.service])[
            "services"
        ][0]
        task = self.ecs.start_task(
            cluster=self.config.gpu_cluster,
            taskDefinition=service["taskDefinition"],
            containerInstances=[self.gpu_instances[instance_index]["containerInstanceArn"]],
            group=f"service:{svc.service}",
            startedBy=f"ecs-svc/{svc.service}",
        )["tasks"][0]
        return self.describe_task(self.config.gpu_cluster, task["taskArn"])

    def _awsvpc(self) -> dict[str, Any]:
        return {
            "awsvpcConfiguration": {
                "subnets": self.subnet_ids,
                "securityGroups": [self.security_group_id],
                "assignPublicIp": "DISABLED",
            }
        }


def task_private_ip(task: dict[str, Any]) -> str:
    ip = eni_private_ip(task)
    if ip:
        return ip
    raise ValueError(f"task {task.get('taskArn')} has no ENI private IPv4 address")


def task_state_change_event(task: dict[str, Any], version: int, region: str, event_id: str) -> dict[str, Any]:
    """An EventBridge ``ECS Task State Change`` event for a described task, as AWS sends it."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = json.loads(json.dumps(task, default=str))
    detail["version"] = version
    detail.setdefault("group", task.get("group", ""))
    detail.setdefault("updatedAt", now)
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": ACCOUNT_ID,
        "time": now,
        "region": region,
        "resources": [task["taskArn"]],
        "detail": detail,
    }


def build_world(config: DeploymentConfig, region: str, gpu_instances: int = 2) -> EcsWorld:
    """Network, infra cluster and service, GPU cluster with instances. No tasks, no GPU services yet."""
    world = EcsWorld(config=config, region=region)
    world.create_network()
    world.create_infra()
    world.create_gpu_cluster(instances=gpu_instances)
    return world
