"""Ours against the strongest peers, tuned, on built-in and real traces over seeds 1-5.

Per trace: ours (the production ``decide`` with the stack's defaults: 10-s metrics, the
predictive floor configured from the profiled capacity, scale-ahead) and every peer twice:
on the capacity provider's path (its new instances wait for the provider's once-a-minute
reaction) with the knobs ``bench/tune_peers.py`` chose on seeds 6-8 at ours' cost
(`catalog.TUNED`), and on **the level field**, with scale-ahead as ours has it, re-tuned under
it (`catalog.TUNED_LEVEL`). The bench prints both views; "best peer" is the one with the fewest
SLA-violation minutes of both. Figures are means per run over the seeds. Goal (issue #24): on
every trace at least 15 % fewer SLA-violation minutes than the best peer at no more than 1.02x
its GPU-hours; the first new replica serving at most 120 s after the breach with the warm pool.

Real traces (bench/traces/README.md): one hour of Mooncake's conversation trace and one of
ServeGen's m-large clients, token lengths kept, the model profiled at their mean lengths, the
rate scaled so the busiest five minutes ask 60 % and 90 % of what the budget serves. Their
seeds draw the model's latency noise; their peers' knobs were tuned on the other real trace.

Per trace also the static fleet at the services' maxima, which the default GPU budget holds
exactly: no policy within the budget misses fewer minutes than it. Where ours equals it, every
minute ours misses is one the whole budget misses too, and the 15 % goal cannot be met by any
policy within the budget; the bench then also scores that trace with room for two more tasks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig
from dynamo_ecs_cli.replay.catalog import LEVEL_SUFFIX, peer_factories
from dynamo_ecs_cli.replay.evaluate import (
    GPU_HOURS_SLACK,
    BenchTrace,
    Score,
    best_peer,
    breach_to_serving_s,
    goal_met,
    real_trace,
    score,
    stack_config,
    synthetic_trace,
)
from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.policies import Ours, Static

TRACES = ("diurnal", "bursty", "step", "ramp", "onoff", "flash")
TRACE_DIR = Path(__file__).parent / "traces"
# name: (file in bench/traces, fraction of the budget's capacity its busiest five minutes ask)
REAL_TRACES: dict[str, tuple[str, float]] = {
    "mooncake_60": ("mooncake_conversation.csv.gz", 0.6),
    "mooncake_90": ("mooncake_conversation.csv.gz", 0.9),
    "servegen_60": ("servegen_m_large_d1h22.csv.gz", 0.6),
    "servegen_90": ("servegen_m_large_d1h22.csv.gz", 0.9),
}
SEEDS = (1, 2, 3, 4, 5)
WARM_POOL_GOAL_S = 120.0
SCALE_AHEAD_OFF = {"scaling": {"scale_ahead": False}}
SLA_CUT = 0.15


def _static_fits_budget(config: DeploymentConfig) -> bool:
    """Whether the static fleet (every service at its max) is within the GPU budget."""
    return config.gpus_used({role: config.service(role).max for role in SERVICE_ROLES}) <= config.gpu_budget


def _with_room(config: DeploymentConfig, tasks: int = 1) -> DeploymentConfig:
    """``config`` with ``tasks`` more of each service allowed and the budget raised to hold them."""
    update: dict[str, Any] = {
        role: config.service(role).model_copy(update={"max": config.service(role).max + tasks})
        for role in SERVICE_ROLES
    }
    extra = config.gpus_used(dict.fromkeys(SERVICE_ROLES, tasks))
    return config.model_copy(update={**update, "gpu_budget": config.gpu_budget + extra})


def _line(s: Score) -> str:
    return (
        f"{s.sla_minutes:.1f} min, {s.gpu_hours:.1f} GPU-h, {s.timed_out:.0f} timed out, "
        f"{s.changes_per_hour:.1f} changes/h"
    )


def _why_missed(ours: Score, peer: Score, floor: Score | None) -> str:
    """The reason the goal was missed on a trace, in words, from the figures."""
    if floor is not None and floor.sla_minutes > (1 - SLA_CUT) * peer.sla_minutes:
        return (
            f"the static fleet at the budget misses {floor.sla_minutes:.1f} min, more than "
            f"{1 - SLA_CUT:.0%} of the best peer's {peer.sla_minutes:.1f}: no policy within the budget "
            f"can miss {SLA_CUT:.0%} fewer (the budget, or requests too long for any count, bound it)"
        )
    if ours.gpu_hours > GPU_HOURS_SLACK * peer.gpu_hours:
        return f"ours spends {ours.gpu_hours / peer.gpu_hours:.3f}x the best peer's GPU-hours"
    cut = 1 - ours.sla_minutes / peer.sla_minutes if peer.sla_minutes else 0.0
    return f"ours misses {cut:.0%} fewer minutes than the best peer, short of {SLA_CUT:.0%}"


def bench_traces(names: tuple[str, ...], real: tuple[str, ...]) -> list[BenchTrace]:
    built = [synthetic_trace(name) for name in names]
    for name in real:
        file, fraction = REAL_TRACES[name]
        built.append(real_trace(name, TRACE_DIR / file, fraction))
    return built


# A real trace's peers take the knobs tuned on the other real trace (bench/tune_peers.py).
TUNED_ON = {
    "mooncake_60": "servegen_60",
    "mooncake_90": "servegen_60",
    "servegen_60": "mooncake_60",
    "servegen_90": "mooncake_60",
}


def _tuning(trace: BenchTrace) -> str:
    """Whose tuned knobs the peers take: a built-in trace its family's (tuned on seeds 6-8),
    a real trace the other real trace's."""
    return TUNED_ON.get(trace.name, trace.name)


