"""The metrics collector reads the tier's etcd health as the operator and publishes it.

The stack's three members run from their task definitions (real etcd with the planes on);
the collector runs through its handler with the environment the stack gave it, its AWS calls
checked against its role from the transformed template, the members' names resolving where
their tasks listen (Cloud Map's stand-in). Its datums are read back from CloudWatch (moto).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools import netguard
from devtools.handlers import load_handler_module
from devtools.local_ecs.infra import running_tier
from devtools.moto_stack import DeployedStack
from dynamo_ecs import aws, clock
from dynamo_ecs import metric_names as names
from dynamo_ecs.signals.etcd_health import forget_cached_identities
from dynamo_ecs.signals.publish import metric_stat

pytestmark = pytest.mark.xdist_group("real_dynamo")  # fixed loopback addresses: one tier at a time

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def later() -> Iterator[list[float]]:
    """The operator's clock, moved on by what the test adds (one collection a minute)."""
    offset = [0.0]
    clock.use(lambda: time.time() + offset[0])
    yield offset
    clock.use(None)


def published(metric: str, since: datetime) -> list[float]:
    """The values of ``metric`` (Service=infra) published since ``since``, oldest first."""
    answer = aws.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": metric_stat("DynamoEcs", "dynamo", names.SERVICE_INFRA, metric, 60, "Maximum"),
            }
        ],
        StartTime=since,
        EndTime=datetime.now(UTC) + timedelta(hours=1),
        ScanBy="TimestampAscending",
    )
    return list(answer["MetricDataResults"][0]["Values"])


def test_the_collector_counts_the_healthy_members_as_the_operator_and_one_fewer_after_a_stop(
    deployed: DeployedStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, later: list[float]
) -> None:
    # Given the collector with the environment the stack gave it: the members' names and the
    # operator's plane secret
    environment = deployed.function_environment("MetricsCollectorFunction")
    assert environment["DYNAMO_ECS_PLANES__OPERATOR_SECRET_ARN"] == deployed.planes["OperatorSecretArn"]
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    forget_cached_identities()
    collector = load_handler_module("metrics_collector", fresh=True)
    event = json.loads((ROOT / "events" / "metrics_collector_schedule.json").read_text())
    since = datetime.now(UTC) - timedelta(minutes=5)

    def collect() -> dict[str, Any]:
        later[0] += 60  # the next minute's schedule
        summary: dict[str, Any] = collector.lambda_handler(event, None)
        assert summary["rounds"][0]["status"] == "published", summary
        return summary

    with running_tier(deployed, tmp_path) as tier, netguard.resolving(tier.names):
        # When the schedule fires with the three members serving
        summary = collect()
        # Then three healthy members are published, and the largest database against the quota
        assert "etcd_health" not in summary["rounds"][0].get("failed_sources", []), summary
        assert published(names.ETCD_MEMBERS_HEALTHY, since) == [3.0]
        [size] = published(names.ETCD_DATABASE_SIZE, since)
        [used] = published(names.ETCD_DATABASE_QUOTA_USED, since)
        assert size > 0 and used == pytest.approx(100 * size / 2**31)
        # When one member's task stops (its etcd with it), the next minute counts one fewer
        tier.stop_member(2, "Task stopped: host failure")
        collect()
        assert published(names.ETCD_MEMBERS_HEALTHY, since)[-1] == 2.0
        # and with a second one gone the survivor has no leader: no member is healthy
        tier.stop_member(1, "Task stopped: host failure")
        deadline = time.monotonic() + 20
        while True:
            collect()
            if published(names.ETCD_MEMBERS_HEALTHY, since)[-1] == 0.0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert published(names.ETCD_MEMBERS_HEALTHY, since)[-1] == 0.0
    forget_cached_identities()
