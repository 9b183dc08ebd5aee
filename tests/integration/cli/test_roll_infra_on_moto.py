"""``dynamo-ecs roll-infra`` on moto: the three members' services rolled in order, each once all are
steady; a member not steady stops it before it changes anything. (moto completes a deployment at
once, so what is checked here is the order and the refusals; waiting on a deployment or a health
check in progress is `steadiness`'s, tests/unit/cli/test_roll_infra.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from devtools.ecs_world import build_world
from dynamo_ecs import aws
from tests.integration.cli.conftest import CONFIG, REGION, as_json, run_cli, stand_in_stack

MEMBERS = [f"{CONFIG.infra.service}-{k}" for k in range(3)]


@pytest.fixture
def members(aws_env: Any) -> dict[str, str]:
    """Three member services of one running task each, and their task ARNs."""
    world = build_world(CONFIG, region=REGION)
    ecs = aws.client("ecs")
    cluster = CONFIG.infra.cluster
    tasks = {}
    for name in MEMBERS:
        ecs.create_service(
            cluster=cluster,
            serviceName=name,
            taskDefinition=world.infra_task_definition,
            desiredCount=0,  # then 1: moto completes that deployment (`create_settled_gpu_services`)
            launchType="FARGATE",
            networkConfiguration=world._awsvpc(),
        )
        ecs.update_service(cluster=cluster, service=name, desiredCount=1)
        tasks[name] = ecs.run_task(
            cluster=cluster,
            taskDefinition=world.infra_task_definition,
            launchType="FARGATE",
            group=f"service:{name}",
            startedBy=f"ecs-svc/{name}",
            networkConfiguration=world._awsvpc(),
        )["tasks"][0]["taskArn"]
    stand_in_stack(
        "dynamo",
        {"InfraClusterName": cluster, "InfraServiceName": ",".join(MEMBERS)},
        {"DeploymentName": CONFIG.deployment},
    )
    return tasks


def deployments() -> dict[str, tuple[str, Any]]:
    described = aws.client("ecs").describe_services(cluster=CONFIG.infra.cluster, services=MEMBERS)
    return {
        s["serviceName"]: next(
            (d["id"], d["createdAt"]) for d in s["deployments"] if d["status"] == "PRIMARY"
        )
        for s in described["services"]
    }


def test_dry_run_checks_every_member_and_changes_nothing(members: dict[str, str]) -> None:
    before = deployments()
    done = run_cli(["roll-infra", "--dry-run", "--json"])
    assert done.returncode == 0, done.stdout + done.stderr
    report = as_json(done)
    assert report["services"] == MEMBERS and report["dry_run"] and report["rolled"] == []
    assert deployments() == before


def test_yes_rolls_each_member_once_in_order(members: dict[str, str]) -> None:
    before = deployments()
    done = run_cli(["roll-infra", "--yes", "--json", "--poll", "0"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert as_json(done)["rolled"] == MEMBERS
    after = deployments()
    assert all(after[name][0] != before[name][0] for name in MEMBERS), (before, after)
    started = [after[name][1] for name in MEMBERS]
    assert started == sorted(started)


def test_a_member_without_its_task_stops_the_roll_before_anything_changes(members: dict[str, str]) -> None:
    aws.client("ecs").stop_task(cluster=CONFIG.infra.cluster, task=members[MEMBERS[2]], reason="host lost")
    before = deployments()
    done = run_cli(["roll-infra", "--yes"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"stopped at {MEMBERS[0]}" in done.stdout and f"{MEMBERS[2]}: 0 of 1 tasks running" in done.stdout
    assert deployments() == before


def test_without_a_terminal_and_without_yes_nothing_is_rolled(members: dict[str, str]) -> None:
    before = deployments()
    done = run_cli(["roll-infra"], stdin="")
    assert done.returncode == 2 and "pass --yes" in done.stderr
    assert deployments() == before
