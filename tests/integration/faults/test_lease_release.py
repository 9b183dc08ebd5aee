"""A lease release throttled past botocore's retries, after the work converged, against moto server.

The work is done and the lease expires by its TTL: the invocation answers with what it did
(and logs the failed release) instead of raising, which would make the platform retry work
that is done and, for the scaler, skip the decision log and the alert of a scale it made.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from devtools.aws_faults import Faults, injecting
from devtools.ecs_world import build_world
from devtools.fault_scenarios import FaultBench
from devtools.handlers import load_handler_module
from devtools.scaling_inputs import alarm_state_change_event, create_scaling_alarm, put_datapoint
from devtools.sim_clock import SimClock
from dynamo_ecs import aws, clock
from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.state import StateStore

CONFIG = DeploymentConfig()
RELEASE_THROTTLED = frozenset({"DeleteItem"})  # the lease's release is the operator's only DeleteItem


def store() -> StateStore:
    return StateStore(CONFIG.state_table, CONFIG.deployment)


def test_an_infra_replacement_whose_release_is_throttled_answers_applied(
    state_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a deployment whose infra task was just replaced, on a simulated clock
    bench = FaultBench(CONFIG)
    sim = SimClock(start=time.time())
    clock.use(sim)
    try:
        invoke = bench.make_change("infra_replaced")
        # When the watcher reconciles and every attempt to release the lease is throttled
        with injecting(Faults(throttle=RELEASE_THROTTLED)) as faults:
            result = invoke()
        # Then the invocation answers with the rollout it made, logged in the decision log
        assert result["status"] == "applied", result
        assert faults.injected["throttled"] >= 1
        assert store().decisions(kind="endpoints")[0]["endpoint"]["ip"] == result["endpoint"]
        assert "lease release failed" in caplog.text
        # and the lease, still held, expires by its TTL: the next replacement after it applies
        assert store().lease_holder() is not None
        sim.now += CONFIG.rollout.lease_ttl_s + 1
        assert store().lease_holder() is None
        assert bench.make_change("infra_replaced")()["status"] == "applied"
    finally:
        clock.use(None)


def test_a_scale_out_whose_release_is_throttled_is_logged_and_answers_applied(state_table: str) -> None:
    # Given both GPU services at 2 tasks and the TTFT mean at 3x its target, its alarm in ALARM
    world = build_world(CONFIG, region="us-east-1")
    world.run_infra_task()
    world.create_settled_gpu_services(desired=2)
    now = time.time()
    cloudwatch = aws.client("cloudwatch")
    put_datapoint(cloudwatch, CONFIG, names.TTFT_MEAN, "frontend", 1500.0, now - 5)
    alarm = create_scaling_alarm(cloudwatch, CONFIG, "frontend", "ttft", names.TTFT_MEAN, 500.0)
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="test: TTFT above target")
    scaler: Any = load_handler_module("scaler")
    # When the scaler acts on the alarm and every attempt to release the lease is throttled
    with injecting(Faults(throttle=RELEASE_THROTTLED)) as faults:
        result = scaler.lambda_handler(alarm_state_change_event(alarm, "ALARM", now), None)
    # Then the scale-out it made is answered and written to the decision log
    assert faults.injected["throttled"] >= 1
    assert result["status"] == "applied", result
    [entry] = store().decisions(kind="scaling")
    assert entry["services"]["frontend"]["action"] == "scale_out"
    desired = aws.client("ecs").describe_services(
        cluster=CONFIG.gpu_cluster, services=[CONFIG.frontend.service]
    )["services"][0]["desiredCount"]
    assert desired == entry["services"]["frontend"]["to"] > 2


def test_a_failed_release_never_hides_the_error_of_the_block(state_table: str) -> None:
    # Given a block under the lease that fails, and a release that is throttled
    # When the block's error leaves the lease
    with (
        injecting(Faults(throttle=RELEASE_THROTTLED)),
        pytest.raises(LookupError, match="the block's own"),
        store().lease(ttl_s=60),
    ):
        raise LookupError("the block's own error")
    # Then that error is what the caller sees (not the release's throttling), and the lease waits for its TTL
    assert store().lease_holder() is not None
