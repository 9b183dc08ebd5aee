"""Deployment config: defaults, environment loading, and errors that name field and fix."""

from __future__ import annotations

import pytest

from dynamo_ecs.config import DeploymentConfig, env_name, load_config
from dynamo_ecs.errors import ConfigError


def test_defaults_describe_the_stack_deployed_with_its_default_name() -> None:
    config = load_config({})
    assert config.infra.cluster == "dynamo-fargate"
    assert config.gpu_cluster == "dynamo-gpu"
    assert config.frontend.family == "dynamo-frontend"
    assert config.prefill.family == "dynamo-prefill"
    # Dynamo planner's SLA defaults, which are means
    assert (config.frontend.targets.ttft_ms, config.frontend.targets.ttft_statistic) == (500, "mean")
    assert (config.frontend.targets.itl_ms, config.frontend.targets.itl_statistic) == (50, "mean")
    assert config.prefill.targets.jetstream_lag_per_replica is None  # no work in JetStream on 1.x
    assert config.gpu_budget == 8


def test_older_target_names_are_still_read() -> None:
    config = load_config(
        {
            "DYNAMO_ECS_FRONTEND__TARGETS__TTFT_P90_MS": "400",
            "DYNAMO_ECS_FRONTEND__TARGETS__ITL_P90_MS": "null",
            "DYNAMO_ECS_FRONTEND__TARGETS__QUEUED_REQUESTS_PER_REPLICA": "5",
        }
    )
    targets = config.frontend.targets
    assert (targets.ttft_ms, targets.ttft_statistic) == (400, "p90")
    assert targets.itl_ms is None
    assert targets.queue_depth_per_replica == 5
    with pytest.raises(ConfigError, match="not both"):
        load_config(
            {
                "DYNAMO_ECS_FRONTEND__TARGETS__TTFT_P90_MS": "400",
                "DYNAMO_ECS_FRONTEND__TARGETS__TTFT_MS": "400",
            }
        )


def test_nested_variables_and_json_values_are_read() -> None:
    config = load_config(
        {
            "DYNAMO_ECS_FRONTEND__MAX": "6",
            "DYNAMO_ECS_PREFILL__TARGETS__JETSTREAM_LAG_PER_REPLICA": "25",
            "DYNAMO_ECS_SIGNALS__JETSTREAM_STREAMS": '["dynamo-prefill"]',
            "DYNAMO_ECS_DRY_RUN": "true",
            "UNRELATED": "ignored",
        }
    )
    assert config.frontend.max == 6
    assert config.prefill.targets.jetstream_lag_per_replica == 25
    assert config.signals.jetstream_streams == ["dynamo-prefill"]
    assert config.dry_run is True


def test_max_below_min_names_both_fields_and_the_fix() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"DYNAMO_ECS_FRONTEND__MIN": "3", "DYNAMO_ECS_FRONTEND__MAX": "2"})
    message = str(err.value)
    assert "frontend.max (2) < frontend.min (3)" in message
    assert "DYNAMO_ECS_FRONTEND__MAX" in message


def test_non_positive_target_names_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"DYNAMO_ECS_FRONTEND__TARGETS__TTFT_MS": "0"})
    assert "frontend.targets.ttft_ms" in str(err.value)
    assert "DYNAMO_ECS_FRONTEND__TARGETS__TTFT_MS" in str(err.value)


def test_gpu_budget_below_minimums_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"gpu_budget \(2\) < GPUs the minimums need \(3\)"):
        load_config({"DYNAMO_ECS_GPU_BUDGET": "2", "DYNAMO_ECS_PREFILL__MIN": "2"})


def test_prefill_zero_requires_scale_to_zero() -> None:
    with pytest.raises(ConfigError, match="prefill_scale_to_zero"):
        load_config({"DYNAMO_ECS_PREFILL__MIN": "0"})
    config = load_config(
        {"DYNAMO_ECS_PREFILL__MIN": "0", "DYNAMO_ECS_SCALING__PREFILL_SCALE_TO_ZERO": "true"}
    )
    assert config.prefill.min == 0


def test_unknown_variable_is_an_error_not_silently_ignored() -> None:
    with pytest.raises(ConfigError, match=r"frontend\.maxx"):
        load_config({"DYNAMO_ECS_FRONTEND__MAXX": "3"})


def test_malformed_json_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DYNAMO_ECS_SIGNALS__JETSTREAM_STREAMS: not valid JSON"):
        load_config({"DYNAMO_ECS_SIGNALS__JETSTREAM_STREAMS": "[oops"})


def test_several_problems_are_all_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"DYNAMO_ECS_FRONTEND__MIN": "5", "DYNAMO_ECS_PREFILL__MAX": "abc"})
    assert "prefill.max" in str(err.value)


def test_env_name_maps_fields_to_variables() -> None:
    assert env_name("frontend", "targets", "itl_p90_ms") == "DYNAMO_ECS_FRONTEND__TARGETS__ITL_P90_MS"
    assert DeploymentConfig().service("prefill").service == "dynamo-prefill"


def test_a_target_whose_metric_would_never_be_published_is_refused() -> None:
    # Missing data blocks every scale-in: a lag target without streams would hold the counts up for good
    with pytest.raises(ConfigError, match="DYNAMO_ECS_SIGNALS__JETSTREAM_STREAMS"):
        load_config({"DYNAMO_ECS_PREFILL__TARGETS__JETSTREAM_LAG_PER_REPLICA": "10"})
    # A worker queue target needs no setting: the workers' queue is read on the system port the
    # stack's specs bind (the role's default, or <role>.system_port)
    config = load_config({"DYNAMO_ECS_PREFILL__TARGETS__WORKER_QUEUE_PER_REPLICA": "4"})
    assert (config.worker_system_port("prefill"), config.prefill.targets.worker_queue_per_replica) == (
        9090,
        4,
    )
    config = load_config(
        {
            "DYNAMO_ECS_PREFILL__TARGETS__WORKER_QUEUE_PER_REPLICA": "4",
            "DYNAMO_ECS_PREFILL__SYSTEM_PORT": "9345",
        }
    )
    assert (config.worker_system_port("prefill"), config.prefill.targets.worker_queue_per_replica) == (
        9345,
        4,
    )


def test_the_two_workers_system_ports_must_differ() -> None:
    # The stack's GPU specs serve each worker's system server there; two tasks may share an instance
    with pytest.raises(
        ConfigError, match="DYNAMO_ECS_FRONTEND__SYSTEM_PORT and DYNAMO_ECS_PREFILL__SYSTEM_PORT"
    ):
        load_config({"DYNAMO_ECS_FRONTEND__SYSTEM_PORT": "9090", "DYNAMO_ECS_PREFILL__SYSTEM_PORT": "9090"})
    # ... also against the other's default (frontend 9091, prefill 9090)
    with pytest.raises(ConfigError, match="both 9091"):
        load_config({"DYNAMO_ECS_PREFILL__SYSTEM_PORT": "9091"})
    config = load_config(
        {"DYNAMO_ECS_FRONTEND__SYSTEM_PORT": "9091", "DYNAMO_ECS_PREFILL__SYSTEM_PORT": "9090"}
    )
    assert (config.frontend.system_port, config.prefill.system_port) == (9091, 9090)
