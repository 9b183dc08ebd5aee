"""The metrics contract between the collector (publisher) and the scaler, alarms and dashboard.

Every metric lives in the project namespace (config ``signals.namespace``, default
``DynamoEcs``) with dimensions ``Deployment`` and ``Service`` (``frontend`` or ``prefill``;
``infra`` for the etcd + NATS tier's own health).
Renaming anything here is a breaking change for alarms and dashboards in deployed stacks.
"""

from __future__ import annotations

from typing import Final

DIMENSION_DEPLOYMENT: Final = "Deployment"
DIMENSION_SERVICE: Final = "Service"
# The Service value of the infra tier's metrics (not a GPU service: nothing scales on them).
SERVICE_INFRA: Final = "infra"

# Latency over the window since the previous scrape, from histogram bucket deltas.
TTFT_P50: Final = "TimeToFirstTokenP50"
TTFT_P90: Final = "TimeToFirstTokenP90"
TTFT_P99: Final = "TimeToFirstTokenP99"
TTFT_MEAN: Final = "TimeToFirstTokenMean"
ITL_P50: Final = "InterTokenLatencyP50"
ITL_P90: Final = "InterTokenLatencyP90"
ITL_P99: Final = "InterTokenLatencyP99"
ITL_MEAN: Final = "InterTokenLatencyMean"
REQUEST_DURATION_P50: Final = "RequestDurationP50"
REQUEST_DURATION_P90: Final = "RequestDurationP90"
REQUEST_DURATION_P99: Final = "RequestDurationP99"
REQUEST_DURATION_MEAN: Final = "RequestDurationMean"
LATENCY_UNIT: Final = "Milliseconds"

# Load (frontend gauges summed over the service's tasks; rates over the window).
REQUEST_RATE: Final = "RequestRate"  # Count/Second: requests started (accepted by the frontend)
UNAVAILABLE_REQUEST_RATE: Final = "UnavailableRequestRate"  # Count/Second: refused, no worker to serve
ACTIVE_REQUESTS: Final = "ActiveRequests"  # Count
# Token rates (Count/Second, tokens per second, Service=frontend: measured where requests enter),
# from the increase of the frontend's input/output sequence-length histograms' _sum. A request's
# prompt is counted around its first response, its output when it completes (measured on 1.6.1),
# so these are the tokens/s served: the predictive floor in tokens reads input for prefill and
# output for the frontend's decode workers.
INPUT_TOKEN_RATE: Final = "InputTokenRate"  # noqa: S105 (a metric name)
OUTPUT_TOKEN_RATE: Final = "OutputTokenRate"  # noqa: S105 (a metric name)
# Queue depth as Dynamo defines it: requests in the frontend's preprocess, route and dispatch
# stages (dispatch lasts until the worker's first response). Service=prefill: the prefill
# phase; Service=frontend: the rest (preprocess, decode, aggregated). The total is both.
QUEUE_DEPTH: Final = "QueueDepth"  # Count
QUEUE_DEPTH_TOTAL: Final = "QueueDepthTotal"  # Count, Service=frontend
# The KV router's own queue (router_queue_pending_requests), by worker type.
ROUTER_QUEUED_REQUESTS: Final = "RouterQueuedRequests"  # Count
# The workers' own queues (system port /metrics), summed over the service's workers.
WORKER_QUEUE_DEPTH: Final = "WorkerQueueDepth"  # Count: engine waiting + work-handler queue
WORKER_ACTIVE_REQUESTS: Final = "WorkerActiveRequests"  # Count: inflight on the generate endpoint

# NATS JetStream, over the streams the user names, counting only live consumers.
JETSTREAM_LAG: Final = "JetStreamLag"  # Count: num_pending + num_ack_pending
JETSTREAM_WAITING: Final = "JetStreamWaiting"  # Count: num_waiting
JETSTREAM_REDELIVERED: Final = "JetStreamRedelivered"  # Count: num_redelivered
JETSTREAM_INACTIVE_CONSUMERS: Final = "JetStreamInactiveConsumers"  # Count: reported, not counted
# NATS core, when the request plane is NATS: the workers' request subscriptions.
NATS_WORKER_PENDING_BYTES: Final = "NatsWorkerPendingBytes"  # Bytes the server holds for them
NATS_WORKER_SUBSCRIPTIONS: Final = "NatsWorkerSubscriptions"  # Count

# GPU utilization, per-service average over the service's instances.
GPU_UTILIZATION: Final = "GpuUtilization"  # Percent

# etcd's own health, read by the collector with the operator's identity (Service=infra; the
# three-member tier with the planes on). A member is healthy when its /health says true and it
# has a leader; one that does not answer is not. The database figures are the largest member's.
ETCD_MEMBERS_HEALTHY: Final = "EtcdMembersHealthy"  # Count
ETCD_DATABASE_SIZE: Final = "EtcdDatabaseSize"  # Bytes: etcd_mvcc_db_total_size_in_bytes
ETCD_DATABASE_QUOTA_USED: Final = "EtcdDatabaseQuotaUsed"  # Percent of etcd_server_quota_backend_bytes

# Collector health.
SCRAPE_ERRORS: Final = "ScrapeErrors"  # Count
SCRAPE_TARGETS: Final = "ScrapeTargets"  # Count

# Units of every metric above, in CloudWatch's spelling. The publisher sends exactly these.
COUNT_PER_SECOND: Final = "Count/Second"
COUNT: Final = "Count"
PERCENT: Final = "Percent"
BYTES: Final = "Bytes"
METRIC_UNITS: Final[dict[str, str]] = {
    **{
        name: LATENCY_UNIT
        for name in (
            TTFT_P50,
            TTFT_P90,
            TTFT_P99,
            TTFT_MEAN,
            ITL_P50,
            ITL_P90,
            ITL_P99,
            ITL_MEAN,
            REQUEST_DURATION_P50,
            REQUEST_DURATION_P90,
            REQUEST_DURATION_P99,
            REQUEST_DURATION_MEAN,
        )
    },
    REQUEST_RATE: COUNT_PER_SECOND,
    UNAVAILABLE_REQUEST_RATE: COUNT_PER_SECOND,
    INPUT_TOKEN_RATE: COUNT_PER_SECOND,
    OUTPUT_TOKEN_RATE: COUNT_PER_SECOND,
    ACTIVE_REQUESTS: COUNT,
    QUEUE_DEPTH: COUNT,
    QUEUE_DEPTH_TOTAL: COUNT,
    ROUTER_QUEUED_REQUESTS: COUNT,
    WORKER_QUEUE_DEPTH: COUNT,
    WORKER_ACTIVE_REQUESTS: COUNT,
    JETSTREAM_LAG: COUNT,
    JETSTREAM_WAITING: COUNT,
    JETSTREAM_REDELIVERED: COUNT,
    JETSTREAM_INACTIVE_CONSUMERS: COUNT,
    NATS_WORKER_PENDING_BYTES: BYTES,
    NATS_WORKER_SUBSCRIPTIONS: COUNT,
    GPU_UTILIZATION: PERCENT,
    ETCD_MEMBERS_HEALTHY: COUNT,
    ETCD_DATABASE_SIZE: BYTES,
    ETCD_DATABASE_QUOTA_USED: PERCENT,
    SCRAPE_ERRORS: COUNT,
    SCRAPE_TARGETS: COUNT,
}
