"""What woke the scaler: the schedule, one of our alarms, a collector's breach event, or a manual invoke.

Every trigger runs the same reconcile of both services (they share the GPU budget). The
trigger is recorded in the decision log; it never carries data the decision uses, so
duplicates and late or out-of-order alarm events only cause one more look.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dynamo_ecs.config import format_validation_error
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.signals.breach_events import EVENT_DETAIL_TYPE, EVENT_SOURCE

TriggerKind = Literal["schedule", "alarm", "breach", "manual"]


class Trigger(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: TriggerKind
    event_id: str | None = None
    alarm: str | None = None
    role: str | None = None
    signal: str | None = None
    state: str | None = None
    dry_run: bool = False


class _AlarmState(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: str


class _AlarmDetail(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    alarm_name: str = Field(alias="alarmName")
    state: _AlarmState


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str
    source: str
    detail_type: str = Field(alias="detail-type")
    detail: dict[str, Any] = Field(default_factory=dict)


class ManualRequest(BaseModel):
    """A manual invoke (`sam remote invoke ScalerFunction`): ``{"dry_run": true}`` or ``{}``."""

    model_config = ConfigDict(extra="forbid")
    dry_run: bool = False


def parse_trigger(event: Any, deployment: str) -> Trigger:
    """The trigger, or `InvalidInputError` (not ours or malformed: nothing to retry)."""
    if isinstance(event, dict) and "detail-type" not in event:
        try:
            manual = ManualRequest.model_validate(event)
        except ValidationError as exc:
            raise InvalidInputError(f"manual scaler request: {format_validation_error(exc, None)}") from exc
        return Trigger(kind="manual", dry_run=manual.dry_run)
    try:
        parsed = _Event.model_validate(event)
    except ValidationError as exc:
        raise InvalidInputError(f"not an EventBridge event: {format_validation_error(exc, None)}") from exc
    if parsed.source == "aws.events" and parsed.detail_type == "Scheduled Event":
        return Trigger(kind="schedule", event_id=parsed.id)
    if parsed.source == "aws.cloudwatch" and parsed.detail_type == "CloudWatch Alarm State Change":
        try:
            detail = _AlarmDetail.model_validate(parsed.detail)
        except ValidationError as exc:
            raise InvalidInputError(f"alarm event: {format_validation_error(exc, None)}") from exc
        match = re.fullmatch(rf"{re.escape(deployment)}-scale-(frontend|prefill)-([a-z]+)", detail.alarm_name)
        if match is None:
            raise InvalidInputError(f"alarm {detail.alarm_name!r} is not a scaling alarm of {deployment!r}")
        return Trigger(
            kind="alarm",
            event_id=parsed.id,
            alarm=detail.alarm_name,
            role=match.group(1),
            signal=match.group(2),
            state=detail.state.value,
        )
    if parsed.source == EVENT_SOURCE and parsed.detail_type == EVENT_DETAIL_TYPE:
        owner = parsed.detail.get("deployment")
        if owner != deployment:
            raise InvalidInputError(f"breach event of deployment {owner!r}, not {deployment!r}")
        signals = sorted({f"{b.get('role')}-{b.get('signal')}" for b in parsed.detail.get("breaches", [])})
        return Trigger(kind="breach", event_id=parsed.id, signal=",".join(signals) or None)
    raise InvalidInputError(f"not a scaler trigger: {parsed.source} / {parsed.detail_type}")
