"""Every policy a replay can run, by name: ours, the tuned peers, and the older baselines.

The peers' knobs here are the tuned ones (``bench/tune_peers.py`` grid-searches them on
seeds the figures do not use; docs/replay.md "Peers" says how and what it chose).
"""

from __future__ import annotations

from collections.abc import Callable

from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.peers import Keda, KedaKnobs, Planner, PlannerKnobs, StepKnobs, StepScaling
from dynamo_ecs_cli.replay.policies import HpaDefaults, Ours, Policy, Static, TargetTracking

PolicyFactory = Callable[[DeploymentConfig, float, ModelParams], Policy]

# Per built-in trace, the knobs bench/tune_peers.py chose (seeds 6-8, at ours' cost + 2 %);
# onoff, flash and the real traces were tuned with the scale-in that pays, the first four before.
TUNED: dict[str, dict[str, StepKnobs | KedaKnobs | PlannerKnobs]] = {
    "diurnal": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=5),
        "step_10s": StepKnobs(
            period_s=10, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=40.0, in_datapoints=30
        ),
        "keda": KedaKnobs(scale_down_stabilization_s=600, itl=True, gpu_utilization_pct=80.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=0.3, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=0.2, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=0.3, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=0.3, trend_intervals=3
        ),
    },
    "bursty": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=60.0, in_datapoints=5),
        "step_10s": StepKnobs(
            period_s=10, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=60.0, in_datapoints=30
        ),
        "keda": KedaKnobs(scale_down_stabilization_s=60, itl=False, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=0.7, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=0.7, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=0.7, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=1.0, trend_intervals=3
        ),
    },
    "step": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=5),
        "step_10s": StepKnobs(
            period_s=10, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=40.0, in_datapoints=30
        ),
        "keda": KedaKnobs(scale_down_stabilization_s=60, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=0.4, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=0.4, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=0.2, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=0.3, trend_intervals=3
        ),
    },
    "ramp": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=40.0, in_datapoints=5),
        "step_10s": StepKnobs(period_s=10, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=30),
        "keda": KedaKnobs(scale_down_stabilization_s=60, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=0.2, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=0.3, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=0.3, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=0.3, trend_intervals=3
        ),
    },
    "onoff": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=40.0, in_datapoints=5),
        "step_10s": StepKnobs(
            period_s=10, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=40.0, in_datapoints=30
        ),
        "keda": KedaKnobs(scale_down_stabilization_s=600, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=1.0, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=1.0, trend_intervals=3
        ),
    },
    "flash": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=60.0, in_datapoints=5),
        "step_10s": StepKnobs(period_s=10, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=60.0, in_datapoints=30),
        "keda": KedaKnobs(scale_down_stabilization_s=60, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=0.5, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=0.4, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=0.5, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=0.4, trend_intervals=3
        ),
    },
    "mooncake_60": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=5),
        "step_10s": StepKnobs(period_s=10, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=30),
        "keda": KedaKnobs(scale_down_stabilization_s=180, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=1.0, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=1.0, trend_intervals=3
        ),
    },
    "servegen_60": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=5),
        "step_10s": StepKnobs(period_s=10, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=30),
        "keda": KedaKnobs(scale_down_stabilization_s=600, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=1.0, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=1.0, trend_intervals=3
        ),
    },
}
# The level field: the same peers with scale-ahead (peers.py), re-tuned under it by
# ``python -m bench.tune_peers --level`` (seeds 6-8, at ours' cost + 2 %; a real trace's knobs
# are used for the other real trace). diurnal and ramp were not re-tuned: their level peers
# keep the knobs of TUNED.
TUNED_LEVEL: dict[str, dict[str, StepKnobs | KedaKnobs | PlannerKnobs]] = {
    "bursty": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=60.0, in_datapoints=5),
        "step_10s": StepKnobs(
            period_s=10, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=60.0, in_datapoints=30
        ),
        "keda": KedaKnobs(scale_down_stabilization_s=60, itl=False, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=0.7, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=0.7, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=1.0, trend_intervals=3
        ),
    },
    "step": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=40.0, in_datapoints=5),
        "step_10s": StepKnobs(
            period_s=10, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=40.0, in_datapoints=30
        ),
        "keda": KedaKnobs(scale_down_stabilization_s=60, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=0.4, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=0.5, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=0.2, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=0.3, trend_intervals=3
        ),
    },
    "onoff": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=40.0, in_datapoints=5),
        "step_10s": StepKnobs(
            period_s=10, steps=(1, 2, 4), cooldown_s=180, in_gpu_pct=40.0, in_datapoints=30
        ),
        "keda": KedaKnobs(scale_down_stabilization_s=600, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=1.0, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=1.0, trend_intervals=3
        ),
    },
    "flash": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=60.0, in_datapoints=5),
        "step_10s": StepKnobs(period_s=10, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=60.0, in_datapoints=30),
        "keda": KedaKnobs(scale_down_stabilization_s=60, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=0.3, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=0.3, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=0.5, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=0.4, trend_intervals=3
        ),
    },
    "mooncake_60": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=5),
        "step_10s": StepKnobs(period_s=10, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=30),
        "keda": KedaKnobs(scale_down_stabilization_s=180, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=1.0, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=1.0, trend_intervals=3
        ),
    },
    "servegen_60": {
        "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=5),
        "step_10s": StepKnobs(period_s=10, steps=(1, 2, 4), cooldown_s=60, in_gpu_pct=40.0, in_datapoints=30),
        "keda": KedaKnobs(scale_down_stabilization_s=180, itl=True, gpu_utilization_pct=60.0),
        "planner_60s_constant": PlannerKnobs(
            interval_s=60, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_60s_trend": PlannerKnobs(interval_s=60, predictor="trend", headroom=1.0, trend_intervals=3),
        "planner_180s_constant": PlannerKnobs(
            interval_s=180, predictor="constant", headroom=1.0, trend_intervals=3
        ),
        "planner_180s_trend": PlannerKnobs(
            interval_s=180, predictor="trend", headroom=1.0, trend_intervals=3
        ),
    },
}
DEFAULT_TUNING = "bursty"  # a trace file gets the knobs tuned for the CLI's default trace
LEVEL_SUFFIX = "_level"