def _all_peers(
    trace: BenchTrace, config: DeploymentConfig, seeds: tuple[int, ...], params: ModelParams
) -> dict[str, Score]:
    return {
        name: score(trace, seeds, config, params, factory)
        for level in (False, True)
        for name, factory in peer_factories(_tuning(trace), level).items()
    }


def _score_with_room(trace: BenchTrace, seeds: tuple[int, ...], params: ModelParams) -> None:
    """The same comparison with one more task of each service allowed (informative)."""
    ours = score(trace, seeds, _with_room(stack_config()), params, Ours)
    peers = _all_peers(trace, _with_room(DeploymentConfig()), seeds, params)
    label = trace.name
    name, peer = best_peer(peers)
    budget = _with_room(DeploymentConfig()).gpu_budget
    print(f"# {label} with GpuBudget {budget}: ours {_line(ours)}; best peer {name} {_line(peer)}")
    print(f"figure: sla_minutes_ours_{label}_budget_{budget} {ours.sla_minutes:.1f} min")
    print(f"figure: sla_minutes_best_peer_{label}_budget_{budget} {peer.sla_minutes:.1f} min")
    print(f"figure: gpu_hours_ours_{label}_budget_{budget} {ours.gpu_hours:.1f} h")
    print(f"figure: gpu_hours_best_peer_{label}_budget_{budget} {peer.gpu_hours:.1f} h")


