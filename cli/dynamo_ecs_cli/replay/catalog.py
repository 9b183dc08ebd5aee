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

TUNED_STEP = {
    "step_60s": StepKnobs(period_s=60, steps=(1, 2, 4), cooldown_s=120, in_gpu_pct=50.0, in_datapoints=5),
    "step_10s": StepKnobs(period_s=10, steps=(1, 2, 4), cooldown_s=120, in_gpu_pct=50.0, in_datapoints=30),
}
TUNED_KEDA = KedaKnobs(scale_down_stabilization_s=300, itl=False, gpu_utilization_pct=80.0)
TUNED_PLANNER = {
    f"planner_{interval}s_{predictor}": PlannerKnobs(interval_s=interval, predictor=predictor, headroom=0.2)
    for interval in (60, 180)
    for predictor in ("constant", "trend")
}


def step_factory(name: str, knobs: StepKnobs) -> PolicyFactory:
    return lambda config, start, params: StepScaling(config, start, params, knobs, name)


def keda_factory(name: str, knobs: KedaKnobs) -> PolicyFactory:
    return lambda config, start, params: Keda(config, start, params, knobs, name)


def planner_factory(name: str, knobs: PlannerKnobs) -> PolicyFactory:
    return lambda config, start, params: Planner(config, start, params, knobs, name)


PEERS: dict[str, PolicyFactory] = {
    **{name: step_factory(name, knobs) for name, knobs in TUNED_STEP.items()},
    "keda": keda_factory("keda", TUNED_KEDA),
    **{name: planner_factory(name, knobs) for name, knobs in TUNED_PLANNER.items()},
}

POLICIES: dict[str, PolicyFactory] = {
    "ours": Ours,
    **PEERS,
    "target_tracking": TargetTracking,
    "hpa": HpaDefaults,
    "static": Static,
}
