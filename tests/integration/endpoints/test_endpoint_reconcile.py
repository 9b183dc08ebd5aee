"""The endpoint reconciler against moto server: infra replacement, duplicates, order, redeploy."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.ecs_world import EcsWorld, build_world, task_private_ip, task_state_change_event
from devtools.handlers import load_handler_module
from devtools.services import (
    STACK_GPU_EXECUTION_ROLE_ARN,
    STACK_GPU_TASK_ROLE_ARN,
    MotoServer,
    aws_test_environment,
)
from dynamo_ecs import aws
from dynamo_ecs.config import load_config
from dynamo_ecs.endpoints.reconcile import REGISTER_ATTEMPTS
from dynamo_ecs.endpoints.render import RENDERING_TAG
from dynamo_ecs.state import StateStore

REGION = "us-east-1"
CONFIG = load_config(aws_test_environment("http://127.0.0.1:1"))  # the functions' configuration


@dataclass
class LambdaContext:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:dynamo-infra-watcher"


@dataclass
class Deployment:
    world: EcsWorld
    first: dict[str, Any]
    second: dict[str, Any]


def revisions(family: str) -> list[str]:
    return list(aws.client("ecs").list_task_definitions(familyPrefix=family)["taskDefinitionArns"])


def running_definition(role: str) -> dict[str, Any]:
    ecs = aws.client("ecs")
    service = ecs.describe_services(cluster=CONFIG.gpu_cluster, services=[CONFIG.service(role).service])  # type: ignore[arg-type]
    arn = service["services"][0]["taskDefinition"]
    return dict(ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"])


def env_of(definition: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["value"] for v in definition["containerDefinitions"][0]["environment"]}


def event_for(task: dict[str, Any], version: int, event_id: str) -> dict[str, Any]:
    return task_state_change_event(task, version=version, region=REGION, event_id=event_id)


@pytest.fixture
def deployment(state_table: str) -> Deployment:
    """Today's manual setup: GPU services carry the first infra task's IP; then Fargate replaces it."""
    world = build_world(CONFIG, region=REGION)
    first = world.run_infra_task()
    world.create_gpu_services(pasted_ip=task_private_ip(first))
    second = world.replace_infra_task(first["taskArn"])
    return Deployment(world, first, second)


@pytest.fixture
def watcher() -> Any:
    return load_handler_module("infra_watcher")


@pytest.fixture
def redeploy() -> Any:
    return load_handler_module("redeploy")


def test_replacement_rolls_both_services_onto_the_new_address(deployment: Deployment, watcher: Any) -> None:
    # Given the services still point at the replaced task
    before = {role: running_definition(role) for role in ("frontend", "prefill")}
    new_ip = task_private_ip(deployment.second)
    # When the new task's RUNNING event arrives
    result = watcher.lambda_handler(event_for(deployment.second, 2, "e-running"), LambdaContext())
    # Then one new revision per family carries the new address, and nothing else changed
    assert result["status"] == "applied"
    for role in ("frontend", "prefill"):
        after = running_definition(role)
        assert env_of(after) == env_of(before[role]) | {
            "ETCD_ENDPOINTS": f"http://{new_ip}:2379",
            "NATS_SERVER": f"nats://{new_ip}:4222",
        }
        assert after["revision"] == before[role]["revision"] + 1
        for key in ("networkMode", "cpu", "memory"):
            assert after.get(key) == before[role].get(key)
        # the manual setup's generic role gives way to the stack's, the only ones it may pass
        assert (after["executionRoleArn"], after["taskRoleArn"]) == (
            STACK_GPU_EXECUTION_ROLE_ARN,
            STACK_GPU_TASK_ROLE_ARN,
        )
        container_before, container_after = (
            before[role]["containerDefinitions"][0],
            after["containerDefinitions"][0],
        )
        for key in (
            "image",
            "command",
            "entryPoint",
            "resourceRequirements",
            "logConfiguration",
            "repositoryCredentials",
        ):
            assert container_after.get(key) == container_before.get(key)
    entry = StateStore(CONFIG.state_table, CONFIG.deployment).decisions(kind="endpoints")[0]
    assert entry["endpoint"]["ip"] == new_ip
    assert {c["service"] for c in entry["changes"]} == {"dynamo-frontend", "dynamo-prefill"}
    assert entry["trigger"]["event_id"] == "e-running"


def test_a_second_look_writes_nothing(deployment: Deployment, watcher: Any) -> None:
    watcher.lambda_handler(event_for(deployment.second, 2, "e-1"), LambdaContext())
    counts = [len(revisions(CONFIG.frontend.family)), len(revisions(CONFIG.prefill.family))]
    result = watcher.lambda_handler(event_for(deployment.second, 2, "e-1"), LambdaContext())
    assert result["status"] == "unchanged"
    assert [len(revisions(CONFIG.frontend.family)), len(revisions(CONFIG.prefill.family))] == counts


def test_ten_concurrent_duplicates_register_one_revision_per_family(
    deployment: Deployment, watcher: Any
) -> None:
    results: list[dict[str, Any]] = []
    event = event_for(deployment.second, 2, "e-dup")
    threads = [
        threading.Thread(target=lambda: results.append(watcher.lambda_handler(event, LambdaContext())))
        for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["status"] for r in results) == ["applied"] + ["unchanged"] * 9
    assert len(revisions(CONFIG.frontend.family)) == 2
    assert len(revisions(CONFIG.prefill.family)) == 2


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(4)))
def test_any_event_order_ends_on_the_task_running_now(
    deployment: Deployment, watcher: Any, order: list[int]
) -> None:
    # Given the events of a replacement: old RUNNING, new RUNNING, old STOPPED, and a stale replay
    stopped = deployment.world.describe_task(CONFIG.infra.cluster, deployment.first["taskArn"])
    events = [
        event_for(deployment.first, 1, "old-running"),
        event_for(deployment.second, 2, "new-running"),
        event_for(stopped, 5, "old-stopped"),
        event_for(deployment.first, 1, "old-running-replayed"),
    ]
    # When they arrive in any order
    for index in order:
        watcher.lambda_handler(events[index], LambdaContext())
    # Then the services carry the new task's address, with one revision beyond the manual one
    assert (
        env_of(running_definition("frontend"))["NATS_SERVER"]
        == f"nats://{task_private_ip(deployment.second)}:4222"
    )
    assert len(revisions(CONFIG.frontend.family)) == 2
    assert len(revisions(CONFIG.prefill.family)) == 2


def test_no_running_infra_task_changes_nothing(deployment: Deployment, watcher: Any) -> None:
    stopped = deployment.world.stop_task(CONFIG.infra.cluster, deployment.second["taskArn"])
    result = watcher.lambda_handler(event_for(stopped, 3, "e-stop"), LambdaContext())
    assert result["status"] == "no_endpoint"
    assert len(revisions(CONFIG.frontend.family)) == 1
    assert StateStore(CONFIG.state_table, CONFIG.deployment).decisions() == []


@pytest.mark.parametrize(
    "event",
    [
        {"detail-type": "ECS Task State Change"},
        {"id": "x", "source": "aws.ecs", "detail-type": "ECS Task State Change", "detail": {"taskArn": "t"}},
        "not even a mapping",
    ],
)
def test_malformed_events_are_dropped_without_writes(
    deployment: Deployment, watcher: Any, event: Any
) -> None:
    assert watcher.lambda_handler(event, LambdaContext())["status"] == "ignored"
    assert len(revisions(CONFIG.frontend.family)) == 1


def test_another_services_event_is_not_ours(deployment: Deployment, watcher: Any) -> None:
    event = event_for(deployment.second, 2, "e-other")
    event["detail"]["group"] = "service:someone-else"
    result = watcher.lambda_handler(event, LambdaContext())
    assert result["status"] == "ignored" and "not the infra service" in result["reason"]
    assert len(revisions(CONFIG.frontend.family)) == 1


def test_a_throttled_write_converges_when_the_platform_retries(deployment: Deployment, watcher: Any) -> None:
    # Given RegisterTaskDefinition fails throttled on every attempt of the first invocation
    ecs = aws.client("ecs", max_attempts=1)  # the client the reconciler registers through
    failures = {"left": REGISTER_ATTEMPTS}

    def throttle(**_: Any) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "RegisterTaskDefinition"
            )

    ecs.meta.events.register("before-call.ecs.RegisterTaskDefinition", throttle)
    try:
        with pytest.raises(ClientError):
            watcher.lambda_handler(event_for(deployment.second, 2, "e-t"), LambdaContext())
        # When Lambda retries the same event
        result = watcher.lambda_handler(event_for(deployment.second, 2, "e-t"), LambdaContext())
    finally:
        ecs.meta.events.unregister("before-call.ecs.RegisterTaskDefinition", throttle)
    # Then it converges: the new address, one revision per family
    assert result["status"] == "applied"
    assert len(revisions(CONFIG.frontend.family)) == 2


def test_a_lost_register_answer_reuses_the_revision_it_made(deployment: Deployment, watcher: Any) -> None:
    # Given RegisterTaskDefinition succeeds on ECS but its answer is lost (a timeout, a 503 after the work)
    ecs = aws.client("ecs", max_attempts=1)
    lost = {"left": 1}

    def lose_answer(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if lost["left"] > 0 and http_response.status_code == 200:
            lost["left"] -= 1
            answer: Any = {
                "Error": {"Code": "ServerException", "Message": "lost"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            }
            raise ClientError(answer, "RegisterTaskDefinition")

    ecs.meta.events.register("after-call.ecs.RegisterTaskDefinition", lose_answer)
    try:
        # When the watcher reconciles
        result = watcher.lambda_handler(event_for(deployment.second, 2, "e-lost"), LambdaContext())
    finally:
        ecs.meta.events.unregister("after-call.ecs.RegisterTaskDefinition", lose_answer)
    # Then the revision ECS made is found by its digest tag and rolled: no twin
    assert result["status"] == "applied" and lost["left"] == 0
    assert len(revisions(CONFIG.frontend.family)) == 2
    assert len(revisions(CONFIG.prefill.family)) == 2
    tags = aws.client("ecs").describe_task_definition(
        taskDefinition=CONFIG.frontend.family, include=["TAGS"]
    )["tags"]
    assert RENDERING_TAG in {t["key"] for t in tags}


def test_redeploy_dry_run_shows_the_diff_and_writes_nothing(deployment: Deployment, redeploy: Any) -> None:
    image = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0"
    result = redeploy.lambda_handler(
        {"image": image, "dry_run": True, "services": ["frontend"]}, LambdaContext()
    )
    assert result["status"] == "dry_run"
    [change] = result["changes"]
    assert change["diff"]["$.containerDefinitions[0].image"]["new"] == image
    assert change["new_endpoints"]["NATS_SERVER"].startswith(f"nats://{task_private_ip(deployment.second)}")
    assert len(revisions(CONFIG.frontend.family)) == 1
    assert StateStore(CONFIG.state_table, CONFIG.deployment).get_record("spec#frontend").version == 0


def test_redeploy_new_image_is_kept_by_the_next_infra_change(
    deployment: Deployment, redeploy: Any, watcher: Any
) -> None:
    image = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0"
    result = redeploy.lambda_handler({"image": image, "model": "Qwen/Qwen3-8B"}, LambdaContext())
    assert result["status"] == "applied"
    frontend = running_definition("frontend")["containerDefinitions"][0]
    assert frontend["image"] == image and "--model Qwen/Qwen3-8B" in frontend["command"][0]
    # When Fargate replaces the infra task again
    third = deployment.world.replace_infra_task(deployment.second["taskArn"])
    watcher.lambda_handler(event_for(third, 2, "e-third"), LambdaContext())
    # Then the new address rolls out with the redeployed image and model
    frontend_def = running_definition("frontend")
    assert frontend_def["containerDefinitions"][0]["image"] == image
    assert env_of(frontend_def)["ETCD_ENDPOINTS"] == f"http://{task_private_ip(third)}:2379"


@pytest.mark.parametrize(
    "break_spec",
    [
        lambda c: c.pop("image"),
        lambda c: c.update(cpu="lots"),
        lambda c: c["resourceRequirements"][0].update(value="two"),
        lambda c: c.update(unknownField=1),
    ],
    ids=["no image", "cpu lots", "gpu two", "unknown field"],
)
def test_a_bad_redeploy_is_never_stored_and_the_good_spec_keeps_serving(
    deployment: Deployment, redeploy: Any, watcher: Any, break_spec: Any
) -> None:
    # Given a good redeploy of a new image
    image = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0"
    assert redeploy.lambda_handler({"image": image}, LambdaContext())["status"] == "applied"
    store = StateStore(CONFIG.state_table, CONFIG.deployment)
    stored = store.get_record("spec#frontend")
    # When a whole spec with one bad field is redeployed
    spec = deployment.world.gpu_spec("frontend")
    break_spec(spec["containerDefinitions"][0])
    result = redeploy.lambda_handler({"spec": {"frontend": spec}}, LambdaContext())
    # Then it is refused naming the field, and the stored spec is the good one still
    assert result["status"] == "refused" and "spec.frontend.containerDefinitions[0]" in result["error"]
    assert store.get_record("spec#frontend") == stored
    # And the next infra replacement rolls the good spec onto the new address
    third = deployment.world.replace_infra_task(deployment.second["taskArn"])
    assert watcher.lambda_handler(event_for(third, 3, "e-3"), LambdaContext())["status"] == "applied"
    frontend = running_definition("frontend")
    assert frontend["containerDefinitions"][0]["image"] == image
    assert env_of(frontend)["ETCD_ENDPOINTS"] == f"http://{task_private_ip(third)}:2379"


def test_a_spec_ecs_refuses_is_put_back_and_no_service_rolls(
    deployment: Deployment, redeploy: Any, watcher: Any
) -> None:
    # Given ECS refuses the prefill rendering of a new image (something the checks cannot know)
    ecs = aws.client("ecs", max_attempts=1)
    before = {role: running_definition(role)["revision"] for role in ("frontend", "prefill")}

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params.get("family") == CONFIG.prefill.family:
            raise ClientError(
                {"Error": {"Code": "ClientException", "Message": "refused"}}, "RegisterTaskDefinition"
            )

    ecs.meta.events.register("before-parameter-build.ecs.RegisterTaskDefinition", refuse)
    try:
        # When the image is redeployed
        result = redeploy.lambda_handler(
            {"image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0"}, LambdaContext()
        )
    finally:
        ecs.meta.events.unregister("before-parameter-build.ecs.RegisterTaskDefinition", refuse)
    # Then it is refused with ECS's reason, neither service rolled, and the stored specs are the old ones
    assert result["status"] == "refused" and "ECS refused" in result["error"], result
    assert {role: running_definition(role)["revision"] for role in ("frontend", "prefill")} == before
    store = StateStore(CONFIG.state_table, CONFIG.deployment)
    assert [store.get_record(f"spec#{r}").data.get("spec") for r in ("frontend", "prefill")] == [None, None]
    # And the next infra replacement rolls the old image onto the new address
    third = deployment.world.replace_infra_task(deployment.second["taskArn"])
    assert watcher.lambda_handler(event_for(third, 3, "e-3"), LambdaContext())["status"] == "applied"
    assert running_definition("frontend")["containerDefinitions"][0]["image"].endswith(":1.6.1")


def test_redeploy_force_rolls_even_when_nothing_changed(deployment: Deployment, redeploy: Any) -> None:
    redeploy.lambda_handler({}, LambdaContext())
    assert redeploy.lambda_handler({}, LambdaContext())["status"] == "unchanged"
    forced = redeploy.lambda_handler({"force": True, "services": ["prefill"]}, LambdaContext())
    assert forced["status"] == "applied"
    assert [c["service"] for c in forced["changes"]] == ["dynamo-prefill"]
    assert len(revisions(CONFIG.prefill.family)) == 2, "a forced roll needs no new revision"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"services": ["decode"]}, "services.0"),
        ({"image": "Not A Valid Image!"}, "image"),
        ({"imgae": "x"}, "imgae"),
        ({"force": "maybe"}, "force"),
        ({"force": "yes"}, "force"),
        ({"force": 1}, "force"),
        ({"dry_run": "no"}, "dry_run"),
        ({"model": "Qwen/Qwen3;reboot"}, "model"),
        ({"model": "$(touch /tmp/x)"}, "model"),
        ({"spec": {"frontend": {"containerDefinitions": [1]}}}, "spec.frontend.containerDefinitions[0]"),
        ({"spec": {"frontend": {"family": "x"}}}, "spec"),
    ],
)
def test_bad_payloads_name_the_field_and_change_nothing(
    deployment: Deployment, redeploy: Any, payload: dict[str, Any], field: str
) -> None:
    result = redeploy.lambda_handler(payload, LambdaContext())
    assert result["status"] == "refused"
    assert field in result["error"]
    assert len(revisions(CONFIG.frontend.family)) == 1
    assert StateStore(CONFIG.state_table, CONFIG.deployment).decisions() == []


def test_every_ordering_of_three_services_requests_is_one_state(
    deployment: Deployment, redeploy: Any
) -> None:
    """Whatever order subsets are redeployed in, each family ends one revision past the manual one."""
    for order in itertools.islice(itertools.permutations([["frontend"], ["prefill"], None]), 2):
        for services in order:
            redeploy.lambda_handler({"services": services} if services else {}, LambdaContext())
    assert len(revisions(CONFIG.frontend.family)) == 2
    assert len(revisions(CONFIG.prefill.family)) == 2


def test_moto_fixture_is_in_use(aws_env: MotoServer) -> None:
    assert aws.client("ecs").meta.endpoint_url == aws_env.url


def test_a_service_rolled_back_by_the_circuit_breaker_is_retried_a_bounded_number_of_times(
    deployment: Deployment, watcher: Any, redeploy: Any
) -> None:
    # Given SNS alerts and a frontend that ECS keeps rolling back to the manual revision
    topic = aws.client("sns").create_topic(Name="dynamo-alerts")["TopicArn"]
    queue_url = aws.client("sqs").create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = aws.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    aws.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    watcher.CONFIG = CONFIG.model_copy(update={"alert_topic_arn": topic})
    manual = revisions(CONFIG.frontend.family)[0]
    ecs = aws.client("ecs")
    statuses = []
    last: dict[str, Any] = {}
    try:
        for attempt in range(5):
            last = watcher.lambda_handler(event_for(deployment.second, 2, f"e-{attempt}"), LambdaContext())
            statuses.append(last["status"])
            ecs.update_service(cluster=CONFIG.gpu_cluster, service="dynamo-frontend", taskDefinition=manual)
    finally:
        watcher.CONFIG = CONFIG
    # Then three attempts, then no further writes, one alert, and no extra revisions
    assert statuses == ["applied", "applied", "applied", "unchanged", "unchanged"]
    assert "gave up on dynamo-frontend" in last["reason"], last
    assert len(revisions(CONFIG.frontend.family)) == 2
    messages = (
        aws.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    )
    assert len(messages) == 1 and "attempt 3 of 3" in messages[0]["Body"]
    # And a forced redeploy rolls it once more
    assert (
        redeploy.lambda_handler({"force": True, "services": ["frontend"]}, LambdaContext())["status"]
        == "applied"
    )


@pytest.fixture(scope="module")
def moto(serial_moto: MotoServer) -> MotoServer:
    """Handlers run concurrently here: moto answering one request at a time, so that conditional
    writes are atomic as on AWS (tests/conftest.py, `serial_moto`)."""
    return serial_moto
