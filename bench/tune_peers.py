"""Grid-search each peer's knobs on seeds 6-8 of each built-in trace (not the figures' 1-5).

``python -m bench.tune_peers [TRACE ...]`` prints, per trace and peer, the grid point a good operator
would pick at ours' cost: the fewest SLA-violation minutes among the points whose GPU-hours
are at most 1.02x ours (the cheapest point when none is). The choices are copied into
`dynamo_ecs_cli/replay/catalog.py` (``TUNED``) by hand, so a change is reviewed. Seeds 6-8,
44 grid points: about 15 minutes on one free core.
"""

from __future__ import annotations

import itertools
import sys
import time

from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs_cli.replay.catalog import PolicyFactory, keda_factory, planner_factory, step_factory
from dynamo_ecs_cli.replay.evaluate import GPU_HOURS_SLACK, Score, score, stack_config
from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.peers import KedaKnobs, PlannerKnobs, StepKnobs
from dynamo_ecs_cli.replay.policies import Ours
from dynamo_ecs_cli.replay.traces import SYNTHETIC

TUNING_SEEDS = (6, 7, 8)


def grids() -> dict[str, list[object]]:
    step: dict[str, list[object]] = {}
    for period, datapoints in ((60, 5), (10, 30)):  # five minutes low before a scale-in
        step[f"step_{period}s"] = [
            StepKnobs(period, steps, cooldown, gpu, datapoints)
            for steps, cooldown, gpu in itertools.product(((1, 2, 4), (2, 3, 4)), (60, 180), (40.0, 60.0))
        ]
    keda: list[object] = [
        KedaKnobs(window, itl, gpu)
        for window, itl, gpu in itertools.product((60, 180, 300, 600), (True, False), (60.0, 80.0))
    ]
    planner = {
        f"planner_{interval}s_{predictor}": [
            PlannerKnobs(interval, predictor, headroom)
            for headroom in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
        ]
        for interval in (60, 180)
        for predictor in ("constant", "trend")
    }
    return {**step, "keda": keda, **planner}  # type: ignore[dict-item]


def factory(peer: str, knobs: object) -> PolicyFactory:
    if isinstance(knobs, StepKnobs):
        return step_factory(peer, knobs)
    if isinstance(knobs, KedaKnobs):
        return keda_factory(peer, knobs)
    assert isinstance(knobs, PlannerKnobs)
    return planner_factory(peer, knobs)


def pick(points: list[tuple[object, Score]], budget: float) -> tuple[object, Score]:
    affordable = [p for p in points if p[1].gpu_hours <= budget]
    if affordable:
        return min(affordable, key=lambda p: (p[1].sla_minutes, p[1].gpu_hours))
    return min(points, key=lambda p: p[1].gpu_hours)


def main(traces: list[str], only: set[str] | None = None) -> None:
    params = ModelParams()
    peer_config = DeploymentConfig()
    for trace in traces:
        started = time.perf_counter()
        ours = score(trace, TUNING_SEEDS, stack_config(), params, Ours)
        budget = GPU_HOURS_SLACK * ours.gpu_hours
        print(f"# {trace}: ours {ours.sla_minutes:.1f} min, {ours.gpu_hours:.1f} GPU-h; budget {budget:.1f}")
        for peer, points in grids().items():
            if only and peer not in only:
                continue
            scored = [(k, score(trace, TUNING_SEEDS, peer_config, params, factory(peer, k))) for k in points]
            knobs, best = pick(scored, budget)
            print(f"{trace} {peer} {knobs!r} sla {best.sla_minutes:.1f} gpu {best.gpu_hours:.1f}", flush=True)
        print(f"# {trace} took {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    # python -m bench.tune_peers [TRACE ...] [--peers a,b]
    args = sys.argv[1:]
    peers = None
    if "--peers" in args:
        at = args.index("--peers")
        peers = set(args[at + 1].split(","))
        args = args[:at] + args[at + 2 :]
    main(args or list(SYNTHETIC), peers)
