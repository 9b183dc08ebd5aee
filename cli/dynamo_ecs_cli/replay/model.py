"""A discrete-time model of the two GPU services, just detailed enough to drive the scaler.

Every tick (``tick_s``, 10 s by default) the requests of the trace arrive at the frontend:

1. the frontend's decode workers admit as many as their throughput allows
   (``decode_tokens_per_s`` per replica / output length); the rest wait in the frontend's
   queue (``QueueDepth``, Service=frontend) and are carried over to the next tick;
2. admitted requests go to the prefill work queue; the prefill workers serve
   ``prefill_tokens_per_s`` per replica / input length; the rest is the lag
   (the prefill-side ``QueueDepth`` counts the waiting plus those in service, as Dynamo's
   dispatch stage does; ``JetStreamLag`` of a JetStream pipeline would count the same);
3. a request still waiting ``client_timeout_s`` after it arrived is given up by its client
   and leaves the queues (counted as timed out);
4. TTFT p90 = prefill time, inflated as prefill utilization rises (an M/M/1-like
   ``1 + k * rho / (1 - rho)``), plus the time the backlog ahead takes to drain, for both
   queues; ITL p90 rises the same way with decode utilization (bigger batches); both vary
   from tick to tick by a seeded log-normal factor (``latency_cv``);
5. GPU utilization of a service is the fraction of its serving replicas' throughput used,
   averaged over its running tasks (a task loading its model counts as idle).

How long a new task takes to serve, and what is billed meanwhile: `capacity_model`. A tick
without requests publishes no latency (as the collector publishes no percentile for an empty
window).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import ServiceState
from dynamo_ecs_cli.replay.capacity_model import Cluster, ServicePool, Startup, Task

# The token rates the frontend's histograms give (input_sequence_tokens, output_sequence_tokens:
# the increase of their sums per second); the floor's input in tokens (scaling/forecast.py).
INPUT_TOKEN_RATE = "InputTokenRate"  # noqa: S105 (a metric name)
OUTPUT_TOKEN_RATE = "OutputTokenRate"  # noqa: S105 (a metric name)

# The wait the TTFT estimate can show while a service has no serving replica: a request waits
# at most until its client gives up.
MAX_WAIT_S = 600.0


class ModelParams(BaseModel):
    """The model's knobs (``--model key=value``); docs/replay.md gives each default's source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tick_s: int = Field(10, ge=1, le=60)
    # Start-up, phase by phase (capacity_model.py), and shut-down.
    capacity_reaction_s: float = Field(60.0, ge=0)
    instance_launch_s: float = Field(150.0, ge=0)
    warm_launch_s: float = Field(45.0, ge=0)
    image_pull_s: float = Field(360.0, ge=0)
    model_load_s: float = Field(60.0, ge=0)
    warm_pool_size: int = Field(6, ge=0)
    drain_s: float = Field(120.0, ge=0)
    idle_instance_s: float = Field(900.0, ge=0)
    # Clients and latency.
    client_timeout_s: float = Field(120.0, gt=0)
    latency_cv: float = Field(0.1, ge=0, le=2)
    noise_seed: int = 0
    # Per-replica capacity (a profile file sets these, profile.py).
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
    def startup(self) -> Startup:
        return Startup(
            capacity_reaction_s=self.capacity_reaction_s,
            instance_launch_s=self.instance_launch_s,
            warm_launch_s=self.warm_launch_s,
            image_pull_s=self.image_pull_s,
            model_load_s=self.model_load_s,
            warm_pool_size=self.warm_pool_size,
            drain_s=self.drain_s,
            idle_instance_s=self.idle_instance_s,
        )

    @property
    def startup_s(self) -> float:
        """What a new replica should expect between being asked for and serving."""
        return self.startup.expected_s

    def replica_rps(self, role: ServiceRole, input_tokens: float, output_tokens: float) -> float:
        """Requests per second one serving replica serves."""
        if role == "frontend":
            return self.decode_tokens_per_s / output_tokens
        return self.prefill_tokens_per_s / input_tokens

    def capacity_at_sla(self, role: ServiceRole, ttft_ms: float, itl_ms: float) -> float:
        """Requests/s one replica serves with its mean latency at the target, at the default
        lengths: prefill at the TTFT target, the frontend's decode worker at the ITL target.
        What a profile measures; the planner and our predictive floor are configured with it."""
        rps = self.replica_rps(role, self.input_tokens, self.output_tokens)
        base, factor = (
            (self.base_ttft_ms, self.ttft_load_factor)
            if role == "prefill"
            else (
                self.base_itl_ms,
                self.itl_load_factor,
            )
        )
        target = ttft_ms if role == "prefill" else itl_ms
        # base * (1 + k rho / (1 - rho)) = target  ->  rho = x / (k + x) with x = target / base - 1
        x = max(target / base - 1.0, 0.0)
        rho = x / (factor + x) if factor + x > 0 else 1.0
        return min(rho, self.max_utilization) * rps


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
    timed_out: float = 0.0
    input_tokens_per_s: float = 0.0  # arriving prompt tokens
    output_tokens_per_s: float = 0.0  # arriving requests' output tokens

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
            (names.REQUEST_RATE, "frontend"): self.arrivals_rps,
            (INPUT_TOKEN_RATE, "prefill"): self.input_tokens_per_s,
            (OUTPUT_TOKEN_RATE, "frontend"): self.output_tokens_per_s,
        }


