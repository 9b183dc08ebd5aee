"""The predictive floor and the ITL floor rule: what the scaler does ahead of start-up."""

from __future__ import annotations

from typing import Any

import pytest

from dynamo_ecs.config import DeploymentConfig, ServiceRole, load_config
from dynamo_ecs.errors import ConfigError
from dynamo_ecs.scaling.decide import History, Observation, Recommendation, ServiceState, decide
from dynamo_ecs.scaling.forecast import forecast, least_squares_slope

NOW = 10_000.0


def config(**tree: Any) -> DeploymentConfig:
    return DeploymentConfig.model_validate(tree)


def states(frontend: int, prefill: int) -> dict[ServiceRole, ServiceState]:
    return {"frontend": ServiceState(frontend, frontend), "prefill": ServiceState(prefill, prefill)}


def rates(*values: float, every_s: float = 60.0) -> list[Observation]:
    """Request-rate datapoints, the newest at NOW."""
    return [Observation(v, NOW - every_s * (len(values) - 1 - i)) for i, v in enumerate(values)]


def calm(**values: float) -> dict[str, Observation]:
    """Every default signal fresh and well below its target, with ``values`` changed."""
    base = {
        "frontend_ttft": 200.0,
        "frontend_itl": 30.0,
        "frontend_queue": 0.0,
        "frontend_gpu": 50.0,
        "prefill_queue": 0.0,
        "prefill_ttft": 200.0,
        "prefill_gpu": 50.0,
    }
    return {key: Observation(value, NOW - 5) for key, value in {**base, **values}.items()}


CALM = calm()
# Low recommendations half a minute ago, inside a 60-s window: a scale-in may go ahead.
SEEN = History((Recommendation(NOW - 30, "frontend", 1), Recommendation(NOW - 30, "prefill", 1)))
FAST_IN = {"scale_down_stabilization_s": 60, "scale_down_max_step": 4}


def test_the_slope_is_least_squares_in_requests_per_second_per_second() -> None:
    assert least_squares_slope(rates(2.0, 3.0, 4.0)) == pytest.approx(1.0 / 60)
    assert least_squares_slope(rates(5.0, 5.0)) == 0.0  # two points: no trend


def test_a_rising_rate_is_projected_over_the_start_up_time() -> None:
    # Given the rate rising 1 request/s a minute, and tasks that take 300 s to serve
    cfg = config(scaling={"startup_s": 300, "trend_window_s": 300}, prefill={"capacity_rps": 2.0, "max": 6})
    prediction = forecast(cfg, rates(2.0, 3.0, 4.0, 5.0), NOW)
    assert prediction is not None
    # Then 5 now + 5 minutes of rise = 10 requests/s, 5 prefill replicas at 2 per replica
    assert prediction.projected == pytest.approx(10.0)
    decision = decide(cfg, states(1, 1), CALM, History(), NOW, rates(2.0, 3.0, 4.0, 5.0))
    prefill = decision.services["prefill"]
    assert prefill.desired == 5
    assert "predictive floor" in prefill.reason
    # And the frontend, without a capacity, has no floor
    assert decision.services["frontend"].desired == 1


def test_a_falling_rate_is_not_projected_the_floor_follows_the_rate() -> None:
    cfg = config(scaling={"startup_s": 600}, prefill={"capacity_rps": 2.0})
    prediction = forecast(cfg, rates(9.0, 7.0, 5.0), NOW)
    assert prediction is not None and prediction.projected == pytest.approx(5.0)
    assert prediction.floor(2.0) == 3


def test_stale_or_missing_rates_give_no_floor() -> None:
    cfg = config(prefill={"capacity_rps": 2.0})
    stale = [Observation(20.0, NOW - 10 * 60)]
    assert forecast(cfg, stale, NOW) is None
    decision = decide(cfg, states(1, 1), CALM, History(), NOW, stale)
    assert decision.services["prefill"].desired == 1


def test_the_floor_never_exceeds_max_or_the_budget() -> None:
    cfg = config(prefill={"capacity_rps": 1.0, "max": 3}, gpu_budget=4)
    decision = decide(cfg, states(1, 1), CALM, History(), NOW, rates(30.0, 30.0, 30.0))
    assert decision.services["prefill"].desired == 3


def test_the_floor_holds_a_scale_in_only_as_far_as_the_rate_needs() -> None:
    # Given four prefill tasks, idle latency and 3 requests/s at 2 per replica
    cfg = config(prefill={"capacity_rps": 2.0}, scaling=FAST_IN)
    decision = decide(cfg, states(1, 4), calm(prefill_gpu=10.0), SEEN, NOW, rates(3.0, 3.0, 3.0))
    # Then prefill goes to the floor, 2, not to its minimum
    assert decision.services["prefill"].desired == 2


