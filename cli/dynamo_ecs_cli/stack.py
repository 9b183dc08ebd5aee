"""AWS access for the command line: a session like the AWS CLI's, and the stack's outputs.

``--profile`` and ``--region`` work as in the AWS CLI (and so do ``AWS_PROFILE``,
``AWS_REGION``, ``AWS_ENDPOINT_URL``). The deployment is found through its CloudFormation
stack: the outputs name the clusters, services, table, topic and functions, the parameters
say how it was deployed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# Outputs of template.yaml the command reads (tests check that the template has each).
OUTPUTS_USED = (
    "InfraClusterName",
    "InfraServiceName",
    "GpuClusterName",
    "FrontendServiceName",
    "PrefillServiceName",
    "StateTableName",
    "RedeployFunctionName",
    "EtcdMaintenanceTaskFamily",  # three-member tier only (etcd_maintenance.FAMILY_OUTPUT)
)


class AwsUnavailableError(Exception):
    """AWS could not answer: no credentials, no such stack, access denied (exit code 3)."""


def aws_error_text(exc: Exception, limit: int = 240) -> str:
    """One line: the error code and message (an HTML error page is cut short)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        text = f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Aws:
    """Clients from one session (profile and region as the AWS CLI takes them)."""

    profile: str | None = None
    region: str | None = None
    _session: Any = field(default=None, repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def session(self) -> Any:
        if self._session is None:
            try:
                self._session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
            except BotoCoreError as exc:
                raise AwsUnavailableError(aws_error_text(exc)) from exc
        return self._session

    def client(self, service: str) -> Any:
        if service not in self._clients:
            config = Config(
                retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=30
            )
            try:
                self._clients[service] = self.session.client(service, config=config)
            except BotoCoreError as exc:  # e.g. no region
                raise AwsUnavailableError(
                    f"{aws_error_text(exc)} (pass --region or set AWS_REGION / a profile's region)"
                ) from exc
        return self._clients[service]

    @property
    def region_name(self) -> str:
        return str(self.client("sts").meta.region_name)


@dataclass(frozen=True)
class Stack:
    name: str
    status: str
    outputs: dict[str, str]
    parameters: dict[str, str]  # as given (an SSM parameter type: the parameter's name)
    resolved: dict[str, str] = field(default_factory=dict)  # SSM parameter types: the value it resolved to

    @property
    def deployment(self) -> str:
        return self.parameters.get("DeploymentName", "dynamo")

    def output(self, key: str) -> str:
        if key not in self.outputs:
            raise AwsUnavailableError(
                f"stack {self.name!r} has no output {key}: is it a dynamo-ecs-operator stack "
                f"(status {self.status})?"
            )
        return self.outputs[key]


def find_stack(aws: Aws, name: str) -> Stack | None:
    """The stack, or None when it does not exist (yet)."""
    try:
        answer = aws.client("cloudformation").describe_stacks(StackName=name)
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if "does not exist" in message:
            return None
        raise AwsUnavailableError(aws_error_text(exc)) from exc
    except BotoCoreError as exc:
        raise AwsUnavailableError(aws_error_text(exc)) from exc
    [stack] = answer["Stacks"]
    return Stack(
        name=name,
        status=stack["StackStatus"],
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])},
        resolved={
            p["ParameterKey"]: p["ResolvedValue"] for p in stack.get("Parameters", []) if "ResolvedValue" in p
        },
    )


def require_stack(aws: Aws, name: str) -> Stack:
    stack = find_stack(aws, name)
    if stack is None:
        raise AwsUnavailableError(
            f"stack {name!r} does not exist in {aws.region_name}: "
            "pass --stack NAME (and --region) of a deployed stack"
        )
    return stack


def described_tasks(ecs: Any, cluster: str, **filters: str) -> list[dict[str, Any]]:
    """Every task of ``cluster`` that ListTasks answers for ``filters`` (all pages), described
    (DescribeTasks takes at most 100 tasks a call)."""
    arns: list[str] = []
    for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, **filters):
        arns.extend(page.get("taskArns", []))
    described: list[dict[str, Any]] = []
    for start in range(0, len(arns), 100):
        described.extend(ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])["tasks"])
    return described


def running_service_tasks(ecs: Any, cluster: str, service: str) -> list[dict[str, Any]]:
    """The described RUNNING tasks of one ECS service of ``cluster``.

    ListTasks' ``serviceName`` filter is not trusted alone (moto ignores it and answers every
    task of the cluster): a service's tasks carry its group, ``service:<name>``, which AWS sets
    too, and that decides.
    """
    described = described_tasks(ecs, cluster, serviceName=service, desiredStatus="RUNNING")
    return [t for t in described if t.get("group") == f"service:{service}"]