def _inflation(rho: float, factor: float, cap: float) -> float:
    r = min(max(rho, 0.0), cap)
    return 1.0 + factor * r / (1.0 - r)


def _wait_s(backlog: float, rps: float) -> float:
    if backlog <= 1e-9:
        return 0.0
    return MAX_WAIT_S if rps <= 0 else min(backlog / rps, MAX_WAIT_S)


class Backlog:
    """Requests waiting, oldest first, in cohorts by arrival time (so time-outs can drop them)."""

    def __init__(self) -> None:
        self.cohorts: deque[list[float]] = deque()  # [arrived at, requests]
        self.total = 0.0

    def add(self, arrived_at: float, amount: float) -> None:
        if amount > 0:
            self.cohorts.append([arrived_at, amount])
            self.total += amount

    def take(self, amount: float) -> list[tuple[float, float]]:
        """Up to ``amount`` requests, oldest first, as (arrived at, requests)."""
        taken: list[tuple[float, float]] = []
        while amount > 1e-12 and self.cohorts:
            cohort = self.cohorts[0]
            part = min(cohort[1], amount)
            taken.append((cohort[0], part))
            cohort[1] -= part
            amount -= part
            self.total -= part
            if cohort[1] <= 1e-12:
                self.cohorts.popleft()
        if not self.cohorts:
            self.total = 0.0
        return taken

    def expire(self, before: float) -> float:
        """Drop the requests that arrived before ``before``; how many."""
        dropped = 0.0
        while self.cohorts and self.cohorts[0][0] < before:
            dropped += self.cohorts.popleft()[1]
        self.total = max(self.total - dropped, 0.0) if self.cohorts else 0.0
        return dropped


