"""Read template.yaml so tests and the demo build resources from the template's own properties."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from devtools.handlers import ROOT
from devtools.services import STACK_GPU_EXECUTION_ROLE_ARN, STACK_GPU_TASK_ROLE_ARN

TEMPLATE_PATH = ROOT / "template.yaml"


@cache
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as a dict; intrinsic functions (``!Ref`` ...) become ``{"Ref": ...}``."""
    from samtranslator.yaml_helper import yaml_parse

    result: dict[str, Any] = yaml_parse(path.read_text())
    return result


def resource(logical_id: str) -> dict[str, Any]:
    resources: dict[str, Any] = load_template()["Resources"]
    if logical_id not in resources:
        raise KeyError(f"template.yaml has no resource {logical_id}")
    found: dict[str, Any] = resources[logical_id]
    return found


def resources_of_type(resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in load_template()["Resources"].items() if v["Type"] == resource_type}


def ingress_rules(group: str) -> list[dict[str, Any]]:
    """A security group's ingress rules: inline ones and ``AWS::EC2::SecurityGroupIngress`` resources."""
    rules = list(resource(group)["Properties"].get("SecurityGroupIngress", []))
    for rule in resources_of_type("AWS::EC2::SecurityGroupIngress").values():
        if rule["Properties"]["GroupId"] == {"Ref": group}:
            rules.append(rule["Properties"])
    return rules


def create_state_table(table_name: str) -> None:
    """Create the state table on the current endpoint with the template's key schema and TTL."""
    from dynamo_ecs import aws

    props = resource("StateTable")["Properties"]
    client = aws.client("dynamodb")
    client.create_table(
        TableName=table_name,
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        BillingMode=props["BillingMode"],
    )
    ttl = props["TimeToLiveSpecification"]
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": ttl["Enabled"]},
    )


def gpu_user_data(values: dict[str, str]) -> str:
    """The GPU launch template's user data as CloudFormation's ``Fn::Sub`` renders it.

    ``values``: ``${Name}`` -> value for each reference (parameters, ``GpuCluster``,
    ``AWS::Region``); ``${!x}`` becomes the literal ``${x}`` as in CloudFormation.
    """
    data = resource("GpuLaunchTemplate")["Properties"]["LaunchTemplateData"]
    script: str = data["UserData"]["Fn::Base64"]["Fn::Sub"]
    for name, value in values.items():
        script = script.replace("${" + name + "}", value)
    return script.replace("${!", "${")


def shell_function(script: str, name: str) -> str:
    """The text of shell function ``name`` in ``script``: from ``name() {`` to its closing ``}``."""
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{name}() {{")
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    end = next(i for i in range(start + 1, len(lines)) if lines[i] == f"{indent}}}")
    return "\n".join(lines[start : end + 1]) + "\n"


def sample_gpu_services_properties(**overrides: str) -> dict[str, str]:
    """``Custom::DynamoGpuServices`` properties as a stack with the default image and model sends them."""
    return {
        "Image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
        "Model": "Qwen/Qwen3-0.6B",
        "ExecutionRoleArn": STACK_GPU_EXECUTION_ROLE_ARN,
        "TaskRoleArn": STACK_GPU_TASK_ROLE_ARN,
        "FrontendLogGroup": "/ecs/dynamo-frontend",
        "PrefillLogGroup": "/ecs/dynamo-prefill",
        **overrides,
    }
