"""What IAM authorizes for each AWS API call the operator's functions make.

One entry per operation: the IAM action, the resource ARNs the request names, and the
condition keys the request carries (Service Authorization Reference, per service: "Actions
defined by ..."). Some calls are authorized as more than one action: RegisterTaskDefinition
passes its roles (``iam:PassRole``), a call that tags at creation needs ``ecs:TagResource``,
and publishing to a topic encrypted with a customer key needs that key (SNS calls KMS on the
caller's behalf). An operation with no entry here is refused, so a new call cannot go
unchecked: add its entry, and its permission to the function's role.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from devtools.iam_check.evaluate import AuthorizationRequest


class UnmappedCallError(LookupError):
    """An AWS call with no entry in `OPERATIONS`."""


@dataclass(frozen=True)
class CallSite:
    """Where the call goes: the account and region, and what the stack knows of its resources."""

    region: str
    account: str
    # topic ARN -> the KMS key ARN (or pattern) that encrypts it
    encrypted_topics: Mapping[str, str]


Mapper = Callable[[Mapping[str, Any], CallSite], list[AuthorizationRequest]]


def _arn(site: CallSite, service: str, rest: str) -> str:
    return f"arn:aws:{service}:{site.region}:{site.account}:{rest}"


def _cluster_arn(params: Mapping[str, Any], site: CallSite) -> str:
    cluster = str(params.get("cluster") or "default")
    return cluster if cluster.startswith("arn:") else _arn(site, "ecs", f"cluster/{cluster}")


def _cluster_name(params: Mapping[str, Any], site: CallSite) -> str:
    return _cluster_arn(params, site).rsplit("/", 1)[-1]


def _ecs_child(kind: str, value: str, params: Mapping[str, Any], site: CallSite) -> str:
    """A task, service or container instance ARN from what the request names (ARN or id)."""
    if value.startswith("arn:"):
        return value
    return _arn(site, "ecs", f"{kind}/{_cluster_name(params, site)}/{value}")


def _on_resource(
    action: str,
    resource: Callable[[Mapping[str, Any], CallSite], list[str]],
    context: Callable[[Mapping[str, Any], CallSite], dict[str, Any]] | None = None,
) -> Mapper:
    def mapper(params: Mapping[str, Any], site: CallSite) -> list[AuthorizationRequest]:
        extra = context(params, site) if context else {}
        return [AuthorizationRequest(action, arn, extra) for arn in resource(params, site)]

    return mapper


def _anywhere(
    action: str, context: Callable[[Mapping[str, Any], CallSite], dict[str, Any]] | None = None
) -> Mapper:
    """An action without resource-level permissions: IAM authorizes it on ``*``."""
    return _on_resource(action, lambda _p, _s: ["*"], context)


def _ecs_children(action: str, kind: str, key: str, many: bool) -> Mapper:
    def resources(params: Mapping[str, Any], site: CallSite) -> list[str]:
        values = params.get(key) or []
        names = list(values) if many else [values]
        return [_ecs_child(kind, str(v), params, site) for v in names]

    return _on_resource(action, resources, lambda p, s: {"ecs:cluster": _cluster_arn(p, s)})


def _tables(params: Mapping[str, Any], site: CallSite) -> list[str]:
    if "TableName" in params:
        names = [params["TableName"]]
    elif "RequestItems" in params:
        names = list(params["RequestItems"])
    else:
        names = [item[kind]["TableName"] for item in params.get("TransactItems", []) for kind in item]
    return [n if str(n).startswith("arn:") else _arn(site, "dynamodb", f"table/{n}") for n in names]


def _dynamodb(action: str) -> Mapper:
    return _on_resource(action, _tables)


def _group_arn(params: Mapping[str, Any], site: CallSite) -> list[str]:
    # The ARN carries the group's id, which the request does not name; policies scope groups by
    # name (``autoScalingGroup:*:autoScalingGroupName/NAME``), so any id stands in for it.
    name = params.get("AutoScalingGroupName", "")
    return [
        _arn(
            site,
            "autoscaling",
            f"autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/{name}",
        )
    ]


def _register_task_definition(params: Mapping[str, Any], site: CallSite) -> list[AuthorizationRequest]:
    family = params.get("family", "")
    revision = _arn(site, "ecs", f"task-definition/{family}:*")  # the revision the call creates
    found = [AuthorizationRequest("ecs:RegisterTaskDefinition", revision)]
    for key in ("taskRoleArn", "executionRoleArn"):
        if params.get(key):
            found.append(
                AuthorizationRequest(
                    "iam:PassRole", str(params[key]), {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
                )
            )
    if params.get("tags"):
        found.append(
            AuthorizationRequest("ecs:TagResource", revision, {"ecs:CreateAction": "RegisterTaskDefinition"})
        )
    return found


def _create_service(params: Mapping[str, Any], site: CallSite) -> list[AuthorizationRequest]:
    service = _ecs_child("service", str(params.get("serviceName", "")), params, site)
    cluster = {"ecs:cluster": _cluster_arn(params, site)}
    found = [AuthorizationRequest("ecs:CreateService", service, cluster)]
    if params.get("tags"):
        found.append(AuthorizationRequest("ecs:TagResource", service, {"ecs:CreateAction": "CreateService"}))
    if params.get("role"):
        found.append(
            AuthorizationRequest(
                "iam:PassRole", str(params["role"]), {"iam:PassedToService": "ecs.amazonaws.com"}
            )
        )
    return found


def _publish(params: Mapping[str, Any], site: CallSite) -> list[AuthorizationRequest]:
    topic = str(params.get("TopicArn") or params.get("TargetArn") or "")
    found = [AuthorizationRequest("sns:Publish", topic)]
    key = site.encrypted_topics.get(topic)
    if key:
        via = {"kms:ViaService": f"sns.{site.region}.amazonaws.com"}
        found += [
            AuthorizationRequest("kms:GenerateDataKey", key, via),
            AuthorizationRequest("kms:Decrypt", key, via),
        ]
    return found


def _put_events(params: Mapping[str, Any], site: CallSite) -> list[AuthorizationRequest]:
    found = []
    for entry in params.get("Entries", []):
        bus = str(entry.get("EventBusName") or "default")
        arn = bus if bus.startswith("arn:") else _arn(site, "events", f"event-bus/{bus}")
        context = {
            "events:source": str(entry.get("Source", "")),
            "events:detail-type": str(entry.get("DetailType", "")),
        }
        found.append(AuthorizationRequest("events:PutEvents", arn, context))
    return found


def _log_stream(params: Mapping[str, Any], site: CallSite) -> list[str]:
    return [
        _arn(
            site,
            "logs",
            f"log-group:{params.get('logGroupName', '')}:log-stream:{params.get('logStreamName', '')}",
        )
    ]


def _put_metric_data(params: Mapping[str, Any], _site: CallSite) -> list[AuthorizationRequest]:
    return [
        AuthorizationRequest(
            "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": str(params.get("Namespace", ""))}
        )
    ]


# A secret's ARN ends in a suffix Secrets Manager draws (``-`` and six characters); a request
# that names the secret by name is authorized on that ARN, so a stand-in suffix takes its place.
SECRET_ARN_SUFFIX = "-AbCdEf"  # noqa: S105 - not a password: the ARN suffix stand-in


def _secret(key: str) -> Callable[[Mapping[str, Any], CallSite], list[str]]:
    def resources(params: Mapping[str, Any], site: CallSite) -> list[str]:
        value = str(params.get(key, ""))
        return [
            value
            if value.startswith("arn:")
            else _arn(site, "secretsmanager", f"secret:{value}{SECRET_ARN_SUFFIX}")
        ]

    return resources


def _create_secret(params: Mapping[str, Any], site: CallSite) -> list[AuthorizationRequest]:
    [secret] = _secret("Name")(params, site)
    context = {"secretsmanager:Name": str(params.get("Name", ""))}
    found = [AuthorizationRequest("secretsmanager:CreateSecret", secret, context)]
    if params.get("Tags"):
        # CreateSecret with tags needs TagResource as well (Secrets Manager's API reference).
        found.append(AuthorizationRequest("secretsmanager:TagResource", secret))
    return found


OPERATIONS: dict[tuple[str, str], Mapper] = {
    # ECS
    ("ecs", "ListTasks"): _anywhere("ecs:ListTasks", lambda p, s: {"ecs:cluster": _cluster_arn(p, s)}),
    ("ecs", "DescribeTasks"): _ecs_children("ecs:DescribeTasks", "task", "tasks", many=True),
    ("ecs", "DescribeServices"): _ecs_children("ecs:DescribeServices", "service", "services", many=True),
    ("ecs", "UpdateService"): _ecs_children("ecs:UpdateService", "service", "service", many=False),
    ("ecs", "DeleteService"): _ecs_children("ecs:DeleteService", "service", "service", many=False),
    ("ecs", "CreateService"): _create_service,
    ("ecs", "DescribeContainerInstances"): _ecs_children(
        "ecs:DescribeContainerInstances", "container-instance", "containerInstances", many=True
    ),
    ("ecs", "RegisterTaskDefinition"): _register_task_definition,
    ("ecs", "DescribeTaskDefinition"): _anywhere("ecs:DescribeTaskDefinition"),
    ("ecs", "ListTaskDefinitions"): _anywhere("ecs:ListTaskDefinitions"),
    ("ecs", "DeregisterTaskDefinition"): _anywhere("ecs:DeregisterTaskDefinition"),
    ("ecs", "TagResource"): _on_resource("ecs:TagResource", lambda p, _s: [str(p.get("resourceArn", ""))]),
    # DynamoDB (the state table)
    ("dynamodb", "GetItem"): _dynamodb("dynamodb:GetItem"),
    ("dynamodb", "PutItem"): _dynamodb("dynamodb:PutItem"),
    ("dynamodb", "DeleteItem"): _dynamodb("dynamodb:DeleteItem"),
    ("dynamodb", "UpdateItem"): _dynamodb("dynamodb:UpdateItem"),
    ("dynamodb", "Query"): _dynamodb("dynamodb:Query"),
    ("dynamodb", "BatchGetItem"): _dynamodb("dynamodb:BatchGetItem"),
    # EC2 Auto Scaling (the GPU group)
    ("autoscaling", "DescribeAutoScalingGroups"): _anywhere("autoscaling:DescribeAutoScalingGroups"),
    ("autoscaling", "SetDesiredCapacity"): _on_resource("autoscaling:SetDesiredCapacity", _group_arn),
    ("autoscaling", "UpdateAutoScalingGroup"): _on_resource("autoscaling:UpdateAutoScalingGroup", _group_arn),
    ("autoscaling", "SetInstanceProtection"): _on_resource("autoscaling:SetInstanceProtection", _group_arn),
    ("autoscaling", "CompleteLifecycleAction"): _on_resource(
        "autoscaling:CompleteLifecycleAction", _group_arn
    ),
    # CloudWatch, EventBridge, Logs, SNS, EC2
    ("cloudwatch", "GetMetricData"): _anywhere("cloudwatch:GetMetricData"),
    ("cloudwatch", "PutMetricData"): _put_metric_data,
    ("events", "PutEvents"): _put_events,
    ("logs", "GetLogEvents"): _on_resource("logs:GetLogEvents", _log_stream),
    ("sns", "Publish"): _publish,
    ("ec2", "DescribeInstances"): _anywhere("ec2:DescribeInstances"),
    # Secrets Manager (the planes' credentials)
    ("secretsmanager", "CreateSecret"): _create_secret,
    ("secretsmanager", "GetSecretValue"): _on_resource("secretsmanager:GetSecretValue", _secret("SecretId")),
    ("secretsmanager", "DescribeSecret"): _on_resource("secretsmanager:DescribeSecret", _secret("SecretId")),
    ("secretsmanager", "PutSecretValue"): _on_resource("secretsmanager:PutSecretValue", _secret("SecretId")),
    ("secretsmanager", "DeleteSecret"): _on_resource("secretsmanager:DeleteSecret", _secret("SecretId")),
    ("secretsmanager", "TagResource"): _on_resource("secretsmanager:TagResource", _secret("SecretId")),
}


def authorization_requests(
    service: str, operation: str, params: Mapping[str, Any], site: CallSite
) -> list[AuthorizationRequest]:
    mapper = OPERATIONS.get((service, operation))
    if mapper is None:
        raise UnmappedCallError(
            f"{service}:{operation} has no IAM mapping: add its action, resources and condition keys "
            "(Service Authorization Reference) to devtools/iam_check/requests.py"
        )
    return mapper(params, site)
