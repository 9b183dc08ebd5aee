"""``dynamo-ecs etcd-maintenance`` (docs/cli.md): the stack's one-off maintenance task, as root.

On moto with template.yaml deployed: the dry run (the RunTask request, with the members'
network read from their services), and the refusals (a single-task stack, a maintenance task
still running, recover without --yes, a member service without a network). With the real etcd
3.5 (the members run from their task definitions, `devtools.local_ecs.infra`), the command's
task run from its own task definition by the local runner of one-off tasks
(`devtools.local_ecs.one_off`): a tier filled to its quota takes writes again after
``recover``, and a role changed behind the planes' back is reported by ``status`` and put back
by ``recover``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from devtools.aws_state_rules import AwsStateRules
from devtools.local_ecs.one_off import OneOffRunner, running_one_offs
from devtools.moto_stack import (
    DeployedStack,
    declare_member_networks,
    placeable_task_definition,
    revision_with_environment,
)
from dynamo_ecs import aws
from dynamo_ecs_cli import etcd_maintenance as maintenance_module
from dynamo_ecs_cli.etcd_maintenance import FAMILY_OUTPUT, STARTED_BY
from dynamo_ecs_cli.main import cli
from tests.integration.infra_tier.test_etcd_history import (
    SMALL_QUOTA,
    etcdctl,
    fill_until_refused,
    identity,
    status,
    tier_with,
)

__all__ = ["tier_with"]  # the fixture, for this module's tests

pytestmark = pytest.mark.xdist_group("real_dynamo")  # fixed loopback addresses: one tier at a time


def command(*args: str) -> Result:
    """``dynamo-ecs etcd-maintenance ARGS`` in this process (the AWS state rules see its calls)."""
    return CliRunner().invoke(cli, ["etcd-maintenance", "--stack", "dynamo", *args], catch_exceptions=False)


def maintenance_tasks(deployed: DeployedStack) -> list[str]:
    ecs = aws.client("ecs")
    family = deployed.outputs[FAMILY_OUTPUT]
    return list(ecs.list_tasks(cluster=deployed.outputs["InfraClusterName"], family=family)["taskArns"])


# --- on moto ------------------------------------------------------------------------------------


def test_the_dry_run_shows_the_request_with_the_members_network_and_starts_nothing(
    deployed: DeployedStack,
) -> None:
    # Given the stack's member services with their network (as AWS has it from the template)
    declared = declare_member_networks(deployed)
    # When the operator asks for a dry run of recover
    done = command("recover", "--dry-run")
    # Then the request runs the stack's family with the first member's network, the action its
    # one override, and nothing was started
    assert done.exit_code == 0, done.output
    request = json.loads(done.output)["run_task"]
    assert request["taskDefinition"] == deployed.outputs[FAMILY_OUTPUT] == "dynamo-etcd-maintenance"
    assert request["cluster"] == deployed.outputs["InfraClusterName"]
    assert request["networkConfiguration"] == declared[0]
    assert request["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"] == [
        deployed.physical["InfraSecurityGroup"]
    ]
    assert request["launchType"] == "FARGATE" and request["startedBy"] == STARTED_BY
    assert request["overrides"] == {
        "containerOverrides": [
            {"name": "etcd-maintenance", "environment": [{"name": "ACTION", "value": "recover"}]}
        ]
    }
    assert maintenance_tasks(deployed) == []


def test_a_member_service_without_a_network_is_refused_not_guessed(deployed: DeployedStack) -> None:
    # Given member services with no network configuration (moto's CloudFormation drops it)
    done = command("status", "--dry-run")
    assert done.exit_code == 1
    assert "has no awsvpc network configuration" in done.output and "dynamo-infra-0" in done.output
    assert maintenance_tasks(deployed) == []


def test_a_maintenance_task_still_running_refuses_a_second(deployed: DeployedStack) -> None:
    # Given a maintenance task of the stack that has not stopped (another operator's)
    declare_member_networks(deployed)
    placeable_task_definition(deployed.full, "EtcdMaintenanceTaskDefinition", deployed.outputs[FAMILY_OUTPUT])
    first = json.loads(command("status", "--dry-run").output)["run_task"]
    other = aws.client("ecs").run_task(**first)["tasks"][0]["taskArn"]
    # When the command runs (a dry run too: it would refuse for real)
    for args in (("recover", "--yes"), ("status", "--dry-run")):
        done = command(*args)
        # Then it refuses, naming the running task, and starts nothing
        assert done.exit_code == 1, done.output
        assert "still runs" in done.output and other in done.output
    assert maintenance_tasks(deployed) == [other]


def test_of_two_commands_at_once_the_later_task_stops_itself(
    deployed: DeployedStack, monkeypatch: pytest.MonkeyPatch, aws_states: AwsStateRules
) -> None:
    # Given tasks that carry ECS's createdAt (moto's have none: the state rules report it)
    aws_states.report_created_at = True
    # and another operator's task started between this command's check and its RunTask (the
    # check saw none: its first look is made to miss the other task, the second is moto's own)
    declare_member_networks(deployed)
    placeable_task_definition(deployed.full, "EtcdMaintenanceTaskDefinition", deployed.outputs[FAMILY_OUTPUT])
    request = json.loads(command("status", "--dry-run").output)["run_task"]
    other = aws.client("ecs").run_task(**request)["tasks"][0]["taskArn"]
    looks = [0]
    real = maintenance_module.running_tasks

    def running(*args: Any) -> list[dict[str, Any]]:
        looks[0] += 1
        return [] if looks[0] == 1 else real(*args)

    monkeypatch.setattr(maintenance_module, "running_tasks", running)
    # When the command starts its own task
    done = command("recover", "--yes", "--timeout", "3", "--poll", "0.2")
    # Then its task, created later, is stopped at once by its own command, naming the other,
    # which goes on
    assert done.exit_code == 1, done.output
    assert f"{other} was started first and goes on alone" in done.output
    [ours] = [arn for arn in maintenance_tasks(deployed) if arn != other]
    described = aws.client("ecs").describe_tasks(
        cluster=deployed.outputs["InfraClusterName"], tasks=[ours, other]
    )
    states = {t["taskArn"]: t["lastStatus"] for t in described["tasks"]}
    assert states[ours] == "STOPPED" and states[other] != "STOPPED"


def test_recover_without_yes_and_without_a_terminal_starts_nothing(deployed: DeployedStack) -> None:
    declare_member_networks(deployed)
    done = command("recover")
    assert done.exit_code == 2 and "pass --yes" in done.output
    assert maintenance_tasks(deployed) == []


def test_a_task_still_running_at_the_timeout_is_left_running_and_fails_the_command(
    deployed: DeployedStack,
) -> None:
    # Given the stack's family as moto can place it, and nothing that would run the task
    declare_member_networks(deployed)
    placeable_task_definition(deployed.full, "EtcdMaintenanceTaskDefinition", deployed.outputs[FAMILY_OUTPUT])
    # When the command waits one second for it
    done = command("recover", "--yes", "--timeout", "1", "--poll", "0.2")
    # Then it exits 1 naming the task, which is left running (a defragmentation may be under way)
    assert done.exit_code == 1, done.output
    [arn] = maintenance_tasks(deployed)
    assert f"{arn} still runs after 1 s" in done.output
    [task] = aws.client("ecs").describe_tasks(cluster=deployed.outputs["InfraClusterName"], tasks=[arn])[
        "tasks"
    ]
    assert task["lastStatus"] != "STOPPED" and task["startedBy"] == STARTED_BY


def test_a_single_task_stack_is_refused_with_the_plain_commands_named(aws_env: Any) -> None:
    # Given a stack of the single infra task (InfraMembers 1): no maintenance family output
    aws.client("ecs").create_cluster(clusterName="dynamo-fargate")
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {"InfraMembers": {"Type": "String"}},
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            k: {"Value": v}
            for k, v in {"InfraClusterName": "dynamo-fargate", "InfraServiceName": "dynamo-infra"}.items()
        },
    }
    aws.client("cloudformation").create_stack(
        StackName="dynamo",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "InfraMembers", "ParameterValue": "1"}],
    )
    done = command("status")
    assert done.exit_code == 1
    assert "InfraMembers 1" in done.output and "docs/infra-tier.md" in done.output
    assert aws.client("ecs").list_tasks(cluster="dynamo-fargate")["taskArns"] == []


# --- with the real etcd -------------------------------------------------------------------------


@pytest.fixture
def maintenance(deployed: DeployedStack, tmp_path: Path) -> Iterator[Any]:
    """The command's task, run for real from the stack's own task definition whenever the
    command starts one (`OneOffRunner`), against the tier's members (their stand-in addresses)."""
    declare_member_networks(deployed)
    arn = placeable_task_definition(
        deployed.full, "EtcdMaintenanceTaskDefinition", deployed.outputs[FAMILY_OUTPUT]
    )

    def attach(tier: Any, **environment: str) -> Any:
        if environment:  # the maintenance container's variables changed, nothing else
            revision_with_environment(arn, "etcd-maintenance", environment)
        runner = OneOffRunner(
            ecs=aws.client("ecs"),
            logs=aws.client("logs"),
            cluster=deployed.outputs["InfraClusterName"],
            family=deployed.outputs[FAMILY_OUTPUT],
            workdir=tmp_path / "one-off",
            names=dict(tier.names),
        )
        return running_one_offs(runner)

    yield attach


