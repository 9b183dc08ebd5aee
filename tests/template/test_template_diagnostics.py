"""The diagnostics function in template.yaml: scoped read permissions, rules that match AWS events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtools.services import MotoServer
from devtools.template import load_template, resource
from dynamo_ecs import aws
from tests.template.stack import as_list

EVENTS = Path(__file__).resolve().parents[2] / "events"
# What the stack's intrinsics resolve to for a stack with the defaults in moto's account.
STACK_VALUES = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "DeploymentName": "dynamo",
    "GpuCluster": "dynamo-gpu",
    "FrontendLogGroup": "/ecs/dynamo-frontend",
    "PrefillLogGroup": "/ecs/dynamo-prefill",
}


def resolve(value: Any) -> Any:
    """The pattern with ``!Sub`` and ``!GetAtt GpuCluster.Arn`` filled in as CloudFormation would."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        for name, filled in STACK_VALUES.items():
            text = text.replace("${" + name + "}", filled)
        assert "${" not in text, text
        return text
    if isinstance(value, dict) and value.get("Fn::GetAtt") == ["GpuCluster", "Arn"]:
        return "arn:aws:ecs:us-east-1:123456789012:cluster/dynamo-gpu"
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v) for v in value]
    return value


def test_diagnostics_reads_only_and_each_read_is_scoped() -> None:
    [document] = resource("DiagnosticsFunction")["Properties"]["Policies"]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    actions = {a for s in document["Statement"] for a in as_list(s["Action"])}
    # The only writes: its own records and decisions in the state table, and the alert
    writes = {a for a in actions if not a.split(":")[1].startswith(("Describe", "Get", "Query"))}
    assert writes == {"dynamodb:PutItem", "sns:Publish", "kms:GenerateDataKey*", "kms:Decrypt"}
    assert by_sid["DiagnosesAndDecisions"]["Resource"] == {"Fn::GetAtt": ["StateTable", "Arn"]}
    assert by_sid["Alerts"]["Resource"] == {"Ref": "AlertTopic"}
    # Logs only of the two GPU log groups; the one wildcard is DescribeTaskDefinition (no resource-level)
    logs = [resolve(r) for r in by_sid["ReadGpuTaskLogs"]["Resource"]]
    assert logs == [
        "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/dynamo-frontend:log-stream:*",
        "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/dynamo-prefill:log-stream:*",
    ]
    wildcards = [s for s in document["Statement"] if s["Resource"] == "*"]
    assert [as_list(s["Action"]) for s in wildcards] == [["ecs:DescribeTaskDefinition"]]
    assert not any(a.startswith("secretsmanager:") for a in actions)  # never reads the NGC secret


@pytest.fixture
def routed(aws_env: MotoServer) -> dict[str, str]:
    """Each of the diagnostics rules on moto EventBridge, with its own SQS queue as the target."""
    events, sqs = aws.client("events"), aws.client("sqs")
    queues = {}
    for name, event in resource("DiagnosticsFunction")["Properties"]["Events"].items():
        pattern = resolve(event["Properties"]["Pattern"])
        queue = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
        queues[name] = queue
    return queues


def put(event: dict[str, Any]) -> None:
    entry = {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Resources": event["resources"],
        "Detail": json.dumps(event["detail"]),
    }
    assert aws.client("events").put_events(Entries=[entry])["FailedEntryCount"] == 0


def delivered(queues: dict[str, str]) -> dict[str, list[str]]:
    sqs = aws.client("sqs")
    found: dict[str, list[str]] = {}
    for name, queue in queues.items():
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        found[name] = sorted(json.loads(m["Body"])["detail-type"] for m in messages)
    return found


def test_the_sample_events_reach_the_diagnostics_through_the_templates_rules(routed: dict[str, str]) -> None:
    assert load_template()["Parameters"]["DeploymentName"]["Default"] == STACK_VALUES["DeploymentName"]
    samples = sorted(EVENTS.glob("diagnostics_*.json"))
    for path in samples:
        put(json.loads(path.read_text()))
    assert delivered(routed) == {
        "GpuServiceActions": ["ECS Service Action", "ECS Service Action"],  # placement failure, steady state
        "GpuDeployments": ["ECS Deployment State Change"],
        "GpuTasksStopped": ["ECS Task State Change"] * 5,  # pull x2, OOM, exited, scaled in
        "GpuInstanceLaunches": ["EC2 Instance Launch Unsuccessful"] * 2,
    }


def test_other_services_clusters_groups_and_running_tasks_do_not(routed: dict[str, str]) -> None:
    action = json.loads((EVENTS / "diagnostics_placement_failure.json").read_text())
    action["resources"] = ["arn:aws:ecs:us-east-1:123456789012:service/dynamo-gpu/someone-else"]
    task = json.loads((EVENTS / "diagnostics_task_pull_failed.json").read_text())
    running = json.loads(json.dumps(task))
    running["detail"]["lastStatus"] = "RUNNING"
    elsewhere = json.loads(json.dumps(task))
    elsewhere["detail"]["clusterArn"] = "arn:aws:ecs:us-east-1:123456789012:cluster/dynamo-fargate"
    launch = json.loads((EVENTS / "diagnostics_asg_vcpu_limit.json").read_text())
    launch["detail"]["AutoScalingGroupName"] = "another-group"
    for event in (action, running, elsewhere, launch):
        put(event)
    assert all(not names for names in delivered(routed).values())
