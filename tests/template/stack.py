"""What the template tests share: the stack parameters, a fresh moto account, IAM readers.

The transform and the moto deployment itself live in `devtools.moto_stack` (the demo uses
them too); they are re-exported here for the tests' imports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest

from devtools.handlers import load_handler_module
from devtools.moto_stack import (
    CUSTOM_RESOURCE_ID,
    INVOKES_LAMBDA,
    MOTO_CANNOT_CREATE,
    add_capacity_provider,
    create_stack,
    network,
    stand_in_references,
    transformed_template,
    upload_artifact,
    with_plane_credentials,
    with_property_outputs,
    without,
)
from devtools.services import MotoServer, aws_test_environment
from dynamo_ecs import aws

__all__ = [
    "CUSTOM_RESOURCE_ID",
    "INVOKES_LAMBDA",
    "MOTO_CANNOT_CREATE",
    "NGC_SECRET",
    "PARAMETERS",
    "as_list",
    "create_stack",
    "fresh_account",
    "iam_statements",
    "moto_stack_template",
    "stand_in_references",
    "transformed_template",
    "with_property_outputs",
    "without",
]

NGC_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ngc-login-AbCdEf"
PARAMETERS = {
    "DeploymentName": "dynamo",
    "NgcSecretArn": NGC_SECRET,
    "AlarmEmail": "ops@example.com",
    "FrontendMax": "6",
    "PrefillMin": "2",
    "FrontendTtftMs": "400",
    "PrefillJetStreamLagPerReplica": "12",
    "JetStreamStreams": "work,events/listener",
    "FrontendGpuUtilizationPct": "off",
}


def iam_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every (resource id, statement) of the identity policies in a template (SAM or transformed)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] not in (
            "AWS::IAM::Role",
            "AWS::IAM::ManagedPolicy",
            "AWS::IAM::Policy",
            "AWS::Serverless::Function",
        ):
            continue
        documents = [props.get("PolicyDocument")]
        for policy in props.get("Policies", []):
            if isinstance(policy, dict):
                documents.append(policy.get("PolicyDocument", policy))
        for document in documents:
            if isinstance(document, dict) and "Statement" in document:
                for statement in document["Statement"]:
                    # !If [Condition, statement, AWS::NoValue]: the statement, when granted
                    if "Fn::If" in statement:
                        statement = statement["Fn::If"][1]
                    found.append((logical_id, statement))
    return found


def moto_stack_template(full: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """``full`` (the transformed template) as moto can create it with ``parameters``: the plane
    credentials made in the account (`with_plane_credentials`), the custom resource's
    properties echoed as ``Prop<Name>`` outputs (moto resolves their intrinsics)."""
    return with_property_outputs(
        without(with_plane_credentials(full, parameters)[0], set(MOTO_CANNOT_CREATE) | INVOKES_LAMBDA),
        full["Resources"][CUSTOM_RESOURCE_ID]["Properties"],
    )


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@contextlib.contextmanager
def fresh_account(moto: MotoServer) -> Iterator[dict[str, str]]:
    """A reset moto account with the code artifact and a VPC; yields the stack parameters."""
    moto.reset()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in aws_test_environment(moto.url).items():
            patch.setenv(key, value)
        patch.setenv("AWS_MAX_ATTEMPTS", "1")  # moto's 500s are answers here, not flakes
        upload_artifact(boto3.client("s3"))
        yield {**PARAMETERS, **network()}


@dataclass
class BootstrapStack:
    """The stack on moto, ready for its custom resource: what a test of the bootstrap needs."""

    full: dict[str, Any]  # the transformed template
    outputs: dict[str, str]
    physical: dict[str, str]  # logical id -> physical id
    gpu_cluster: str
    provider: str  # the capacity provider moto's CloudFormation cannot make
    properties: dict[str, Any]  # the custom resource's, as CloudFormation sends them
    bootstrap: ModuleType  # the function, loaded with the environment the stack gave it
    function_arn: str


@contextlib.contextmanager
def stack_for_bootstrap(moto: MotoServer) -> Iterator[BootstrapStack]:
    """The stack on moto (the three-member tier: the GPU tasks name its members, no task needed)
    with its capacity provider and the bootstrap function; the custom resource not created yet."""
    full = transformed_template()
    with fresh_account(moto) as parameters, pytest.MonkeyPatch.context() as patch:
        cfn: Any = boto3.client("cloudformation")
        stack = create_stack(cfn, "dynamo", moto_stack_template(full, parameters), parameters)
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        summaries = cfn.list_stack_resources(StackName="dynamo")["StackResourceSummaries"]
        physical = {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries}
        gpu_cluster = outputs["GpuClusterName"]
        provider = add_capacity_provider(full, gpu_cluster)
        properties: dict[str, Any] = {
            key.removeprefix("Prop"): value for key, value in outputs.items() if key.startswith("Prop")
        }
        properties["CapacityProvider"] = provider
        properties["ServiceToken"] = "arn:aws:lambda:us-east-1:123456789012:function:bootstrap"
        function = boto3.client("lambda").get_function_configuration(
            FunctionName=outputs["BootstrapFunctionName"]
        )
        for key, value in function["Environment"]["Variables"].items():
            patch.setenv(key, str(value))  # moto hands Number parameters over as numbers
        aws.reset_clients()
        try:
            yield BootstrapStack(
                full,
                outputs,
                physical,
                gpu_cluster,
                provider,
                properties,
                load_handler_module("bootstrap", fresh=True),
                function["FunctionArn"],
            )
        finally:
            aws.reset_clients()
