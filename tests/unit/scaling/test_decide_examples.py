"""Worked examples of `decide`: the rules docs/scaling.md states, one case each."""

from __future__ import annotations

from typing import Any

import pytest

from dynamo_ecs.config import DeploymentConfig, ServiceRole, load_config
from dynamo_ecs.errors import ConfigError
from dynamo_ecs.scaling.decide import History, Observation, ServiceState, decide, fit_budget

NOW = 10_000.0


def config(**tree: Any) -> DeploymentConfig:
    return DeploymentConfig.model_validate(tree)


def fresh(**values: float) -> dict[str, Observation]:
    return {key: Observation(value, NOW - 5) for key, value in values.items()}


def states(frontend: int, prefill: int) -> dict[ServiceRole, ServiceState]:
    return {"frontend": ServiceState(frontend, frontend), "prefill": ServiceState(prefill, prefill)}


def test_latency_at_twice_its_target_doubles_the_running_count() -> None:
    decision = decide(config(frontend={"max": 10}), states(3, 1), fresh(frontend_itl=100.0), History(), NOW)
    assert decision.services["frontend"].desired == 6
    assert "itl" in decision.services["frontend"].reason


def test_a_backlog_needs_one_replica_per_target_share() -> None:
    cfg = config(prefill={"max": 10, "targets": {"queue_depth_per_replica": 10}})
    decision = decide(cfg, states(1, 1), fresh(prefill_queue=41.0), History(), NOW)
    assert decision.services["prefill"].desired == 5  # ceil(41 / 10), within the step of 4


def test_latency_targets_are_means_by_default_and_p90_when_asked() -> None:
    # Given a mean TTFT on target and a p90 at 3x (one slow request in ten)
    observed = {"frontend_ttft": Observation(500.0, NOW - 5)}
    default = decide(config(frontend={"max": 10}), states(2, 1), observed, History(), NOW)
    assert default.services["frontend"].proposals[0].metric == "TimeToFirstTokenMean"
    # The older p90 field still reads as a p90 target on the p90 metric
    legacy = config(frontend={"max": 10, "targets": {"ttft_p90_ms": 500}})
    p90 = decide(legacy, states(2, 1), {"frontend_ttft": Observation(1500.0, NOW - 5)}, History(), NOW)
    assert p90.services["frontend"].proposals[0].metric == "TimeToFirstTokenP90"
    assert p90.services["frontend"].desired == 6


def test_jetstream_lag_drives_prefill_only_when_its_target_is_set() -> None:
    busy_stream = fresh(prefill_lag=500.0)
    assert decide(config(), states(1, 1), busy_stream, History(), NOW).services["prefill"].desired == 1
    cfg = config(
        prefill={"targets": {"jetstream_lag_per_replica": 10}}, signals={"jetstream_streams": ["work"]}
    )
    assert decide(cfg, states(1, 1), busy_stream, History(), NOW).services["prefill"].desired == 4


def test_tasks_still_starting_count_as_capacity_on_the_way() -> None:
    # Given 4 desired but 2 running, latency at 2x target on the 2 that run
    starting: dict[ServiceRole, ServiceState] = {
        "frontend": ServiceState(4, 2),
        "prefill": ServiceState(1, 1),
    }
    decision = decide(config(frontend={"max": 10}), starting, fresh(frontend_ttft=1000.0), History(), NOW)
    # Then 2 x 2 = 4 are enough: nothing more is asked for while they start
    assert decision.services["frontend"].desired == 4


def test_when_the_budget_binds_the_service_under_more_pressure_gets_the_gpus() -> None:
    cfg = config(gpu_budget=6, frontend={"max": 6}, prefill={"max": 6})
    # TTFT at 3x target is a signal of both (pressure 3 each): the tie goes to the frontend
    decision = decide(cfg, states(2, 2), fresh(frontend_ttft=1500.0, prefill_queue=40.0), History(), NOW)
    assert decision.services["frontend"].desired == 4
    assert decision.services["prefill"].desired == 2
    assert "GPU budget 6 binds" in decision.services["frontend"].reason + decision.services["prefill"].reason


def test_a_lowered_budget_takes_gpus_from_the_quieter_service_first() -> None:
    cfg = config(gpu_budget=4, frontend={"max": 6}, prefill={"max": 6})
    granted, note = fit_budget(
        cfg, {"frontend": 3, "prefill": 3}, {"frontend": 3, "prefill": 3}, {"frontend": 2.0}
    )
    assert granted == {"frontend": 3, "prefill": 1}
    assert note is not None


