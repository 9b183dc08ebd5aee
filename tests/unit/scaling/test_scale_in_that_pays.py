"""Scale-in that pays, the floor's peak hold, and the floor in tokens (issue #24)."""

from __future__ import annotations

import pytest

from dynamo_ecs.config import ServiceRole, load_config
from dynamo_ecs.errors import ConfigError
from dynamo_ecs.scaling.decide import (
    History,
    Observation,
    Recommendation,
    ScaleEvent,
    decide,
    recent_short_lull,
)
from tests.unit.scaling import builders
from tests.unit.scaling.builders import config, states

NOW = 100_000.0


def series(*values: float, every_s: float = 10.0) -> list[Observation]:
    """Datapoints, the newest at NOW."""
    return builders.series(*values, now=NOW, every_s=every_s)


def calm(**values: float) -> dict[str, Observation]:
    base = {
        "frontend_ttft": 100.0,
        "frontend_itl": 30.0,
        "frontend_queue": 0.0,
        "frontend_gpu": 10.0,
        "prefill_queue": 0.0,
        "prefill_ttft": 100.0,
        "prefill_gpu": 10.0,
    }
    return {key: Observation(value, NOW - 5) for key, value in {**base, **values}.items()}


# prefill on the floor at 2 requests/s per replica; frontend out of the way
FLOORED = {"prefill": {"capacity_rps": 2.0}, "scaling": {"scale_down_max_step": 4}}
LOW_SINCE = (Recommendation(NOW - 90, "frontend", 1), Recommendation(NOW - 90, "prefill", 4))
# prefill scaled in 4 -> 3 ten minutes ago and had to come back 3 -> 4 five minutes later
SHORT_LULL = (ScaleEvent(NOW - 600, "prefill", 4, 3), ScaleEvent(NOW - 300, "prefill", 3, 4))


def test_after_a_lull_too_short_to_pay_the_next_scale_in_waits_start_up_plus_release() -> None:
    # Given prefill at 4 tasks, a load the floor serves with 2 (1 request/s), low for 90 s
    cfg = config(**FLOORED)
    rate = series(1.0, 1.0, 1.0)
    # When its last scale-in was undone five minutes later (the instance was still billed)
    held = decide(cfg, states(1, 4), calm(), History(LOW_SINCE, SHORT_LULL), NOW, rate).services["prefill"]
    # Then it keeps its 4 tasks and the decision log says why
    assert held.desired == 4
    assert "scale-in that pays" in held.reason and "waits 1020 s" in held.reason
    # While a service without such a lull scales in after the floor's minute, as before
    free = decide(cfg, states(1, 4), calm(), History(LOW_SINCE), NOW, rate).services["prefill"]
    assert free.desired == 1
    # And once the lull has lasted start-up + release (120 + 900 s), the scale-in goes ahead
    long_low = (Recommendation(NOW - 1030, "frontend", 1), Recommendation(NOW - 1030, "prefill", 1))
    late = History(
        long_low, (ScaleEvent(NOW - 1500, "prefill", 4, 3), ScaleEvent(NOW - 1100, "prefill", 3, 4))
    )
    assert decide(cfg, states(1, 4), calm(), late, NOW, rate).services["prefill"].desired == 1


def test_the_hold_is_a_knob_and_zero_turns_it_off() -> None:
    rate = series(1.0, 1.0, 1.0)
    off = config(prefill={"capacity_rps": 2.0}, scaling={"scale_down_max_step": 4, "lull_hold_s": 0})
    assert (
        decide(off, states(1, 4), calm(), History(LOW_SINCE, SHORT_LULL), NOW, rate)
        .services["prefill"]
        .desired
        == 1
    )
    shorter = config(prefill={"capacity_rps": 2.0}, scaling={"scale_down_max_step": 4, "lull_hold_s": 600})
    held = decide(shorter, states(1, 4), calm(), History(LOW_SINCE, SHORT_LULL), NOW, rate).services[
        "prefill"
    ]
    assert held.desired == 4 and "waits 600 s" in held.reason
    # the default follows the start-up and the capacity provider's release
    policy = config(scaling={"startup_s": 300, "instance_release_s": 600}).scaling
    assert policy.lull_hold_window_s == 900


