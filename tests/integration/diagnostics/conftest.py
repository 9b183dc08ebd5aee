"""A deployment's state table, alert topic (read through an SQS subscription) and GPU log groups on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.handlers import load_handler_module
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig, FrontendConfig, PrefillConfig

EVENTS = Path(__file__).resolve().parents[3] / "events"
ACCOUNT = "123456789012"


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"diagnostics_{name}.json").read_text())
    return loaded


@dataclass
class Alerts:
    queue_url: str
    topic_arn: str

    def received(self) -> list[dict[str, Any]]:
        """Every alert published so far (each read once: the queue is drained)."""
        sqs = aws.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def alerts(state_table: str) -> Alerts:
    topic = aws.client("sns").create_topic(Name="dynamo-alerts")["TopicArn"]
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return Alerts(queue_url, topic)


@pytest.fixture
def config(state_table: str, alerts: Alerts) -> DeploymentConfig:
    return DeploymentConfig(
        state_table=state_table,
        alert_topic_arn=alerts.topic_arn,
        gpu_cluster="dynamo-gpu",
        frontend=FrontendConfig(service="dynamo-frontend", family="dynamo-frontend"),
        prefill=PrefillConfig(service="dynamo-prefill", family="dynamo-prefill"),
    )


@pytest.fixture
def diagnostics(config: DeploymentConfig, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The diagnostics function's handler module, its config the test deployment's."""
    module = load_handler_module("diagnostics")
    monkeypatch.setattr(module, "CONFIG", config)
    yield module
