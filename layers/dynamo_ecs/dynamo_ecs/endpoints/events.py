"""The EventBridge ``ECS Task State Change`` event, as far as the infra watcher reads it.

The event is a hint to look again, never the source of the address; it is checked only to
ignore what is not ours. Types are strict and strings bounded; unknown fields are allowed:
AWS adds fields at any time.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, ValidationError

from dynamo_ecs.config import InfraConfig
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.inputs import ArnText, AwsEnvelope, ShortText


class TaskDetail(AwsEnvelope):
    cluster_arn: ArnText = Field(alias="clusterArn")
    task_arn: ArnText = Field(alias="taskArn")
    group: Annotated[str, StringConstraints(max_length=512)] = ""
    last_status: Annotated[str, StringConstraints(pattern=r"^[A-Z_]{1,32}$")] = Field(alias="lastStatus")
    version: int = Field(0, ge=0)


class TaskStateChange(AwsEnvelope):
    id: ShortText
    source: ShortText
    detail_type: ShortText = Field(alias="detail-type")
    detail: TaskDetail


def parse_infra_event(event: Any, infra: InfraConfig) -> TaskStateChange:
    """The event if it is a task state change of the infra service or of a member's service
    (``<service>-<k>``, the three-member tier); else `InvalidInputError`."""
    try:
        parsed = TaskStateChange.model_validate(event)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors(include_url=False))
        raise InvalidInputError(f"not an ECS Task State Change event (bad or missing: {fields})") from exc
    if parsed.source != "aws.ecs" or parsed.detail_type != "ECS Task State Change":
        raise InvalidInputError(f"not ours: {parsed.source[:80]} / {parsed.detail_type[:80]}")
    cluster = parsed.detail.cluster_arn.rsplit("/", 1)[-1]
    groups = {
        f"service:{infra.service}",
        *(f"service:{infra.service}-{k}" for k in range(len(infra.members))),
    }
    if cluster != infra.cluster or parsed.detail.group not in groups:
        raise InvalidInputError(
            f"not the infra service: cluster {cluster[:80]}, group {parsed.detail.group[:80]!r}"
        )
    return parsed
