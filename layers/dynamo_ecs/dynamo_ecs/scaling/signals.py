"""Which metrics drive which service, and how each turns into a replica proposal.

Two kinds of signal (FACTS.md §5, docs/scaling.md):

- ``ratio`` (latency means or p90s, GPU utilization): the value per replica falls as replicas
  are added, so HPA's ``ceil(current * value / target)`` applies;
- ``total`` (queue depth, router and worker queues, JetStream lag): a backlog shared by all
  replicas, so KEDA's ``ceil(total / per_replica_target)`` applies.

Alarm names follow ``<deployment>-scale-<role>-<signal>`` with the signal names below; the
template creates exactly these alarms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, ServiceRole

SignalKind = Literal["ratio", "total"]
# How a ratio signal below its target proposes: HPA's ratio; the ratio of the part above a
# known floor (a latency that cannot fall below its no-load value); or not at all.
ScaleIn = Literal["ratio", "above_floor", "never"]
SignalName = Literal["ttft", "itl", "queue", "router", "worker", "gpu", "lag"]
# Inputs that only wake prefill from zero (KEDA's activation), never propose a count.
ActivationName = Literal["refused"]

TTFT_METRIC = {"mean": names.TTFT_MEAN, "p90": names.TTFT_P90}
ITL_METRIC = {"mean": names.ITL_MEAN, "p90": names.ITL_P90}


@dataclass(frozen=True)
class SignalSpec:
    role: ServiceRole
    name: SignalName | ActivationName
    metric: str
    # The Service dimension the metric is published under (TTFT is measured on the frontend).
    source_service: ServiceRole
    kind: SignalKind
    target: float
    scale_in: ScaleIn = "ratio"
    floor: float = 0.0

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
            ("ttft", TTFT_METRIC[t.ttft_statistic], "frontend", "ratio", t.ttft_ms),
            ("itl", ITL_METRIC[t.itl_statistic], "frontend", "ratio", t.itl_ms),
            ("queue", names.QUEUE_DEPTH, "frontend", "total", t.queue_depth_per_replica),
            ("router", names.ROUTER_QUEUED_REQUESTS, "frontend", "total", t.router_queue_per_replica),
            ("worker", names.WORKER_QUEUE_DEPTH, "frontend", "total", t.worker_queue_per_replica),
            ("gpu", names.GPU_UTILIZATION, "frontend", "ratio", t.gpu_utilization_pct),
        ]
    else:
        p = config.prefill.targets
        candidates = [
            ("queue", names.QUEUE_DEPTH, "prefill", "total", p.queue_depth_per_replica),
            ("router", names.ROUTER_QUEUED_REQUESTS, "prefill", "total", p.router_queue_per_replica),
            ("worker", names.WORKER_QUEUE_DEPTH, "prefill", "total", p.worker_queue_per_replica),
            ("lag", names.JETSTREAM_LAG, "prefill", "total", p.jetstream_lag_per_replica),
            ("ttft", TTFT_METRIC[p.ttft_statistic], "frontend", "ratio", p.ttft_ms),
            ("gpu", names.GPU_UTILIZATION, "prefill", "ratio", p.gpu_utilization_pct),
        ]
    specs = [
        SignalSpec(role, name, metric, source, kind, target)
        for name, metric, source, kind, target in candidates
        if target is not None
    ]
    if role == "frontend":
        floor = config.frontend.targets.itl_floor_ms
        itl_rule: ScaleIn = "never" if floor is None else "above_floor"
        specs = [
            SignalSpec(s.role, s.name, s.metric, s.source_service, s.kind, s.target, itl_rule, floor or 0.0)
            if s.name == "itl"
            else s
            for s in specs
        ]
    return specs


def activation_specs(config: DeploymentConfig) -> list[SignalSpec]:
    """What else wakes prefill from zero: requests the frontend refuses for lack of a worker.

    A disaggregated Dynamo 1.6.1 frontend with no prefill worker answers 503 at once (model
    not ready): those requests never reach a queue gauge, so at zero the prefill queue stays
    empty and only this rate shows the demand. Read only with prefill scale-to-zero on.
    """
    if not (config.scaling.prefill_scale_to_zero and config.prefill.min == 0):
        return []
    return [SignalSpec("prefill", "refused", names.UNAVAILABLE_REQUEST_RATE, "frontend", "total", 0.0)]


def alarm_name(deployment: str, role: ServiceRole, signal: SignalName | ActivationName) -> str:
    return f"{deployment}-scale-{role}-{signal}"
