"""template.yaml as CloudFormation sees it: the SAM transform done locally, ready for moto.

moto's CloudFormation ignores ``Transform: AWS::Serverless-2016-10-31``, so the template is
translated here with samtranslator (as ``sam deploy`` has CloudFormation do), with the local
``CodeUri``/``ContentUri`` paths replaced by one S3 object, as ``sam package`` would.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from devtools.services import MotoServer, aws_test_environment
from devtools.template import load_template

ARTIFACT_BUCKET = "dynamo-ecs-artifacts"
ARTIFACT_KEY = "code.zip"

# Resource types of template.yaml that moto's CloudFormation (5.2) does not create, and why
# the stack is still sound without them on moto.
MOTO_CANNOT_CREATE = {
    "AWS::CloudWatch::Alarm": "skipped by moto CloudFormation; test_template_structure.py checks them",
    "AWS::ECS::CapacityProvider": "no CloudFormation model in moto (the ECS API has one)",
    "AWS::ECS::ClusterCapacityProviderAssociations": "no CloudFormation model in moto",
    "AWS::Lambda::EventInvokeConfig": "no CloudFormation model in moto",
    "AWS::SNS::Subscription": "no CloudFormation model in moto (a Topic's inline Subscription only)",
    "AWS::SNS::TopicPolicy": "no CloudFormation model in moto",
    "AWS::SQS::QueuePolicy": "no CloudFormation model in moto",
}
# Not a moto gap: creating it invokes the bootstrap function, and moto runs Lambda in Docker.
# The function's logic is tested against moto in tests/integration (the properties are
# checked below against the parser the function uses).
INVOKES_LAMBDA = {"Custom::DynamoGpuServices"}
# Properties moto's CloudFormation accepts but does not apply (checked on the template itself in
# test_template_structure.py): security groups' inline egress rules, the table's TTL, the ECS
# service's LaunchType and NetworkConfiguration, the task definition's Cpu, Memory and NetworkMode, the
# functions' Layers; and it hands Number parameters to Lambda
# environments and conditions as numbers (so `PrefillMin = "0"` would not be equal to "0").

NGC_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ngc-login-AbCdEf"
PARAMETERS = {
    "DeploymentName": "dynamo",
    "NgcSecretArn": NGC_SECRET,
    "AlarmEmail": "ops@example.com",
    "FrontendMax": "6",
    "PrefillMin": "2",
    "FrontendTtftP90Ms": "400",
    "PrefillJetStreamLagPerReplica": "12",
    "FrontendGpuUtilizationPct": "off",
}
CUSTOM_RESOURCE_ID = "GpuServices"


def packaged_template() -> dict[str, Any]:
    """The SAM template with every local code path pointing at the artifact in S3."""
    template = copy.deepcopy(load_template())
    uri = f"s3://{ARTIFACT_BUCKET}/{ARTIFACT_KEY}"
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = uri
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = uri
    return template


def transformed_template(region: str = "us-east-1") -> dict[str, Any]:
    """Plain CloudFormation: what the Serverless transform turns template.yaml into."""
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=region))
    result: dict[str, Any] = translator.translate(packaged_template(), {}, get_managed_policy_map=dict)
    return result


def artifact_zip() -> bytes:
    """A tiny deployment package: moto stores it, never runs it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return None\n")
    return buffer.getvalue()


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
                found.extend((logical_id, s) for s in document["Statement"])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def network() -> dict[str, str]:
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in enumerate("ab")
    ]
    return {
        "VpcId": vpc,
        "TaskSubnetIds": ",".join(subnets),
        "LoadBalancerSubnetIds": ",".join(subnets),
    }


def without(template: dict[str, Any], types: set[str]) -> dict[str, Any]:
    trimmed = copy.deepcopy(template)
    trimmed["Resources"] = {k: v for k, v in trimmed["Resources"].items() if v["Type"] not in types}
    for resource in trimmed["Resources"].values():
        if "DependsOn" in resource:
            depends = (
                resource["DependsOn"] if isinstance(resource["DependsOn"], list) else [resource["DependsOn"]]
            )
            resource["DependsOn"] = [d for d in depends if d in trimmed["Resources"]]
    return trimmed


def stand_in_for_missing(value: Any, template: dict[str, Any]) -> Any:
    """A ``Ref`` to a resource moto cannot create becomes a marked literal."""
    if isinstance(value, dict):
        ref = value.get("Ref")
        known = set(template["Resources"]) | set(template.get("Parameters", {}))
        if isinstance(ref, str) and not ref.startswith("AWS::") and ref not in known:
            return f"not-on-moto:{ref}"
        return {k: stand_in_for_missing(v, template) for k, v in value.items()}
    if isinstance(value, list):
        return [stand_in_for_missing(v, template) for v in value]
    return value


def with_property_outputs(template: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """Outputs that echo a resource's properties, so moto resolves their intrinsics for us."""
    echoed = copy.deepcopy(template)
    for name, value in properties.items():
        if name != "ServiceToken":
            echoed["Outputs"][f"Prop{name}"] = {"Value": stand_in_for_missing(value, template)}
    return echoed


def create_stack(cfn: Any, name: str, template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return stack


@contextlib.contextmanager
def fresh_account(moto: MotoServer) -> Iterator[dict[str, str]]:
    """A reset moto account with the code artifact and a VPC; yields the stack parameters."""
    moto.reset()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in aws_test_environment(moto.url).items():
            patch.setenv(key, value)
        patch.setenv("AWS_MAX_ATTEMPTS", "1")  # moto's 500s are answers here, not flakes
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=ARTIFACT_KEY, Body=artifact_zip())
        yield {**PARAMETERS, **network()}
