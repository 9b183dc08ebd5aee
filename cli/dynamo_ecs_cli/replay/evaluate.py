"""Scores over seeds, the best peer at comparable cost, and the breach-to-serving scenario.

Used by the bench (`bench/bench_replay.py`) and the peers' tuning (`bench/tune_peers.py`),
so both score the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs_cli.replay.catalog import PolicyFactory
from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.policies import Ours
from dynamo_ecs_cli.replay.simulate import SlaTargets, replay, with_profiled_capacity
from dynamo_ecs_cli.replay.traces import (
    SYNTHETIC,
    SYNTHETIC_START,
    SYNTHETIC_STEP_S,
    Trace,
    TracePoint,
    at_trace_lengths,
    load_trace_file,
    scale_to_capacity,
)

# Ours may spend at most this much more than a peer and still count as "at equal GPU-hours".
GPU_HOURS_SLACK = 1.02


@dataclass(frozen=True)
class Score:
    """Means per run over the seeds."""

    sla_minutes: float
    gpu_hours: float
    timed_out: float
    changes_per_hour: float = 0.0  # desired-count changes of either service per hour


@dataclass(frozen=True)
class BenchTrace:
    """A trace the bench scores: built per seed, with the model it is replayed on.

    A built-in trace draws a new trace per seed; a real trace is the same requests every
    time, and the seed draws the model's latency noise instead (``noise_per_seed``).
    """

    name: str
    build: Callable[[int], Trace]
    fit: Callable[[ModelParams], ModelParams] = field(default=lambda params: params)
    noise_per_seed: bool = False
    lead_in_s: float = 0.0  # replayed before the scored part, not scored

    def run_on(self, seed: int, params: ModelParams) -> tuple[Trace, ModelParams]:
        fitted = self.fit(params)
        if self.noise_per_seed:
            fitted = fitted.model_copy(update={"noise_seed": seed})
        return self.build(seed), fitted


def synthetic_trace(name: str) -> BenchTrace:
    return BenchTrace(name, lambda seed: SYNTHETIC[name](seed=seed))


# A real trace is an hour cut from a day: it starts under load. Before it, this long a lead-in
# at the mean rate and lengths of its first five minutes lets every policy reach the count that
# load needs (unscored), instead of scoring the start from the minimums.
LEAD_IN_S = 1200.0
LEAD_IN_FROM_S = 300.0


def with_lead_in(trace: Trace, lead_in_s: float = LEAD_IN_S) -> Trace:
    """``trace`` after ``lead_in_s`` of its first five minutes' mean rate and lengths."""
    first = [p for p in trace.points if p.at < trace.start + LEAD_IN_FROM_S] or list(trace.points[:1])
    rate = sum(p.request_rate for p in first) / len(first)
    weight = sum(p.request_rate for p in first) or 1.0
    inp = sum(p.request_rate * (p.input_tokens or 0.0) for p in first) / weight or None
    out = sum(p.request_rate * (p.output_tokens or 0.0) for p in first) / weight or None
    step = trace.step_s
    count = int(lead_in_s // step)
    lead = tuple(TracePoint(trace.start - (count - i) * step, rate, inp, out) for i in range(count))
    return Trace(trace.name, lead + trace.points)


def real_trace(name: str, path: Path, fraction: float, config: DeploymentConfig | None = None) -> BenchTrace:
    """A per-request trace file, the model at its mean lengths, its rate scaled to ``fraction``
    of what the services' maxima serve within the SLA (traces.scale_to_capacity), after an
    unscored lead-in (`with_lead_in`)."""
    loaded = load_trace_file(path)
    base = config or DeploymentConfig()

    def fit(params: ModelParams) -> ModelParams:
        return at_trace_lengths(params, loaded)

    scaled = scale_to_capacity(loaded, fit(ModelParams()), base, fraction)
    named = with_lead_in(Trace(name, scaled.points))
    return BenchTrace(name, lambda seed: named, fit, noise_per_seed=True, lead_in_s=LEAD_IN_S)


def _bench_trace(trace: str | BenchTrace) -> BenchTrace:
    return trace if isinstance(trace, BenchTrace) else synthetic_trace(trace)


def score(
    trace_name: str | BenchTrace,
    seeds: Iterable[int],
    config: DeploymentConfig,
    params: ModelParams,
    factory: PolicyFactory,
) -> Score:
    bench_trace = _bench_trace(trace_name)
    runs = []
    hours = 0.0
    for seed in seeds:
        trace, fitted = bench_trace.run_on(seed, params)
        profiled = with_profiled_capacity(config, fitted)
        scored_from = trace.start + bench_trace.lead_in_s
        sla = SlaTargets.from_config(profiled)
        runs.append(
            replay(trace, profiled, fitted, factory, sla, scored_from if bench_trace.lead_in_s else None)
        )
        hours += (trace.duration_s - bench_trace.lead_in_s) / 3600
    n = len(runs)
    return Score(
        sum(r.sla_minutes for r in runs) / n,
        sum(r.gpu_hours for r in runs) / n,
        sum(r.timed_out for r in runs) / n,
        sum(r.scale_actions for r in runs) / hours,
    )


def best_peer(peers: Mapping[str, Score]) -> tuple[str, Score]:
    """The peer with the fewest SLA-violation minutes (fewer GPU-hours breaks a tie)."""
    name = min(peers, key=lambda n: (peers[n].sla_minutes, peers[n].gpu_hours))
    return name, peers[name]


def goal_met(ours: Score, peer: Score, sla_cut: float = 0.15) -> bool:
    """At least ``sla_cut`` fewer SLA minutes than the peer, at no more than 1.02x its GPU-hours."""
    return ours.sla_minutes <= (1 - sla_cut) * peer.sla_minutes and ours.gpu_hours <= (
        GPU_HOURS_SLACK * peer.gpu_hours
    )


# -- breach to serving --------------------------------------------------------------------

CALM_RPS = 3.0
SURGE_RPS = 14.0
CALM_S = 1800.0
SURGE_S = 1800.0


def surge_trace() -> Trace:
    """Half an hour well within one replica, then a step that needs three of each."""
    count = int((CALM_S + SURGE_S) / SYNTHETIC_STEP_S)
    points = tuple(
        TracePoint(
            SYNTHETIC_START + i * SYNTHETIC_STEP_S, CALM_RPS if i * SYNTHETIC_STEP_S < CALM_S else SURGE_RPS
        )
        for i in range(count)
    )
    return Trace("surge", points)


def breach_to_serving_s(config: DeploymentConfig, params: ModelParams) -> float:
    """Seconds from the first tick over the SLA to the first new replica serving, under ours."""
    config = with_profiled_capacity(config, params)
    trace = surge_trace()
    surge_at = trace.start + CALM_S
    result = replay(trace, config, params.model_copy(update={"latency_cv": 0.0}), Ours)
    series = result.series
    sla = SlaTargets.from_config(config)
    breach = next(
        at
        for at, ttft in zip(series.at, series.ttft_p90_ms, strict=True)
        if at >= surge_at and sla.violated(ttft, None)
    )
    serving = result.first_serving_after(surge_at - config.scaling.metric_period_s)
    if serving is None:
        raise RuntimeError("no new replica served within the surge: the scenario is too short")
    return serving - breach


# The stack's defaults where they differ from the config's own: template.yaml's
# MetricPeriodSeconds (10) sets the collector's six rounds a minute and the scaler's period.
STACK_DEFAULTS: dict[str, Any] = {
    "scaling": {"metric_period_s": 10},
    "signals": {"samples_per_invocation": 6},
}


def stack_config(overrides: Mapping[str, Any] | None = None) -> DeploymentConfig:
    """The stack's defaults, with ``overrides`` merged in section by section."""
    tree = {key: dict(value) for key, value in STACK_DEFAULTS.items()}
    for section, values in (overrides or {}).items():
        tree.setdefault(section, {}).update(values)
    return DeploymentConfig.model_validate(tree)
