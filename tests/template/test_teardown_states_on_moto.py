"""`sam delete` in the states AWS refuses calls in: launches held in the launch hook, tasks STOPPING.

The stack on moto as in ``test_template_gpu_services_on_moto.py``, with the rules of
`devtools.aws_state_rules` on (as for every test): SetInstanceProtection is refused for an
instance in ``Pending:Wait``, and removing the capacity provider from the cluster (what
CloudFormation does right after the custom resource's Delete) is refused while a task of the
cluster is not STOPPED. Each test plays CloudFormation's next steps after the Delete's answer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devtools.aws_state_rules import AwsStateRules
from devtools.cloudformation_stub import CloudFormationStub
from devtools.services import MotoServer
from tests.template.stack import stack_for_bootstrap, transformed_template
from tests.template.test_template_gpu_services_on_moto import instances_of, request

pytestmark = pytest.mark.xdist_group("moto-stack")


@dataclass
class LambdaContext:
    invoked_function_arn: str
    remaining_ms: int = 120_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Stack:
    full: dict[str, Any]
    properties: dict[str, Any]
    physical: dict[str, str]
    gpu_cluster: str
    provider: str
    bootstrap: ModuleType
    function_arn: str
    cloudformation: CloudFormationStub

    @property
    def group(self) -> str:
        return self.physical["GpuAutoScalingGroup"]

    def send(self, kind: str, remaining_ms: int = 120_000) -> dict[str, Any]:
        self.bootstrap.lambda_handler(
            request(kind, self.cloudformation.url, self.properties),
            LambdaContext(self.function_arn, remaining_ms),
        )
        return dict(self.cloudformation.answers[-1])

    def remove_capacity_provider(self) -> None:
        """CloudFormation's next step after the Delete: the association, then the provider."""
        ecs: Any = boto3.client("ecs")
        ecs.put_cluster_capacity_providers(
            cluster=self.gpu_cluster, capacityProviders=[], defaultCapacityProviderStrategy=[]
        )
        ecs.delete_capacity_provider(capacityProvider=self.provider)

    def run_task_on(self, instance_id: str) -> str:
        """A GPU task on ``instance_id`` (registered with the GPU cluster as its agent would)."""
        ecs: Any = boto3.client("ecs")
        document = json.dumps({"instanceId": instance_id, "region": "us-east-1"})
        registered = ecs.register_container_instance(
            cluster=self.gpu_cluster, instanceIdentityDocument=document
        )
        definition = ecs.register_task_definition(
            family="dynamo-probe",
            containerDefinitions=[{"name": "probe", "image": "busybox", "memory": 512}],
        )["taskDefinition"]["taskDefinitionArn"]
        task = ecs.start_task(
            cluster=self.gpu_cluster,
            taskDefinition=definition,
            containerInstances=[registered["containerInstance"]["containerInstanceArn"]],
        )["tasks"][0]
        return str(task["taskArn"])


