"""Inputs of the scaler as AWS produces them: metric datapoints, alarm and schedule events.

Used by the scaler's integration tests, the demo and the benchmark, so all three drive the
function with events of the shape EventBridge delivers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.metric_names import DIMENSION_DEPLOYMENT, DIMENSION_SERVICE, METRIC_UNITS
from dynamo_ecs.scaling.signals import ActivationName, SignalName, alarm_name

REGION = "us-east-1"
ACCOUNT = "123456789012"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def put_datapoint(
    cloudwatch: Any, config: DeploymentConfig, metric: str, service: ServiceRole, value: float, at: float
) -> None:
    """One datapoint as the metrics collector publishes it."""
    cloudwatch.put_metric_data(
        Namespace=config.signals.namespace,
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [
                    {"Name": DIMENSION_DEPLOYMENT, "Value": config.deployment},
                    {"Name": DIMENSION_SERVICE, "Value": service},
                ],
                "Timestamp": datetime.fromtimestamp(at, UTC),
                "Value": value,
                "Unit": METRIC_UNITS[metric],
            }
        ],
    )


def create_scaling_alarm(
    cloudwatch: Any,
    config: DeploymentConfig,
    role: ServiceRole,
    signal: SignalName | ActivationName,
    metric: str,
    threshold: float,
) -> str:
    name = alarm_name(config.deployment, role, signal)
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace=config.signals.namespace,
        MetricName=metric,
        Dimensions=[
            {"Name": DIMENSION_DEPLOYMENT, "Value": config.deployment},
            {"Name": DIMENSION_SERVICE, "Value": "frontend" if signal == "ttft" else role},
        ],
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        DatapointsToAlarm=1,
        Threshold=threshold,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    return name


def eventbridge_event(
    source: str, detail_type: str, at: float, resource: str, detail: dict[str, Any], event_id: str | None
) -> dict[str, Any]:
    """The envelope EventBridge puts around every event it delivers."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": _iso(at),
        "region": REGION,
        "resources": [resource],
        "detail": detail,
    }


def alarm_state_change_event(
    name: str, state: str, at: float, previous: str = "OK", event_id: str | None = None
) -> dict[str, Any]:
    """An EventBridge ``CloudWatch Alarm State Change`` event."""
    detail = {
        "alarmName": name,
        "state": {"value": state, "reason": "Threshold Crossed", "timestamp": _iso(at)},
        "previousState": {"value": previous, "timestamp": _iso(at - 60)},
        "configuration": {"metrics": []},
    }
    resource = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"
    return eventbridge_event(
        "aws.cloudwatch", "CloudWatch Alarm State Change", at, resource, detail, event_id
    )


def schedule_event(
    at: float, rule: str = "dynamo-scaler-schedule", event_id: str | None = None
) -> dict[str, Any]:
    """An EventBridge ``Scheduled Event``."""
    resource = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"
    return eventbridge_event("aws.events", "Scheduled Event", at, resource, {}, event_id)