def step_factory(name: str, knobs: StepKnobs, level: bool = False) -> PolicyFactory:
    return lambda config, start, params: StepScaling(config, start, params, knobs, name, level)


def keda_factory(name: str, knobs: KedaKnobs, level: bool = False) -> PolicyFactory:
    return lambda config, start, params: Keda(config, start, params, knobs, name, level)


def planner_factory(name: str, knobs: PlannerKnobs, level: bool = False) -> PolicyFactory:
    return lambda config, start, params: Planner(config, start, params, knobs, name, level)


def factory_for(name: str, knobs: StepKnobs | KedaKnobs | PlannerKnobs, level: bool = False) -> PolicyFactory:
    if isinstance(knobs, StepKnobs):
        return step_factory(name, knobs, level)
    if isinstance(knobs, KedaKnobs):
        return keda_factory(name, knobs, level)
    return planner_factory(name, knobs, level)


def tuning_for(trace: str | None) -> str:
    """The tuned family a trace's name belongs to (``<family>-seed<n>``; others: the default's)."""
    kind = (trace or DEFAULT_TUNING).split("-seed")[0]
    return kind if kind in TUNED or kind in TUNED_LEVEL else DEFAULT_TUNING


def peer_factories(trace: str | None = None, level: bool = False) -> dict[str, PolicyFactory]:
    """The tuned peers for a trace; with ``level``, the peers with scale-ahead (``<peer>_level``),
    with the knobs tuned under it (those tuned without it where none were)."""
    kind = tuning_for(trace)
    provider = TUNED.get(kind, TUNED[DEFAULT_TUNING])
    if not level:
        return {name: factory_for(name, knobs) for name, knobs in provider.items()}
    tuned = {**provider, **TUNED_LEVEL.get(kind, {})}
    return {
        name + LEVEL_SUFFIX: factory_for(name + LEVEL_SUFFIX, knobs, True) for name, knobs in tuned.items()
    }


PEERS = peer_factories()
LEVEL_PEERS = peer_factories(level=True)

POLICIES: dict[str, PolicyFactory] = {
    "ours": Ours,
    **PEERS,
    **LEVEL_PEERS,
    "target_tracking": TargetTracking,
    "hpa": HpaDefaults,
    "static": Static,
}