def test_itl_at_its_no_load_floor_does_not_hold_replicas_that_do_nothing() -> None:
    # Given two frontends, ITL 27 ms against a 50-ms target (the floor is 25 ms)
    observations = calm(frontend_itl=27.0, frontend_gpu=20.0, frontend_ttft=160.0)
    fast = FAST_IN
    # Without a known floor ITL never asks for scale-in: GPU utilization decides (ceil(2 x 0.25) = 1)
    decision = decide(config(scaling=fast), states(2, 1), observations, SEEN, NOW)
    assert decision.services["frontend"].desired == 1
    itl = next(p for p in decision.services["frontend"].proposals if p.signal == "itl")
    assert itl.replicas == 0
    # With the floor known, ITL reads the part above it: ceil(2 x 2/25) = 1
    floored = config(scaling=fast, frontend={"targets": {"itl_floor_ms": 25.0}})
    decision = decide(floored, states(2, 1), observations, SEEN, NOW)
    assert decision.services["frontend"].desired == 1
    itl = next(p for p in decision.services["frontend"].proposals if p.signal == "itl")
    assert itl.replicas == 1 and "floor" in itl.note


def test_itl_above_its_target_still_scales_out() -> None:
    decision = decide(
        config(frontend={"max": 10}),
        states(2, 1),
        {"frontend_itl": Observation(100.0, NOW - 5)},
        History(),
        NOW,
    )
    assert decision.services["frontend"].desired == 4


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("DYNAMO_ECS_FRONTEND__CAPACITY_RPS", "0", "frontend.capacity_rps"),
        ("DYNAMO_ECS_SCALING__STARTUP_S", "-5", "scaling.startup_s"),
        ("DYNAMO_ECS_SCALING__TREND_WINDOW_S", "10", "scaling.trend_window_s"),
        ("DYNAMO_ECS_FRONTEND__TARGETS__ITL_FLOOR_MS", "60", "itl_floor_ms (60) must be below itl_ms"),
    ],
)
def test_bad_forecast_knobs_fail_at_load_naming_the_variable(
    variable: str, value: str, fragment: str
) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as caught:
        load_config({variable: value})
    assert fragment in str(caught.value)


def test_under_the_floor_a_service_scales_in_after_a_minute_not_the_long_window() -> None:
    # Given prefill at 4 tasks, 3 requests/s (2 needed at 2 per replica, with headroom and
    # hysteresis: ceil(3 x 1.3 / 2) = 2), and a recommendation of 4 ninety seconds ago
    cfg = config(prefill={"capacity_rps": 2.0}, scaling={"scale_down_max_step": 4})
    history = History((Recommendation(NOW - 90, "frontend", 1), Recommendation(NOW - 90, "prefill", 4)))
    decision = decide(cfg, states(1, 4), calm(prefill_gpu=10.0), history, NOW, rates(3.0, 3.0, 3.0))
    # Then the 300-s window would hold 4; the floor's 60-s window lets it go to 2
    prefill = decision.services["prefill"]
    assert prefill.desired == 2
    assert "scale-down window 60 s" in prefill.reason
    # And without the floor the 300-s window holds
    plain = decide(
        config(scaling={"scale_down_max_step": 4}), states(1, 4), calm(prefill_gpu=10.0), history, NOW
    )
    assert plain.services["prefill"].desired == 4


def test_the_floors_hysteresis_stops_a_scale_in_at_a_replicas_edge() -> None:
    # 3.6 requests/s at 2 per replica: the floor needs ceil(3.6 x 1.15 / 2) = 3, so 3 stay;
    # at 3.2 the floor needs 2, but ceil(3.2 x 1.3 / 2) = 3 tasks must stay for a scale-in
    cfg = config(prefill={"capacity_rps": 2.0}, scaling={"scale_down_max_step": 4})
    recent = History((Recommendation(NOW - 30, "frontend", 1), Recommendation(NOW - 30, "prefill", 1)))
    held = decide(cfg, states(1, 4), calm(prefill_gpu=10.0), recent, NOW, rates(3.2, 3.2, 3.2)).services[
        "prefill"
    ]
    assert held.desired == 3 and "hysteresis" in held.reason
    # and it never raises a count: at 3 tasks and 3.2/s nothing changes
    same = decide(cfg, states(1, 3), calm(prefill_gpu=10.0), recent, NOW, rates(3.2, 3.2, 3.2)).services[
        "prefill"
    ]
    assert same.desired == 3


def test_a_window_shorter_than_the_time_between_calls_still_lets_a_seen_service_scale_in() -> None:
    # Given a 30-s scale-down window and the last call (recommending 1) 60 s ago
    cfg = config(scaling={"scale_down_stabilization_s": 30, "scale_down_max_step": 4})
    history = History((Recommendation(NOW - 60, "frontend", 1), Recommendation(NOW - 60, "prefill", 1)))
    decision = decide(cfg, states(1, 3), calm(prefill_gpu=10.0, prefill_ttft=150.0), history, NOW)
    # Then the service is not treated as new (which would hold its count for ever)
    assert decision.services["prefill"].desired == 1
    # while a service never seen still holds its count (a lost history never scales in at once)
    fresh = decide(cfg, states(1, 3), calm(prefill_gpu=10.0, prefill_ttft=150.0), History(), NOW)
    assert fresh.services["prefill"].desired == 3
