"""The IAM check's call-to-action table against IAM's own definitions of each action.

policy_sentry ships the Service Authorization Reference as data: for each action, the
resource types it is authorized on (with their ARN formats) and the condition keys it takes.
Every entry of `devtools.iam_check.requests.OPERATIONS` must name a real action, a resource of
one of that action's types (``*`` only where the action takes no resource), and condition
keys the action really has; otherwise the check would allow or deny on a fiction.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from policy_sentry.querying.actions import get_privilege_info

from devtools.iam_check.evaluate import AuthorizationRequest
from devtools.iam_check.requests import OPERATIONS, CallSite, UnmappedCallError, authorization_requests

SITE = CallSite(
    region="us-east-1",
    account="123456789012",
    encrypted_topics={
        "arn:aws:sns:us-east-1:123456789012:alerts": "arn:aws:kms:us-east-1:123456789012:key/k-1"
    },
)
ROLE = "arn:aws:iam::123456789012:role/dynamo-GpuTaskRole-AB12"
TABLE = {"TableName": "dynamo-state"}
GROUP = {"AutoScalingGroupName": "dynamo-gpu", "InstanceIds": ["i-1"], "ProtectedFromScaleIn": False}
SAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("ecs", "ListTasks"): {"cluster": "dynamo-fargate"},
    ("ecs", "DescribeTasks"): {
        "cluster": "dynamo-fargate",
        "tasks": ["0123abcd", "arn:aws:ecs:us-east-1:123456789012:task/dynamo-fargate/x"],
    },
    ("ecs", "DescribeServices"): {"cluster": "dynamo-gpu", "services": ["dynamo-frontend"]},
    ("ecs", "UpdateService"): {"cluster": "dynamo-gpu", "service": "dynamo-frontend"},
    ("ecs", "DeleteService"): {"cluster": "dynamo-gpu", "service": "dynamo-frontend"},
    ("ecs", "CreateService"): {
        "cluster": "dynamo-gpu",
        "serviceName": "dynamo-frontend",
        "tags": [{"key": "a", "value": "b"}],
    },
    ("ecs", "DescribeContainerInstances"): {"cluster": "dynamo-gpu", "containerInstances": ["ci-1"]},
    ("ecs", "RegisterTaskDefinition"): {
        "family": "dynamo-frontend",
        "taskRoleArn": ROLE,
        "executionRoleArn": ROLE,
        "tags": [{"key": "a", "value": "b"}],
    },
    ("ecs", "DescribeTaskDefinition"): {"taskDefinition": "dynamo-frontend:1"},
    ("ecs", "ListTaskDefinitions"): {"familyPrefix": "dynamo-frontend"},
    ("ecs", "DeregisterTaskDefinition"): {"taskDefinition": "dynamo-frontend:1"},
    ("ecs", "TagResource"): {
        "resourceArn": "arn:aws:ecs:us-east-1:123456789012:service/dynamo-gpu/dynamo-frontend"
    },
    ("dynamodb", "GetItem"): TABLE,
    ("dynamodb", "PutItem"): TABLE,
    ("dynamodb", "DeleteItem"): TABLE,
    ("dynamodb", "UpdateItem"): TABLE,
    ("dynamodb", "Query"): TABLE,
    ("dynamodb", "BatchGetItem"): {"RequestItems": {"dynamo-state": {"Keys": []}}},
    ("autoscaling", "DescribeAutoScalingGroups"): {"AutoScalingGroupNames": ["dynamo-gpu"]},
    ("autoscaling", "SetDesiredCapacity"): {"AutoScalingGroupName": "dynamo-gpu", "DesiredCapacity": 2},
    ("autoscaling", "SetInstanceProtection"): GROUP,
    ("autoscaling", "UpdateAutoScalingGroup"): {"AutoScalingGroupName": "dynamo-gpu", "MinSize": 0},
    ("autoscaling", "CompleteLifecycleAction"): {
        "AutoScalingGroupName": "dynamo-gpu",
        "LifecycleHookName": "h",
    },
    ("cloudwatch", "GetMetricData"): {"MetricDataQueries": []},
    ("cloudwatch", "PutMetricData"): {"Namespace": "DynamoEcs", "MetricData": []},
    ("events", "PutEvents"): {
        "Entries": [{"Source": "dynamo-ecs.collector", "DetailType": "x", "Detail": "{}"}]
    },
    ("logs", "GetLogEvents"): {"logGroupName": "/ecs/dynamo-frontend", "logStreamName": "frontend/x/1"},
    ("sns", "Publish"): {"TopicArn": "arn:aws:sns:us-east-1:123456789012:alerts", "Message": "m"},
    ("ec2", "DescribeInstances"): {"InstanceIds": ["i-1"]},
    ("secretsmanager", "CreateSecret"): {
        "Name": "dynamo/planes/infra",
        "SecretString": "{}",
        "Tags": [{"Key": "dynamo-ecs:deployment", "Value": "dynamo"}],
    },
    ("secretsmanager", "GetSecretValue"): {"SecretId": "dynamo/planes/infra"},
    ("secretsmanager", "DescribeSecret"): {"SecretId": "dynamo/planes/infra"},
    ("secretsmanager", "PutSecretValue"): {"SecretId": "dynamo/planes/infra", "SecretString": "{}"},
    ("secretsmanager", "DeleteSecret"): {"SecretId": "dynamo/planes/infra"},
    ("secretsmanager", "TagResource"): {"SecretId": "dynamo/planes/infra", "Tags": []},
}
# Authorized on "*" although IAM lists a resource type: ECS authorizes ListTasks on a container
# instance only when the request names one; a cluster's tasks are scoped by ecs:cluster.
STAR_DESPITE_RESOURCE_TYPE = {"ecs:ListTasks"}


def _arn_pattern(arn_format: str) -> re.Pattern[str]:
    parts = re.split(r"\$\{[^}]+\}", arn_format)
    return re.compile("^" + "[^ ]+".join(re.escape(p) for p in parts) + "$")


def _requests() -> list[tuple[str, AuthorizationRequest]]:
    found = []
    for (service, operation), params in SAMPLES.items():
        for request in authorization_requests(service, operation, params, SITE):
            found.append((f"{service}:{operation}", request))
    return found


def test_every_operation_has_a_sample() -> None:
    assert set(SAMPLES) == set(OPERATIONS)


@pytest.mark.parametrize(
    ("call", "request_"), _requests(), ids=lambda v: v if isinstance(v, str) else v.action
)
def test_request_is_one_iam_defines(call: str, request_: AuthorizationRequest) -> None:
    service, action = request_.action.split(":")
    info = get_privilege_info(service, action)  # raises for an action IAM does not have
    types = {name: t for name, t in info["resource_types"].items() if name}
    resources = info["service_resources"]
    if request_.resource == "*":
        required = [name for name, t in types.items() if t["required"]]
        assert not required or request_.action in STAR_DESPITE_RESOURCE_TYPE, (
            f"{call}: {request_.action} is authorized on {required}, not on *"
        )
    else:
        formats = [resources[name]["arn"] for name in types if name in resources]
        assert any(_arn_pattern(f).match(request_.resource) for f in formats), (
            f"{call}: {request_.resource} is none of {request_.action}'s resource types {formats}"
        )
    keys = {k for t in info["resource_types"].values() for k in t["condition_keys"]}
    for key in request_.context:
        assert key.startswith("aws:") or key in keys, (
            f"{call}: {request_.action} takes no condition key {key}"
        )


def test_an_unmapped_call_is_refused() -> None:
    with pytest.raises(UnmappedCallError, match="ecs:RunTask has no IAM mapping"):
        authorization_requests("ecs", "RunTask", {}, SITE)


def test_passing_roles_and_tagging_at_creation_are_authorized_too() -> None:
    params = SAMPLES[("ecs", "RegisterTaskDefinition")]
    actions = [r.action for r in authorization_requests("ecs", "RegisterTaskDefinition", params, SITE)]
    assert actions == ["ecs:RegisterTaskDefinition", "iam:PassRole", "iam:PassRole", "ecs:TagResource"]


def test_publishing_to_an_encrypted_topic_needs_its_key_through_sns() -> None:
    requests = authorization_requests("sns", "Publish", SAMPLES[("sns", "Publish")], SITE)
    kms = [r for r in requests if r.action.startswith("kms:")]
    assert {r.resource for r in kms} == {"arn:aws:kms:us-east-1:123456789012:key/k-1"}
    assert all(r.context == {"kms:ViaService": "sns.us-east-1.amazonaws.com"} for r in kms)
