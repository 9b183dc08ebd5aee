"""``dynamo-ecs roll-infra`` on moto: the three members' services rolled in order, each once all are
steady and the collector's EtcdMembersHealthy shows every member healthy; a member not steady, or
etcd short of a member, stops it before it changes anything. (moto completes a deployment at
once, so what is checked here is the order and the refusals; waiting on a deployment or a health
check in progress is `steadiness`'s, tests/unit/cli/test_roll_infra.py.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.ecs_world import build_world
from dynamo_ecs import aws
from dynamo_ecs.config import SignalsConfig
from dynamo_ecs.metric_names import DIMENSION_DEPLOYMENT, DIMENSION_SERVICE, ETCD_MEMBERS_HEALTHY
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


def etcd_reports(healthy: float, minutes: range = range(-4, 4)) -> None:
    """The collector's EtcdMembersHealthy, one datapoint in each of these minutes from now."""
    start = (time.time() // 60) * 60
    aws.client("cloudwatch").put_metric_data(
        Namespace=SignalsConfig().namespace,
        MetricData=[
            {
                "MetricName": ETCD_MEMBERS_HEALTHY,
                "Dimensions": [
                    {"Name": DIMENSION_DEPLOYMENT, "Value": CONFIG.deployment},
                    {"Name": DIMENSION_SERVICE, "Value": "infra"},
                ],
                "Timestamp": datetime.fromtimestamp(start + 60 * m + 1, UTC),
                "Value": healthy,
                "Unit": "Count",
            }
            for m in minutes
        ],
    )


def deployments() -> dict[str, tuple[str, Any]]:
    described = aws.client("ecs").describe_services(cluster=CONFIG.infra.cluster, services=MEMBERS)
    return {
        s["serviceName"]: next(
            (d["id"], d["createdAt"]) for d in s["deployments"] if d["status"] == "PRIMARY"
        )
        for s in described["services"]
    }


def test_dry_run_checks_every_member_and_changes_nothing(members: dict[str, str]) -> None:
    etcd_reports(3)
    before = deployments()
    done = run_cli(["roll-infra", "--dry-run", "--json"])
    assert done.returncode == 0, done.stdout + done.stderr
    report = as_json(done)
    assert report["services"] == MEMBERS and report["dry_run"] and report["rolled"] == []
    assert deployments() == before


def test_yes_rolls_each_member_once_in_order(members: dict[str, str]) -> None:
    etcd_reports(3)
    before = deployments()
    done = run_cli(["roll-infra", "--yes", "--json", "--poll", "0"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert as_json(done)["rolled"] == MEMBERS
    after = deployments()
    assert all(after[name][0] != before[name][0] for name in MEMBERS), (before, after)
    started = [after[name][1] for name in MEMBERS]
    assert started == sorted(started)


def test_a_member_without_its_task_stops_the_roll_before_anything_changes(members: dict[str, str]) -> None:
    etcd_reports(3)
    aws.client("ecs").stop_task(cluster=CONFIG.infra.cluster, task=members[MEMBERS[2]], reason="host lost")
    before = deployments()
    done = run_cli(["roll-infra", "--yes"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"stopped at {MEMBERS[0]}" in done.stdout and f"{MEMBERS[2]}: 0 of 1 tasks running" in done.stdout
    assert deployments() == before


def test_etcd_short_of_a_member_stops_the_roll_though_ecs_says_all_run(members: dict[str, str]) -> None:
    etcd_reports(2)  # e.g. a member whose etcd lost its leader, or hit its quota: its task runs on
    before = deployments()
    done = run_cli(["roll-infra", "--yes"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "etcd reports 2 of 3 members healthy" in done.stdout
    assert deployments() == before


def test_without_the_collector_s_figure_it_stops_unless_told_to_rely_on_ecs(members: dict[str, str]) -> None:
    before = deployments()
    done = run_cli(["roll-infra", "--yes"])
    assert done.returncode == 1 and "--skip-etcd-health" in done.stdout, done.stdout + done.stderr
    assert deployments() == before
    skipped = run_cli(["roll-infra", "--yes", "--skip-etcd-health", "--json", "--poll", "0"])
    assert skipped.returncode == 0 and as_json(skipped)["rolled"] == MEMBERS, skipped.stdout + skipped.stderr


def test_without_a_terminal_and_without_yes_nothing_is_rolled(members: dict[str, str]) -> None:
    etcd_reports(3)
    before = deployments()
    done = run_cli(["roll-infra"], stdin="")
    assert done.returncode == 2 and "pass --yes" in done.stderr
    assert deployments() == before


def test_a_member_steady_in_ecs_but_not_back_in_etcd_stops_the_roll_there(members: dict[str, str]) -> None:
    from dynamo_ecs_cli.roll_infra import roll_members

    before = deployments()
    rolling_began = time.time()
    # etcd reported all three before the roll, and only two after it began
    report = roll_members(
        aws.client("ecs"),
        CONFIG.infra.cluster,
        MEMBERS,
        healthy=lambda since: 3.0 if since < rolling_began else 2.0,
        timeout_s=1.0,
        poll_s=0.05,
    )
    assert report.stopped_at == MEMBERS[0] and report.rolled == []
    assert "after 1 s etcd reports 2 of 3 members healthy" in (report.reason or "")
    after = deployments()
    assert [name for name in MEMBERS if after[name][0] != before[name][0]] == [MEMBERS[0]]
