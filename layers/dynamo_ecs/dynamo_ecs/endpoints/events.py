"""The EventBridge ``ECS Task State Change`` event, as far as the infra watcher reads it.

The event is a hint to look again, never the source of the address; it is checked only to
ignore what is not ours. Unknown fields are allowed: AWS adds fields at any time.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dynamo_ecs.config import InfraConfig
from dynamo_ecs.errors import InvalidInputError


class TaskDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    cluster_arn: str = Field(alias="clusterArn")
    task_arn: str = Field(alias="taskArn")
    group: str = ""
    last_status: str = Field(alias="lastStatus")
    version: int = 0


class TaskStateChange(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    source: str
    detail_type: str = Field(alias="detail-type")
    detail: TaskDetail


def parse_infra_event(event: Any, infra: InfraConfig) -> TaskStateChange:
    """The event if it is a task state change of the infra service; else `InvalidInputError`."""
    try:
        parsed = TaskStateChange.model_validate(event)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors(include_url=False))
        raise InvalidInputError(f"not an ECS Task State Change event (bad or missing: {fields})") from exc
    if parsed.source != "aws.ecs" or parsed.detail_type != "ECS Task State Change":
        raise InvalidInputError(f"not ours: {parsed.source} / {parsed.detail_type}")
    cluster = parsed.detail.cluster_arn.rsplit("/", 1)[-1]
    if cluster != infra.cluster or parsed.detail.group != f"service:{infra.service}":
        raise InvalidInputError(f"not the infra service: cluster {cluster}, group {parsed.detail.group!r}")
    return parsed
