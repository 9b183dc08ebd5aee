"""Each function's identity policies, as the deployed stack gives them to its role.

Read from the template after the Serverless transform (the role SAM makes for a function,
its inline policies and the managed policies it attaches), with every intrinsic evaluated
for one deployment (`devtools.iam_check.resolve`). The names the stack hands a function
through its environment (the state table, the clusters, the alert topic) come from that
function's configuration, so a test's world is checked against the stack that would run it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from typing import Any

from devtools.iam_check.resolve import Deployment
from dynamo_ecs.config import ENV_PREFIX, DeploymentConfig

# The AWS managed policies SAM attaches to the functions' roles, with the statements AWS
# publishes for them (IAM console, "AWS managed policies"). Our code calls none of these
# actions itself; the Lambda service and the X-Ray SDK do.
AWS_MANAGED_POLICIES: dict[str, dict[str, Any]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ]
    },
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                ],
                "Resource": "*",
            }
        ]
    },
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeSubnets",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                "Resource": "*",
            }
        ]
    },
}


@cache
def _transformed() -> dict[str, Any]:
    from devtools.moto_stack import transformed_template

    return transformed_template()


def transformed_template() -> dict[str, Any]:
    """The transformed template (made once per process; callers get their own copy)."""
    return copy.deepcopy(_transformed())


@cache
def function_logical_ids() -> dict[str, str]:
    """``functions/<name>/`` -> the function's logical id, from the SAM template's CodeUri."""
    from devtools.template import load_template  # devtools.template imports the handler loader

    found = {}
    for logical_id, resource in load_template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            code_uri = str(resource["Properties"]["CodeUri"]).rstrip("/")
            found[code_uri.rsplit("/", 1)[-1]] = logical_id
    return found


def _config_value(config: DeploymentConfig, variable: str) -> Any:
    value: Any = config
    for part in variable.removeprefix(ENV_PREFIX).lower().split("__"):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _wired_variables() -> list[tuple[str, Any]]:
    """Every (variable, value) the SAM template sets in a function's environment, globals first."""
    from devtools.template import load_template  # devtools.template imports the handler loader

    sam = load_template()
    found = list(
        sam.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}).items()
    )
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            found += resource["Properties"].get("Environment", {}).get("Variables", {}).items()
    return found


def deployment_for(
    config: DeploymentConfig, template: Mapping[str, Any] | None = None, region: str = "us-east-1"
) -> Deployment:
    """The stack that runs a function configured as ``config``.

    ``DeploymentName`` is the config's deployment; every resource the template hands the
    functions in their environment (``!Ref X``, or ``!GetAtt X.Arn``) is named as the config
    names it.
    """
    template = template if template is not None else _transformed()
    resources = template.get("Resources", {})
    physical_ids: dict[str, str] = {}
    for variable, value in _wired_variables():
        if not isinstance(value, dict) or len(value) != 1:
            continue
        ((function, argument),) = value.items()
        if function == "Ref":
            logical_id = argument
        elif function == "Fn::GetAtt" and isinstance(argument, list) and argument[1] == "Arn":
            logical_id = argument[0]
        else:
            continue
        configured = _config_value(config, variable) if logical_id in resources else None
        if configured is not None:
            physical_ids[logical_id] = str(configured)
    return Deployment(
        template=template,
        parameters={"DeploymentName": config.deployment},
        region=region,
        physical_ids=physical_ids,
    )


def function_policies(function: str, deployment: Deployment) -> list[dict[str, Any]]:
    """The policy documents of ``function``'s role (``functions/<function>``) in ``deployment``."""
    logical_ids = function_logical_ids()
    if function not in logical_ids:
        raise KeyError(f"template.yaml has no function with CodeUri functions/{function}/")
    resources = deployment.template["Resources"]
    role = resources[f"{logical_ids[function]}Role"]["Properties"]
    documents: list[dict[str, Any]] = []
    for policy in role.get("Policies", []):
        documents.append(deployment.resolve(policy["PolicyDocument"]))
    for arn in role.get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and set(arn) == {"Ref"} and arn["Ref"] in resources:
            documents.append(deployment.resolve(resources[arn["Ref"]]["Properties"]["PolicyDocument"]))
            continue
        resolved = deployment.resolve(arn)
        if resolved not in AWS_MANAGED_POLICIES:
            raise KeyError(
                f"{function}: managed policy {resolved} is not modelled in devtools/iam_check/roles.py"
            )
        documents.append(AWS_MANAGED_POLICIES[resolved])
    return documents


def encrypted_topics(deployment: Deployment) -> dict[str, str]:
    """Topic ARN -> its KMS key's ARN, for the stack's topics with a customer key."""
    found = {}
    for logical_id, resource in deployment.template["Resources"].items():
        key = (
            resource.get("Properties", {}).get("KmsMasterKeyId")
            if resource["Type"] == "AWS::SNS::Topic"
            else None
        )
        if isinstance(key, dict) and set(key) == {"Ref"}:
            found[deployment.ref(logical_id)] = deployment.arn(key["Ref"])
    return found
