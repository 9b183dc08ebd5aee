"""Send data points to CloudWatch with PutMetricData (why not EMF: docs/signals.md).

Every datum goes to ``signals.namespace`` with dimensions ``Deployment`` and ``Service``,
the unit of `dynamo_ecs.metric_names.METRIC_UNITS`, the round's timestamp, and storage
resolution 1 s when the collector samples several times a minute (60 s otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dynamo_ecs.metric_names import DIMENSION_DEPLOYMENT, DIMENSION_SERVICE
from dynamo_ecs.signals.base import Datum

MAX_DATUMS_PER_CALL = 1000  # PutMetricData's limit (and 1 MB per request)


def metric_stat(
    namespace: str, deployment: str, service: str, metric: str, period_s: int, stat: str
) -> dict[str, Any]:
    """GetMetricData's ``MetricStat`` of a metric the collector publishes (the dimensions
    `metric_data` gives it). Pure."""
    return {
        "Metric": {
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": [
                {"Name": DIMENSION_DEPLOYMENT, "Value": deployment},
                {"Name": DIMENSION_SERVICE, "Value": service},
            ],
        },
        "Period": period_s,
        "Stat": stat,
    }


def metric_data(
    data: Sequence[Datum], deployment: str, timestamp: float, high_resolution: bool
) -> list[dict[str, Any]]:
    """PutMetricData entries for ``data``. Pure."""
    when = datetime.fromtimestamp(timestamp, UTC)
    return [
        {
            "MetricName": datum.metric,
            "Dimensions": [
                {"Name": DIMENSION_DEPLOYMENT, "Value": deployment},
                {"Name": DIMENSION_SERVICE, "Value": datum.service},
            ],
            "Timestamp": when,
            "Value": float(datum.value),
            "Unit": datum.unit,
            "StorageResolution": 1 if high_resolution else 60,
        }
        for datum in data
    ]


def publish(
    cloudwatch: Any,
    namespace: str,
    data: Sequence[Datum],
    deployment: str,
    timestamp: float,
    high_resolution: bool = False,
) -> int:
    """Publish ``data``; returns the number of PutMetricData calls made."""
    entries = metric_data(data, deployment, timestamp, high_resolution)
    calls = 0
    for start in range(0, len(entries), MAX_DATUMS_PER_CALL):
        cloudwatch.put_metric_data(
            Namespace=namespace, MetricData=entries[start : start + MAX_DATUMS_PER_CALL]
        )
        calls += 1
    return calls
