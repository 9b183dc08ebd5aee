"""GPU utilization per service and PutMetricData entries (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dynamo_ecs.signals.base import Datum
from dynamo_ecs.signals.gpu import latest_per_instance, metric_queries, service_utilization
from dynamo_ecs.signals.publish import metric_data

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def test_one_query_per_instance_on_the_agent_metric() -> None:
    queries = metric_queries("CWAgent", "nvidia_smi_utilization_gpu", ["i-a", "i-b"])
    assert [q["Id"] for q in queries] == ["i0", "i1"]
    metric = queries[1]["MetricStat"]["Metric"]
    assert metric == {
        "Namespace": "CWAgent",
        "MetricName": "nvidia_smi_utilization_gpu",
        "Dimensions": [{"Name": "InstanceId", "Value": "i-b"}],
    }


def test_latest_fresh_point_per_instance_across_pages() -> None:
    results = [
        {"Id": "i0", "Timestamps": [NOW - timedelta(minutes=1)], "Values": [40.0]},
        {"Id": "i0", "Timestamps": [NOW - timedelta(minutes=3)], "Values": [90.0]},
        {"Id": "i1", "Timestamps": [NOW - timedelta(minutes=30)], "Values": [10.0]},
    ]
    latest = latest_per_instance(results, ["i-a", "i-b"], not_before=NOW - timedelta(minutes=5))
    assert latest == {"i-a": 40.0}  # i-b's only point is stale: no value, not zero


def test_service_average_over_its_instances_that_reported() -> None:
    per_instance = {"i-a": 80.0, "i-b": 40.0, "i-c": 10.0}
    averages = service_utilization({"frontend": ["i-a", "i-b"], "prefill": ["i-c", "i-x"]}, per_instance)
    assert averages == {"frontend": 60.0, "prefill": 10.0}
    assert service_utilization({"frontend": ["i-x"]}, per_instance) == {}


def test_metric_data_carries_deployment_service_unit_and_resolution() -> None:
    entries = metric_data(
        [Datum("JetStreamLag", "prefill", 5)], "dynamo", NOW.timestamp(), high_resolution=True
    )
    assert entries == [
        {
            "MetricName": "JetStreamLag",
            "Dimensions": [
                {"Name": "Deployment", "Value": "dynamo"},
                {"Name": "Service", "Value": "prefill"},
            ],
            "Timestamp": NOW,
            "Value": 5.0,
            "Unit": "Count",
            "StorageResolution": 1,
        }
    ]
    assert metric_data([Datum("GpuUtilization", "frontend", 50)], "d", 0, False)[0]["StorageResolution"] == 60
