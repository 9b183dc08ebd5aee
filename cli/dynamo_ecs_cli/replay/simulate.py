"""Run one trace through the model under one policy, tick by tick, and score the run.

Each tick: the trace's rate arrives, the model serves what its serving replicas can; at the
end of every ``scaling.metric_period_s`` the period's average of each signal becomes a
datapoint (stamped at the period's end, as the scaler's reader sees it); then the policy may
act, and its desired counts take effect at once (new tasks serve after their start-up).

Scores: SLA-violation minutes (time with requests during which TTFT p90 or ITL p90 was
above its SLA target), GPU-hours (tasks asked for, starting or running, times their GPUs),
scale actions (desired-count changes of either service) and the peak queue (frontend queue
plus JetStream backlog, requests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import Observation
from dynamo_ecs_cli.replay.catalog import POLICIES, PolicyFactory
from dynamo_ecs_cli.replay.model import GpuServices, ModelParams
from dynamo_ecs_cli.replay.policies import all_specs
from dynamo_ecs_cli.replay.traces import Trace


@dataclass(frozen=True)
class SlaTargets:
    ttft_p90_ms: float | None
    itl_p90_ms: float | None

    @classmethod
    def from_config(cls, config: DeploymentConfig) -> SlaTargets:
        """The frontend's latency targets are the SLA the replay scores against."""
        return cls(config.frontend.targets.ttft_ms, config.frontend.targets.itl_ms)

    def violated(self, ttft: float | None, itl: float | None) -> bool:
        return bool(
            (self.ttft_p90_ms is not None and ttft is not None and ttft > self.ttft_p90_ms)
            or (self.itl_p90_ms is not None and itl is not None and itl > self.itl_p90_ms)
        )


@dataclass
class Series:
    """Per-tick values for the chart."""

    at: list[float] = field(default_factory=list)
    load_rps: list[float] = field(default_factory=list)
    replicas: dict[ServiceRole, list[int]] = field(default_factory=lambda: {r: [] for r in SERVICE_ROLES})
    gpus: list[int] = field(default_factory=list)
    ttft_p90_ms: list[float | None] = field(default_factory=list)
    queue: list[float] = field(default_factory=list)


@dataclass
class RunResult:
    policy: str
    sla_minutes: float = 0.0
    gpu_hours: float = 0.0
    scale_actions: int = 0
    peak_queue: float = 0.0
    timed_out: float = 0.0
    decisions: int = 0
    series: Series = field(default_factory=Series)
    # (asked for at, serving from) of every task asked for; inf: never served (stopped first).
    tasks: list[tuple[float, float]] = field(default_factory=list)

    def first_serving_after(self, at: float) -> float | None:
        """When the first task asked for at or after ``at`` started serving."""
        times = [serving for asked, serving in self.tasks if asked >= at and serving < float("inf")]
        return min(times) if times else None

    def summary(self) -> dict[str, float | int | str]:
        return {
            "policy": self.policy,
            "sla_violation_minutes": round(self.sla_minutes, 2),
            "gpu_hours": round(self.gpu_hours, 2),
            "scale_actions": self.scale_actions,
            "peak_queue": round(self.peak_queue, 1),
            "timed_out": round(self.timed_out, 1),
            "decisions": self.decisions,
        }


def replay(
    trace: Trace,
    config: DeploymentConfig,
    params: ModelParams,
    make_policy: PolicyFactory,
    sla: SlaTargets | None = None,
    score_from: float | None = None,
) -> RunResult:
    """One policy over the whole trace; deterministic for a given trace, config and params.

    ``score_from``: the scores count only from then on (a lead-in before it is replayed, not scored).
    """
    sla = sla or SlaTargets.from_config(config)
    policy = make_policy(config, trace.start, params)
    observe = getattr(policy, "observe", None)
    services = GpuServices(config, params, policy.initial_counts())
    result = RunResult(policy.name)
    specs = all_specs(config)
    period = config.scaling.metric_period_s
    dt = params.tick_s
    sums: dict[tuple[str, ServiceRole], list[float]] = {}
    observations: dict[str, Observation] = {}
    cursor = trace.cursor()
    ticks = int(trace.duration_s // dt)
    for i in range(ticks):
        now = trace.start + i * dt
        point = cursor.at(now)
        metrics = services.tick(now, point.request_rate, point.input_tokens, point.output_tokens)
        end = now + dt

        series = result.series
        series.at.append(now)
        series.load_rps.append(point.request_rate)
        for role in SERVICE_ROLES:
            series.replicas[role].append(services.pools[role].desired)
        series.gpus.append(metrics.provisioned_gpus)
        series.ttft_p90_ms.append(metrics.ttft_p90_ms)
        queue = metrics.frontend_queue + metrics.prefill_queue
        series.queue.append(queue)
        scored = score_from is None or now >= score_from
        if scored:
            result.gpu_hours += metrics.provisioned_gpus * dt / 3600.0
            result.peak_queue = max(result.peak_queue, queue)
            result.timed_out += metrics.timed_out
            if sla.violated(metrics.ttft_p90_ms, metrics.itl_p90_ms):
                result.sla_minutes += dt / 60.0

        signals = metrics.signals()
        if observe is not None:
            observe(end, signals)
        for source, value in signals.items():
            if value is not None:
                sums.setdefault(source, []).append(value)
        new_datapoints = (end - trace.start) % period == 0
        if new_datapoints:
            for spec in specs:
                values = sums.get((spec.metric, spec.source_service))
                if values:
                    observations[spec.key] = Observation(sum(values) / len(values), end)
            sums.clear()

        before = services.states(end)
        wanted = policy.step(end, before, observations, new_datapoints)
        if wanted is None:
            continue
        result.decisions += 1
        if scored:
            result.scale_actions += sum(1 for r in SERVICE_ROLES if wanted[r] != before[r].desired)
        services.set_desired(wanted, end, getattr(policy, "scale_ahead", False))
    result.tasks = [(t.asked_at, t.serving_at) for t in services.created]
    return result


def with_profiled_capacity(config: DeploymentConfig, params: ModelParams) -> DeploymentConfig:
    """The config with each service's ``capacity_rps`` taken from the model where it is unset.

    What ``dynamo-ecs profile`` tells a user to set, at the frontend's targets, and the same in
    tokens/s at the model's lengths (prefill: input tokens, the frontend: output tokens). An
    explicit ``--set <role>.capacity_rps=...`` or ``capacity_tokens_per_s`` is kept.
    """
    ttft = config.frontend.targets.ttft_ms or 500.0
    itl = config.frontend.targets.itl_ms or 2 * params.base_itl_ms
    update: dict[str, Any] = {}
    for role in SERVICE_ROLES:
        service = config.service(role)
        fields: dict[str, float] = {}
        rps = service.capacity_rps
        if rps is None:
            rps = fields["capacity_rps"] = round(params.capacity_at_sla(role, ttft, itl), 2)
        if service.capacity_tokens_per_s is None:
            length = params.input_tokens if role == "prefill" else params.output_tokens
            fields["capacity_tokens_per_s"] = round(rps * length, 1)
        if fields:
            update[role] = service.model_copy(update=fields)
    return config.model_copy(update=update)


def replay_all(
    trace: Trace,
    config: DeploymentConfig,
    params: ModelParams,
    policies: list[str] | None = None,
    sla: SlaTargets | None = None,
) -> list[RunResult]:
    """Every chosen policy over the trace, with the profiled capacity filled in (`with_profiled_capacity`)."""
    chosen = policies or list(POLICIES)
    config = with_profiled_capacity(config, params)
    return [replay(trace, config, params, POLICIES[name], sla) for name in chosen]
