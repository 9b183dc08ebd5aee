"""A discrete-time model of the two GPU services, just detailed enough to drive the scaler.

Every tick (``tick_s``, 10 s by default) the requests of the trace arrive at the frontend:

1. the frontend's decode workers admit as many as their throughput allows
   (``decode_tokens_per_s`` per replica / output length); the rest wait in the frontend's
   queue (``QueueDepth``, Service=frontend) and are carried over to the next tick;
2. admitted requests go to the prefill work queue (JetStream); the prefill workers serve
   ``prefill_tokens_per_s`` per replica / input length; the rest is the lag
   (the prefill-side ``QueueDepth`` counts the waiting plus those in service, as Dynamo's
   dispatch stage does; ``JetStreamLag`` of a JetStream pipeline would count the same);
3. TTFT p90 = prefill time, inflated as prefill utilization rises (an M/M/1-like
   ``1 + k * rho / (1 - rho)``), plus the time the backlog ahead takes to drain, for both
   queues; ITL p90 rises the same way with decode utilization (bigger batches);
4. GPU utilization of a service is the fraction of its serving replicas' throughput used,
   averaged over its running tasks (a task loading its model counts as idle).

A new task runs (ECS ``runningCount``) after ``instance_start_s`` and serves only after
``model_load_s`` more; a task stops at once (starting ones first). GPU-hours count every
task from the moment it is asked for (its GPU instance is billed while it starts). A tick
without requests publishes no latency (as the collector publishes no percentile for an empty
window).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import ServiceState

# A request cannot wait longer than this in the model (clients time out); keeps numbers finite
# while a service has no serving replica.
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
        """Requests per second one serving replica serves."""
        if role == "frontend":
            return self.decode_tokens_per_s / output_tokens
        return self.prefill_tokens_per_s / input_tokens


class ServicePool:
    """One ECS service: its desired count and its tasks, serving or still starting.

    A starting task is PENDING while its GPU instance launches, then RUNNING (ECS counts it in
    ``runningCount``, the scaler sees it as running) while the model loads, and serves after.
    """

    def __init__(self, serving: int) -> None:
        self.serving = serving
        self.starting: list[tuple[float, float]] = []  # (container running at, serving at)

    @property
    def desired(self) -> int:
        return self.serving + len(self.starting)

    def running(self, now: float) -> int:
        """ECS's runningCount: serving tasks plus those loading the model."""
        return self.serving + sum(1 for started, _ in self.starting if started <= now)

    def set_desired(self, count: int, now: float, instance_start_s: float, model_load_s: float) -> None:
        extra = count - self.desired
        if extra > 0:
            task = (now + instance_start_s, now + instance_start_s + model_load_s)
            self.starting.extend([task] * extra)
            return
        for _ in range(-extra):
            if self.starting:
                self.starting.pop()  # the newest task (least far along) goes first
            else:
                self.serving -= 1

    def advance(self, now: float) -> None:
        ready = [t for t in self.starting if t[1] <= now]
        if ready:
            self.serving += len(ready)
            self.starting = [t for t in self.starting if t[1] > now]

    def state(self, now: float) -> ServiceState:
        return ServiceState(self.desired, self.running(now))


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
        # The model has one latency per tick: it stands for the mean and the p90 alike.
        return {
            (names.TTFT_P90, "frontend"): self.ttft_p90_ms,
            (names.TTFT_MEAN, "frontend"): self.ttft_p90_ms,
            (names.ITL_P90, "frontend"): self.itl_p90_ms,
            (names.ITL_MEAN, "frontend"): self.itl_p90_ms,
            (names.QUEUE_DEPTH, "frontend"): self.frontend_queue,
            # Dynamo's prefill-side queue depth holds a request until its first response:
            # the waiting and those in prefill, the same count as the JetStream lag model.
            (names.QUEUE_DEPTH, "prefill"): self.jetstream_lag,
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

    def states(self, now: float) -> dict[ServiceRole, ServiceState]:
        return {role: pool.state(now) for role, pool in self.pools.items()}

    def set_desired(self, counts: dict[ServiceRole, int], now: float) -> None:
        for role, count in counts.items():
            self.pools[role].set_desired(count, now, self.params.instance_start_s, self.params.model_load_s)

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
        decode_rps = self.pools["frontend"].serving * p.replica_rps("frontend", inp, out)
        prefill_rps = self.pools["prefill"].serving * p.replica_rps("prefill", inp, out)

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
            "frontend": self._gpu_utilization("frontend", rho_decode, now),
            "prefill": self._gpu_utilization("prefill", rho_prefill, now),
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

    def _gpu_utilization(self, role: ServiceRole, rho: float, now: float) -> float | None:
        """The mean over the service's instances: serving ones at rho, loading ones idle."""
        pool = self.pools[role]
        running = pool.running(now)
        return 100.0 * rho * pool.serving / running if running else None
