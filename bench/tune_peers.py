"""Grid-search each peer's knobs on seeds 6-8 (the figures use 1-5), on both views.

``python -m bench.tune_peers [TRACE ...] [--peers a,b] [--level]`` prints, per trace and peer,
the grid point a good operator would pick at ours' cost: the fewest SLA-violation minutes among
the points whose GPU-hours are at most 1.02x ours (the cheapest point when none is). With
``--level`` the peers run with scale-ahead (the level field, catalog.TUNED_LEVEL); without it on
the capacity provider's path (catalog.TUNED). The choices are copied into
`dynamo_ecs_cli/replay/catalog.py` by hand, so a change is reviewed.

Tuned on, judged on: a built-in trace is tuned on its seeds 6-8 and judged on 1-5 (other
traces of the same family). A real trace is judged with the knobs tuned on **the other** real
trace at 60 % of the budget (``bench_replay.TUNED_ON``), seeds 6-8 of the model's noise: the
peers never see the requests they are judged on. Seeds 6-8, 44 grid points, the six built-in
and two real traces: about 5 minutes per view on one free core.
"""

from __future__ import annotations

import itertools
import sys
import time

from bench.bench_replay import REAL_TRACES, TRACES, bench_traces
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs_cli.replay.catalog import PolicyFactory, keda_factory, planner_factory, step_factory
from dynamo_ecs_cli.replay.evaluate import GPU_HOURS_SLACK, BenchTrace, Score, score, stack_config
from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.peers import KedaKnobs, PlannerKnobs, StepKnobs
from dynamo_ecs_cli.replay.policies import Ours

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


def factory(peer: str, knobs: object, level: bool = False) -> PolicyFactory:
    if isinstance(knobs, StepKnobs):
        return step_factory(peer, knobs, level)
    if isinstance(knobs, KedaKnobs):
        return keda_factory(peer, knobs, level)
    assert isinstance(knobs, PlannerKnobs)
    return planner_factory(peer, knobs, level)


def pick(points: list[tuple[object, Score]], budget: float) -> tuple[object, Score]:
    affordable = [p for p in points if p[1].gpu_hours <= budget]
    if affordable:
        return min(affordable, key=lambda p: (p[1].sla_minutes, p[1].gpu_hours))
    return min(points, key=lambda p: p[1].gpu_hours)


def main(traces: list[str], only: set[str] | None = None, level: bool = False) -> None:
    params = ModelParams()
    peer_config = DeploymentConfig()
    synthetic = tuple(t for t in traces if t in TRACES)
    real = tuple(t for t in traces if t in REAL_TRACES)
    built: list[BenchTrace] = bench_traces(synthetic, real)
    for trace in built:
        started = time.perf_counter()
        ours = score(trace, TUNING_SEEDS, stack_config(), params, Ours)
        budget = GPU_HOURS_SLACK * ours.gpu_hours
        view = "level" if level else "provider"
        print(
            f"# {trace.name} ({view}): ours {ours.sla_minutes:.1f} min, {ours.gpu_hours:.1f} GPU-h; "
            f"budget {budget:.1f}"
        )
        for peer, points in grids().items():
            if only and peer not in only:
                continue
            scored = [
                (k, score(trace, TUNING_SEEDS, peer_config, params, factory(peer, k, level))) for k in points
            ]
            knobs, best = pick(scored, budget)
            print(
                f"{trace.name} {peer} {knobs!r} sla {best.sla_minutes:.1f} gpu {best.gpu_hours:.1f}",
                flush=True,
            )
        print(f"# {trace.name} took {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    # python -m bench.tune_peers [TRACE ...] [--peers a,b] [--level]
    args = sys.argv[1:]
    peers = None
    level = "--level" in args
    args = [a for a in args if a != "--level"]
    if "--peers" in args:
        at = args.index("--peers")
        peers = set(args[at + 1].split(","))
        args = args[:at] + args[at + 2 :]
    main(args or [*TRACES, "mooncake_60", "servegen_60"], peers, level)
