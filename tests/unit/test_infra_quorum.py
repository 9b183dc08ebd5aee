"""The three-member tier's majority, from described tasks, and the events infra_watcher takes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dynamo_ecs.config import InfraConfig
from dynamo_ecs.endpoints.events import parse_infra_event
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.infra_quorum import running_members

MEMBERS = InfraConfig(members=[f"infra-{k}.dynamo-infra.internal" for k in range(3)])
EVENTS = Path(__file__).resolve().parents[2] / "events"


def _task(group: str, last: str = "RUNNING", desired: str = "RUNNING") -> dict[str, Any]:
    return {"group": group, "lastStatus": last, "desiredStatus": desired}


def test_two_of_three_running_members_are_a_majority_one_is_not() -> None:
    two = [_task("service:dynamo-infra-0"), _task("service:dynamo-infra-2")]
    assert running_members(MEMBERS, two).quorum
    one = [_task("service:dynamo-infra-0"), _task("service:dynamo-infra-2", desired="STOPPED")]
    state = running_members(MEMBERS, one)
    assert (state.running, state.quorum) == ((0,), False)


def test_only_the_members_own_running_tasks_count() -> None:
    # a task being started or stopped, and tasks of other services, are not members running
    tasks = [
        _task("service:dynamo-infra-0", last="PENDING"),
        _task("service:dynamo-infra-1", last="STOPPED", desired="STOPPED"),
        _task("service:dynamo-infra"),  # the single task's service
        _task("service:dynamo-frontend"),
        _task("service:dynamo-infra-2"),
    ]
    assert running_members(MEMBERS, tasks).running == (2,)


def _event(group: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "infra_task_running.json").read_text())
    event["detail"]["group"] = group
    return event


def test_a_members_event_is_ours_only_with_the_three_member_tier() -> None:
    assert (
        parse_infra_event(_event("service:dynamo-infra-1"), MEMBERS).detail.group == "service:dynamo-infra-1"
    )
    with pytest.raises(InvalidInputError, match="not the infra service"):
        parse_infra_event(_event("service:dynamo-infra-1"), InfraConfig())
    with pytest.raises(InvalidInputError, match="not the infra service"):
        parse_infra_event(_event("service:dynamo-infra-3"), MEMBERS)


def test_the_nats_signals_read_every_members_monitor_under_its_name() -> None:
    # Given the three-member tier: its NATS is a cluster of three servers, one per member
    from dynamo_ecs.signals.jetstream import nats_monitors

    # When the signal sources look for the monitors (no ECS call: the names do not change)
    urls, problem = nats_monitors(MEMBERS, ["http://infra-1.dynamo-infra.internal:8222"], ecs=None)
    # Then every member's monitor is read, each once
    assert problem is None
    assert urls == [f"http://infra-{k}.dynamo-infra.internal:8222" for k in range(3)]
