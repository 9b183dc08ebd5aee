"""What the scaler accepts as a trigger, and what it drops without retry."""

from __future__ import annotations

import json

import pytest

from devtools.scaling_inputs import alarm_state_change_event, schedule_event
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.scaling.triggers import parse_trigger
from dynamo_ecs.signals.base import Datum
from dynamo_ecs.signals.breach_events import breach_event, breaches


def test_our_alarm_names_role_and_signal() -> None:
    trigger = parse_trigger(
        alarm_state_change_event("dynamo-scale-prefill-queue", "ALARM", 0.0), DeploymentConfig()
    )
    assert (trigger.kind, trigger.role, trigger.signal, trigger.state) == (
        "alarm",
        "prefill",
        "queue",
        "ALARM",
    )


@pytest.mark.parametrize("name", ["other-scale-frontend-ttft", "dynamo-scale-decode-ttft", "dynamo-cpu-high"])
def test_alarms_that_are_not_ours_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError, match=name):
        parse_trigger(alarm_state_change_event(name, "ALARM", 0.0), DeploymentConfig())


def test_schedule_and_manual_requests() -> None:
    assert parse_trigger(schedule_event(0.0), DeploymentConfig()).kind == "schedule"
    assert parse_trigger({}, DeploymentConfig()).kind == "manual"
    assert parse_trigger({"dry_run": True}, DeploymentConfig()).dry_run


def test_a_manual_request_with_an_unknown_field_names_it() -> None:
    with pytest.raises(InvalidInputError, match="dryrun"):
        parse_trigger({"dryrun": True}, DeploymentConfig())


def test_a_breach_event_of_another_deployment_is_refused() -> None:
    entry = breach_event(DeploymentConfig(deployment="other"), [{"role": "frontend", "signal": "ttft"}], 0.0)
    event = {
        "id": "1",
        "source": entry["Source"],
        "detail-type": entry["DetailType"],
        "detail": json.loads(entry["Detail"]),
    }
    with pytest.raises(InvalidInputError, match="other"):
        parse_trigger(event, DeploymentConfig())
    assert parse_trigger(event, DeploymentConfig(deployment="other")).kind == "breach"


def test_breaches_compare_each_published_value_with_its_target() -> None:
    config = DeploymentConfig()
    data = [
        Datum("TimeToFirstTokenMean", "frontend", 510.0),  # above 500: both services read it
        Datum("TimeToFirstTokenP90", "frontend", 5000.0),  # the default targets are means
        Datum("InterTokenLatencyMean", "frontend", 50.0),  # at its target: its alarm stays OK too
        Datum("QueueDepth", "prefill", 30.0),  # above one replica's share of 8
        Datum("JetStreamLag", "prefill", 30.0),  # no JetStream target by default
    ]
    found = {(b["role"], b["signal"]) for b in breaches(config, data)}
    assert found == {("frontend", "ttft"), ("prefill", "ttft"), ("prefill", "queue")}


def test_a_value_within_the_scalers_tolerance_is_still_a_breach_as_its_alarm_says() -> None:
    # 52 is within 10 % of the ITL target 50 (the scaler will not act on it alone), yet its
    # alarm (GreaterThanThreshold 50) goes to ALARM: the hint must not come after the alarm.
    found = breaches(DeploymentConfig(), [Datum("InterTokenLatencyMean", "frontend", 52.0)])
    assert [(b["role"], b["signal"]) for b in found] == [("frontend", "itl")]


@pytest.mark.parametrize(
    "name",
    [
        "dynamo-scale-frontend-bogus",  # shaped like ours, but no such signal
        "dynamo-scale-prefill-itl",  # a signal of the frontend only
        "dynamo-scale-frontend-ttft" + "x" * 1_000_000,  # far beyond CloudWatch's 255
    ],
)
def test_only_the_alarms_this_stack_creates_are_ours(name: str) -> None:
    with pytest.raises(InvalidInputError, match="alarm"):
        parse_trigger(alarm_state_change_event(name, "ALARM", 0.0), DeploymentConfig())


def test_an_alarm_whose_signal_is_off_is_not_ours() -> None:
    off = DeploymentConfig.model_validate({"frontend": {"targets": {"ttft_ms": None}}})
    event = alarm_state_change_event("dynamo-scale-frontend-ttft", "ALARM", 0.0)
    with pytest.raises(InvalidInputError, match="not a scaling alarm"):
        parse_trigger(event, off)
    assert parse_trigger(event, DeploymentConfig()).signal == "ttft"


@pytest.mark.parametrize(
    "breaches", [None, 3, "frontend-ttft", [], [1], [{"role": "decode", "signal": "ttft"}]]
)
def test_a_malformed_breach_list_is_ignored_with_a_reason(breaches: object) -> None:
    event = {
        "id": "1",
        "source": "dynamo-ecs.collector",
        "detail-type": "Dynamo Signals Breached",
        "detail": {"deployment": "dynamo", "at": 0.0, "breaches": breaches},
    }
    with pytest.raises(InvalidInputError, match="breaches"):
        parse_trigger(event, DeploymentConfig())


@pytest.mark.parametrize("dry_run", ["no", "yes", 1, 0, None])
def test_dry_run_is_a_boolean_not_something_like_one(dry_run: object) -> None:
    with pytest.raises(InvalidInputError, match="dry_run"):
        parse_trigger({"dry_run": dry_run}, DeploymentConfig())


def test_refused_requests_are_a_breach_only_where_prefill_can_sit_at_zero() -> None:
    refused = [Datum("UnavailableRequestRate", "frontend", 0.2)]
    assert breaches(DeploymentConfig(), refused) == []
    to_zero = DeploymentConfig.model_validate(
        {"prefill": {"min": 0}, "scaling": {"prefill_scale_to_zero": True}}
    )
    assert {(b["role"], b["signal"]) for b in breaches(to_zero, refused)} == {("prefill", "refused")}
    assert breaches(to_zero, [Datum("UnavailableRequestRate", "frontend", 0.0)]) == []
