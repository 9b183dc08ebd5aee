"""Policies under replay: ours runs the production decide; the baselines keep their semantics."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import dynamo_ecs.scaling.decide as production
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import Observation, ServiceState
from dynamo_ecs_cli.replay import policies
from dynamo_ecs_cli.replay.catalog import POLICIES
from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.policies import (
    HpaDefaults,
    Ours,
    Static,
    TargetTracking,
    hpa_policy,
)
from dynamo_ecs_cli.replay.simulate import replay, replay_all
from dynamo_ecs_cli.replay.traces import Trace, TracePoint, constant

START = 1_000_020.0 - 1_000_020.0 % 60


def states(frontend: int = 1, prefill: int = 1) -> dict[ServiceRole, ServiceState]:
    return {"frontend": ServiceState(frontend, frontend), "prefill": ServiceState(prefill, prefill)}


@pytest.mark.parametrize("rate", [0.5, 3.0, 5.0])
def test_a_constant_trace_within_capacity_gives_zero_violations_for_every_policy(rate: float) -> None:
    # Given load one replica of each service serves within the SLA (no latency noise)
    results = replay_all(constant(rate, hours=2), DeploymentConfig(), ModelParams(latency_cv=0))
    # Then no policy misses the SLA or queues requests, and the scaling ones stay at min
    assert [r.policy for r in results] == list(POLICIES)
    for r in results:
        assert r.sla_minutes == 0, r.summary()
        assert r.peak_queue == 0, r.summary()
        # (a planner sizes with its headroom above the rate by design: it may start above min)
        if r.policy != "static" and not r.policy.startswith("planner"):
            assert r.scale_actions == 0, r.summary()
            assert r.gpu_hours == pytest.approx(2 * 2)


def test_ours_calls_the_production_decide_with_its_history_carried(monkeypatch: pytest.MonkeyPatch) -> None:
    assert vars(policies)["decide"] is production.decide  # the very function the scaler imports
    calls: list[dict[str, Any]] = []

    def spy(
        config: Any,
        states: Any,
        observations: Any,
        history: Any,
        now: float,
        demand: Any = (),
        tokens: Any = None,
    ) -> Any:
        decision = production.decide(config, states, observations, history, now, demand, tokens)
        calls.append({"config": config, "history_in": history, "decision": decision, "now": now})
        return decision

    monkeypatch.setattr(policies, "decide", spy)
    config = DeploymentConfig()
    trace = constant(12.0, hours=0.5)
    result = replay(trace, config, ModelParams(), Ours)
    # Every minute, once (metrics arrive on the minute with the schedule)
    assert [c["now"] - trace.start for c in calls] == [60.0 * i for i in range(1, 31)]
    assert all(c["config"] is config for c in calls)
    for before, after in itertools.pairwise(calls):
        assert after["history_in"] is before["decision"].history
    # And the desired counts applied are decide's
    assert result.scale_actions == sum(len(c["decision"].changes) for c in calls)
    assert result.scale_actions > 0


def test_an_alarm_transition_invokes_ours_between_schedule_ticks() -> None:
    config = DeploymentConfig.model_validate({"scaling": {"metric_period_s": 10}})
    ours = Ours(config, START)
    calm = {"frontend_ttft": Observation(200.0, START + 10)}
    assert ours.step(START + 10, states(), calm, new_datapoints=True) is None
    # A datapoint above the TTFT target moves the alarm to ALARM: decide runs at once
    hot = {"frontend_ttft": Observation(2000.0, START + 20)}
    counts = ours.step(START + 20, states(), hot, new_datapoints=True)
    assert counts is not None and counts["frontend"] == 4
    assert ours.alarm_invocations == 1
    # Still in ALARM: no new event until the schedule
    assert ours.step(START + 30, states(4), {"frontend_ttft": Observation(2000.0, START + 30)}, True) is None
    assert (
        ours.step(START + 60, states(4), {"frontend_ttft": Observation(2000.0, START + 60)}, True) is not None
    )
    assert ours.alarm_invocations == 1 and ours.invocations == 2


def test_a_breaching_datapoint_reaches_ours_sooner_with_10_s_metrics() -> None:
    step_up = Trace(
        "step-up",
        tuple(TracePoint(START + 60 * i, 4.0 if i < 10 else 14.0) for i in range(40)),
    )
    params = ModelParams()

    def first_scale_out(period: int) -> float:
        config = DeploymentConfig.model_validate({"scaling": {"metric_period_s": period}})
        series = replay(step_up, config, params, Ours).series
        return next(t for t, n in zip(series.at, series.replicas["frontend"], strict=True) if n > 1)

    assert first_scale_out(10) < first_scale_out(60)


def test_target_tracking_scales_out_after_three_breaching_minutes_only() -> None:
    config = DeploymentConfig.model_validate(
        {
            "frontend": {
                "targets": {
                    "itl_p90_ms": None,
                    "queued_requests_per_replica": None,
                    "gpu_utilization_pct": None,
                }
            }
        }
    )
    tracking = TargetTracking(config, START)
    hot = 1000.0  # twice the TTFT target
    answers = []
    for minute in range(1, 4):
        now = START + 60 * minute
        answers.append(tracking.step(now, states(), {"frontend_ttft": Observation(hot, now)}, True))
    assert [a["frontend"] if a else None for a in answers] == [1, 1, 2]


def test_target_tracking_counts_a_cooling_scale_out_as_capacity() -> None:
    config = DeploymentConfig.model_validate({"frontend": {"max": 10}, "gpu_budget": 20})
    tracking = TargetTracking(config, START)
    counts = []
    desired = 1
    for minute in range(1, 8):
        now = START + 60 * minute
        answer = tracking.step(now, states(desired), {"frontend_ttft": Observation(1000.0, now)}, True)
        assert answer is not None
        desired = answer["frontend"]
        counts.append(desired)
    # 3 minutes to alarm, then 1 -> 2; during the 300-s cooldown the base stays 1: no 4, 8, ...
    assert counts == [1, 1, 2, 2, 2, 2, 2]


def test_target_tracking_scales_in_after_fifteen_low_minutes_and_not_on_missing_data() -> None:
    tracking = TargetTracking(DeploymentConfig(), START)
    # Every signal at 20 % of its target (the queue empty)
    low = {"frontend_ttft": 100.0, "frontend_itl": 10.0, "frontend_queue": 0.0, "frontend_gpu": 16.0}
    answers = []
    for minute in range(1, 19):
        now = START + 60 * minute
        observations = {key: Observation(value, now) for key, value in low.items()}
        if minute == 3:
            observations = {}  # one missing minute: insufficient data, not low load
        answer = tracking.step(now, states(4), observations, True)
        assert answer is not None
        answers.append(answer["frontend"])
    # 15 low minutes in a row only from minute 4 to minute 18
    assert answers[:17] == [4] * 17
    assert answers[17] == 1


def test_hpa_defaults_run_every_15_s_with_hpa_behaviour() -> None:
    config = DeploymentConfig()
    policy = hpa_policy(config)
    assert (policy.tolerance, policy.scale_up_stabilization_s, policy.scale_down_stabilization_s) == (
        0.1,
        0,
        300,
    )
    assert policy.rate_limit_period_s == 15 and policy.scale_up_max_step == 4
    result = replay(constant(3.0, hours=0.25), config, ModelParams(), HpaDefaults)
    assert result.decisions == 60  # 15 minutes at one decision per 15 s (10-s ticks catch up)


def test_static_stays_at_max() -> None:
    config = DeploymentConfig.model_validate({"frontend": {"max": 3}, "prefill": {"max": 2}})
    result = replay(constant(20.0, hours=1), config, ModelParams(), Static)
    assert result.scale_actions == 0
    assert result.gpu_hours == pytest.approx(5.0)
    assert set(result.series.replicas["frontend"]) == {3}


def test_ours_follows_a_step_up_and_back_down_within_bounds() -> None:
    config = DeploymentConfig()
    trace = Trace(
        "step",
        tuple(TracePoint(START + 60 * i, 18.0 if 20 <= i < 60 else 4.0) for i in range(100)),
    )
    series = replay(trace, config, ModelParams(), Ours).series
    frontend = series.replicas["frontend"]
    assert max(frontend) in (3, 4)
    assert frontend[-1] < max(frontend)
    assert series.replicas["prefill"][-1] == 1
    assert max(series.gpus) <= config.gpu_budget


def test_load_above_max_capacity_violates_the_sla_for_every_policy() -> None:
    # Given more load than max replicas serve (4 x 8 requests/s)
    results = replay_all(constant(40.0, hours=1), DeploymentConfig(), ModelParams())
    # Then every policy misses the SLA and queues, and the dynamic ones scale to max
    for r in results:
        assert r.sla_minutes > 30, r.summary()
        assert r.peak_queue > 1000, r.summary()
        assert r.series.replicas["frontend"][-1] == 4, r.summary()


def test_ours_hands_decide_the_request_rate_datapoints_of_its_trend_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[float, ...]] = []

    def spy(
        config: Any,
        states: Any,
        observations: Any,
        history: Any,
        now: float,
        demand: Any = (),
        tokens: Any = None,
    ) -> Any:
        seen.append(tuple(o.value for o in demand))
        return production.decide(config, states, observations, history, now, demand, tokens)

    monkeypatch.setattr(policies, "decide", spy)
    config = DeploymentConfig.model_validate({"scaling": {"trend_window_s": 180}})
    replay(constant(3.0, hours=0.25), config, ModelParams(latency_cv=0), Ours)
    # one datapoint a minute, at most the last three minutes' (180 s window, both ends)
    assert seen[0] == (3.0,)
    assert max(len(s) for s in seen) == 4 and all(set(s) == {3.0} for s in seen)


def test_scale_ahead_lets_ours_skip_the_capacity_providers_reaction() -> None:
    # Given a step the minimums cannot serve and no warm pool
    params = ModelParams(latency_cv=0, warm_pool_size=0)
    trace = Trace("step", tuple(TracePoint(START + 60 * i, 2.0 if i < 10 else 14.0) for i in range(40)))
    ahead = replay(trace, DeploymentConfig(), params, Ours)
    waits = replay(trace, DeploymentConfig.model_validate({"scaling": {"scale_ahead": False}}), params, Ours)
    step_at = START + 600
    first_ahead, first_waits = ahead.first_serving_after(step_at), waits.first_serving_after(step_at)
    assert first_ahead is not None and first_waits is not None
    # Then its first new replica serves the capacity provider's reaction (60 s) sooner
    assert first_waits - first_ahead == pytest.approx(params.capacity_reaction_s)


def test_on_off_traffic_ours_keeps_capacity_through_short_lulls_instead_of_flapping() -> None:
    # Given on/off traffic with heavy-tailed gaps and the stack's 10-s metrics
    from dynamo_ecs_cli.replay.evaluate import stack_config
    from dynamo_ecs_cli.replay.simulate import with_profiled_capacity
    from dynamo_ecs_cli.replay.traces import onoff

    trace = onoff(seed=1)
    params = ModelParams()
    paying = with_profiled_capacity(stack_config(), params)
    eager = with_profiled_capacity(stack_config({"scaling": {"lull_hold_s": 0}}), params)
    # When ours runs with the scale-in that pays, and with it off (the floor's 60-s window)
    held = replay(trace, paying, params, Ours)
    flapping = replay(trace, eager, params, Ours)
    # Then it changes counts far less often and misses the SLA less, for GPU-hours within a few %
    assert held.scale_actions < 0.6 * flapping.scale_actions
    assert held.sla_minutes < flapping.sla_minutes
    assert held.gpu_hours < 1.06 * flapping.gpu_hours