def run(*args: str) -> Result:
    return command(*args, "--poll", "0.5", "--timeout", "240")


def test_recover_brings_a_full_tier_back_to_writes_with_auth_on(
    deployed: DeployedStack, tier_with: Any, maintenance: Any, tmp_path: Path
) -> None:
    # Given the tier with a 1-MB quota, filled by Dynamo's identity until etcd refuses (NOSPACE)
    tier = tier_with(ETCD_QUOTA_BACKEND_BYTES=str(SMALL_QUOTA))
    dynamo = tier.planes
    assert dynamo is not None
    root = identity(deployed.planes["InfraSecretArn"], tmp_path / "root", "root_cert", "root_key")
    urls = [tier.members[k].etcd_url for k in range(3)]
    refused = fill_until_refused(dynamo, urls)
    assert "database space exceeded" in refused, refused
    before = max(status(root, url)["dbSize"] for url in urls)
    # (the maintenance task told the members' quota, as the template tells it theirs)
    with maintenance(tier, QUOTA_BACKEND_BYTES=str(SMALL_QUOTA)):
        # When the operator asks for the status: the alarm and the full files are reported, exit 1
        found = run("status")
        assert found.exit_code == 1, found.output
        assert "PROBLEM: alarms raised" in found.output and "NOSPACE" in found.output, found.output
        assert "80 % or more of the quota" in found.output, found.output
        assert "etcd-maintenance: exit code 1" in found.output
        # When the operator recovers
        recovered = run("recover", "--yes")
        print(found.output, recovered.output, sep="\n")
        # Then the task compacted, defragmented each member (the leader last) and disarmed
        assert recovered.exit_code == 0, recovered.output
        lines = [line.strip() for line in recovered.output.splitlines()]
        defragmented = [line for line in lines if line.startswith("etcd-maintenance: defragmented ")]
        assert len(defragmented) == 3, recovered.output
        assert (
            "etcd-maintenance: alarms disarmed" in lines
            and "etcd-maintenance: recover: nothing wrong" in lines
        )
        assert "etcd-maintenance: exit code 0" in lines and "planes-writer: exit code 0" in lines
        # and Dynamo's writes are accepted again at every member, authentication on
        for url in urls:
            put = etcdctl(dynamo, url, "put", "v1/small", "accepted")
            assert put.returncode == 0, put.stderr
        assert "Authentication Status: true" in etcdctl(root, urls[0], "auth", "status").stdout
        after = max(status(root, url)["dbSize"] for url in urls)
        assert after < before, (before, after)
        # and the status is clean
        clean = run("status")
        assert clean.exit_code == 0, clean.output
        assert "etcd-maintenance: status: nothing wrong" in clean.output
    print(f"etcd_maintenance_recover_db_bytes {before} -> {after} (quota {SMALL_QUOTA})")


