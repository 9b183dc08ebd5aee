"""``dynamo-ecs status`` against moto: a deployment, then a task that cannot be placed and an image
that cannot be pulled, each classified, shown by status and alerted once."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

from devtools.handlers import load_handler_module
from tests.integration.cli.conftest import CONFIG, Deployed, as_json, run_cli
from tests.integration.diagnostics.conftest import Alerts, alerts, sample

__all__ = ["alerts"]  # the fixture, for this module's tests


@pytest.fixture
def diagnostics(alerts: Alerts, monkeypatch: pytest.MonkeyPatch) -> Any:
    module = load_handler_module("diagnostics")
    monkeypatch.setattr(module, "CONFIG", CONFIG.model_copy(update={"alert_topic_arn": alerts.topic_arn}))
    return module


def delivered_twice(diagnostics: Any, event: dict[str, Any]) -> None:
    """As EventBridge may: the same event twice, and the same trouble again on another task."""
    again = copy.deepcopy(event)
    again["id"] = event["id"][:-4] + "9999"
    if "taskArn" in again["detail"]:
        again["detail"]["taskArn"] = again["detail"]["taskArn"][:-4] + "beef"
    for each in (event, event, again):
        diagnostics.lambda_handler(each, LambdaContext())


def test_placement_and_pull_failures_end_up_classified_in_status_and_in_one_alert_each(
    deployed: Deployed, diagnostics: Any, alerts: Alerts
) -> None:
    # Given a running deployment, status is healthy
    before = run_cli(["status", "--stack", deployed.stack, "--json"])
    assert before.returncode == 0, before.stdout + before.stderr
    report = as_json(before)
    assert report["healthy"] is True and report["open_diagnoses"] == []
    [infra] = report["infra"]["tasks"]
    assert infra["address"] and infra["address"].startswith("10.")
    assert {s["service"]: (s["desired"], s["running"]) for s in report["services"]} == {
        "dynamo-frontend": (1, 1),
        "dynamo-prefill": (1, 1),
    }
    assert all(s["revision"].startswith(("dynamo-frontend:", "dynamo-prefill:")) for s in report["services"])
    # When ECS reports a task it cannot place and an image it cannot pull, each more than once
    delivered_twice(diagnostics, sample("placement_failure"))
    delivered_twice(diagnostics, sample("task_pull_failed"))
    # Then status shows both, classified with their fixes, and exits 1
    after = run_cli(["status", "--stack", deployed.stack, "--json"])
    assert after.returncode == 1
    open_ = {d["signature"]: d for d in as_json(after)["open_diagnoses"]}
    assert set(open_) == {
        "no_gpu_capacity/frontend/placement-gpu",
        "registry_auth/frontend/pull-unauthorized",
    }
    assert open_["registry_auth/frontend/pull-unauthorized"]["count"] == 2
    assert "NgcSecretArn" in open_["registry_auth/frontend/pull-unauthorized"]["fix"]
    # And one alert went out for each
    subjects = sorted(a["Subject"] for a in alerts.received())
    assert subjects == ["dynamo: no GPU capacity (frontend)", "dynamo: registry authentication (frontend)"]
    # And the table for people says the same
    table = run_cli(["status", "--stack", deployed.stack])
    assert table.returncode == 1
    for text in (
        "open diagnoses",
        "no_gpu_capacity",
        "registry_auth",
        "Unauthorized",
        "dynamo-ecs doctor",
    ):
        assert text in table.stdout, text
    assert (
        "last decisions:" in table.stdout and "open registry_auth/frontend/pull-unauthorized" in table.stdout
    )
    # When the service is steady again, they close and status is healthy
    diagnostics.lambda_handler(sample("steady_state"), LambdaContext())
    healed = run_cli(["status", "--stack", deployed.stack, "--json"])
    assert healed.returncode == 0 and as_json(healed)["resolved_diagnoses"] == 2
    assert alerts.received() == []


def test_a_service_short_of_its_count_is_not_healthy(deployed: Deployed) -> None:
    import boto3

    boto3.client("ecs").delete_service(cluster=CONFIG.gpu_cluster, service=CONFIG.prefill.service, force=True)
    done = run_cli(["status", "--stack", deployed.stack, "--json"])
    assert done.returncode == 1
    services = {s["service"]: s for s in as_json(done)["services"]}
    assert services["dynamo-prefill"] == {"service": "dynamo-prefill", "missing": True}


def test_status_of_a_stack_that_does_not_exist_is_an_aws_error(state_table: str) -> None:
    done = run_cli(["status", "--stack", "nope"])
    assert done.returncode == 3 and "stack 'nope' does not exist" in done.stderr


def test_status_lists_each_infra_members_own_task_and_no_other(aws_env: Any) -> None:
    # Given the three-member tier while the single task's service still runs its task (as
    # after InfraMembers changed from 1 to 3), all in one cluster: moto's ListTasks ignores
    # serviceName and answers every task of the cluster for each service
    from devtools.ecs_world import build_world
    from dynamo_ecs import aws
    from dynamo_ecs_cli.stack import Aws, require_stack
    from dynamo_ecs_cli.status import infra_status
    from tests.integration.cli.conftest import REGION, stand_in_stack

    world = build_world(CONFIG, region=REGION)
    ecs = aws.client("ecs")
    members = [f"{CONFIG.infra.service}-{k}" for k in range(3)]
    started = {}
    for name in [CONFIG.infra.service, *members]:
        ecs.create_service(
            cluster=CONFIG.infra.cluster,
            serviceName=name,
            taskDefinition=world.infra_task_definition,
            desiredCount=1,
            launchType="FARGATE",
            networkConfiguration=world._awsvpc(),
        )
        started[name] = ecs.run_task(
            cluster=CONFIG.infra.cluster,
            taskDefinition=world.infra_task_definition,
            launchType="FARGATE",
            group=f"service:{name}",
            startedBy=f"ecs-svc/{name}",
            networkConfiguration=world._awsvpc(),
        )["tasks"][0]["taskArn"].rsplit("/", 1)[-1]
    stand_in_stack(
        "dynamo",
        {"InfraClusterName": CONFIG.infra.cluster, "InfraServiceName": ",".join(members)},
        {"DeploymentName": CONFIG.deployment},
    )
    # When status reads the infra tier
    client = Aws(region=REGION)
    report = infra_status(client, require_stack(client, "dynamo"))
    # Then each member shows its own task, once, and the old service's task is not among them
    assert [t["task"] for t in report["tasks"]] == [started[name] for name in members]
    assert [t["service"] for t in report["tasks"]] == members
    assert all(t["status"] == "RUNNING" and t["address"] for t in report["tasks"])
