"""What woke the scaler: the schedule, one of our alarms, a collector's breach event, or a manual invoke.

Every trigger runs the same reconcile of both services (they share the GPU budget). The
trigger is recorded in the decision log; it never carries data the decision uses, so
duplicates and late or out-of-order alarm events only cause one more look.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole, format_validation_error
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.inputs import AwsEnvelope, ShortText, StrictPayload
from dynamo_ecs.scaling.signals import ActivationName, SignalName, activation_specs, alarm_name, signal_specs
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


class _AlarmState(AwsEnvelope):
    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]


class _AlarmDetail(AwsEnvelope):
    alarm_name: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(alias="alarmName")
    state: _AlarmState


class _Breach(AwsEnvelope):
    role: ServiceRole
    signal: SignalName | ActivationName


class _BreachDetail(AwsEnvelope):
    deployment: ShortText
    breaches: list[_Breach] = Field(min_length=1, max_length=16)


class _Event(AwsEnvelope):
    id: ShortText
    source: ShortText
    detail_type: ShortText = Field(alias="detail-type")
    detail: dict[str, Any] = Field(default_factory=dict)


class ManualRequest(StrictPayload):
    """A manual invoke (`sam remote invoke ScalerFunction`): ``{"dry_run": true}`` or ``{}``."""

    dry_run: bool = False


def our_alarms(config: DeploymentConfig) -> dict[str, tuple[ServiceRole, SignalName | ActivationName]]:
    """The scale-out alarms this stack creates: one per signal that is on (its target is set)."""
    specs = [spec for role in SERVICE_ROLES for spec in signal_specs(config, role)]
    specs += activation_specs(config)  # the wake-from-zero alarm, where prefill can sit at zero
    return {alarm_name(config.deployment, spec.role, spec.name): (spec.role, spec.name) for spec in specs}


def parse_trigger(event: Any, config: DeploymentConfig) -> Trigger:
    """The trigger, or `InvalidInputError` (not ours or malformed: nothing to retry)."""
    deployment = config.deployment
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
        known = our_alarms(config)
        if detail.alarm_name not in known:
            raise InvalidInputError(
                f"alarm {detail.alarm_name[:80]!r} is not a scaling alarm of {deployment!r} "
                f"(ours: {', '.join(sorted(known)) or 'none, every signal is off'})"
            )
        role, signal = known[detail.alarm_name]
        return Trigger(
            kind="alarm",
            event_id=parsed.id,
            alarm=detail.alarm_name,
            role=role,
            signal=signal,
            state=detail.state.value,
        )
    if parsed.source == EVENT_SOURCE and parsed.detail_type == EVENT_DETAIL_TYPE:
        try:
            breach = _BreachDetail.model_validate(parsed.detail)
        except ValidationError as exc:
            raise InvalidInputError(f"breach event: {format_validation_error(exc, None)}") from exc
        if breach.deployment != deployment:
            raise InvalidInputError(
                f"breach event of deployment {breach.deployment[:80]!r}, not {deployment!r}"
            )
        signals = sorted({f"{b.role}-{b.signal}" for b in breach.breaches})
        return Trigger(kind="breach", event_id=parsed.id, signal=",".join(signals))
    raise InvalidInputError(f"not a scaler trigger: {parsed.source[:80]} / {parsed.detail_type[:80]}")
