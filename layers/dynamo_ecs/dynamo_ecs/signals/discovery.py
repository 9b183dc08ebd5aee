"""Where the GPU services' tasks run: task -> container instance -> EC2 instance -> address.

One `ClusterView` per collection serves both the frontend scrapes and the GPU utilization
lookup. Reading it costs, per collection: ListTasks per service, DescribeTasks,
DescribeContainerInstances, DescribeInstances (batched by 100) and DescribeTaskDefinition
once per task definition revision (revisions are immutable, so what is read of one, its
network mode and its worker's system port, is cached for the life of the Lambda container).

Scrape address of a frontend task, by the task definition's network mode:

- ``host``: the container instance's EC2 private IP and ``frontend.metrics_port``;
- ``awsvpc``: the task's own ENI private IP and ``frontend.metrics_port``;
- ``bridge``: the container instance's private IP and the host port ECS bound to
  ``frontend.metrics_port`` (``containers[].networkBindings``); no binding, no target.

The same DescribeTaskDefinition also tells the port a task's Dynamo worker serves its system
server on (``DYN_SYSTEM_PORT`` in a container's environment, or none), which the workers'
source (`dynamo_ecs.signals.workers`) checks before it scrapes a task.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.infra import eni_private_ip

SYSTEM_PORT_VARIABLE = "DYN_SYSTEM_PORT"


@dataclass(frozen=True)
class DefinitionFacts:
    """What the collector needs of a task definition revision (immutable per ARN)."""

    network_mode: str
    # The DYN_SYSTEM_PORT a container of the revision sets (its worker's system server), or None.
    system_port: int | None = None


_DEFINITIONS: dict[str, DefinitionFacts] = {}  # task definition ARN -> its facts
_DEFINITIONS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ServiceTask:
    role: ServiceRole
    task_arn: str
    task_definition_arn: str
    network_mode: str
    container_instance_arn: str | None
    ec2_instance_id: str | None
    instance_ip: str | None
    task: dict[str, Any]
    # DYN_SYSTEM_PORT of the task's definition: where its worker serves /metrics (None: nowhere)
    system_port: int | None = None


@dataclass(frozen=True)
class ScrapeTarget:
    """A frontend ``/metrics`` endpoint; ``key`` (the task ARN) names it in the state table."""

    key: str
    url: str


@dataclass
class ClusterView:
    tasks: dict[ServiceRole, list[ServiceTask]] = field(default_factory=dict)

    def instance_ids(self, role: ServiceRole) -> list[str]:
        return sorted({t.ec2_instance_id for t in self.tasks.get(role, []) if t.ec2_instance_id})


def host_port_binding(task: dict[str, Any], container_port: int) -> int | None:
    """The host port ECS bound to ``container_port`` in a bridge-mode task, if any."""
    for container in task.get("containers") or []:
        for binding in container.get("networkBindings") or []:
            if binding.get("containerPort") == container_port and binding.get("hostPort"):
                return int(binding["hostPort"])
    return None


def scrape_target(task: ServiceTask, metrics_port: int) -> tuple[ScrapeTarget | None, str | None]:
    """The ``/metrics`` URL of a frontend task, or why there is none. Pure."""
    if task.network_mode == "awsvpc":
        ip = eni_private_ip(task.task)
        if not ip:
            return None, f"{task.task_arn}: awsvpc task without an ENI private IPv4 address"
        return ScrapeTarget(task.task_arn, f"http://{ip}:{metrics_port}/metrics"), None
    if not task.instance_ip:
        return None, f"{task.task_arn}: container instance private IP unknown"
    if task.network_mode == "bridge":
        port = host_port_binding(task.task, metrics_port)
        if port is None:
            return None, f"{task.task_arn}: bridge task has no host port bound to {metrics_port}"
        return ScrapeTarget(task.task_arn, f"http://{task.instance_ip}:{port}/metrics"), None
    return ScrapeTarget(task.task_arn, f"http://{task.instance_ip}:{metrics_port}/metrics"), None


def service_targets(
    cluster: ClusterView | None, role: ServiceRole, port: int, what: str
) -> tuple[list[ScrapeTarget], list[str]]:
    """The ``/metrics`` URL on ``port`` of every RUNNING task of ``role``, and why some have none."""
    if cluster is None:
        return [], [f"GPU cluster not read: no {what} target"]
    found: list[ScrapeTarget] = []
    problems: list[str] = []
    for task in cluster.tasks.get(role, []):
        target, problem = scrape_target(task, port)
        if target is not None:
            found.append(target)
        elif problem:
            problems.append(problem)
    return found, problems


def _chunks(items: list[str], size: int = 100) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def definition_facts(definition: dict[str, Any]) -> DefinitionFacts:
    """The network mode and the worker's system port of a described task definition. Pure.

    The system port is the first container's ``DYN_SYSTEM_PORT`` that is a port number; a value
    that is not one (Dynamo would not start its system server on it) counts as none.
    """
    port: int | None = None
    for container in definition.get("containerDefinitions") or []:
        for variable in container.get("environment") or []:
            value = str(variable.get("value", "")).strip()
            if variable.get("name") == SYSTEM_PORT_VARIABLE and value.isdigit() and 0 < int(value) < 65536:
                port = int(value)
                break
        if port is not None:
            break
    network_mode = str(definition.get("networkMode") or "bridge")  # ECS' default for EC2
    return DefinitionFacts(network_mode, port)


def forget_task_definitions() -> None:
    """A cold start: every revision is described again (tests, whose moto accounts reuse ARNs)."""
    with _DEFINITIONS_LOCK:
        _DEFINITIONS.clear()


def _definition_facts(ecs: Any, task_definition_arn: str) -> DefinitionFacts:
    with _DEFINITIONS_LOCK:
        known = _DEFINITIONS.get(task_definition_arn)
    if known is None:
        described = ecs.describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"]
        known = definition_facts(described)
        with _DEFINITIONS_LOCK:
            _DEFINITIONS[task_definition_arn] = known
    return known


def read_cluster(config: DeploymentConfig, ecs: Any, ec2: Any) -> ClusterView:
    """The RUNNING tasks of both GPU services and where they run."""
    cluster = config.gpu_cluster
    described: dict[ServiceRole, list[dict[str, Any]]] = {}
    for role in SERVICE_ROLES:
        service = config.service(role).service
        arns: list[str] = []
        for page in ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, serviceName=service, desiredStatus="RUNNING"
        ):
            arns.extend(page.get("taskArns", []))
        tasks: list[dict[str, Any]] = []
        for chunk in _chunks(arns):
            tasks.extend(ecs.describe_tasks(cluster=cluster, tasks=chunk)["tasks"])
        # ListTasks' serviceName filter is not trusted alone (moto ignores it): group decides.
        described[role] = [
            t for t in tasks if t.get("group") == f"service:{service}" and t.get("lastStatus") == "RUNNING"
        ]

    instance_arns = sorted(
        {t["containerInstanceArn"] for ts in described.values() for t in ts if t.get("containerInstanceArn")}
    )
    ec2_ids: dict[str, str] = {}
    for chunk in _chunks(instance_arns):
        for instance in ecs.describe_container_instances(cluster=cluster, containerInstances=chunk)[
            "containerInstances"
        ]:
            if instance.get("ec2InstanceId"):
                ec2_ids[instance["containerInstanceArn"]] = instance["ec2InstanceId"]
    ips: dict[str, str] = {}
    for chunk in _chunks(sorted(set(ec2_ids.values()))):
        for reservation in ec2.describe_instances(InstanceIds=chunk)["Reservations"]:
            for instance in reservation["Instances"]:
                if instance.get("PrivateIpAddress"):
                    ips[instance["InstanceId"]] = instance["PrivateIpAddress"]

    view = ClusterView()
    for role, tasks in described.items():
        view.tasks[role] = []
        for task in sorted(tasks, key=lambda t: str(t["taskArn"])):
            instance_arn = task.get("containerInstanceArn")
            ec2_id = ec2_ids.get(instance_arn) if instance_arn else None
            facts = _definition_facts(ecs, str(task["taskDefinitionArn"]))
            view.tasks[role].append(
                ServiceTask(
                    role=role,
                    task_arn=str(task["taskArn"]),
                    task_definition_arn=str(task["taskDefinitionArn"]),
                    network_mode=facts.network_mode,
                    container_instance_arn=instance_arn,
                    ec2_instance_id=ec2_id,
                    instance_ip=ips.get(ec2_id) if ec2_id else None,
                    task=task,
                    system_port=facts.system_port,
                )
            )
    return view
