"""The GPU services model: start-up delay, queueing carried over, latency rising with load."""

from __future__ import annotations

import pytest

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import ServiceState
from dynamo_ecs_cli.replay.model import GpuServices, ModelParams

NOW = 1_000_000.0


def services(frontend: int = 1, prefill: int = 1, **knobs: float) -> GpuServices:
    knobs = {"latency_cv": 0, **knobs}
    return GpuServices(
        DeploymentConfig(), ModelParams.model_validate(knobs), {"frontend": frontend, "prefill": prefill}
    )


def cold(**knobs: float) -> ModelParams:
    """Round start-up figures: reaction 60 s, launch 100 s, pull 200 s, load 40 s; no warm pool."""
    base = {
        "warm_pool_size": 0,
        "capacity_reaction_s": 60,
        "instance_launch_s": 100,
        "image_pull_s": 200,
        "model_load_s": 40,
        "latency_cv": 0,
    }
    return ModelParams.model_validate({**base, **knobs})


def first_serving(model: GpuServices, since: float, role: ServiceRole | None = None) -> float:
    tasks = model.pools[role].tasks if role else model.created
    return min(t.serving_at for t in tasks if t.asked_at >= since)


def advance(model: GpuServices, since: float, until: float, rate: float = 1.0) -> None:
    t = since
    while t <= until:
        model.tick(t, rate, None, None)
        t += model.params.tick_s


def test_a_cold_task_waits_for_the_capacity_provider_then_the_launch_the_pull_and_the_load() -> None:
    # Given one serving frontend and no free instance
    model = GpuServices(DeploymentConfig(), cold(), {"frontend": 1, "prefill": 1})
    model.set_desired({"frontend": 2, "prefill": 1}, NOW)
    # Then the new task is provisioning through reaction + launch + pull (300 + 60 s)...
    advance(model, NOW, NOW + 350)
    assert model.states(NOW + 350)["frontend"] == ServiceState(2, 1)
    # ... runs (ECS runningCount) while its model loads, and serves 400 s after it was asked for
    advance(model, NOW + 360, NOW + 380)
    assert model.states(NOW + 380)["frontend"] == ServiceState(2, 2)
    assert model.pools["frontend"].serving_count(NOW + 390) == 1
    advance(model, NOW + 390, NOW + 400)
    assert model.pools["frontend"].serving_count(NOW + 400) == 2
    assert first_serving(model, NOW) == NOW + 400
    assert cold().startup.cold_s == 400


def test_a_warm_pool_instance_skips_the_launch_and_the_image_pull() -> None:
    model = GpuServices(
        DeploymentConfig(), cold(warm_pool_size=1, warm_launch_s=30), {"frontend": 1, "prefill": 1}
    )
    model.set_desired({"frontend": 2, "prefill": 2}, NOW)
    advance(model, NOW, NOW + 400)
    # The first new task got the warm instance (reaction 60 + warm start 30 + load 40)...
    assert first_serving(model, NOW, "frontend") == NOW + 130
    # ...the second a cold one: the pool had one instance
    assert first_serving(model, NOW, "prefill") == NOW + 400


def test_a_stopped_task_leaves_an_idle_billed_instance_that_a_new_task_starts_on_fast() -> None:
    model = GpuServices(
        DeploymentConfig(), cold(drain_s=20, idle_instance_s=300), {"frontend": 2, "prefill": 1}
    )
    model.set_desired({"frontend": 1, "prefill": 1}, NOW)
    advance(model, NOW, NOW + 30)
    assert model.provisioned_gpus() == 3  # the idle instance is still billed
    model.set_desired({"frontend": 2, "prefill": 1}, NOW + 40)
    advance(model, NOW + 40, NOW + 100)
    # No reaction, launch or pull: the image is on the instance; only the model loads
    assert first_serving(model, NOW + 40) == NOW + 80
    # Scaled in again: after idle_instance_s the capacity provider terminates the instance
    model.set_desired({"frontend": 1, "prefill": 1}, NOW + 110)
    advance(model, NOW + 110, NOW + 460)
    assert model.provisioned_gpus() == 2


def test_scale_in_cancels_tasks_waiting_for_an_instance_first() -> None:
    model = GpuServices(DeploymentConfig(), cold(), {"frontend": 2, "prefill": 1})
    model.set_desired({"frontend": 4, "prefill": 1}, NOW)
    model.set_desired({"frontend": 3, "prefill": 1}, NOW + 10)
    pool = model.pools["frontend"]
    assert (pool.desired, pool.serving_count(NOW + 10), sum(t.instance is None for t in pool.tasks)) == (
        3,
        2,
        1,
    )
    model.set_desired({"frontend": 1, "prefill": 1}, NOW + 20)
    assert (pool.desired, pool.serving_count(NOW + 20)) == (1, 1)


def test_requests_waiting_longer_than_the_client_timeout_are_given_up() -> None:
    # Given no prefill replica at all: nothing is served, the queue only grows
    model = services(prefill=0, client_timeout_s=60, latency_cv=0)
    dropped = 0.0
    for i in range(12):
        dropped += model.tick(NOW + 10 * i, 2.0, None, None).timed_out
    # Then what waited 60 s leaves: the backlog holds at most 60 s of arrivals
    assert model.prefill_queue.total + model.frontend_queue.total == pytest.approx(2.0 * 60)
    assert dropped == pytest.approx(2.0 * 60)


def test_latency_varies_by_a_seeded_factor_with_the_mean_kept() -> None:
    quiet = services(latency_cv=0).tick(NOW, 2.0, None, None).ttft_p90_ms
    noisy = services(latency_cv=0.2, noise_seed=7)
    values = [noisy.tick(NOW + 10 * i, 2.0, None, None).ttft_p90_ms for i in range(400)]
    again = services(latency_cv=0.2, noise_seed=7)
    assert values[:5] == [again.tick(NOW + 10 * i, 2.0, None, None).ttft_p90_ms for i in range(5)]
    assert quiet is not None and all(v is not None for v in values)
    mean = sum(v for v in values if v is not None) / len(values)
    assert mean == pytest.approx(quiet, rel=0.05)
    assert max(v for v in values if v is not None) > 1.2 * quiet


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


def test_gpu_hours_count_the_instances_of_starting_tasks_and_their_gpus() -> None:
    config = DeploymentConfig.model_validate({"prefill": {"gpus_per_task": 2}})
    model = GpuServices(config, cold(capacity_reaction_s=0), {"frontend": 1, "prefill": 1})
    model.set_desired({"frontend": 2, "prefill": 2}, NOW)
    metrics = model.tick(NOW, 1.0, None, None)
    assert metrics.provisioned_gpus == 2 * 1 + 2 * 2  # instances launching are billed
    assert model.states(NOW)["prefill"].running == 1  # the second is still starting


def test_a_task_loading_its_model_counts_as_an_idle_gpu() -> None:
    # Given one serving frontend at 50 % and a second one loading the model
    model = GpuServices(DeploymentConfig(), cold(), {"frontend": 2, "prefill": 1})
    model.set_desired({"frontend": 1, "prefill": 1}, NOW - 200)  # an idle instance with the image
    model.set_desired({"frontend": 2, "prefill": 1}, NOW - 10)
    model.tick(NOW - 10, 4.0, None, None)  # placed: its model loads for 40 s
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
