"""The stack and the operator together: the GPU services' custom resource on the moto stack.

moto's CloudFormation cannot invoke the bootstrap function (Lambda runs in Docker there), so
this test plays CloudFormation's part: it creates the stack on moto, adds what moto's
CloudFormation cannot create (the capacity provider) through ECS from the template's own
properties, and sends the bootstrap
handler the Create, Update and Delete requests CloudFormation would send, with the
properties and the environment the stack resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from devtools.cloudformation_stub import CloudFormationStub
from devtools.services import MotoServer
from tests.template.stack import CUSTOM_RESOURCE_ID, NGC_SECRET, stack_for_bootstrap

pytestmark = pytest.mark.xdist_group("moto-stack")


@dataclass
class LambdaContext:
    invoked_function_arn: str

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


def request(
    kind: str, url: str, properties: dict[str, Any], old: dict[str, Any] | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/dynamo/1",
        "RequestId": f"request-{kind}",
        "ResourceType": "Custom::DynamoGpuServices",
        "LogicalResourceId": CUSTOM_RESOURCE_ID,
        "ResourceProperties": properties,
    }
    if kind != "Create":
        event["PhysicalResourceId"] = "dynamo-gpu-services"
        event["OldResourceProperties"] = old or properties
    return event


def gpu_services(cluster: str) -> dict[str, dict[str, Any]]:
    ecs: Any = boto3.client("ecs")
    found = ecs.describe_services(cluster=cluster, services=["dynamo-frontend", "dynamo-prefill"])
    return {s["serviceName"]: s for s in found["services"] if s["status"] == "ACTIVE"}


def container(service: dict[str, Any]) -> dict[str, Any]:
    described = boto3.client("ecs").describe_task_definition(taskDefinition=service["taskDefinition"])
    return dict(described["taskDefinition"]["containerDefinitions"][0])


def instances_of(autoscaling: Any, group: str) -> list[dict[str, Any]]:
    [found] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return list(found["Instances"])


def test_the_stack_and_the_bootstrap_function_create_update_and_delete_the_gpu_services(
    moto: MotoServer,
) -> None:
    cloudformation = CloudFormationStub()
    # Given the stack on moto (the three-member tier) and its capacity provider
    with stack_for_bootstrap(moto) as deployed:
        physical, gpu_cluster, properties = deployed.physical, deployed.gpu_cluster, deployed.properties
        # (the three-member tier: its members' DNS names, whichever tasks run; no task needed)
        names = deployed.outputs["InfraMemberNames"].split(",")
        # the planes on with the three members: TLS URLs, and Dynamo's credentials as secrets
        etcd = ",".join(f"https://{name}:2379" for name in names)
        # and the bootstrap function loaded with the environment the stack gave it
        bootstrap = deployed.bootstrap
        context = LambdaContext(deployed.function_arn)
        try:
            # When CloudFormation creates the custom resource
            bootstrap.lambda_handler(request("Create", cloudformation.url, properties), context)
            # Then both services run on the infra members' names with the stack's roles, secret,
            # logs, capacity provider and load balancer
            assert cloudformation.answers[-1]["Status"] == "SUCCESS", cloudformation.answers[-1]
            created = gpu_services(gpu_cluster)
            assert set(created) == {"dynamo-frontend", "dynamo-prefill"}
            frontend, prefill = created["dynamo-frontend"], created["dynamo-prefill"]
            assert (frontend["desiredCount"], prefill["desiredCount"]) == (1, 2)
            assert frontend["loadBalancers"] == [
                {
                    "targetGroupArn": physical["FrontendTargetGroup"],
                    "containerName": "dynamo-vllm-frontend",
                    "containerPort": 8000,
                }
            ]
            # (moto does not echo a service's capacity provider strategy back: not checked here)
            described = boto3.client("ecs").describe_task_definition(
                taskDefinition=frontend["taskDefinition"]
            )
            definition = described["taskDefinition"]
            assert definition["family"] == "dynamo-frontend"
            assert definition["executionRoleArn"].endswith(f"/{physical['GpuExecutionRole']}")
            assert definition["taskRoleArn"].endswith(f"/{physical['GpuTaskRole']}")
            main = container(frontend)
            assert {"name": "ETCD_ENDPOINTS", "value": etcd} in main["environment"]
            assert {"name": "NATS_SERVER", "value": f"tls://{names[0]}:4222"} in main["environment"]
            dynamo_secret = boto3.client("secretsmanager").describe_secret(SecretId="dynamo/planes/dynamo")[
                "ARN"
            ]
            assert main["secrets"] and all(s["valueFrom"].startswith(dynamo_secret) for s in main["secrets"])
            assert main["repositoryCredentials"] == {"credentialsParameter": NGC_SECRET}
            assert main["logConfiguration"]["options"]["awslogs-group"] == "/ecs/dynamo-frontend"
            assert container(prefill)["logConfiguration"]["options"]["awslogs-group"] == "/ecs/dynamo-prefill"

            # Given the scaler has since set the prefill count
            boto3.client("ecs").update_service(cluster=gpu_cluster, service="dynamo-prefill", desiredCount=3)
            # When a deploy changes the image parameter (an Update of the custom resource)
            new = {**properties, "Image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0"}
            bootstrap.lambda_handler(request("Update", cloudformation.url, new, old=properties), context)
            # Then the new image rolls out at the same address and the scaled count stays
            assert cloudformation.answers[-1]["Status"] == "SUCCESS", cloudformation.answers[-1]
            updated = gpu_services(gpu_cluster)
            assert updated["dynamo-prefill"]["desiredCount"] == 3
            for service in updated.values():
                rolled = container(service)
                assert rolled["image"].endswith(":1.6.0")
                assert {"name": "ETCD_ENDPOINTS", "value": etcd} in rolled["environment"]

            # Given managed scaling has launched two GPU instances, protected from scale-in as the
            # group's NewInstancesProtectedFromScaleIn makes every new instance
            autoscaling: Any = boto3.client("autoscaling")
            group = physical["GpuAutoScalingGroup"]
            assert properties["AutoScalingGroup"] == group
            autoscaling.update_auto_scaling_group(AutoScalingGroupName=group, DesiredCapacity=2)
            assert [i["ProtectedFromScaleIn"] for i in instances_of(autoscaling, group)] == [True, True]
            # When the stack is deleted
            bootstrap.lambda_handler(request("Delete", cloudformation.url, new), context)
            # Then both services are gone, their revisions deregistered, and no instance keeps the
            # protection that would hold up CloudFormation's delete of the group
            assert cloudformation.answers[-1]["Status"] == "SUCCESS", cloudformation.answers[-1]
            assert cloudformation.answers[-1]["Data"]["UnprotectedInstances"] == "2"
            assert [i["ProtectedFromScaleIn"] for i in instances_of(autoscaling, group)] == [False, False]
            assert gpu_services(gpu_cluster) == {}
            for family in ("dynamo-frontend", "dynamo-prefill"):
                active = boto3.client("ecs").list_task_definitions(familyPrefix=family, status="ACTIVE")
                assert active["taskDefinitionArns"] == [], family
        finally:
            cloudformation.close()