def test_a_tampered_role_is_reported_by_status_and_restored_by_recover(
    deployed: DeployedStack, tier_with: Any, maintenance: Any, tmp_path: Path
) -> None:
    # Given the tier, and the operator's role granted a permission behind the planes' back
    tier = tier_with()
    root = identity(deployed.planes["InfraSecretArn"], tmp_path / "root", "root_cert", "root_key")
    url = tier.members[0].etcd_url
    # (what NOSPACE lets any identity do on etcd 3.5: docs/infra-tier.md), and more besides:
    # a new user with Dynamo's role, Dynamo's role given to the operator, authentication off
    for change in (
        ("role", "grant-permission", "operator", "read", "v1/", "--prefix=true"),
        ("user", "add", "intruder", "--no-password"),
        ("user", "grant-role", "intruder", "dynamo"),
        ("user", "grant-role", "operator", "dynamo"),
        ("auth", "disable"),
    ):
        done = etcdctl(root, url, *change)
        assert done.returncode == 0, (change, done.stderr)
    with maintenance(tier):
        # When the operator asks for the status
        found = run("status")
        # Then the difference is named and the command fails
        assert found.exit_code == 1, found.output
        for difference in (
            "PROBLEM: role operator differs",
            "PROBLEM: users differ: has 'dynamo intruder operator root'",
            "PROBLEM: user operator's roles differ: has 'Roles: dynamo operator'",
            "PROBLEM: authentication is not on",
        ):
            assert difference in found.output, found.output
        # When the operator recovers
        recovered = run("recover", "--yes")
        print(found.output, recovered.output, sep="\n")
        assert recovered.exit_code == 0, recovered.output
        assert "rebuilding role operator" in recovered.output
        # Then the role holds nothing again, its user still has it, and the status is clean
        role = etcdctl(root, url, "role", "get", "operator")
        assert " ".join(role.stdout.split()) == "Role operator KV Read: KV Write:", role.stdout
        user = etcdctl(root, url, "user", "get", "operator")
        assert "Roles: operator\n" in user.stdout, user.stdout
        users = etcdctl(root, url, "user", "list")
        assert sorted(users.stdout.split()) == ["dynamo", "operator", "root"], users.stdout
        assert "Authentication Status: true" in etcdctl(root, url, "auth", "status").stdout
        # and Dynamo's identity writes under v1/ as before
        assert tier.planes is not None
        put = etcdctl(tier.planes, url, "put", "v1/after-recover", "x")
        assert put.returncode == 0, put.stderr
        clean = run("status", "--json")
        assert clean.exit_code == 0, clean.output
        printed = json.loads(clean.output)
        assert printed["ok"] is True and printed["exit_codes"] == {"planes-writer": 0, "etcd-maintenance": 0}
        assert printed["log"][-1] == "etcd-maintenance: status: nothing wrong", printed["log"]
