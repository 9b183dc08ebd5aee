"""The AWS services the metrics collector calls are the VPC endpoints docs/template.md lists.

The collector is the one function in the VPC: without a NAT path it reaches AWS only through
the endpoints the docs name, so the list must be exactly what it calls. One collector
invocation through its handler, on moto, with every path taken (the GPU cluster's tasks and
instances, the NATS monitors, the operator's plane secret for the members' etcd health, GPU
utilization read back, the signals published, a breach event sent), every call recorded with
the service it goes to.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devtools import netguard
from devtools.aws_faults import recording
from devtools.ecs_world import build_world
from devtools.handlers import load_handler_module
from devtools.services import MotoServer
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.planes import credentials
from dynamo_ecs.signals.etcd_health import forget_cached_identities

ROOT = Path(__file__).resolve().parents[3]
MARKER = "<!-- collector-vpc-endpoints -->"


def documented_endpoints() -> set[str]:
    """The endpoint names (first column, ``com.amazonaws.<region>.<name>``) of the table after
    the marker in docs/template.md."""
    text = (ROOT / "docs" / "template.md").read_text()
    table = text.split(MARKER, 1)[1].strip().split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return {re.match(r"\| `([a-z0-9.-]+)`", row).group(1) for row in rows}  # type: ignore[union-attr]


def test_the_collector_calls_exactly_the_services_of_the_documented_vpc_endpoints(
    state_table: str, aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a GPU cluster with a frontend task on an instance whose GPU is busy (above the
    # frontend's 80 % target), an infra service, a named JetStream stream, and the planes on
    # (the three members' names, the operator's plane secret)
    config = DeploymentConfig.model_validate({"state_table": state_table})
    world = build_world(config, region="us-east-1", gpu_instances=1)
    world.run_infra_task()
    world.create_gpu_services(pasted_ip="10.0.0.9")
    world.run_gpu_task("frontend")
    instance = world.gpu_instances[0]["ec2InstanceId"]
    aws.client("cloudwatch").put_metric_data(
        Namespace=config.signals.gpu_metric_namespace,
        MetricData=[
            {
                "MetricName": config.signals.gpu_metric_name,
                "Dimensions": [{"Name": "InstanceId", "Value": instance}],
                "Value": 95.0,
                # a little in the past: the round reads up to its own time, whole seconds
                "Timestamp": datetime.now(UTC) - timedelta(seconds=5),
            }
        ],
    )
    monkeypatch.setenv("DYNAMO_ECS_STATE_TABLE", state_table)
    monkeypatch.setenv("DYNAMO_ECS_SIGNALS__SCRAPE_TIMEOUT_S", "0.3")
    monkeypatch.setenv("DYNAMO_ECS_SIGNALS__JETSTREAM_STREAMS", '["prefill_queue"]')
    members = [f"infra-{k}.dynamo-infra.internal" for k in range(3)]
    now = datetime.now(UTC)
    operator = credentials.holder_payloads(credentials.make_authority("dynamo", now), members, now)[
        "operator"
    ]
    secret = aws.client("secretsmanager").create_secret(
        Name="dynamo/planes/operator", SecretString=json.dumps(operator)
    )
    monkeypatch.setenv("DYNAMO_ECS_INFRA__MEMBERS", json.dumps(members))
    monkeypatch.setenv("DYNAMO_ECS_PLANES__OPERATOR_SECRET_ARN", secret["ARN"])
    forget_cached_identities()
    handler = load_handler_module("metrics_collector", fresh=True)
    event = json.loads((ROOT / "events" / "metrics_collector_schedule.json").read_text())
    # When the schedule fires, with every AWS call recorded
    # (the members' names resolve where nothing listens: etcd and NATS refuse at once)
    with recording() as record, netguard.resolving({name: "127.0.0.77" for name in members}):
        summary = handler.lambda_handler(event, None)
    # Then every path ran: the round was published and the breach event sent
    assert summary["rounds"][0]["status"] == "published", summary
    for operation in (
        "DescribeContainerInstances",
        "DescribeInstances",
        "GetMetricData",
        "GetSecretValue",
        "PutMetricData",
        "PutEvents",
    ):
        assert operation in record.calls, (operation, record.calls)
    # and the services it called are exactly the VPC endpoints the docs list for it
    assert set(record.endpoints) == documented_endpoints(), record.calls
