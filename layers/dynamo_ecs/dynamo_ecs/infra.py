"""Where etcd and NATS are now: the infra service's RUNNING task and its private IPv4 address.

Events are only hints (they come late, twice, out of order), so the address is always read
from ECS itself. Selection rule when several tasks qualify (a replacement under way):

1. only tasks of the infra service (``group == service:<name>``) whose ``lastStatus`` and
   ``desiredStatus`` are both RUNNING (a task ECS is stopping is about to lose its address)
   and that have an ENI private IPv4 address;
2. the newest ``startedAt`` wins (a missing ``startedAt`` falls back to ``createdAt``, then
   counts as oldest);
3. ties are broken by the larger task ARN, so every invocation picks the same task.

No qualifying task means no endpoint: callers change nothing.

The three-member tier (``InfraConfig.members``, docs/infra-tier.md) needs no task at all: its
members are reached under private DNS names that follow each member's task, so the endpoint
is those names (``ETCD_ENDPOINTS`` lists all three, ``NATS_SERVER`` the first as the seed)
and never changes when a member's task is replaced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dynamo_ecs.config import InfraConfig

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class InfraEndpoint:
    """The infra task chosen now and the URLs GPU tasks must use."""

    task_arn: str
    ip: str  # the single task's address, or the seed member's DNS name
    started_at: datetime | None
    etcd_port: int = 2379
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    etcd_hosts: tuple[str, ...] = ()  # every member's DNS name (three-member tier), else empty

    @property
    def etcd_url(self) -> str:
        """``ETCD_ENDPOINTS``: the task's URL, or every member's (comma-separated, as Dynamo reads it)."""
        return ",".join(f"http://{host}:{self.etcd_port}" for host in self.etcd_hosts or (self.ip,))

    @property
    def nats_url(self) -> str:
        return f"nats://{self.ip}:{self.nats_port}"

    @property
    def nats_monitor_url(self) -> str:
        return f"http://{self.ip}:{self.nats_monitor_port}"


@dataclass(frozen=True)
class InfraSelection:
    """The chosen endpoint (or None) and why, for the log and the decision log."""

    endpoint: InfraEndpoint | None
    reason: str
    candidates: int


def eni_private_ip(task: dict[str, Any]) -> str | None:
    for attachment in task.get("attachments") or []:
        if attachment.get("type") != "ElasticNetworkInterface":
            continue
        for detail in attachment.get("details") or []:
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return str(detail["value"])
    return None


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def select_infra_task(tasks: Iterable[dict[str, Any]], config: InfraConfig) -> InfraSelection:
    """Apply the selection rule of this module's docstring to described tasks. Pure."""
    group = f"service:{config.service}"
    candidates = [
        task
        for task in tasks
        if task.get("group") == group
        and task.get("lastStatus") == "RUNNING"
        and task.get("desiredStatus") == "RUNNING"
        and eni_private_ip(task)
    ]
    if not candidates:
        return InfraSelection(None, f"no RUNNING task of {group} with a private IPv4 address", 0)

    def order(task: dict[str, Any]) -> tuple[datetime, str]:
        started = _as_datetime(task.get("startedAt")) or _as_datetime(task.get("createdAt")) or _EPOCH
        return started, str(task.get("taskArn", ""))

    chosen = max(candidates, key=order)
    endpoint = InfraEndpoint(
        task_arn=str(chosen["taskArn"]),
        ip=str(eni_private_ip(chosen)),
        started_at=_as_datetime(chosen.get("startedAt")),
        etcd_port=config.etcd_port,
        nats_port=config.nats_port,
        nats_monitor_port=config.nats_monitor_port,
    )
    reason = (
        "the only RUNNING infra task"
        if len(candidates) == 1
        else (f"newest startedAt of {len(candidates)} RUNNING infra tasks")
    )
    return InfraSelection(endpoint, reason, len(candidates))


def member_endpoint(config: InfraConfig) -> InfraSelection:
    """The three-member tier's endpoint: its members' DNS names. Pure."""
    endpoint = InfraEndpoint(
        task_arn="",
        ip=config.members[0],
        started_at=None,
        etcd_port=config.etcd_port,
        nats_port=config.nats_port,
        nats_monitor_port=config.nats_monitor_port,
        etcd_hosts=tuple(config.members),
    )
    return InfraSelection(endpoint, f"the {len(config.members)} members' DNS names", len(config.members))


def find_infra_endpoint(config: InfraConfig, ecs: Any) -> InfraSelection:
    """The members' names (three-member tier, no API call), or the infra service's tasks read
    from ECS (2 API calls when it runs one task) and selected."""
    if config.members:
        return member_endpoint(config)
    arns: list[str] = []
    for page in ecs.get_paginator("list_tasks").paginate(
        cluster=config.cluster, serviceName=config.service, desiredStatus="RUNNING"
    ):
        arns.extend(page.get("taskArns", []))
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(arns), 100):
        tasks.extend(ecs.describe_tasks(cluster=config.cluster, tasks=arns[start : start + 100])["tasks"])
    return select_infra_task(tasks, config)
