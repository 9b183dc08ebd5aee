"""On/off traffic (issue #24): a burst back at a level seen before its lull is not a trend, and a
lull the demand showed holds the next scale-in for start-up plus release."""

from __future__ import annotations

import math

from dynamo_ecs.config import ServiceRole
from dynamo_ecs.scaling.decide import (
    History,
    Observation,
    Recommendation,
    decide,
    recent_dip,
)
from dynamo_ecs.scaling.forecast import forecast
from tests.unit.scaling import builders
from tests.unit.scaling.builders import config, states

NOW = 100_000.0
FLOORED = {"prefill": {"capacity_rps": 2.0}, "scaling": {"scale_down_max_step": 4}}


def series(*values: float, every_s: float = 10.0) -> list[Observation]:
    """Datapoints, the newest at NOW."""
    return builders.series(*values, now=NOW, every_s=every_s)


def calm() -> dict[str, Observation]:
    base = {
        "frontend_ttft": 100.0,
        "frontend_itl": 30.0,
        "frontend_queue": 0.0,
        "frontend_gpu": 10.0,
        "prefill_queue": 0.0,
        "prefill_ttft": 100.0,
        "prefill_gpu": 10.0,
    }
    return {key: Observation(value, NOW - 5) for key, value in base.items()}


def demand_runs(*runs: tuple[float, float], role: ServiceRole = "prefill") -> tuple[Recommendation, ...]:
    """Recommendations a minute apart, ending now: (demand in tasks, seconds) per run, oldest first."""
    total = sum(seconds for _, seconds in runs)
    out: list[Recommendation] = []
    start = NOW - total
    for demand, seconds in runs:
        t = start
        while t < start + seconds:
            out.append(Recommendation(t, role, max(math.ceil(demand), 1), demand))
            t += 60
        start += seconds
    return tuple(out)


# -- a return is not a trend ---------------------------------------------------------------


def test_a_burst_that_levelled_off_is_not_projected_along_the_line_from_its_lull() -> None:
    # Given a lull at 1 request/s, then a burst at about 12/s wavering (startup 120 s)
    cfg = config(prefill={"capacity_rps": 6.0})
    levelled = forecast(cfg, series(*[1.0] * 20, 12.0, 13.0, 12.5), NOW)
    assert levelled is not None
    # Then the line fitted from the lull rises steeply, but the rate is below a datapoint the
    # window already holds: the burst is held at that level, 13 x 1.15 / 6 = 3 tasks, not the
    # 4 the projection (12.5 + 4.1) would ask for
    assert levelled.slope * cfg.scaling.startup_s > 4
    assert levelled.projected == 13.0
    assert levelled.floor(6.0) == 3
    # While a rate at the window's highest keeps its trend (a ramp, a crowd still rising)
    rising = forecast(cfg, series(*[1.0] * 20, 6.0, 9.0, 12.0), NOW)
    assert rising is not None and rising.projected == rising.rate + rising.slope * cfg.scaling.startup_s
    assert rising.projected > 14.0
    # and so does a ramp without a lull, whose newest datapoint the noise put below an earlier one
    ramp = forecast(cfg, series(8.0, 8.5, 9.0, 9.5, 10.0, 10.5, 11.0, 11.6, 11.4), NOW)
    assert ramp is not None and ramp.projected == ramp.rate + ramp.slope * cfg.scaling.startup_s > 11.6


# -- a lull the demand showed ----------------------------------------------------------------


def test_a_lull_in_the_demand_between_spells_is_found_whether_or_not_a_scale_in_followed() -> None:
    policy = config(**FLOORED).scaling  # floor window 60 s, hold 1020 s
    # Given spells needing 2.6 tasks, a 4-minute lull needing a fifth of one, the next spell back
    history = History(demand_runs((2.6, 300), (0.2, 240), (2.4, 120)))
    found = recent_dip(history, "prefill", policy, NOW)
    assert found is not None
    low, back = found
    assert (low.demand, back.demand, back.at - low.at) == (0.2, 2.4, 240)
    # not for the other service, and not once the memory (two hold windows) has passed
    assert recent_dip(history, "frontend", policy, NOW) is None
    assert recent_dip(history, "prefill", policy, NOW + 2100) is None