def run(
    traces: tuple[str, ...] = TRACES,
    seeds: tuple[int, ...] = SEEDS,
    real: tuple[str, ...] = tuple(REAL_TRACES),
) -> None:
    params = ModelParams()
    met: dict[str, bool] = {}
    static_fits = _static_fits_budget(stack_config())
    for bench_trace in bench_traces(traces, real):
        trace = bench_trace.name
        started = time.perf_counter()
        ours = score(bench_trace, seeds, stack_config(), params, Ours)
        peers = _all_peers(bench_trace, DeploymentConfig(), seeds, params)
        for name, s in sorted(peers.items(), key=lambda kv: kv[1].sla_minutes):
            print(f"# {trace} {name}: {_line(s)}")
        print(f"# {trace} ours: {_line(ours)}")
        # Informative: ours without its own scale-ahead, its instances waiting for the capacity
        # provider as the peers' off the level field do (the policy alone against them).
        alone = score(bench_trace, seeds, stack_config(SCALE_AHEAD_OFF), params, Ours)
        print(f"# {trace} ours without scale-ahead: {_line(alone)}")
        provider = {n: s for n, s in peers.items() if not n.endswith(LEVEL_SUFFIX)}
        level = {n: s for n, s in peers.items() if n.endswith(LEVEL_SUFFIX)}
        provider_name, provider_peer = best_peer(provider)
        level_name, level_peer = best_peer(level)
        name, peer = best_peer(peers)
        print(f"# {trace} best peer on the capacity provider's path: {provider_name} {_line(provider_peer)}")
        print(f"# {trace} best peer on the level field (scale-ahead): {level_name} {_line(level_peer)}")
        floor = score(bench_trace, seeds, stack_config(), params, Static) if static_fits else None
        if floor is not None:
            print(f"# {trace} static at the budget: {_line(floor)}")
            print(f"figure: sla_minutes_static_at_budget_{trace} {floor.sla_minutes:.1f} min")
        print(f"figure: sla_minutes_ours_{trace} {ours.sla_minutes:.1f} min")
        print(f"figure: sla_minutes_best_peer_{trace} {peer.sla_minutes:.1f} min")
        print(f"figure: gpu_hours_ours_{trace} {ours.gpu_hours:.1f} h")
        print(f"figure: gpu_hours_best_peer_{trace} {peer.gpu_hours:.1f} h")
        print(f"figure: sla_minutes_best_peer_level_{trace} {level_peer.sla_minutes:.1f} min")
        print(f"figure: gpu_hours_best_peer_level_{trace} {level_peer.gpu_hours:.1f} h")
        print(f"figure: scaling_changes_per_hour_ours_{trace} {ours.changes_per_hour:.1f} count")
        met[trace] = goal_met(ours, peer)
        cut = 1 - ours.sla_minutes / peer.sla_minutes if peer.sla_minutes else 0.0
        print(
            f"# {trace}: best peer {name}; ours {cut:.0%} fewer SLA minutes at "
            f"{ours.gpu_hours / peer.gpu_hours:.3f}x its GPU-hours (goal: >= 15 % at <= {GPU_HOURS_SLACK}x): "
            f"{'met' if met[trace] else 'MISSED'}; {ours.changes_per_hour:.1f} scaling changes/h against "
            f"its {peer.changes_per_hour:.1f} ({time.perf_counter() - started:.0f} s)"
        )
        if not met[trace]:
            print(f"# {trace}: why: {_why_missed(ours, peer, floor)}")
        if not met[trace] and floor is not None and 0 < floor.sla_minutes >= ours.sla_minutes:
            print(
                f"# {trace}: ours misses no more than the whole budget serving all the time "
                f"({floor.sla_minutes:.1f} min): no policy within the budget meets the goal here"
            )
            _score_with_room(bench_trace, seeds, params)
    cold = breach_to_serving_s(stack_config(), params.model_copy(update={"warm_pool_size": 0}))
    warm = breach_to_serving_s(stack_config(), params)
    print(f"figure: breach_to_serving_s_cold {cold:.0f} s")
    print(f"figure: breach_to_serving_s_warm_pool {warm:.0f} s")
    verdict = "met" if warm <= WARM_POOL_GOAL_S else "MISSED"
    print(f"# breach to serving with the warm pool <= {WARM_POOL_GOAL_S:.0f} s: {verdict}")
    missed = [t for t, ok in met.items() if not ok]
    print(f"# SLA goal missed on: {', '.join(missed)}" if missed else "# SLA goal met on every trace")
