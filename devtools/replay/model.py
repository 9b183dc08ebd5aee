"""A discrete-time model of the two GPU services, just detailed enough to drive the scaler.

Every tick (``tick_s``, 10 s by default) the requests of the trace arrive at the frontend:

1. the frontend's decode workers admit as many as their throughput allows
   (``decode_tokens_per_s`` per replica / output length); the rest wait in the frontend's
   queue (``QueuedRequests``) and are carried over to the next tick;
2. admitted requests go to the prefill work queue (JetStream); the prefill workers serve
   ``prefill_tokens_per_s`` per replica / input length; the rest is the lag
   (``JetStreamLag`` counts the waiting plus those in service, as num_pending + num_ack_pending);
3. TTFT p90 = prefill time, inflated as prefill utilization rises (an M/M/1-like
   ``1 + k * rho / (1 - rho)``), plus the time the backlog ahead takes to drain, for both
   queues; ITL p90 rises the same way with decode utilization (bigger batches);
4. GPU utilization of a service is the fraction of its running replicas' throughput used.

A new task serves only after ``instance_start_s + model_load_s``; a task stops at once
(pending ones first). GPU-hours count every task from the moment it is asked for (its GPU
instance is billed while it starts). A tick without requests publishes no latency (as the
collector publishes no percentile for an empty window).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import ServiceState

# A request cannot wait longer than this in the model (clients time out); keeps numbers finite
# while a service has no running replica.
MAX_WAIT_S = 120.0


class ModelParams(BaseModel):
    """The model's knobs (``--model key=value``); the defaults describe one GPU per task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tick_s: int = Field(10, ge=1, le=60)
    instance_start_s: float = Field(120.0, ge=0)
    model_load_s: float = Field(180.0, ge=0)
    prefill_tokens_per_s: float = Field(8000.0, gt=0)  # input tokens per prefill replica
    decode_tokens_per_s: float = Field(1600.0, gt=0)  # output tokens per frontend (decode) replica
    input_tokens: float = Field(1000.0, gt=0)  # when the trace gives no length
    output_tokens: float = Field(200.0, gt=0)
    base_ttft_ms: float = Field(150.0, gt=0)  # TTFT p90 at low load for input_tokens
    base_itl_ms: float = Field(25.0, gt=0)  # ITL p90 at low load
    ttft_load_factor: float = Field(0.5, ge=0)  # k in 1 + k * rho / (1 - rho)
    itl_load_factor: float = Field(0.2, ge=0)
    max_utilization: float = Field(0.95, gt=0, lt=1)  # rho is capped here inside the formula

    @property
    def startup_s(self) -> float:
        return self.instance_start_s + self.model_load_s

    def replica_rps(self, role: ServiceRole, input_tokens: float, output_tokens: float) -> float:
        """Requests per second one running replica serves."""
        if role == "frontend":
            return self.decode_tokens_per_s / output_tokens
        return self.prefill_tokens_per_s / input_tokens


class ServicePool:
    """One ECS service: its desired count, tasks starting (with their ready time), running."""

    def __init__(self, running: int) -> None:
        self.running = running
        self.pending: list[float] = []  # ready times

    @property
    def desired(self) -> int:
        return self.running + len(self.pending)

    def set_desired(self, count: int, now: float, startup_s: float) -> None:
        extra = count - self.desired
        if extra > 0:
            self.pending.extend([now + startup_s] * extra)
            return
        for _ in range(-extra):
            if self.pending:
                self.pending.pop()  # the newest request for a task goes first
            else:
                self.running -= 1

    def advance(self, now: float) -> None:
        ready = [t for t in self.pending if t <= now]
        if ready:
            self.running += len(ready)
            self.pending = [t for t in self.pending if t > now]

    def state(self) -> ServiceState:
        return ServiceState(self.desired, self.running)