class GpuServices:
    """The frontend (with its decode worker) and the prefill service, on the GPU cluster."""

    def __init__(self, config: DeploymentConfig, params: ModelParams, counts: dict[ServiceRole, int]) -> None:
        self.config = config
        self.params = params
        self.cluster = Cluster(params.startup, max_instances=config.gpu_budget)
        self.pools = {role: ServicePool() for role in SERVICE_ROLES}
        self.created: list[Task] = []  # every task asked for during the replay
        for role in SERVICE_ROLES:
            for _ in range(counts[role]):
                task = Task(float("-inf"), config.service(role).gpus_per_task)
                self.cluster.place_running(task, float("-inf"))
                self.pools[role].tasks.append(task)
        self.frontend_queue = Backlog()
        self.prefill_queue = Backlog()
        self.rng = random.Random(params.noise_seed)
        sigma2 = math.log(1.0 + params.latency_cv**2)
        self._sigma, self._mu = math.sqrt(sigma2), -sigma2 / 2.0  # mean-one log-normal

    def states(self, now: float) -> dict[ServiceRole, ServiceState]:
        return {role: pool.state(now) for role, pool in self.pools.items()}

    def set_desired(self, counts: dict[ServiceRole, int], now: float, scale_ahead: bool = False) -> None:
        """ECS's desired counts; with ``scale_ahead`` the policy also asks the Auto Scaling group."""
        noticed = now if scale_ahead else now + self.params.capacity_reaction_s
        for role, count in counts.items():
            pool = self.pools[role]
            gpus = self.config.service(role).gpus_per_task
            while pool.desired < count:
                task = Task(now, gpus, noticed)
                pool.tasks.append(task)
                self.created.append(task)
            if pool.desired > count:
                # ECS stops the tasks least far along first: not placed, then starting, newest first.
                order = sorted(pool.tasks, key=lambda t: (t.instance is not None, t.serving_at, t.asked_at))
                for task in order[: pool.desired - count]:
                    pool.tasks.remove(task)
                    self.cluster.release(task, now)

    def provisioned_gpus(self) -> int:
        """GPUs of the instances billed now (launching, idle and draining ones included)."""
        return self.cluster.gpus()

    def _noise(self) -> float:
        return math.exp(self.rng.gauss(self._mu, self._sigma)) if self._sigma > 0 else 1.0

    def tick(
        self, now: float, rate: float, input_tokens: float | None, output_tokens: float | None
    ) -> TickMetrics:
        p = self.params
        dt = float(p.tick_s)
        waiting = [t for pool in self.pools.values() for t in pool.tasks if t.instance is None]
        self.cluster.advance(now, waiting)
        inp = input_tokens or p.input_tokens
        out = output_tokens or p.output_tokens
        decode_rps = self.pools["frontend"].serving_count(now) * p.replica_rps("frontend", inp, out)
        prefill_rps = self.pools["prefill"].serving_count(now) * p.replica_rps("prefill", inp, out)

        self.frontend_queue.add(now, rate * dt)
        cohorts = self.frontend_queue.take(decode_rps * dt)
        admitted = sum(n for _, n in cohorts)
        for arrived, n in cohorts:
            self.prefill_queue.add(arrived, n)
        served = sum(n for _, n in self.prefill_queue.take(prefill_rps * dt))
        given_up = now + dt - p.client_timeout_s
        timed_out = self.frontend_queue.expire(given_up) + self.prefill_queue.expire(given_up)

        rho_decode = admitted / (decode_rps * dt) if decode_rps > 0 else 0.0
        rho_prefill = served / (prefill_rps * dt) if prefill_rps > 0 else 0.0
        ttft_noise, itl_noise = self._noise(), self._noise()  # drawn every tick: same for every policy
        prefill_ms = (
            p.base_ttft_ms
            * inp
            / p.input_tokens
            * _inflation(rho_prefill, p.ttft_load_factor, p.max_utilization)
        )
        waits_s = _wait_s(self.frontend_queue.total, decode_rps) + _wait_s(
            self.prefill_queue.total, prefill_rps
        )
        waits_s = min(waits_s, p.client_timeout_s)
        has_traffic = rate > 0 or admitted > 0 or served > 0
        ttft = prefill_ms * ttft_noise + 1000.0 * waits_s if has_traffic else None
        itl = p.base_itl_ms * _inflation(rho_decode, p.itl_load_factor, p.max_utilization) * itl_noise
        in_service = served / dt * prefill_ms / 1000.0
        utilization: dict[ServiceRole, float | None] = {
            "frontend": self._gpu_utilization("frontend", rho_decode, now),
            "prefill": self._gpu_utilization("prefill", rho_prefill, now),
        }
        return TickMetrics(
            arrivals_rps=rate,
            frontend_queue=self.frontend_queue.total,
            prefill_queue=self.prefill_queue.total,
            jetstream_lag=self.prefill_queue.total + in_service,
            ttft_p90_ms=ttft,
            itl_p90_ms=itl if has_traffic and admitted > 0 else None,
            gpu_utilization_pct=utilization,
            provisioned_gpus=self.provisioned_gpus(),
            timed_out=timed_out,
            input_tokens_per_s=rate * inp,
            output_tokens_per_s=rate * out,
        )

    def _gpu_utilization(self, role: ServiceRole, rho: float, now: float) -> float | None:
        """The mean over the service's instances: serving ones at rho, loading ones idle."""
        pool = self.pools[role]
        running = pool.running(now)
        return 100.0 * rho * pool.serving_count(now) / running if running else None
