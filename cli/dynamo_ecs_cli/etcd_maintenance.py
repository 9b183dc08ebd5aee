"""``dynamo-ecs etcd-maintenance [status|recover]``: the three-member tier's etcd maintenance as
root, in the one-off task the stack registered (docs/infra-tier.md, "History and quota").

Root's certificate never leaves the infra cluster's tasks (docs/security-planes.md), so the
command does not run etcdctl itself: it starts the stack's ``<DeploymentName>-etcd-maintenance``
task (its family is the stack's ``EtcdMaintenanceTaskFamily`` output) with RunTask, with the
members' own network configuration read from their services (the infra security group, the
first member's subnet, no public IP), the action as the one environment override, and
``startedBy`` `STARTED_BY`; then it waits until the task stops and reads its containers' exit
codes and the maintenance container's log (its awslogs group and stream prefix). The
operator's own AWS credentials make every call.

Two maintenance tasks must never defragment at once: a stack with one still running is refused,
and when two are started at the same moment (each command saw none), the one ECS created later
is stopped by its own command before it does anything (its writer runs first), so exactly one
goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from dynamo_ecs.planes.infra_settings import MAINTENANCE_ACTION_VARIABLE, MAINTENANCE_ACTIONS
from dynamo_ecs_cli.stack import described_tasks

FAMILY_OUTPUT = "EtcdMaintenanceTaskFamily"
MAINTENANCE_CONTAINER = "etcd-maintenance"
STARTED_BY = "dynamo-ecs-etcd-maintenance"
ACTIONS = MAINTENANCE_ACTIONS


class MaintenanceRefusedError(Exception):
    """The command will not start the task; the message names why and the fix (exit code 1)."""


def single_task_refusal(parameters: Mapping[str, str], outputs: Mapping[str, str], stack: str) -> str | None:
    """Why a stack has no maintenance task (None: it has one)."""
    if parameters.get("InfraMembers", "3") == "1" or FAMILY_OUTPUT not in outputs:
        return (
            f"stack {stack!r} runs a single infra task (InfraMembers 1): no planes and no root "
            "certificate, so no maintenance task; run the plain etcdctl steps of docs/infra-tier.md "
            '("The way out", without the certificate options) against http://<task address>:2379 '
            "from a GPU instance"
        )
    return None


def member_network(ecs: Any, cluster: str, services: Sequence[str]) -> dict[str, Any]:
    """The members' awsvpc configuration as their services have it: security groups and public
    IP as they are, the first member's first subnet (a member's zone)."""
    if not services:
        raise MaintenanceRefusedError(f"no member services in {cluster}: is the stack's tier deployed?")
    described = ecs.describe_services(cluster=cluster, services=list(services)).get("services") or []
    by_name = {s.get("serviceName"): s for s in described}
    first = by_name.get(services[0])
    config = ((first or {}).get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
    if not config.get("subnets") or not config.get("securityGroups"):
        raise MaintenanceRefusedError(
            f"member service {services[0]} in {cluster} has no awsvpc network configuration "
            "(subnets and security groups): check the service with `aws ecs describe-services`"
        )
    return {
        "subnets": [config["subnets"][0]],
        "securityGroups": list(config["securityGroups"]),
        "assignPublicIp": config.get("assignPublicIp", "DISABLED"),
    }


def run_task_request(cluster: str, family: str, action: str, network: Mapping[str, Any]) -> dict[str, Any]:
    """RunTask's parameters: the family's newest revision, the action its one override."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    return {
        "cluster": cluster,
        "taskDefinition": family,
        "launchType": "FARGATE",
        "count": 1,
        "startedBy": STARTED_BY,
        "networkConfiguration": {"awsvpcConfiguration": dict(network)},
        "overrides": {
            "containerOverrides": [
                {
                    "name": MAINTENANCE_CONTAINER,
                    "environment": [{"name": MAINTENANCE_ACTION_VARIABLE, "value": action}],
                }
            ]
        },
    }