def launch_hook_of(full: dict[str, Any]) -> str:
    """The launch hook's name as the template's Auto Scaling group has it."""
    specs = full["Resources"]["GpuAutoScalingGroup"]["Properties"]["LifecycleHookSpecificationList"]
    [hook] = [s for s in specs if s["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"]
    return str(hook["LifecycleHookName"])


@contextlib.contextmanager
def created_stack(moto: MotoServer) -> Iterator[Stack]:
    """The stack on moto with its custom resource created (both GPU services), as CloudFormation leaves it."""
    cloudformation = CloudFormationStub()
    with stack_for_bootstrap(moto) as ready:
        deployed = Stack(
            ready.full,
            ready.properties,
            ready.physical,
            ready.gpu_cluster,
            ready.provider,
            ready.bootstrap,
            ready.function_arn,
            cloudformation,
        )
        try:
            assert deployed.send("Create")["Status"] == "SUCCESS", cloudformation.answers[-1]
            yield deployed
        finally:
            cloudformation.close()


def test_the_launch_hook_is_read_from_the_group_the_template_defines() -> None:
    full = transformed_template()
    assert full["Resources"]["GpuServices"]["Properties"]["LaunchHook"] == launch_hook_of(full)


def test_delete_abandons_launches_in_the_launch_hook_and_unprotects_the_rest(
    moto: MotoServer, aws_states: AwsStateRules
) -> None:
    with created_stack(moto) as stack:
        # Given three protected instances: one in service, one held in the launch hook
        # (Pending:Wait, its image still pulling), one still Pending that enters the hook later
        autoscaling: Any = boto3.client("autoscaling")
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=stack.group, DesiredCapacity=3)
        in_service, held, pending = (i["InstanceId"] for i in instances_of(autoscaling, stack.group))
        hook = launch_hook_of(stack.full)
        aws_states.hold_in_launch_hook(held, stack.group, hook)
        aws_states.hold_in_launch_hook(pending, stack.group, hook, pending_s=1.0)
        states = {i["InstanceId"]: i["LifecycleState"] for i in instances_of(autoscaling, stack.group)}
        assert states == {in_service: "InService", held: "Pending:Wait", pending: "Pending"}

        # When the stack is deleted
        answer = stack.send("Delete")

        # Then the Delete answers SUCCESS: both launches abandoned (terminated, not replaced),
        # the instance in service unprotected, no call refused
        assert answer["Status"] == "SUCCESS", answer
        assert answer["Data"]["AbandonedLaunches"] == "2"
        assert answer["Data"]["UnprotectedInstances"] == "1"
        # (the group, sized to zero, may already have scaled the unprotected one in)
        left = instances_of(autoscaling, stack.group)
        assert {i["InstanceId"] for i in left} <= {in_service}
        assert not any(i["ProtectedFromScaleIn"] for i in left)
        described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[stack.group])
        assert described["AutoScalingGroups"][0]["DesiredCapacity"] == 0
        assert aws_states.refused == []
        # and a repeated Delete (CloudFormation may send it twice) succeeds and changes nothing
        again = stack.send("Delete")
        assert again["Status"] == "SUCCESS", again
        assert (again["Data"]["Deleted"], again["Data"]["AbandonedLaunches"]) == ("", "0")
        # and CloudFormation's next steps go through
        stack.remove_capacity_provider()


def test_delete_waits_until_no_task_of_the_gpu_cluster_is_left(
    moto: MotoServer, aws_states: AwsStateRules
) -> None:
    with created_stack(moto) as stack:
        # Given two GPU tasks ECS is still stopping (deregistration delay, then stop timeout),
        # and a third instance still held in the launch hook
        autoscaling: Any = boto3.client("autoscaling")
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=stack.group, DesiredCapacity=3)
        *instances, held = [i["InstanceId"] for i in instances_of(autoscaling, stack.group)]
        aws_states.hold_in_launch_hook(held, stack.group, launch_hook_of(stack.full))
        tasks = [stack.run_task_on(instance) for instance in instances]
        for task in tasks:
            aws_states.stop_task(stack.gpu_cluster, task, stopping_s=3.0)

        # When the stack is deleted
        answer = stack.send("Delete")

        # Then the Delete answers SUCCESS only once every task is STOPPED and the instances are
        # unprotected, and CloudFormation's removal of the capacity provider goes through
        assert answer["Status"] == "SUCCESS", answer
        stack.remove_capacity_provider()
        described = boto3.client("ecs").describe_tasks(cluster=stack.gpu_cluster, tasks=tasks)["tasks"]
        assert {t["lastStatus"] for t in described} == {"STOPPED"}
        assert (answer["Data"]["UnprotectedInstances"], answer["Data"]["AbandonedLaunches"]) == ("2", "1")
        assert aws_states.refused == []


def test_delete_says_what_is_left_when_its_time_runs_out(moto: MotoServer, aws_states: AwsStateRules) -> None:
    with created_stack(moto) as stack:
        # Given a GPU task that stops for longer than the Delete may wait
        autoscaling: Any = boto3.client("autoscaling")
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=stack.group, DesiredCapacity=1)
        [instance] = [i["InstanceId"] for i in instances_of(autoscaling, stack.group)]
        task = stack.run_task_on(instance)
        aws_states.stop_task(stack.gpu_cluster, task, stopping_s=600.0)

        # When the stack is deleted with 30 s left in the function (10 s to wait)
        answer = stack.send("Delete", remaining_ms=30_000)

        # Then the Delete answers FAILED before the function's end, naming the task and the fix,
        # and the instance under it keeps its protection
        assert answer["Status"] == "FAILED"
        assert "not STOPPED" in answer["Reason"] and task in answer["Reason"], answer["Reason"]
        assert "sam delete" in answer["Reason"]
        assert [i["ProtectedFromScaleIn"] for i in instances_of(autoscaling, stack.group)] == [True]
        # (which is why: CloudFormation could not have removed the capacity provider yet)
        with pytest.raises(ClientError, match="ResourceInUseException"):
            stack.remove_capacity_provider()
