"""The scaler against moto server: metrics in CloudWatch, alarm and schedule events, ECS counts."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from devtools.aws_faults import recording
from devtools.ecs_world import build_world
from devtools.handlers import load_handler_module
from devtools.scaling_inputs import (
    alarm_state_change_event,
    create_scaling_alarm,
    put_datapoint,
    schedule_event,
)
from devtools.services import MotoServer
from devtools.sim_clock import SimClock
from dynamo_ecs import aws
from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.reconcile import HISTORY_RECORD, CapacityReconciler
from dynamo_ecs.scaling.scale_ahead import scale_ahead
from dynamo_ecs.scaling.triggers import Trigger
from dynamo_ecs.state import StateStore

REGION = "us-east-1"
CONFIG = DeploymentConfig()


def desired(role: ServiceRole) -> int:
    service = aws.client("ecs").describe_services(
        cluster=CONFIG.gpu_cluster, services=[CONFIG.service(role).service]
    )
    return int(service["services"][0]["desiredCount"])


def scaling_decisions(config: DeploymentConfig = CONFIG) -> list[dict[str, Any]]:
    return StateStore(config.state_table, config.deployment).decisions(kind="scaling")


@pytest.fixture
def services(state_table: str) -> None:
    """Both GPU services at 2 tasks each, their first deployment complete."""
    world = build_world(CONFIG, region=REGION)
    world.run_infra_task()
    world.create_settled_gpu_services(desired=2)


@pytest.fixture
def scaler() -> Any:
    return load_handler_module("scaler")


def breach_ttft(at: float) -> str:
    cloudwatch = aws.client("cloudwatch")
    put_datapoint(cloudwatch, CONFIG, names.TTFT_MEAN, "frontend", 1500.0, at)
    name = create_scaling_alarm(cloudwatch, CONFIG, "frontend", "ttft", names.TTFT_MEAN, 500.0)
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test: TTFT mean above target")
    return name


def test_an_alarm_event_scales_the_frontend_out(services: None, scaler: Any) -> None:
    # Given the TTFT mean at 3x its target with 2 tasks running, and the alarm in ALARM
    now = time.time()
    name = breach_ttft(now - 5)
    # When EventBridge delivers the alarm's state change
    result = scaler.lambda_handler(alarm_state_change_event(name, "ALARM", now), None)
    # Then both services (TTFT is a signal of each) go to min(ceil(2 x 3), max 4) = 4
    assert result["status"] == "applied"
    assert (desired("frontend"), desired("prefill")) == (4, 4)
    [entry] = scaling_decisions()
    assert entry["trigger"]["alarm"] == name
    assert entry["services"]["frontend"]["action"] == "scale_out"
    ttft = next(m for m in entry["services"]["frontend"]["metrics"] if m["signal"] == "ttft")
    assert ttft["value"] == 1500.0 and ttft["proposes"] == 6


def test_alarm_and_schedule_at_the_same_time_make_one_action(services: None, scaler: Any) -> None:
    # Given a breach seen by an alarm event and a schedule tick, delivered twice each, at once
    now = time.time()
    name = breach_ttft(now - 5)
    events = [
        alarm_state_change_event(name, "ALARM", now, event_id="a"),
        schedule_event(now, event_id="s"),
    ] * 2
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(len(events))

    def invoke(event: dict[str, Any]) -> None:
        barrier.wait()
        results.append(scaler.lambda_handler(event, None))

    threads = [threading.Thread(target=invoke, args=(e,)) for e in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one invocation scaled; the others found nothing left to do
    assert sorted(r["status"] for r in results) == ["applied", "unchanged", "unchanged", "unchanged"]
    assert desired("frontend") == 4
    actions = [d for d in scaling_decisions() if d["services"]["frontend"]["action"] != "none"]
    assert len(actions) == 1


def test_an_alarm_that_is_not_ours_changes_nothing(services: None, scaler: Any) -> None:
    now = time.time()
    breach_ttft(now - 5)
    result = scaler.lambda_handler(alarm_state_change_event("someone-elses-alarm", "ALARM", now), None)
    assert result["status"] == "ignored" and "someone-elses-alarm" in result["reason"]
    assert desired("frontend") == 2
    assert scaling_decisions() == []


def test_a_dry_run_reports_the_decision_and_changes_nothing(services: None, scaler: Any) -> None:
    breach_ttft(time.time() - 5)
    result = scaler.lambda_handler({"dry_run": True}, None)
    assert result["status"] == "dry_run"
    assert result["services"]["frontend"]["to"] == 4
    assert desired("frontend") == 2
    assert scaling_decisions() == []
    assert StateStore(CONFIG.state_table, CONFIG.deployment).get_record(HISTORY_RECORD).version == 0


def test_a_bad_manual_request_names_the_field(services: None, scaler: Any) -> None:
    result = scaler.lambda_handler({"dry_runn": True}, None)
    assert result["status"] == "ignored"
    assert "dry_runn" in result["reason"]


def test_every_schedule_tick_logs_a_decision_even_without_change(services: None, scaler: Any) -> None:
    now = time.time()
    put_datapoint(aws.client("cloudwatch"), CONFIG, names.TTFT_MEAN, "frontend", 480.0, now - 5)
    result = scaler.lambda_handler(schedule_event(now), None)
    assert result["status"] == "unchanged"
    [entry] = scaling_decisions()
    assert entry["services"]["frontend"]["action"] == "none"
    assert "within tolerance" in str(entry["services"]["frontend"]["metrics"])


def test_load_falls_then_scale_in_waits_for_the_stabilization_window(services: None) -> None:
    """Low load for 5 minutes: no scale-in before the 300-s window, then one step per minute."""
    clock = SimClock(time.time() - 900)
    store = StateStore(CONFIG.state_table, CONFIG.deployment, clock=clock)
    reconciler = CapacityReconciler(CONFIG, store, aws.client("ecs"), aws.client("cloudwatch"), clock=clock)
    cloudwatch = aws.client("cloudwatch")
    seen = []
    for _minute in range(8):
        for metric, service, value in (
            (names.TTFT_MEAN, "frontend", 100.0),
            (names.ITL_MEAN, "frontend", 10.0),
            (names.QUEUE_DEPTH, "frontend", 0.0),
            (names.GPU_UTILIZATION, "frontend", 10.0),
            (names.QUEUE_DEPTH, "prefill", 0.0),
            (names.GPU_UTILIZATION, "prefill", 10.0),
        ):
            put_datapoint(cloudwatch, CONFIG, metric, service, value, clock.now - 2)  # type: ignore[arg-type]
        reconciler.reconcile(Trigger(kind="schedule"))
        seen.append((desired("frontend"), desired("prefill")))
        clock.now += 60
    # The first tick seeds the window with the current count (2): no scale-in until that
    # recommendation is older than 300 s, then one task per rate-limit period.
    assert [f for f, _ in seen] == [2, 2, 2, 2, 2, 2, 1, 1]
    assert [p for _, p in seen] == [2, 2, 2, 2, 2, 2, 1, 1]
    last = scaling_decisions()[0]["services"]["frontend"]
    assert last["action"] == "none" and last["to"] == 1


def test_missing_metrics_never_scale_in(services: None, scaler: Any) -> None:
    # Given no datapoint at all for any signal
    result = scaler.lambda_handler(schedule_event(time.time()), None)
    # Then both services keep their counts and the log says why
    assert result["status"] == "unchanged"
    assert (desired("frontend"), desired("prefill")) == (2, 2)
    assert "no fresh metric" in result["services"]["frontend"]["reason"]


def test_no_services_yet_is_reported_not_raised(state_table: str, scaler: Any) -> None:
    build_world(CONFIG, region=REGION)
    result = scaler.lambda_handler(schedule_event(time.time()), None)
    assert result["status"] == "no_services"


def test_late_and_out_of_order_alarm_events_cause_no_extra_action(services: None, scaler: Any) -> None:
    # Given a scale-out already done on the current data
    now = time.time()
    name = breach_ttft(now - 5)
    assert (
        scaler.lambda_handler(alarm_state_change_event(name, "ALARM", now, event_id="new"), None)["status"]
        == "applied"
    )
    # When an older ALARM (delivered late), an OK from before it and the same ALARM again arrive
    late = [
        alarm_state_change_event(name, "ALARM", now - 600, event_id="late"),
        alarm_state_change_event(name, "OK", now - 900, previous="ALARM", event_id="older-ok"),
        alarm_state_change_event(name, "ALARM", now, event_id="new"),
    ]
    results = [scaler.lambda_handler(event, None) for event in late]
    # Then nothing more happens: each is a look at the same data
    assert [r["status"] for r in results] == ["unchanged"] * 3
    assert (desired("frontend"), desired("prefill")) == (4, 4)


def test_prefill_is_sized_by_its_queue_depth(services: None, scaler: Any) -> None:
    # Given 40 requests on the prefill side of Dynamo's queue (8 per task is the target), alarm in ALARM
    now = time.time()
    cloudwatch = aws.client("cloudwatch")
    put_datapoint(cloudwatch, CONFIG, names.QUEUE_DEPTH, "prefill", 40.0, now - 5)
    name = create_scaling_alarm(cloudwatch, CONFIG, "prefill", "queue", names.QUEUE_DEPTH, 8.0)
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test: prefill queue")
    # When the alarm's state change arrives
    result = scaler.lambda_handler(alarm_state_change_event(name, "ALARM", now), None)
    # Then prefill goes to min(ceil(40 / 8), max 4) and the frontend, without a breach, stays
    assert result["status"] == "applied"
    assert (desired("frontend"), desired("prefill")) == (2, 4)
    [entry] = scaling_decisions()
    queue = next(m for m in entry["services"]["prefill"]["metrics"] if m["signal"] == "queue")
    assert (queue["metric"], queue["value"], queue["proposes"]) == (names.QUEUE_DEPTH, 40.0, 5)


def test_refused_requests_wake_prefill_from_zero(state_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given prefill scaled to zero: the frontend refuses requests (no queue gauge counts them)
    monkeypatch.setenv("DYNAMO_ECS_PREFILL__MIN", "0")
    monkeypatch.setenv("DYNAMO_ECS_SCALING__PREFILL_SCALE_TO_ZERO", "true")
    config = DeploymentConfig.model_validate(
        {"prefill": {"min": 0}, "scaling": {"prefill_scale_to_zero": True}}
    )
    world = build_world(config, region=REGION)
    world.run_infra_task()
    world.create_settled_gpu_services(desired=1)
    aws.client("ecs").update_service(
        cluster=config.gpu_cluster, service=config.prefill.service, desiredCount=0
    )
    scaler = load_handler_module("scaler", fresh=True)
    now = time.time()
    cloudwatch = aws.client("cloudwatch")
    put_datapoint(cloudwatch, config, names.QUEUE_DEPTH, "prefill", 0.0, now - 5)
    # When nothing is refused, a tick leaves prefill at zero
    put_datapoint(cloudwatch, config, names.UNAVAILABLE_REQUEST_RATE, "frontend", 0.0, now - 65)
    assert scaler.lambda_handler(schedule_event(now - 60), None)["status"] == "unchanged"
    assert desired("prefill") == 0
    # When the frontend refuses 0.5 requests/s and the wake alarm goes to ALARM
    put_datapoint(cloudwatch, config, names.UNAVAILABLE_REQUEST_RATE, "frontend", 0.5, now - 5)
    name = create_scaling_alarm(cloudwatch, config, "prefill", "refused", names.UNAVAILABLE_REQUEST_RATE, 0.0)
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test: refused requests")
    result = scaler.lambda_handler(alarm_state_change_event(name, "ALARM", now), None)
    # Then prefill wakes to one task, and the decision log says why
    assert result["status"] == "applied"
    assert desired("prefill") == 1
    assert "refuses" in scaling_decisions(config)[0]["services"]["prefill"]["reason"]


def gpu_group(name: str, desired_capacity: int, max_size: int = 8) -> None:
    ec2 = aws.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{name}-lt", LaunchTemplateData={"ImageId": image, "InstanceType": "g6e.2xlarge"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    aws.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=0,
        MaxSize=max_size,
        DesiredCapacity=desired_capacity,
        LaunchTemplate={"LaunchTemplateId": template},
        AvailabilityZones=[f"{REGION}a"],
    )


def group_desired(name: str) -> int:
    groups = aws.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return int(groups["AutoScalingGroups"][0]["DesiredCapacity"])


def test_a_scale_out_asks_the_gpu_group_for_its_instances_at_once(services: None) -> None:
    # Given the GPU group at the 4 instances of 2 + 2 tasks, and the scaler told its name
    config = CONFIG.model_copy(update={"gpu_autoscaling_group": "dynamo-gpu"})
    gpu_group("dynamo-gpu", desired_capacity=4)
    now = time.time()
    breach_ttft(now - 5)
    reconciler = CapacityReconciler(
        config,
        StateStore(config.state_table, config.deployment),
        aws.client("ecs"),
        aws.client("cloudwatch"),
        autoscaling=aws.client("autoscaling"),
        clock=lambda: now,
    )
    # When TTFT at 3x its target scales both services to 4
    result = reconciler.reconcile(Trigger(kind="schedule"))
    assert result.status == "applied"
    # Then the group is asked for 8 instances (one task each) without waiting for the
    # capacity provider, and the decision log says so
    assert group_desired("dynamo-gpu") == 8
    [entry] = scaling_decisions(config)
    assert entry["scale_ahead"] == "scale-ahead: dynamo-gpu desired capacity 4 -> 8"
    # And a second look changes nothing: the counts and the group are already there
    assert reconciler.reconcile(Trigger(kind="schedule")).status == "unchanged"
    assert group_desired("dynamo-gpu") == 8


def test_scale_ahead_never_lowers_the_group_nor_passes_its_max(services: None) -> None:
    config = CONFIG.model_copy(update={"gpu_autoscaling_group": "dynamo-gpu"})
    gpu_group("dynamo-gpu", desired_capacity=7, max_size=7)
    note = scale_ahead(config, aws.client("autoscaling"), {"frontend": 4, "prefill": 4})
    assert group_desired("dynamo-gpu") == 7
    assert "already asks for 7 (needs 8)" in note


def test_the_floor_in_tokens_reads_the_collectors_token_rates_in_the_same_call(
    state_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given per-task token capacities (prefill 8,000 input tokens/s, the frontend 1,600 output
    # tokens/s) and no request capacity: the floor can only come from the token rates
    monkeypatch.setenv("DYNAMO_ECS_PREFILL__CAPACITY_TOKENS_PER_S", "8000")
    monkeypatch.setenv("DYNAMO_ECS_FRONTEND__CAPACITY_TOKENS_PER_S", "1600")
    world = build_world(CONFIG, region=REGION)
    world.run_infra_task()
    world.create_settled_gpu_services(desired=2)
    scaler = load_handler_module("scaler", fresh=True)
    # and five minutes of the frontend's token rates as the collector publishes them: 20,000
    # input and 4,000 output tokens/s (at 1 request/s: a request count would ask for nothing)
    now = time.time()
    cloudwatch = aws.client("cloudwatch")
    for age in (5, 65, 125, 185, 245):
        put_datapoint(cloudwatch, CONFIG, names.INPUT_TOKEN_RATE, "frontend", 20_000.0, now - age)
        put_datapoint(cloudwatch, CONFIG, names.OUTPUT_TOKEN_RATE, "frontend", 4_000.0, now - age)
        put_datapoint(cloudwatch, CONFIG, names.REQUEST_RATE, "frontend", 1.0, now - age)
    # When the schedule ticks, every AWS call recorded
    with recording() as record:
        result = scaler.lambda_handler(schedule_event(now), None)
    # Then each service is raised to ceil(rate x 1.15 / capacity) = 3 on its own token rate
    assert result["status"] == "applied"
    assert (desired("frontend"), desired("prefill")) == (3, 3)
    [entry] = scaling_decisions()
    assert "predictive floor: token rate 20000.00/s" in entry["services"]["prefill"]["reason"]
    assert "predictive floor: token rate 4000.00/s" in entry["services"]["frontend"]["reason"]
    # and the signals and both token-rate series came in one GetMetricData call
    assert record.calls.count("GetMetricData") == 1, record.calls


@pytest.fixture(scope="module")
def moto(serial_moto: MotoServer) -> MotoServer:
    """Handlers run concurrently here: moto answering one request at a time, so that conditional
    writes are atomic as on AWS (tests/conftest.py, `serial_moto`)."""
    return serial_moto
