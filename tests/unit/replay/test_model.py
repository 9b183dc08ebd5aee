"""The GPU services model: start-up delay, queueing carried over, latency rising with load."""

from __future__ import annotations

import pytest

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.scaling.decide import ServiceState
from dynamo_ecs_cli.replay.model import GpuServices, ModelParams, ServicePool

NOW = 1_000_000.0


def services(frontend: int = 1, prefill: int = 1, **knobs: float) -> GpuServices:
    return GpuServices(
        DeploymentConfig(), ModelParams.model_validate(knobs), {"frontend": frontend, "prefill": prefill}
    )


def test_a_new_task_runs_after_instance_start_and_serves_after_model_load() -> None:
    pool = ServicePool(serving=1)
    pool.set_desired(3, NOW, instance_start_s=120, model_load_s=180)
    assert (pool.desired, pool.running(NOW), pool.serving) == (3, 1, 1)
    # ECS counts a task as running once its container starts, while the model still loads
    pool.advance(NOW + 120)
    assert (pool.state(NOW + 120).running, pool.serving) == (3, 1)
    pool.advance(NOW + 299)
    assert pool.serving == 1
    pool.advance(NOW + 300)
    assert (pool.desired, pool.running(NOW + 300), pool.serving) == (3, 3, 3)


def test_scale_in_cancels_starting_tasks_first() -> None:
    pool = ServicePool(serving=2)
    pool.set_desired(4, NOW, instance_start_s=120, model_load_s=180)
    pool.set_desired(3, NOW + 10, instance_start_s=120, model_load_s=180)
    assert (pool.desired, pool.serving, len(pool.starting)) == (3, 2, 1)
    pool.set_desired(1, NOW + 20, instance_start_s=120, model_load_s=180)
    assert (pool.desired, pool.serving, len(pool.starting)) == (1, 1, 0)


def test_overload_carries_a_backlog_over_and_latency_includes_the_wait() -> None:
    # Given one replica each (8 requests/s with the default lengths) and 12 requests/s
    model = services()
    first = model.tick(NOW, 12.0, None, None)
    second = model.tick(NOW + 10, 12.0, None, None)
    # Then 4 requests/s pile up in the frontend's queue, tick after tick
    assert first.frontend_queue == pytest.approx(40.0)
    assert second.frontend_queue == pytest.approx(80.0)
    assert second.ttft_p90_ms is not None and first.ttft_p90_ms is not None
    assert second.ttft_p90_ms > first.ttft_p90_ms > 5000  # 40 queued at 8/s: 5 s of waiting
    assert second.gpu_utilization_pct["frontend"] == pytest.approx(100.0)


def test_prefill_backlog_is_the_jetstream_lag() -> None:
    # Given more decode than prefill capacity
    model = services(frontend=3, prefill=1)
    metrics = model.tick(NOW, 12.0, None, None)
    assert metrics.frontend_queue == 0
    assert metrics.prefill_queue == pytest.approx(40.0)
    assert metrics.jetstream_lag > metrics.prefill_queue  # plus those in service (ack pending)
    assert metrics.signals()[(names.JETSTREAM_LAG, "prefill")] == metrics.jetstream_lag


def test_latency_and_utilization_rise_with_load_within_capacity() -> None:
    light = services().tick(NOW, 2.0, None, None)
    heavy = services().tick(NOW, 7.0, None, None)
    assert light.ttft_p90_ms is not None and heavy.ttft_p90_ms is not None
    assert light.itl_p90_ms is not None and heavy.itl_p90_ms is not None
    assert light.ttft_p90_ms < heavy.ttft_p90_ms
    assert light.itl_p90_ms < heavy.itl_p90_ms
    assert light.gpu_utilization_pct["prefill"] == pytest.approx(25.0)
    assert heavy.gpu_utilization_pct["prefill"] == pytest.approx(87.5)
    assert heavy.frontend_queue == heavy.prefill_queue == 0


def test_longer_prompts_halve_prefill_throughput() -> None:
    model = services(frontend=4, prefill=1)
    metrics = model.tick(NOW, 6.0, 2000.0, None)  # 4 requests/s of prefill capacity now
    assert metrics.prefill_queue == pytest.approx(20.0)


def test_no_requests_no_latency_datapoint() -> None:
    metrics = services().tick(NOW, 0.0, None, None)
    assert metrics.ttft_p90_ms is None and metrics.itl_p90_ms is None
    assert metrics.gpu_utilization_pct == {"frontend": 0.0, "prefill": 0.0}


def test_gpu_hours_count_starting_tasks_and_their_gpus() -> None:
    config = DeploymentConfig.model_validate({"prefill": {"gpus_per_task": 2}})
    model = GpuServices(config, ModelParams(), {"frontend": 1, "prefill": 1})
    model.set_desired({"frontend": 2, "prefill": 2}, NOW)
    metrics = model.tick(NOW, 1.0, None, None)
    assert metrics.provisioned_gpus == 2 * 1 + 2 * 2
    assert model.states(NOW)["prefill"].running == 1  # the second is still starting


def test_a_task_loading_its_model_counts_as_an_idle_gpu() -> None:
    # Given one serving frontend at 50 % and a second one loading the model
    model = services(frontend=1)
    model.set_desired({"frontend": 2, "prefill": 1}, NOW - 130)
    metrics = model.tick(NOW, 4.0, None, None)
    # Then the service's mean GPU utilization is 25 %, and ECS reports 2 running
    assert metrics.gpu_utilization_pct["frontend"] == pytest.approx(25.0)
    assert model.states(NOW)["frontend"] == ServiceState(2, 2)


def test_a_service_without_running_replicas_publishes_no_gpu_datapoint() -> None:
    model = services(prefill=0)
    metrics = model.tick(NOW, 1.0, None, None)
    assert metrics.gpu_utilization_pct["prefill"] is None
    assert metrics.prefill_queue == pytest.approx(10.0)


def test_bad_model_knobs_are_rejected() -> None:
    with pytest.raises(ValueError, match="decode_tokens_per_s"):
        ModelParams.model_validate({"decode_tokens_per_s": 0})
    with pytest.raises(ValueError, match="extra"):
        ModelParams.model_validate({"warp_speed": 9})
