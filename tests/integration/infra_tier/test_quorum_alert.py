"""Two infra members lost at once is detected and alerted, once; the majority back is noted.

The stack's three members run from their task definitions (real etcd and NATS); their ECS
Task State Change events reach infra_watcher, loaded with the environment the stack gave it,
whose alerts go to the stack's alert topic (read here through a queue subscribed to it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.ecs_world import task_state_change_event
from devtools.handlers import load_handler_module
from devtools.local_ecs.infra import LocalTier, running_tier
from devtools.moto_stack import DeployedStack
from dynamo_ecs import aws

pytestmark = pytest.mark.xdist_group("real_dynamo")  # fixed loopback addresses: one tier at a time


class Context:
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:dynamo-infra-watcher"


@pytest.fixture
def alerts(deployed: DeployedStack) -> Iterator[str]:
    """A queue subscribed to the stack's alert topic."""
    sqs, sns = aws.client("sqs"), aws.client("sns")
    url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=deployed.outputs["AlertTopicArn"], Protocol="sqs", Endpoint=arn)
    yield url


def received(url: str) -> list[str]:
    messages = aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"])["Message"] for m in messages]


def test_two_members_lost_at_once_is_alerted_once_and_the_majority_back_is_noted(
    deployed: DeployedStack, alerts: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in deployed.function_environment("InfraWatcherFunction").items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    watcher = load_handler_module("infra_watcher", fresh=True)
    ecs = aws.client("ecs")
    versions = iter(range(1, 100))

    def event_for(tier: LocalTier, task_arn: str) -> dict[str, Any]:
        [task] = ecs.describe_tasks(cluster=tier.cluster, tasks=[task_arn])["tasks"]
        event = task_state_change_event(task, next(versions), "us-east-1", f"event-{task_arn[-6:]}")
        return dict(watcher.lambda_handler(event, Context()))

    with running_tier(deployed, tmp_path) as tier:
        # Given one member lost: two of three keep quorum, nothing to alert
        answer = event_for(tier, tier.stop_member(1, "Task stopped: host failure"))
        assert answer["quorum"] == {"running": [0, 2], "has_quorum": True, "change": "unchanged"}, answer
        # When a second member is lost
        lost = tier.stop_member(2, "Task stopped: host failure")
        answer = event_for(tier, lost)
        # Then the lost majority is alerted, naming what runs and how to recover
        assert answer["quorum"] == {"running": [0], "has_quorum": False, "change": "lost"}, answer
        [message] = received(alerts)
        assert "1 of 3 infra members run (infra-0)" in message and "--force-new-deployment" in message
        # and the same event again (EventBridge delivers at least once) alerts nothing more
        assert event_for(tier, lost)["quorum"]["change"] == "unchanged"
        assert received(alerts) == []
        # When the three members are started again (the recovery), the majority back is noted once
        tier.stop_member(0, "Task stopped: recovery")
        tier.start()
        answer = event_for(tier, tier.members[0].task_arn)
        assert answer["quorum"] == {"running": [0, 1, 2], "has_quorum": True, "change": "restored"}, answer
        [message] = received(alerts)
        assert "3 of 3 infra members run" in message
