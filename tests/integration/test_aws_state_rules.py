"""The tests' AWS refuses what AWS refuses in a resource's state (`devtools.aws_state_rules`).

Against moto server, through plain boto3 clients (the rules are on for every test, on every
client): each refusal carries the error code and message AWS returns, and the same call
goes through once the resource is in a state AWS allows it in.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devtools.aws_state_rules import AwsStateRules
from devtools.services import MotoServer

GROUP = "dynamo-gpu"
HOOK = "dynamo-warm-up"
CLUSTER = "dynamo-gpu"


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = raised.value.response["Error"]
    return error["Code"], error["Message"]


@pytest.fixture
def group(aws_env: MotoServer) -> list[str]:
    """A group of two protected instances (as NewInstancesProtectedFromScaleIn makes them)."""
    ec2: Any = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    ec2.create_launch_template(
        LaunchTemplateName="gpu",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g6e.2xlarge"},
    )
    autoscaling: Any = boto3.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateName": "gpu"},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=2,
        VPCZoneIdentifier=subnet,
        NewInstancesProtectedFromScaleIn=True,
    )
    return instance_ids()


def instance_ids() -> list[str]:
    [found] = boto3.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ]
    return [i["InstanceId"] for i in found["Instances"]]


def states() -> dict[str, str]:
    [found] = boto3.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ]
    return {i["InstanceId"]: i["LifecycleState"] for i in found["Instances"]}


def test_protection_is_refused_for_an_instance_in_the_launch_hook(
    group: list[str], aws_states: AwsStateRules
) -> None:
    # Given one instance in service and one held in the launch hook
    in_service, held = group
    aws_states.hold_in_launch_hook(held, GROUP, HOOK)
    assert states() == {in_service: "InService", held: "Pending:Wait"}
    autoscaling: Any = boto3.client("autoscaling")
    # When both are unprotected in one call, then AWS's ValidationError fails the whole call
    with pytest.raises(ClientError) as raised:
        autoscaling.set_instance_protection(
            AutoScalingGroupName=GROUP, InstanceIds=[in_service, held], ProtectedFromScaleIn=False
        )
    assert error_of(raised) == (
        "ValidationError",
        f"The instance {held} is not in InService or EnteringStandby or Standby.",
    )
    # and nothing changed
    assert autoscaling.describe_auto_scaling_instances(InstanceIds=[in_service])["AutoScalingInstances"][0][
        "ProtectedFromScaleIn"
    ]
    # When only the instance in service is unprotected, then it is
    autoscaling.set_instance_protection(
        AutoScalingGroupName=GROUP, InstanceIds=[in_service], ProtectedFromScaleIn=False
    )
    assert aws_states.refused == ["SetInstanceProtection: ValidationError"]


def test_a_launch_hook_is_completed_only_while_it_holds_the_instance(
    group: list[str], aws_states: AwsStateRules
) -> None:
    in_service, held = group
    autoscaling: Any = boto3.client("autoscaling")
    # Given an instance still Pending, on its way to the hook
    aws_states.hold_in_launch_hook(held, GROUP, HOOK, pending_s=60.0)
    assert states()[held] == "Pending"

    def complete(instance: str, hook: str = HOOK, result: str = "CONTINUE") -> None:
        autoscaling.complete_lifecycle_action(
            AutoScalingGroupName=GROUP,
            LifecycleHookName=hook,
            InstanceId=instance,
            LifecycleActionResult=result,
        )

    # Then no action can be completed for it yet, nor for an instance in service
    for instance in (held, in_service):
        with pytest.raises(ClientError) as raised:
            complete(instance)
        assert error_of(raised) == (
            "ValidationError",
            f"No active Lifecycle Action found with instance ID {instance}",
        )
    # Given it waits in the hook: another hook's name is refused, the hook's own CONTINUE lets it in
    aws_states.hold_in_launch_hook(held, GROUP, HOOK)
    with pytest.raises(ClientError):
        complete(held, hook="another-hook")
    complete(held)
    assert states()[held] == "InService"
    # and a second completion finds no action
    with pytest.raises(ClientError):
        complete(held)


def test_an_abandoned_launch_is_terminated(group: list[str], aws_states: AwsStateRules) -> None:
    # Given a group sized to zero and an instance held in the hook
    autoscaling: Any = boto3.client("autoscaling")
    _, held = group
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=GROUP, MinSize=0, MaxSize=0, DesiredCapacity=0)
    aws_states.hold_in_launch_hook(held, GROUP, HOOK)
    # When its launch is abandoned
    autoscaling.complete_lifecycle_action(
        AutoScalingGroupName=GROUP, LifecycleHookName=HOOK, InstanceId=held, LifecycleActionResult="ABANDON"
    )
    # Then Auto Scaling terminates it
    assert held not in instance_ids()
    [instance] = boto3.client("ec2").describe_instances(InstanceIds=[held])["Reservations"][0]["Instances"]
    assert instance["State"]["Name"] in ("shutting-down", "terminated")


@pytest.fixture
def cluster(aws_env: MotoServer) -> tuple[str, str]:
    """A cluster with a capacity provider and one container instance; (provider, container instance)."""
    ec2: Any = boto3.client("ec2")
    ecs: Any = boto3.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    document = json.dumps({"instanceId": instance["InstanceId"], "region": "us-east-1"})
    registered = ecs.register_container_instance(cluster=CLUSTER, instanceIdentityDocument=document)
    provider = ecs.create_capacity_provider(
        name="gpu-capacity",
        autoScalingGroupProvider={"autoScalingGroupArn": "arn:aws:autoscaling:us-east-1:123456789012:x"},
    )["capacityProvider"]["name"]
    ecs.put_cluster_capacity_providers(
        cluster=CLUSTER, capacityProviders=[provider], defaultCapacityProviderStrategy=[]
    )
    return provider, registered["containerInstance"]["containerInstanceArn"]


def start_task(container_instance: str) -> str:
    ecs: Any = boto3.client("ecs")
    definition = ecs.register_task_definition(
        family="probe", containerDefinitions=[{"name": "probe", "image": "busybox", "memory": 128}]
    )["taskDefinition"]["taskDefinitionArn"]
    task = ecs.start_task(cluster=CLUSTER, taskDefinition=definition, containerInstances=[container_instance])
    return str(task["tasks"][0]["taskArn"])


def test_a_capacity_provider_stays_while_a_task_of_the_cluster_is_not_stopped(
    cluster: tuple[str, str], aws_states: AwsStateRules
) -> None:
    provider, container_instance = cluster
    ecs: Any = boto3.client("ecs")
    task = start_task(container_instance)

    def remove() -> None:
        ecs.put_cluster_capacity_providers(
            cluster=CLUSTER, capacityProviders=[], defaultCapacityProviderStrategy=[]
        )

    # Given a RUNNING task, then a STOPPING one: the provider cannot be removed
    for stopping in (False, True):
        if stopping:
            aws_states.stop_task(CLUSTER, task, stopping_s=60.0)
            described = ecs.describe_tasks(cluster=CLUSTER, tasks=[task])["tasks"][0]
            assert (described["lastStatus"], described["desiredStatus"]) == ("STOPPING", "STOPPED")
        with pytest.raises(ecs.exceptions.ResourceInUseException) as raised:
            remove()
        assert error_of(raised) == (
            "ResourceInUseException",
            "The specified capacity provider is in use and cannot be removed.",
        )
        # nor deleted while the cluster still has it
        with pytest.raises(ecs.exceptions.ClientException):
            ecs.delete_capacity_provider(capacityProvider=provider)
    assert ecs.describe_clusters(clusters=[CLUSTER])["clusters"][0]["capacityProviders"] == [provider]
    # Given the task STOPPED: removed, then deleted
    aws_states.stop_task(CLUSTER, task, stopping_s=0.0)
    assert ecs.describe_tasks(cluster=CLUSTER, tasks=[task])["tasks"][0]["lastStatus"] == "STOPPED"
    remove()
    ecs.delete_capacity_provider(capacityProvider=provider)


def test_a_stopped_task_s_containers_show_their_recorded_exit_codes(
    cluster: tuple[str, str], aws_states: AwsStateRules
) -> None:
    _, container_instance = cluster
    ecs: Any = boto3.client("ecs")
    task = start_task(container_instance)
    # moto: one container record, exit code 0, whatever ran
    [moto_container] = ecs.describe_tasks(cluster=CLUSTER, tasks=[task])["tasks"][0]["containers"]
    assert moto_container.get("exitCode") == 0
    # Given the containers' exits as the local runner records them (one never started)
    aws_states.task_containers(
        task,
        [
            {"name": "writer", "lastStatus": "STOPPED", "exitCode": 0},
            {"name": "probe", "lastStatus": "STOPPED", "exitCode": 1},
            {"name": "never", "lastStatus": "STOPPED"},
        ],
    )
    aws_states.stop_task(CLUSTER, task, stopping_s=0.0, reason="Essential container in task exited")
    described = ecs.describe_tasks(cluster=CLUSTER, tasks=[task])["tasks"][0]
    assert [(c["name"], c.get("exitCode")) for c in described["containers"]] == [
        ("writer", 0),
        ("probe", 1),
        ("never", None),
    ]
    assert all(c["taskArn"] == task for c in described["containers"])
    assert described["stoppedReason"] == "Essential container in task exited"
    # and a clean table forgets them
    aws_states.clear()
    assert len(ecs.describe_tasks(cluster=CLUSTER, tasks=[task])["tasks"][0]["containers"]) == 1


def test_created_at_is_reported_only_when_a_test_asks_for_it(
    cluster: tuple[str, str], aws_states: AwsStateRules
) -> None:
    _, container_instance = cluster
    ecs: Any = boto3.client("ecs")
    first, second = start_task(container_instance), start_task(container_instance)
    # moto's tasks have no createdAt, and the suite sees them so by default
    assert all(
        "createdAt" not in t for t in ecs.describe_tasks(cluster=CLUSTER, tasks=[first, second])["tasks"]
    )
    # Given a test that needs ECS's order of creation
    aws_states.report_created_at = True
    described = {t["taskArn"]: t for t in ecs.describe_tasks(cluster=CLUSTER, tasks=[first, second])["tasks"]}
    assert described[first]["createdAt"] <= described[second]["createdAt"]
    assert described[first]["createdAt"].tzinfo is not None
