"""The peers keep the semantics of what they stand for: step scaling, KEDA + HPA, the planner."""

from __future__ import annotations

import math

import pytest

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import ServiceState
from dynamo_ecs_cli.replay.catalog import keda_factory
from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.peers import Keda, KedaKnobs, Planner, PlannerKnobs, StepKnobs, StepScaling
from dynamo_ecs_cli.replay.simulate import replay
from dynamo_ecs_cli.replay.traces import constant

START = 1_000_020.0 - 1_000_020.0 % 60


def states(frontend: int = 1, prefill: int = 1) -> dict[ServiceRole, ServiceState]:
    return {"frontend": ServiceState(frontend, frontend), "prefill": ServiceState(prefill, prefill)}


def signals(rate: float, ttft: float, queue: float = 0.0) -> dict[tuple[str, ServiceRole], float | None]:
    return {
        (names.REQUEST_RATE, "frontend"): rate,
        (names.TTFT_MEAN, "frontend"): ttft,
        (names.QUEUE_DEPTH, "frontend"): queue,
        (names.QUEUE_DEPTH, "prefill"): queue,
        (names.GPU_UTILIZATION, "frontend"): 50.0,
        (names.GPU_UTILIZATION, "prefill"): 50.0,
        (names.ITL_MEAN, "frontend"): 30.0,
    }


def test_the_planner_sizes_each_role_from_the_predicted_rate_and_the_profiled_capacity() -> None:
    params = ModelParams()
    planner = Planner(DeploymentConfig(), START, params, PlannerKnobs(60, "constant", 0.2), "planner")
    planner.observe(START + 60, signals(10.0, 200.0))
    counts = planner.step(START + 60, states(), {}, True)
    prefill = params.capacity_at_sla("prefill", 500.0, 50.0)
    assert counts == {
        "frontend": math.ceil(12.0 / params.capacity_at_sla("frontend", 500.0, 50.0)),
        "prefill": math.ceil(12.0 / prefill),
    }
    # and it acts only once per interval
    assert planner.step(START + 70, states(), {}, False) is None


def test_the_trend_predictor_extrapolates_one_interval_past_the_last() -> None:
    planner = Planner(DeploymentConfig(), START, ModelParams(), PlannerKnobs(60, "trend", 0.0), "planner")
    for i, rate in enumerate((2.0, 4.0, 6.0), start=1):
        planner.observe(START + 60 * i, signals(rate, 200.0))
    assert planner.predicted_rate() == pytest.approx(8.0)


def test_step_scaling_adds_the_step_of_the_breach_and_counts_a_cooling_scale_out_as_there() -> None:
    step = StepScaling(
        DeploymentConfig(), START, ModelParams(), StepKnobs(10, (1, 2, 4), 120, 50.0, 30), "step"
    )
    # TTFT at 2.4x its target on 1 of 1 datapoints: +4 (to the max of 4)
    step.observe(START + 10, signals(10.0, 1200.0))
    assert step.step(START + 10, states(1, 1), {}, True) == {"frontend": 4, "prefill": 4}
    # Within the cooldown a smaller breach adds nothing on top of what is on the way
    step.observe(START + 20, signals(10.0, 600.0))
    assert step.step(START + 20, states(4, 4), {}, True) == {"frontend": 4, "prefill": 4}


def test_step_scaling_scales_in_one_task_after_its_low_datapoints() -> None:
    knobs = StepKnobs(10, (1, 2, 4), 60, 60.0, 3)
    step = StepScaling(DeploymentConfig(), START, ModelParams(), knobs, "step")
    answers = []
    for i in range(1, 4):
        step.observe(START + 10 * i, signals(2.0, 200.0))
        answers.append(step.step(START + 10 * i, states(3, 3), {}, True))
    assert answers[-1] == {"frontend": 2, "prefill": 2}
    assert answers[0] == {"frontend": 3, "prefill": 3}


def test_keda_without_itl_drops_the_itl_signal_and_uses_hpas_behaviour() -> None:
    policy = keda_factory("keda", KedaKnobs(60, itl=False, gpu_utilization_pct=60.0))(
        DeploymentConfig(), START, ModelParams()
    )
    config = policy.config  # type: ignore[attr-defined]
    assert config.frontend.targets.itl_ms is None
    assert config.scaling.scale_down_stabilization_s == 60 and config.scaling.rate_limit_period_s == 15
    result = replay(
        constant(2.0, hours=0.5),
        DeploymentConfig(),
        ModelParams(latency_cv=0),
        keda_factory("keda", KedaKnobs()),
    )
    assert result.scale_actions == 0


def test_level_peers_take_the_knobs_tuned_with_scale_ahead_and_raise_the_group_at_once() -> None:
    from dynamo_ecs_cli.replay import catalog
    from dynamo_ecs_cli.replay.evaluate import stack_config

    # Given the tuned peers of the bursty trace, on both views
    provider = catalog.peer_factories("bursty-seed3")
    level = catalog.peer_factories("bursty-seed3", level=True)
    # Then every peer is on both, the level ones named _level and asking for instances themselves
    assert set(level) == {name + catalog.LEVEL_SUFFIX for name in provider}
    config = stack_config()
    for name, factory in level.items():
        assert getattr(factory(config, 0.0, ModelParams()), "scale_ahead", False), name
    for name, factory in provider.items():
        assert not getattr(factory(config, 0.0, ModelParams()), "scale_ahead", False), name
    # and a level peer's knobs are those tuned under scale-ahead where there are some
    keda = level["keda_level"](config, 0.0, ModelParams())
    assert isinstance(keda, Keda)
    tuned = catalog.TUNED_LEVEL["bursty"]["keda"]
    assert isinstance(tuned, KedaKnobs)
    assert keda.config.scaling.scale_down_stabilization_s == tuned.scale_down_stabilization_s


def test_a_level_peer_s_new_instances_do_not_wait_for_the_capacity_provider() -> None:
    from dynamo_ecs_cli.replay import catalog
    from dynamo_ecs_cli.replay.evaluate import stack_config
    from dynamo_ecs_cli.replay.simulate import replay, with_profiled_capacity
    from dynamo_ecs_cli.replay.traces import step

    trace = step(hours=3, seed=2)
    config = with_profiled_capacity(stack_config(), ModelParams())
    knobs = catalog.TUNED["step"]["keda"]
    assert isinstance(knobs, KedaKnobs)
    slow = replay(trace, config, ModelParams(), catalog.keda_factory("keda", knobs))
    fast = replay(trace, config, ModelParams(), catalog.keda_factory("keda_level", knobs, level=True))
    waits = [serving - asked for asked, serving in slow.tasks if serving < float("inf")]
    waits_level = [serving - asked for asked, serving in fast.tasks if serving < float("inf")]
    # the capacity provider's minute is gone from every new task's start
    assert min(waits) >= ModelParams().capacity_reaction_s
    assert max(waits_level) < max(waits)
    assert fast.sla_minutes <= slow.sla_minutes
