"""Structure of template.yaml: dead letters, retention, least privilege, the infra watcher's rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devtools.services import MotoServer
from devtools.template import load_template, resources_of_type
from dynamo_ecs import aws

EVENTS = Path(__file__).resolve().parents[2] / "events"
ASYNC_FUNCTIONS = ("InfraWatcherFunction", "RedeployFunction", "BootstrapFunction")
WILDCARD_WRITE_ALLOWED = {"ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition"}


def statements() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for resource in load_template()["Resources"].values():
        props = resource.get("Properties", {})
        documents = [props.get("PolicyDocument")] + [
            p for p in props.get("Policies", []) if isinstance(p, dict)
        ]
        for document in documents:
            if document and "Statement" in document:
                found.extend(document["Statement"])
    return found


def test_every_function_has_a_dead_letter_queue_and_a_log_group_with_retention() -> None:
    functions = resources_of_type("AWS::Serverless::Function")
    assert set(ASYNC_FUNCTIONS) <= set(functions)
    log_groups = resources_of_type("AWS::Logs::LogGroup")
    named = {json.dumps(g["Properties"]["LogGroupName"]) for g in log_groups.values()}
    for name, function in functions.items():
        assert function["Properties"]["DeadLetterQueue"]["Type"] == "SQS", name
        assert any(name in n for n in named), f"{name} has no log group"
    assert all("RetentionInDays" in g["Properties"] for g in log_groups.values())


def test_no_wildcard_actions_and_no_wildcard_resource_on_writes() -> None:
    for statement in statements():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert "*" not in actions
        if statement["Resource"] == "*":
            writes = [a for a in actions if not a.split(":")[1].startswith(("Describe", "List", "Get"))]
            assert set(writes) <= WILDCARD_WRITE_ALLOWED, statement


def test_pass_role_is_limited_to_ecs_tasks() -> None:
    [statement] = [s for s in statements() if s["Action"] == "iam:PassRole"]
    assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"


def test_infra_watcher_rule_matches_what_aws_sends_and_nothing_else(aws_env: MotoServer) -> None:
    # Given the rule's pattern from the template, with the stack's ARN filled in, targeting SQS
    pattern = load_template()["Resources"]["InfraWatcherFunction"]["Properties"]["Events"][
        "InfraTaskStateChange"
    ]["Properties"]["Pattern"]
    arn = "arn:aws:ecs:us-east-1:123456789012:cluster/dynamo-fargate"
    pattern["detail"]["clusterArn"] = [arn]
    pattern["detail"]["group"] = ["service:dynamo-infra"]
    events, sqs = aws.client("events"), aws.client("sqs")
    queue = sqs.create_queue(QueueName="rule-target")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="infra-watcher", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="infra-watcher", Targets=[{"Id": "q", "Arn": queue_arn}])
    # When our sample event and one of another service are put on the bus
    ours = json.loads((EVENTS / "infra_task_running.json").read_text())
    other = json.loads(json.dumps(ours))
    other["detail"]["group"] = "service:dynamo-frontend"
    for event in (ours, other):
        events.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                }
            ]
        )
    # Then only ours reaches the target
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["detail"]["group"] for m in received] == ["service:dynamo-infra"]
