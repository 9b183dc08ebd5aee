"""GPU utilization per service, from the CloudWatch agent's NVIDIA metric on the GPU instances.

The agent (configured by the GPU launch template, exact JSON in docs/signals.md) publishes
``nvidia_smi_utilization_gpu`` in namespace ``CWAgent``, aggregated to the single dimension
``InstanceId``. A service's utilization is the mean, over the distinct EC2 instances that run
its RUNNING tasks, of each instance's latest 60-s average (no older than
``signals.gpu_metric_max_age_s``). All instances are read with one GetMetricData call (up to
500 queries per call). An instance without a recent datapoint is left out; a service none of
whose instances has one gets no value (missing data, never a zero).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.signals.base import Datum, RoundContext, SourceReading

MAX_QUERIES_PER_CALL = 500
PERIOD_S = 60


def metric_queries(namespace: str, metric: str, instance_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One GetMetricData query per instance; query ids ``i0``, ``i1``... in the given order."""
    return [
        {
            "Id": f"i{index}",
            "MetricStat": {
                "Metric": {
                    "Namespace": namespace,
                    "MetricName": metric,
                    "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
                },
                "Period": PERIOD_S,
                "Stat": "Average",
            },
            "ReturnData": True,
        }
        for index, instance_id in enumerate(instance_ids)
    ]


def latest_per_instance(
    results: Sequence[Mapping[str, Any]], instance_ids: Sequence[str], not_before: datetime
) -> dict[str, float]:
    """Latest datapoint per instance from GetMetricData results, dropping stale ones. Pure."""
    points: dict[str, list[tuple[datetime, float]]] = {}
    for result in results:  # a query can come back in several pages
        instance_id = instance_ids[int(str(result["Id"]).removeprefix("i"))]
        for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
            stamp = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
            if stamp >= not_before:
                points.setdefault(instance_id, []).append((stamp, float(value)))
    return {instance_id: max(found)[1] for instance_id, found in points.items()}


def service_utilization(
    instances_by_service: Mapping[ServiceRole, Sequence[str]], per_instance: Mapping[str, float]
) -> dict[ServiceRole, float]:
    """Mean utilization over each service's instances that reported. Pure."""
    out: dict[ServiceRole, float] = {}
    for role, instance_ids in instances_by_service.items():
        values = [per_instance[i] for i in instance_ids if i in per_instance]
        if values:
            out[role] = sum(values) / len(values)
    return out


class GpuUtilizationSource:
    name = "gpu"
    scrape_service: ServiceRole | None = None

    def __init__(self, config: DeploymentConfig, cloudwatch: Any = None) -> None:
        self.namespace = config.signals.gpu_metric_namespace
        self.metric = config.signals.gpu_metric_name
        self.max_age_s = config.signals.gpu_metric_max_age_s
        self._cloudwatch = cloudwatch

    def read(self, context: RoundContext, previous_state: dict[str, Any] | None) -> SourceReading:
        reading = SourceReading(self.name)
        if context.cluster is None:
            reading.notes.append("GPU cluster not read: no GPU utilization")
            return reading
        by_service = {role: context.cluster.instance_ids(role) for role in SERVICE_ROLES}
        instance_ids = sorted({i for ids in by_service.values() for i in ids})
        if not instance_ids:
            return reading
        from dynamo_ecs import aws

        cloudwatch = self._cloudwatch or aws.client("cloudwatch")
        end = datetime.fromtimestamp(context.now, UTC)
        start = end - timedelta(seconds=self.max_age_s + PERIOD_S)
        results: list[dict[str, Any]] = []
        for offset in range(0, len(instance_ids), MAX_QUERIES_PER_CALL):
            chunk = instance_ids[offset : offset + MAX_QUERIES_PER_CALL]
            queries = metric_queries(self.namespace, self.metric, chunk)
            for query in queries:  # ids must stay unique across chunks
                query["Id"] = f"i{offset + int(query['Id'][1:])}"
            kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
            while True:
                page = cloudwatch.get_metric_data(**kwargs)
                results.extend(page.get("MetricDataResults", []))
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        per_instance = latest_per_instance(results, instance_ids, end - timedelta(seconds=self.max_age_s))
        missing = [i for i in instance_ids if i not in per_instance]
        if missing:
            reading.notes.append(f"no recent {self.metric} for {', '.join(missing)}")
        for role, value in service_utilization(by_service, per_instance).items():
            reading.data.append(Datum(names.GPU_UTILIZATION, role, round(value, 3)))
        return reading
