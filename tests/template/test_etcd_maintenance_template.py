"""The one-off etcd maintenance task of the three-member tier (docs/infra-tier.md, "Where the
commands run"): its scripts are infra_settings.py's, it receives root's files only, and the
stack names its family in an output the CLI reads."""

from __future__ import annotations

from devtools.template import load_template, resource
from dynamo_ecs.planes.infra_settings import (
    ETCD_HISTORY_SETTINGS,
    MAINTENANCE_ACTIONS,
    ROOT_WRITER_SECRETS,
    maintenance_script,
    root_writer_script,
)
from dynamo_ecs_cli.etcd_maintenance import FAMILY_OUTPUT


def containers() -> dict[str, dict]:  # type: ignore[type-arg]
    props = resource("EtcdMaintenanceTaskDefinition")["Properties"]
    return {c["Name"]: c for c in props["ContainerDefinitions"]}


def test_the_maintenance_task_runs_the_generated_scripts_with_root_s_files_only() -> None:
    definition = resource("EtcdMaintenanceTaskDefinition")
    assert definition["Condition"] == "InfraThreeMembers"
    props = definition["Properties"]
    assert props["ExecutionRoleArn"] == {"Fn::GetAtt": ["InfraExecutionRole", "Arn"]}
    assert props["NetworkMode"] == "awsvpc" and props["RequiresCompatibilities"] == ["FARGATE"]
    found = containers()
    assert set(found) == {"planes-writer", "etcd-maintenance"}
    writer, maintenance = found["planes-writer"], found["etcd-maintenance"]
    assert writer["Command"] == [root_writer_script()]
    # the CA and root's certificate and key, nothing else of the infra secret (no member key)
    secrets = {s["Name"]: s["ValueFrom"]["Fn::Sub"] for s in writer["Secrets"]}
    assert secrets == {
        name: f"${{PlaneCredentials.InfraSecretArn}}:{key}::" for name, key in ROOT_WRITER_SECRETS.items()
    }
    assert maintenance["Command"] == [maintenance_script()]
    assert maintenance["EntryPoint"] == ["/planes-tools/busybox", "sh", "-c"]
    assert maintenance["Image"] == {"Ref": "EtcdImage"} and maintenance["Essential"] is True
    assert maintenance["DependsOn"] == [{"ContainerName": "planes-writer", "Condition": "SUCCESS"}]
    env = {e["Name"]: e["Value"] for e in maintenance["Environment"]}
    assert env["ACTION"] in MAINTENANCE_ACTIONS
    assert env["QUOTA_BACKEND_BYTES"] == ETCD_HISTORY_SETTINGS["ETCD_QUOTA_BACKEND_BYTES"]
    assert env["MEMBER_ENDPOINTS"]["Fn::Sub"].split() == [
        f"https://infra-{k}.${{DeploymentName}}-infra.internal:2379" for k in range(3)
    ]
    # the members' own quota (what the alarm and the script compare against)
    members = resource("InfraMember0TaskDefinition")["Properties"]["ContainerDefinitions"]
    [join] = [c for c in members if c["Name"] == "etcd-join"]
    assert {"Name": "ETCD_QUOTA_BACKEND_BYTES", "Value": env["QUOTA_BACKEND_BYTES"]} in join["Environment"]
    for container in found.values():
        assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "InfraLogGroup"}


def test_the_stack_names_the_maintenance_family_for_the_cli() -> None:
    output = load_template()["Outputs"][FAMILY_OUTPUT]
    assert output["Condition"] == "InfraThreeMembers"
    family = resource("EtcdMaintenanceTaskDefinition")["Properties"]["Family"]
    assert output["Value"] == family == {"Fn::Sub": "${DeploymentName}-etcd-maintenance"}