def test_prefill_wakes_from_zero_only_above_the_activation_threshold() -> None:
    cfg = config(prefill={"min": 0}, scaling={"prefill_scale_to_zero": True, "prefill_activation_queue": 5})
    quiet = decide(cfg, states(1, 0), fresh(prefill_queue=5.0), History(), NOW)
    busy = decide(cfg, states(1, 0), fresh(prefill_queue=6.0), History(), NOW)
    assert quiet.services["prefill"].desired == 0
    assert busy.services["prefill"].desired == 1


def test_refused_requests_wake_prefill_from_zero_where_its_queue_cannot() -> None:
    # Given prefill at zero: the 1.6.1 frontend refuses requests (503) and queues none of them
    cfg = config(prefill={"min": 0}, scaling={"prefill_scale_to_zero": True})
    at_zero: dict[ServiceRole, ServiceState] = {"frontend": ServiceState(1, 1), "prefill": ServiceState(0, 0)}
    empty = fresh(prefill_queue=0.0, prefill_refused=0.0)
    refusing = fresh(prefill_queue=0.0, prefill_refused=0.5)
    # Then only the refusals wake it
    assert decide(cfg, at_zero, empty, History(), NOW).services["prefill"].desired == 0
    woken = decide(cfg, at_zero, refusing, History(), NOW).services["prefill"]
    assert woken.desired == 1
    assert "refuses" in woken.reason


def test_idle_prefill_goes_to_zero_after_the_down_window_despite_missing_latency() -> None:
    cfg = config(prefill={"min": 0}, scaling={"prefill_scale_to_zero": True})
    history = History()
    counts: list[int] = []
    for minute in range(7):
        now = NOW + 60 * minute
        obs = {"prefill_queue": Observation(0.0, now - 5)}
        decision = decide(cfg, states(1, 1 if not counts else counts[-1]), obs, history, now)
        history = decision.history
        counts.append(decision.services["prefill"].desired)
    assert counts == [1, 1, 1, 1, 1, 1, 0]


def test_a_scaler_invoked_less_often_than_the_down_window_still_scales_in() -> None:
    # Given a 20-s down window and a scaler that runs every 20.2 s (a schedule's jitter)
    cfg = config(frontend={"max": 4}, scaling={"scale_down_stabilization_s": 20})
    history, desired, counts = History(), 4, []
    for run in range(3):
        now = NOW + 20.2 * run
        low = {"frontend_ttft": 190.0, "frontend_itl": 11.0, "frontend_queue": 0.0, "frontend_gpu": 20.0}
        obs = {key: Observation(value, now - 1) for key, value in low.items()}  # every signal low
        decision = decide(cfg, states(desired, 1), obs, history, now)
        history, desired = decision.history, decision.services["frontend"].desired
        counts.append(desired)
    # Then the first run holds (the history is new), and the next one scales in
    assert counts[0] == 4 and counts[1] < 4, counts


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"DYNAMO_ECS_FRONTEND__MIN": "3", "DYNAMO_ECS_FRONTEND__MAX": "2"}, "DYNAMO_ECS_FRONTEND__MAX"),
        ({"DYNAMO_ECS_FRONTEND__TARGETS__TTFT_MS": "0"}, "DYNAMO_ECS_FRONTEND__TARGETS__TTFT_MS"),
        ({"DYNAMO_ECS_FRONTEND__TARGETS__TTFT_STATISTIC": "p99"}, "TTFT_STATISTIC"),
        ({"DYNAMO_ECS_PREFILL__TARGETS__JETSTREAM_LAG_PER_REPLICA": "-1"}, "JETSTREAM_LAG_PER_REPLICA"),
        ({"DYNAMO_ECS_GPU_BUDGET": "1"}, "DYNAMO_ECS_GPU_BUDGET"),
        ({"DYNAMO_ECS_SCALING__METRIC_PERIOD_S": "45"}, "DYNAMO_ECS_SCALING__METRIC_PERIOD_S"),
    ],
)
def test_bad_scaling_config_fails_at_load_naming_the_variable(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(env)


def test_a_null_target_switches_its_signal_off() -> None:
    config = load_config({"DYNAMO_ECS_FRONTEND__TARGETS__GPU_UTILIZATION_PCT": "null"})
    decision = decide(config, states(2, 1), fresh(frontend_gpu=100.0), History(), NOW)
    assert [p.signal for p in decision.services["frontend"].proposals] == ["ttft", "itl", "queue"]
    assert decision.services["frontend"].desired == 2


def test_the_metric_period_is_read_from_its_variable() -> None:
    assert load_config({"DYNAMO_ECS_SCALING__METRIC_PERIOD_S": "10"}).scaling.metric_period_s == 10
