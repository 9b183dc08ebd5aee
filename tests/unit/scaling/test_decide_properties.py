"""Properties of `decide` that must hold for every config, state and observation."""

from __future__ import annotations

import itertools
import os
from dataclasses import replace

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import History, Observation, ServiceState, decide
from dynamo_ecs.scaling.signals import signal_specs
from tests.unit.scaling.strategies import (
    NOW,
    configs,
    configs_on_instance_types,
    observations,
    states_within_bounds,
)

# CI runs a fixed sequence of examples (no flaky landings); locally each run explores anew.
# SCALING_EXAMPLES raises the count for a longer hunt.
settings.register_profile(
    "scaling",
    max_examples=int(os.environ.get("SCALING_EXAMPLES", "200")),
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
)
settings.load_profile("scaling")


@given(st.data())
def test_desired_counts_stay_within_min_and_max(data: st.DataObject) -> None:
    config = data.draw(configs())
    # Even a current count outside the bounds (config just changed) comes back inside.
    states = {
        r: ServiceState(
            data.draw(st.integers(0, 15)), data.draw(st.integers(0, 15)), data.draw(st.booleans())
        )
        for r in SERVICE_ROLES
    }
    decision = decide(config, states, data.draw(observations(config)), History(), NOW)
    for role, d in decision.services.items():
        assert config.service(role).min <= d.desired <= config.service(role).max


@given(st.data())
def test_gpus_never_exceed_the_budget(data: st.DataObject) -> None:
    config = data.draw(configs())
    states = data.draw(states_within_bounds(config))
    decision = decide(config, states, data.draw(observations(config, fresh_only=True)), History(), NOW)
    used = sum(d.desired * config.service(r).gpus_per_task for r, d in decision.services.items())
    assert used <= config.gpu_budget


@given(st.data())
def test_the_instances_gpus_never_exceed_the_budget(data: st.DataObject) -> None:
    # With an instance type, the budget counts the GPUs of the instances the tasks need
    # (one frontend per instance), which is at least the GPUs the tasks ask for.
    config = data.draw(configs_on_instance_types())
    states = data.draw(states_within_bounds(config))
    decision = decide(config, states, data.draw(observations(config, fresh_only=True)), History(), NOW)
    assert config.gpus_used({r: d.desired for r, d in decision.services.items()}) <= config.gpu_budget


@given(st.data(), st.floats(1.0, 10.0))
def test_more_load_never_means_fewer_replicas(data: st.DataObject, factor: float) -> None:
    """Scaling one service's metrics up (the other's fixed) never lowers that service's count."""
    config = data.draw(configs())
    states = data.draw(states_within_bounds(config))
    obs = data.draw(observations(config))
    role = data.draw(st.sampled_from(SERVICE_ROLES))
    own = {s.key for s in signal_specs(config, role)}
    # TTFT is one metric read by both services: scale it for both, or for neither.
    heavier = {k: (replace(o, value=o.value * factor) if k in own else o) for k, o in obs.items()}
    if role == "frontend" and "prefill_ttft" in heavier and "frontend_ttft" in obs:
        heavier["prefill_ttft"] = replace(obs["prefill_ttft"], value=obs["prefill_ttft"].value * factor)
    if role == "prefill" and "frontend_ttft" in heavier and "prefill_ttft" in obs:
        heavier["frontend_ttft"] = replace(obs["frontend_ttft"], value=obs["frontend_ttft"].value * factor)
    before = decide(config, states, obs, History(), NOW).services[role].desired
    after = decide(config, states, heavier, History(), NOW).services[role].desired
    assert after >= before


@given(st.data())
def test_missing_or_stale_data_never_scales_in(data: st.DataObject) -> None:
    config = data.draw(configs(large_budget=True, scale_to_zero=False))
    states = data.draw(states_within_bounds(config))
    obs = data.draw(observations(config))
    role = data.draw(st.sampled_from(SERVICE_ROLES))
    keys = [s.key for s in signal_specs(config, role)]
    gone = data.draw(st.sampled_from(keys))
    stale = data.draw(st.booleans())
    obs = dict(obs)
    if stale:
        obs[gone] = Observation(0.0, NOW - config.scaling.metric_max_age_s - 1)
    else:
        obs.pop(gone, None)
    decision = decide(config, states, obs, History(), NOW)
    assert decision.services[role].desired >= states[role].desired


@given(st.data())
def test_no_scale_in_during_a_rollout(data: st.DataObject) -> None:
    config = data.draw(configs(large_budget=True))
    states = {
        r: replace(s, rollout_in_progress=True) for r, s in data.draw(states_within_bounds(config)).items()
    }
    decision = decide(config, states, data.draw(observations(config, fresh_only=True)), History(), NOW)
    for role, d in decision.services.items():
        assert d.desired >= states[role].desired


def _load_model(
    config: DeploymentConfig, load: float, states: dict[ServiceRole, ServiceState], now: float
) -> dict[str, Observation]:
    """Every signal at ``load`` units of work: ratio signals spread over running replicas."""
    out = {}
    for role in SERVICE_ROLES:
        for spec in signal_specs(config, role):
            running = max(states[spec.source_service].running, 1)
            per_replica = load * spec.target
            value = per_replica if spec.kind == "total" else per_replica / running
            out[spec.key] = Observation(value, now - 5)
    return out


