"""Which metrics drive which service, and how each turns into a replica proposal.

Two kinds of signal (FACTS.md §5, docs/scaling.md):

- ``ratio`` (latency percentiles, GPU utilization): the value per replica falls as replicas
  are added, so HPA's ``ceil(current * value / target)`` applies;
- ``total`` (queued requests, JetStream lag): a backlog shared by all replicas, so KEDA's
  ``ceil(total / per_replica_target)`` applies.

Alarm names follow ``<deployment>-scale-<role>-<signal>`` with the signal names below; the
template creates exactly these alarms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, ServiceRole

SignalKind = Literal["ratio", "total"]
SignalName = Literal["ttft", "itl", "queue", "gpu", "lag"]


@dataclass(frozen=True)
class SignalSpec:
    role: ServiceRole
    name: SignalName
    metric: str
    # The Service dimension the metric is published under (TTFT is measured on the frontend).
    source_service: ServiceRole
    kind: SignalKind
    target: float

    @property
    def key(self) -> str:
        """Unique per role and signal; also a valid GetMetricData query id."""
        return f"{self.role}_{self.name}"


def signal_specs(config: DeploymentConfig, role: ServiceRole) -> list[SignalSpec]:
    """The enabled signals of ``role`` (a target set to null switches its signal off)."""
    candidates: list[tuple[SignalName, str, ServiceRole, SignalKind, float | None]]
    if role == "frontend":
        t = config.frontend.targets
        candidates = [
            ("ttft", names.TTFT_P90, "frontend", "ratio", t.ttft_p90_ms),
            ("itl", names.ITL_P90, "frontend", "ratio", t.itl_p90_ms),
            ("queue", names.QUEUED_REQUESTS, "frontend", "total", t.queued_requests_per_replica),
            ("gpu", names.GPU_UTILIZATION, "frontend", "ratio", t.gpu_utilization_pct),
        ]
    else:
        p = config.prefill.targets
        candidates = [
            ("lag", names.JETSTREAM_LAG, "prefill", "total", p.jetstream_lag_per_replica),
            ("ttft", names.TTFT_P90, "frontend", "ratio", p.ttft_p90_ms),
            ("gpu", names.GPU_UTILIZATION, "prefill", "ratio", p.gpu_utilization_pct),
        ]
    return [
        SignalSpec(role, name, metric, source, kind, target)
        for name, metric, source, kind, target in candidates
        if target is not None
    ]


def alarm_name(deployment: str, role: ServiceRole, signal: SignalName) -> str:
    return f"{deployment}-scale-{role}-{signal}"
