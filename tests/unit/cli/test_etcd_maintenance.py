"""The pure parts of ``dynamo-ecs etcd-maintenance`` (cli/dynamo_ecs_cli/etcd_maintenance.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.local_ecs.containers import ContainerStartError
from devtools.local_ecs.one_off import with_overrides
from dynamo_ecs_cli.etcd_maintenance import (
    FAMILY_OUTPUT,
    MaintenanceRefusedError,
    Outcome,
    first_of,
    log_lines,
    log_stream,
    member_network,
    run_task_request,
    single_task_refusal,
    wait_stopped,
)

NETWORK = {"subnets": ["subnet-a"], "securityGroups": ["sg-infra"], "assignPublicIp": "DISABLED"}


def test_a_single_task_stack_is_refused_with_the_plain_commands_named() -> None:
    said = single_task_refusal({"InfraMembers": "1"}, {}, "dev")
    assert said is not None and "InfraMembers 1" in said and "docs/infra-tier.md" in said
    assert single_task_refusal({"InfraMembers": "3"}, {FAMILY_OUTPUT: "x"}, "prod") is None
    # an older stack without the output is refused too (nothing to run)
    assert single_task_refusal({"InfraMembers": "3"}, {}, "old") is not None


@pytest.mark.parametrize("action", ["defrag", "", "status; rm -rf /", "STATUS"])
def test_an_action_outside_the_set_is_never_sent(action: str) -> None:
    with pytest.raises(ValueError, match="status, recover"):
        run_task_request("c", "f", action, NETWORK)


def test_the_action_is_the_request_s_one_override() -> None:
    request = run_task_request("infra", "dynamo-etcd-maintenance", "status", NETWORK)
    assert request["overrides"] == {
        "containerOverrides": [
            {"name": "etcd-maintenance", "environment": [{"name": "ACTION", "value": "status"}]}
        ]
    }
    assert request["networkConfiguration"] == {"awsvpcConfiguration": NETWORK}
    assert request["count"] == 1 and request["launchType"] == "FARGATE"


class Ecs:
    def __init__(self, services: list[dict[str, Any]] | None = None, states: list[str] | None = None) -> None:
        self.services = services or []
        self.states = list(states or [])

    def describe_services(self, cluster: str, services: list[str]) -> dict[str, Any]:
        return {"services": [s for s in self.services if s["serviceName"] in services]}

    def describe_tasks(self, cluster: str, tasks: list[str]) -> dict[str, Any]:
        return {"tasks": [{"taskArn": tasks[0], "lastStatus": self.states.pop(0)}]}


def test_the_network_is_the_first_member_s_as_its_service_has_it() -> None:
    config = {"subnets": ["subnet-0", "subnet-x"], "securityGroups": ["sg-1"], "assignPublicIp": "DISABLED"}
    ecs = Ecs([{"serviceName": "m0", "networkConfiguration": {"awsvpcConfiguration": config}}])
    assert member_network(ecs, "c", ["m0", "m1"]) == {
        "subnets": ["subnet-0"],
        "securityGroups": ["sg-1"],
        "assignPublicIp": "DISABLED",
    }
    with pytest.raises(MaintenanceRefusedError, match="m0 in c has no awsvpc"):
        member_network(Ecs([{"serviceName": "m0"}]), "c", ["m0"])


def test_of_two_tasks_started_at_once_the_older_goes_on() -> None:
    old = {"taskArn": "arn/b", "createdAt": datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)}
    new = {"taskArn": "arn/a", "createdAt": datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)}
    assert first_of([new, old], "arn/a") == "arn/b"
    assert first_of([new, old], "arn/b") is None
    # the same instant: the ARN decides, the same way in both commands
    tie = {"taskArn": "arn/c", "createdAt": old["createdAt"]}
    assert first_of([tie, old], "arn/c") == "arn/b" and first_of([tie, old], "arn/b") is None


def test_the_log_stream_is_the_awslogs_one() -> None:
    definition = {
        "containerDefinitions": [
            {
                "name": "etcd-maintenance",
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": "/ecs/d-infra", "awslogs-stream-prefix": "etcd-maintenance"},
                },
            }
        ]
    }
    where = log_stream(definition, "etcd-maintenance", "arn:aws:ecs:r:1:task/c/abc123")
    assert where == ("/ecs/d-infra", "etcd-maintenance/etcd-maintenance/abc123")
    assert log_stream(definition, "other", "arn/x") is None


def test_log_lines_follow_the_forward_token_to_the_end() -> None:
    pages: dict[str | None, dict[str, Any]] = {
        None: {"events": [{"message": "a"}, {"message": "b"}], "nextForwardToken": "t1"},
        "t1": {"events": [{"message": "c"}], "nextForwardToken": "t2"},
        "t2": {"events": [], "nextForwardToken": "t2"},
    }

    class Logs:
        def get_log_events(self, **options: Any) -> dict[str, Any]:
            return pages[options.get("nextToken")]

    assert log_lines(Logs(), "g", "s") == ["a", "b", "c"]


def test_waiting_ends_at_stopped_or_at_the_timeout() -> None:
    now = [0.0]
    ecs = Ecs(states=["PENDING", "RUNNING", "STOPPED"])
    stopped = wait_stopped(
        ecs, "c", "arn", 60, 5, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    )
    assert stopped is not None and stopped["lastStatus"] == "STOPPED"
    ecs = Ecs(states=["RUNNING"] * 20)
    assert (
        wait_stopped(
            ecs, "c", "arn", 10, 5, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
        )
        is None
    )


def test_the_outcome_is_ok_only_when_every_container_exited_0() -> None:
    assert Outcome("a", True, exit_codes={"planes-writer": 0, "etcd-maintenance": 0}).ok
    assert not Outcome("a", True, exit_codes={"planes-writer": 0, "etcd-maintenance": 1}).ok
    assert not Outcome("a", True, exit_codes={"planes-writer": 1, "etcd-maintenance": None}).ok
    assert not Outcome("a", False).ok


def test_the_local_runner_applies_environment_overrides_as_ecs_does() -> None:
    definition: dict[str, Any] = {
        "containerDefinitions": [
            {
                "name": "etcd-maintenance",
                "environment": [{"name": "ACTION", "value": "status"}, {"name": "K", "value": "v"}],
            }
        ]
    }
    applied = with_overrides(
        definition,
        {
            "containerOverrides": [
                {"name": "etcd-maintenance", "environment": [{"name": "ACTION", "value": "recover"}]}
            ]
        },
    )
    env = {e["name"]: e["value"] for e in applied["containerDefinitions"][0]["environment"]}
    assert env == {"ACTION": "recover", "K": "v"}
    assert definition["containerDefinitions"][0]["environment"][0]["value"] == "status"  # a copy
    with pytest.raises(ContainerStartError, match="nope"):
        with_overrides(definition, {"containerOverrides": [{"name": "nope"}]})