def _settle(config: DeploymentConfig, load: float) -> dict[ServiceRole, list[int]]:
    """40 minutes of decisions under a constant load; tasks start at once."""
    states = {r: ServiceState(config.service(r).min, config.service(r).min) for r in SERVICE_ROLES}
    history = History()
    counts: dict[ServiceRole, list[int]] = {r: [] for r in SERVICE_ROLES}
    for minute in range(40):
        now = NOW + 60 * minute
        decision = decide(config, states, _load_model(config, load, states, now), history, now)
        history = decision.history
        states = {r: ServiceState(d.desired, d.desired) for r, d in decision.services.items()}
        for r, d in decision.services.items():
            counts[r].append(d.desired)
    return counts


def _reversals(series: list[int]) -> int:
    steps = [b - a for a, b in itertools.pairwise(series) if b != a]
    return sum(1 for a, b in itertools.pairwise(steps) if (a > 0) != (b > 0))


def _without_shared_ttft(config: DeploymentConfig) -> DeploymentConfig:
    tree = config.model_dump()
    tree["prefill"]["targets"]["ttft_ms"] = None
    return DeploymentConfig.model_validate(tree)


@given(st.data(), st.floats(0.0, 12.0))
def test_constant_load_settles_without_flapping(data: st.DataObject, load: float) -> None:
    """Each service on signals of its own: the count moves in one direction only, then stays."""
    config = _without_shared_ttft(data.draw(configs(large_budget=True)))
    for series in _settle(config, load).values():
        assert _reversals(series) == 0, series
        assert series[-1] == series[-2] == series[-3], series


@given(st.data(), st.floats(0.0, 12.0))
def test_a_shared_ttft_overshoots_at_most_once_then_settles(data: st.DataObject, load: float) -> None:
    """TTFT drives both services: when the frontend's scale-out lowers it, prefill (which also
    scaled on it) may correct once, downwards. Flapping would be a second reversal."""
    config = data.draw(configs(large_budget=True))
    for series in _settle(config, load).values():
        assert _reversals(series) <= 1, series
        assert series[-1] == series[-2] == series[-3], series


@given(st.data())
def test_load_within_tolerance_changes_nothing(data: st.DataObject) -> None:
    config = data.draw(configs(large_budget=True))
    assume(config.scaling.tolerance > 0)
    states = {
        r: ServiceState(n, n)
        for r, n in (
            (r, data.draw(st.integers(max(config.service(r).min, 1), config.service(r).max)))
            for r in SERVICE_ROLES
        )
    }
    nudge = data.draw(st.floats(-config.scaling.tolerance, config.scaling.tolerance))
    obs = {}
    for role in SERVICE_ROLES:
        for spec in signal_specs(config, role):
            per = spec.target * (1 + nudge)
            value = per * states[spec.role].desired if spec.kind == "total" else per
            obs[spec.key] = Observation(value, NOW)
    decision = decide(config, states, obs, History(), NOW)
    assert all(d.action == "none" for d in decision.services.values()), decision.as_dict()


@given(st.data())
def test_scale_in_never_below_the_highest_recommendation_in_the_window(data: st.DataObject) -> None:
    config = data.draw(configs(large_budget=True))
    history = History()
    states = data.draw(states_within_bounds(config))
    for step in range(data.draw(st.integers(2, 8))):
        now = NOW + step * data.draw(st.sampled_from([10, 30, 60]))
        obs = {k: replace(o, at=now) for k, o in data.draw(observations(config, fresh_only=True)).items()}
        window = history.pruned(now, config.scaling)
        decision = decide(config, states, obs, history, now)
        for role, d in decision.services.items():
            if d.action == "scale_in":
                recent = [
                    r.replicas
                    for r in window.recommendations
                    if r.role == role and now - r.at <= config.scaling.scale_down_stabilization_s
                ]
                assert d.desired >= max([*recent, d.recommendation])
        history = decision.history
        states = {r: ServiceState(d.desired, d.desired) for r, d in decision.services.items()}


@given(st.data())
def test_rate_limits_hold_over_every_period(data: st.DataObject) -> None:
    config = data.draw(configs(large_budget=True))
    policy = config.scaling
    history = History()
    states = data.draw(states_within_bounds(config))
    changes: list[tuple[float, ServiceRole, int]] = []
    now = NOW
    for _ in range(data.draw(st.integers(2, 12))):
        now += data.draw(st.sampled_from([5, 10, 20, 60]))
        obs = {k: replace(o, at=now) for k, o in data.draw(observations(config, fresh_only=True)).items()}
        decision = decide(config, states, obs, history, now)
        history = decision.history
        for role, d in decision.services.items():
            if d.desired != d.current:
                changes.append((now, role, d.desired - d.current))
        states = {r: ServiceState(d.desired, d.desired) for r, d in decision.services.items()}
    for at, role, _ in changes:
        window = [c for t, r, c in changes if r == role and at - policy.rate_limit_period_s < t <= at]
        assert sum(c for c in window if c > 0) <= policy.scale_up_max_step
        assert -sum(c for c in window if c < 0) <= policy.scale_down_max_step