@dataclass(frozen=True)
class TickMetrics:
    """What one tick produced: the published signals and what the replay scores."""

    arrivals_rps: float
    frontend_queue: float
    prefill_queue: float
    jetstream_lag: float
    ttft_p90_ms: float | None
    itl_p90_ms: float | None
    gpu_utilization_pct: dict[ServiceRole, float | None]
    provisioned_gpus: int

    def signals(self) -> dict[tuple[str, ServiceRole], float | None]:
        """Values keyed by (metric name, Service dimension), as the collector publishes them."""
        return {
            (names.TTFT_P90, "frontend"): self.ttft_p90_ms,
            (names.ITL_P90, "frontend"): self.itl_p90_ms,
            (names.QUEUED_REQUESTS, "frontend"): self.frontend_queue,
            (names.JETSTREAM_LAG, "prefill"): self.jetstream_lag,
            (names.GPU_UTILIZATION, "frontend"): self.gpu_utilization_pct["frontend"],
            (names.GPU_UTILIZATION, "prefill"): self.gpu_utilization_pct["prefill"],
        }


def _inflation(rho: float, factor: float, cap: float) -> float:
    r = min(max(rho, 0.0), cap)
    return 1.0 + factor * r / (1.0 - r)


def _wait_s(backlog: float, rps: float) -> float:
    if backlog <= 1e-9:
        return 0.0
    return MAX_WAIT_S if rps <= 0 else min(backlog / rps, MAX_WAIT_S)


class GpuServices:
    """The frontend (with its decode worker) and the prefill service under one trace."""

    def __init__(self, config: DeploymentConfig, params: ModelParams, counts: dict[ServiceRole, int]) -> None:
        self.config = config
        self.params = params
        self.pools = {role: ServicePool(counts[role]) for role in SERVICE_ROLES}
        self.frontend_queue = 0.0
        self.prefill_queue = 0.0

    def states(self) -> dict[ServiceRole, ServiceState]:
        return {role: pool.state() for role, pool in self.pools.items()}

    def set_desired(self, counts: dict[ServiceRole, int], now: float) -> None:
        for role, count in counts.items():
            self.pools[role].set_desired(count, now, self.params.startup_s)

    def provisioned_gpus(self) -> int:
        return sum(self.pools[r].desired * self.config.service(r).gpus_per_task for r in SERVICE_ROLES)

    def tick(
        self, now: float, rate: float, input_tokens: float | None, output_tokens: float | None
    ) -> TickMetrics:
        p = self.params
        dt = float(p.tick_s)
        for pool in self.pools.values():
            pool.advance(now)
        inp = input_tokens or p.input_tokens
        out = output_tokens or p.output_tokens
        decode_rps = self.pools["frontend"].running * p.replica_rps("frontend", inp, out)
        prefill_rps = self.pools["prefill"].running * p.replica_rps("prefill", inp, out)

        self.frontend_queue += rate * dt
        admitted = min(self.frontend_queue, decode_rps * dt)
        self.frontend_queue -= admitted
        self.prefill_queue += admitted
        served = min(self.prefill_queue, prefill_rps * dt)
        self.prefill_queue -= served

        rho_decode = admitted / (decode_rps * dt) if decode_rps > 0 else 0.0
        rho_prefill = served / (prefill_rps * dt) if prefill_rps > 0 else 0.0
        prefill_ms = (
            p.base_ttft_ms
            * inp
            / p.input_tokens
            * _inflation(rho_prefill, p.ttft_load_factor, p.max_utilization)
        )
        waits_s = _wait_s(self.frontend_queue, decode_rps) + _wait_s(self.prefill_queue, prefill_rps)
        has_traffic = rate > 0 or admitted > 0 or served > 0
        ttft = prefill_ms + 1000.0 * waits_s if has_traffic else None
        itl = p.base_itl_ms * _inflation(rho_decode, p.itl_load_factor, p.max_utilization)
        in_service = served / dt * prefill_ms / 1000.0
        utilization: dict[ServiceRole, float | None] = {
            "frontend": 100.0 * rho_decode if self.pools["frontend"].running else None,
            "prefill": 100.0 * rho_prefill if self.pools["prefill"].running else None,
        }
        return TickMetrics(
            arrivals_rps=rate,
            frontend_queue=self.frontend_queue,
            prefill_queue=self.prefill_queue,
            jetstream_lag=self.prefill_queue + in_service,
            ttft_p90_ms=ttft,
            itl_p90_ms=itl if has_traffic and admitted > 0 else None,
            gpu_utilization_pct=utilization,
            provisioned_gpus=self.provisioned_gpus(),
        )