def test_a_short_lull_is_remembered_for_two_hold_windows_and_the_history_keeps_it() -> None:
    policy = config().scaling  # hold 1020 s: memory 2040 s
    old = History((), (ScaleEvent(NOW - 2100, "prefill", 4, 3), ScaleEvent(NOW - 2050, "prefill", 3, 4)))
    assert recent_short_lull(old, "prefill", policy, NOW) is None
    assert recent_short_lull(History((), SHORT_LULL), "prefill", policy, NOW) == SHORT_LULL
    assert recent_short_lull(History((), SHORT_LULL), "frontend", policy, NOW) is None
    # a scale-out that came back only after the hold window is a lull that paid
    paid = History((), (ScaleEvent(NOW - 1900, "prefill", 4, 3), ScaleEvent(NOW - 800, "prefill", 3, 4)))
    assert recent_short_lull(paid, "prefill", policy, NOW) is None
    # decide's history keeps the scale actions the memory needs (not only the rate limit's minute)
    decision = decide(config(**FLOORED), states(1, 4), calm(), History(LOW_SINCE, SHORT_LULL), NOW)
    assert set(SHORT_LULL) <= set(decision.history.scale_events)


def test_a_dip_between_bursts_does_not_take_the_tasks_the_last_start_up_time_needed() -> None:
    # Given prefill at 4 tasks, a rate that was 3.5/s forty seconds ago and dips to 1/s now
    cfg = config(**FLOORED)
    dip = series(3.5, 3.5, 3.5, 1.0, 1.0, 1.0)
    decision = decide(cfg, states(1, 4), calm(), History(LOW_SINCE), NOW, dip).services["prefill"]
    # Then a scale-in stops where that peak needs the tasks: ceil(3.5 x 1.3 / 2) = 3
    assert decision.desired == 3
    assert "hysteresis" in decision.reason
    # a peak older than the start-up time (120 s) no longer holds
    older = series(3.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, every_s=10.0)
    assert decide(cfg, states(1, 4), calm(), History(LOW_SINCE), NOW, older).services["prefill"].desired == 1


def test_the_floor_sizes_on_tokens_where_a_token_capacity_is_set() -> None:
    # Given 2 requests/s, which 1 prefill replica serves (capacity 2/s at 1000 tokens), but
    # whose prompts are 4000 tokens long: 8000 input tokens/s against 2000 per replica
    cfg = config(prefill={"capacity_rps": 2.0, "capacity_tokens_per_s": 2000.0})
    rate = series(2.0, 2.0, 2.0)
    tokens: dict[ServiceRole, list[Observation]] = {"prefill": series(8000.0, 8000.0, 8000.0)}
    by_tokens = decide(cfg, states(1, 1), calm(), History(), NOW, rate, tokens).services["prefill"]
    # Then the floor is ceil(8000 x 1.15 / 2000) = 5, bounded at the max of 4
    assert by_tokens.desired == 4
    assert "predictive floor: token rate 8000.00/s" in by_tokens.reason
    # Without the token datapoints (or the token capacity) the request rate sizes it: ceil(2 x 1.15 / 2)
    by_requests = decide(cfg, states(1, 1), calm(), History(), NOW, rate).services["prefill"]
    assert by_requests.desired == 2 and "predictive floor: rate 2.00/s" in by_requests.reason
    no_capacity = config(prefill={"capacity_rps": 2.0})
    assert (
        decide(no_capacity, states(1, 1), calm(), History(), NOW, rate, tokens).services["prefill"].desired
        == 2
    )
    # Stale token datapoints fall back to the request rate
    stale: dict[ServiceRole, list[Observation]] = {"prefill": [Observation(8000.0, NOW - 400)]}
    assert decide(cfg, states(1, 1), calm(), History(), NOW, rate, stale).services["prefill"].desired == 2


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("DYNAMO_ECS_SCALING__INSTANCE_RELEASE_S", "-1", "instance_release_s"),
        ("DYNAMO_ECS_SCALING__LULL_HOLD_S", "99999", "lull_hold_s"),
        ("DYNAMO_ECS_PREFILL__CAPACITY_TOKENS_PER_S", "0", "capacity_tokens_per_s"),
    ],
)
def test_bad_knobs_fail_at_load_naming_the_variable(variable: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as caught:
        load_config({variable: value})
    assert fragment in str(caught.value)