def test_a_count_wavering_at_a_tasks_edge_a_blip_or_a_long_lull_is_not_a_short_lull() -> None:
    policy = config(**FLOORED).scaling

    def dip(*runs: tuple[float, float]) -> object:
        return recent_dip(History(demand_runs(*runs)), "prefill", policy, NOW)

    # a demand wavering at a task's edge: its count goes 2 -> 1 -> 2, its demand by 5 %
    assert dip((1.03, 300), (0.98, 180), (1.03, 120)) is None
    # a crowd decaying step by step and a new one: no step falls to half of the one before
    assert dip((3.6, 120), (2.4, 60), (1.6, 60), (1.0, 240), (3.6, 120)) is None
    # a lull no longer than the floor's scale-down window: no scale-in would have happened
    assert dip((2.6, 300), (0.2, 60), (2.6, 120)) is None
    # a lull longer than start-up + release: a release paid there
    assert dip((2.6, 60), (0.2, 1080), (2.6, 60)) is None
    # a fall that has not come back yet is not a lull that ended, nor is a rise within the lull
    assert dip((2.6, 300), (0.2, 240)) is None
    assert dip((2.6, 300), (0.6, 240), (1.0, 120)) is None


def test_after_a_short_lull_in_the_demand_the_next_scale_in_waits_start_up_plus_release() -> None:
    # Given prefill at 3 tasks, the rate now at 0.3/s (a fifth of a task), low for 2 minutes
    cfg = config(**FLOORED)
    rate = series(*[0.3] * 12)
    low_now = (Recommendation(NOW - 120, "prefill", 1, 0.2), Recommendation(NOW - 60, "prefill", 1, 0.2))
    # When the demand came back from a 4-minute lull twelve minutes ago (no scale-in then)
    lulled = demand_runs((2.6, 300), (0.2, 240), (2.6, 420))
    earlier = tuple(
        Recommendation(r.at - 120, r.role, r.replicas, r.demand) for r in lulled if r.at - 120 < NOW - 120
    )
    held = decide(cfg, states(1, 3), calm(), History(earlier + low_now), NOW, rate).services["prefill"]
    # Then it keeps its 3 tasks, and the decision log says why
    assert held.desired == 3
    assert "the demand fell to 0.2 tasks and was back at 2.6 240 s later" in held.reason
    assert "waits 1020 s" in held.reason
    # Without that lull in memory, the floor's minute applies and it scales in
    free = decide(cfg, states(1, 3), calm(), History(low_now), NOW, rate).services["prefill"]
    assert free.desired == 1


def test_the_history_keeps_the_demand_for_the_lull_memory_and_reads_older_records() -> None:
    cfg = config(**FLOORED)
    # Given a decision under the floor: its recommendation carries the demand in tasks,
    # 3 requests/s x 1.15 / 2 per task
    decision = decide(cfg, states(1, 1), calm(), History(), NOW, series(3.0, 3.0, 3.0))
    stored = decision.history.as_dict()
    row = stored["recommendations"].index([NOW, "prefill", 2])
    assert stored["demand"][row] == 1.725
    assert History.from_dict(stored) == decision.history
    # the rows keep their three fields: an earlier release's scaler still unpacks them
    assert all(len(r) == 3 for r in stored["recommendations"])
    # A record written before the demand was kept still loads (no demand: no lull memory)
    old = History.from_dict({"recommendations": [[NOW, "prefill", 2]], "scale_events": []})
    assert old.recommendations == (Recommendation(NOW, "prefill", 2, None),)
    # and pruning keeps demand-carrying recommendations for the lull memory (2040 s), others
    # only for the windows (1020 s here)
    mixed = History(
        (
            Recommendation(NOW - 1500, "prefill", 3, 2.6),
            Recommendation(NOW - 1500, "frontend", 1),
            Recommendation(NOW, "frontend", 1),
            Recommendation(NOW, "prefill", 1, 0.2),
        )
    )
    kept = mixed.pruned(NOW, cfg.scaling).recommendations
    assert Recommendation(NOW - 1500, "prefill", 3, 2.6) in kept
    assert Recommendation(NOW - 1500, "frontend", 1) not in kept