def running_tasks(ecs: Any, cluster: str, family: str) -> list[dict[str, Any]]:
    """The family's tasks not yet STOPPED, oldest first: pending and running ones, and those
    still stopping (desired STOPPED: an etcdctl defrag may still be under way)."""
    alive = [
        task
        for desired in ("RUNNING", "STOPPED")
        for task in described_tasks(ecs, cluster, family=family, desiredStatus=desired)
        if task.get("lastStatus") != "STOPPED"
    ]
    return sorted(alive, key=_start_order)


def _start_order(task: Mapping[str, Any]) -> tuple[float, str]:
    created: Any = task.get("createdAt")
    stamp = created.timestamp() if isinstance(created, datetime) else float(created or 0)
    return (stamp, str(task.get("taskArn")))


def first_of(tasks: Sequence[Mapping[str, Any]], ours: str) -> str | None:
    """The task that goes on when several run at once (the oldest; ties by ARN), if not ``ours``."""
    ordered = sorted(tasks, key=_start_order)
    return None if not ordered or ordered[0].get("taskArn") == ours else str(ordered[0].get("taskArn"))


def task_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def log_stream(definition: Mapping[str, Any], container: str, arn: str) -> tuple[str, str] | None:
    """The awslogs group and stream of ``container`` in task ``arn`` (prefix/container/task id)."""
    for each in definition.get("containerDefinitions") or []:
        if each.get("name") != container:
            continue
        config = each.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") != "awslogs" or "awslogs-group" not in options:
            return None
        prefix = options.get("awslogs-stream-prefix")
        stream = f"{prefix}/{container}/{task_id(arn)}" if prefix else None
        return (options["awslogs-group"], stream) if stream else None
    return None


def log_lines(logs: Any, group: str, stream: str) -> list[str]:
    """Every event of the stream, oldest first."""
    lines: list[str] = []
    token: str | None = None
    while True:
        extra = {"nextToken": token} if token else {}
        answer = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True, **extra)
        lines += [str(e.get("message", "")) for e in answer.get("events") or []]
        following = answer.get("nextForwardToken")
        if not answer.get("events") or following == token:
            return lines
        token = following


@dataclass
class Outcome:
    task_arn: str
    stopped: bool
    stopped_reason: str = ""
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    log_where: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.stopped
            and self.exit_codes.get(MAINTENANCE_CONTAINER) == 0
            and all(code == 0 for code in self.exit_codes.values())
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task_arn,
            "stopped": self.stopped,
            "stopped_reason": self.stopped_reason,
            "exit_codes": self.exit_codes,
            "log": self.log,
            "log_stream": self.log_where,
            "ok": self.ok,
        }


def wait_stopped(
    ecs: Any,
    cluster: str,
    arn: str,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """The task once STOPPED; None if it still runs after ``timeout_s``."""
    deadline = clock() + timeout_s
    while True:
        tasks = ecs.describe_tasks(cluster=cluster, tasks=[arn]).get("tasks") or []
        if tasks and tasks[0].get("lastStatus") == "STOPPED":
            return dict(tasks[0])
        if clock() > deadline:
            return None
        sleep(poll_s)


def outcome(ecs: Any, logs: Any, cluster: str, arn: str, task: Mapping[str, Any] | None) -> Outcome:
    """What the stopped task left: its containers' exit codes and the maintenance container's log."""
    if task is None:
        return Outcome(arn, stopped=False)
    result = Outcome(
        arn,
        stopped=True,
        stopped_reason=str(task.get("stoppedReason", "")),
        exit_codes={str(c.get("name")): c.get("exitCode") for c in task.get("containers") or []},
    )
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    where = log_stream(definition, MAINTENANCE_CONTAINER, arn)
    if where is None:
        result.log_where = f"{MAINTENANCE_CONTAINER} has no awslogs configuration"
        return result
    group, stream = where
    result.log_where = f"{group} {stream}"
    try:
        result.log = log_lines(logs, group, stream)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        result.log_where += " (no such stream: the container wrote nothing, or never started)"
    return result
