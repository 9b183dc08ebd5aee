"""Choosing the infra task: RUNNING only, newest startedAt, deterministic ties."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dynamo_ecs.config import InfraConfig
from dynamo_ecs.infra import find_infra_endpoint, select_infra_task

CONFIG = InfraConfig()


def _task(
    arn: str,
    ip: str | None,
    started: str | None = None,
    last: str = "RUNNING",
    desired: str = "RUNNING",
    group: str = "service:dynamo-infra",
) -> dict[str, Any]:
    details = [{"name": "privateIPv4Address", "value": ip}] if ip else []
    task: dict[str, Any] = {
        "taskArn": arn,
        "group": group,
        "lastStatus": last,
        "desiredStatus": desired,
        "attachments": [{"type": "ElasticNetworkInterface", "details": details}],
    }
    if started:
        task["startedAt"] = started
    return task


def test_newest_started_task_wins_during_a_replacement() -> None:
    old = _task("arn:task/b-old", "10.0.1.5", "2026-11-28T10:00:00Z")
    new = _task("arn:task/a-new", "10.0.1.9", "2026-11-28T11:00:00Z")
    selection = select_infra_task([old, new], CONFIG)
    assert selection.endpoint is not None
    assert selection.endpoint.ip == "10.0.1.9"
    assert selection.endpoint.started_at == datetime(2026, 11, 28, 11, tzinfo=UTC)
    assert selection.candidates == 2
    assert "newest startedAt" in selection.reason


def test_order_of_input_does_not_matter() -> None:
    tasks = [_task(f"arn:task/{i}", f"10.0.0.{i}", "2026-11-28T10:00:00Z") for i in range(1, 6)]
    chosen = {select_infra_task(order, CONFIG).endpoint.ip for order in (tasks, tasks[::-1])}  # type: ignore[union-attr]
    assert chosen == {"10.0.0.5"}, "equal startedAt: the larger task ARN wins, whatever the order"


def test_stopping_pending_foreign_and_addressless_tasks_are_never_chosen() -> None:
    tasks = [
        _task("arn:task/1", "10.0.0.1", desired="STOPPED"),
        _task("arn:task/2", "10.0.0.2", last="PENDING"),
        _task("arn:task/3", "10.0.0.3", group="service:other"),
        _task("arn:task/4", None),
    ]
    selection = select_infra_task(tasks, CONFIG)
    assert selection.endpoint is None
    assert "no RUNNING task of service:dynamo-infra" in selection.reason


def test_endpoint_urls_use_configured_ports() -> None:
    config = InfraConfig(etcd_port=12379, nats_port=14222)
    endpoint = select_infra_task([_task("arn:task/1", "10.0.0.7")], config).endpoint
    assert endpoint is not None
    assert endpoint.etcd_url == "http://10.0.0.7:12379"
    assert endpoint.nats_url == "nats://10.0.0.7:14222"


# --- The three-member tier: its members' DNS names, whichever tasks run -----------------------

MEMBERS = [f"infra-{k}.dynamo-infra.internal" for k in range(3)]


def test_the_three_member_tier_is_reached_under_its_members_names_without_any_task() -> None:
    # Given the three members' names and no task at all (a member's task is being replaced)
    config = InfraConfig(members=MEMBERS)
    # When the endpoint is found
    selection = find_infra_endpoint(config, ecs=None)  # no API call: names need no task
    # Then ETCD_ENDPOINTS lists every member and NATS_SERVER is one seed (a list makes Dynamo exit 1)
    assert selection.endpoint is not None
    assert selection.endpoint.etcd_url == ",".join(f"http://{name}:2379" for name in MEMBERS)
    assert selection.endpoint.nats_url == f"nats://{MEMBERS[0]}:4222"
    assert selection.endpoint.nats_monitor_url == f"http://{MEMBERS[0]}:8222"


def test_the_single_task_keeps_one_address() -> None:
    endpoint = select_infra_task([_task("arn:task/a", "10.0.1.5", "2026-11-28T10:00:00Z")], CONFIG).endpoint
    assert endpoint is not None
    assert (endpoint.etcd_url, endpoint.nats_url) == ("http://10.0.1.5:2379", "nats://10.0.1.5:4222")


@pytest.mark.parametrize(
    ("members", "wanted"),
    [
        (["infra-0.dynamo-infra.internal", "http://infra-1:2379"], "is not a DNS name"),
        (["10.0.1.5"], "is not a DNS name"),
        ([MEMBERS[0], MEMBERS[0]], "name one member twice"),
    ],
)
def test_a_member_that_is_no_dns_name_is_refused_naming_the_field(members: list[str], wanted: str) -> None:
    with pytest.raises(ValueError, match=wanted):
        InfraConfig(members=members)
