"""Custom::DynamoPlaneCredentials in template.yaml: its properties, and its function's role covering exactly
the secrets it makes (run against moto's Secrets Manager with the stack's own properties)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from devtools.cloudformation_stub import CloudFormationStub
from devtools.handlers import load_handler_module
from devtools.template import load_template, resource
from dynamo_ecs import aws

ACCOUNT, REGION, DEPLOYMENT = "123456789012", "us-east-1", "dynamo"


@dataclass
class LambdaContext:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def resolved(value: Any) -> Any:
    """The few intrinsics these properties use, as CloudFormation resolves them for this stack."""
    if isinstance(value, dict) and value.get("Ref") == "DeploymentName":
        return DEPLOYMENT
    if isinstance(value, dict) and value.get("Ref") in load_template()["Parameters"]:
        return load_template()["Parameters"][value["Ref"]]["Default"]
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        for name, given in {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "DeploymentName": DEPLOYMENT,
        }.items():
            text = text.replace("${" + name + "}", given)
        return text
    if isinstance(value, dict) and "Fn::If" in value:
        # the stack's default layout: InfraMembers 3 (the planes on, the members' names)
        condition, yes, _no = value["Fn::If"]
        assert condition == "InfraThreeMembers", condition
        return resolved(yes)
    if isinstance(value, list):
        return [resolved(v) for v in value]
    return value


def _request(
    cloudformation: CloudFormationStub,
    request_type: str,
    props: dict[str, Any],
    old: dict[str, Any] | None = None,
    status: str = "SUCCESS",
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ResponseURL": cloudformation.url,
        "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/dynamo/1",
        "RequestId": f"r-{len(cloudformation.answers)}",
        "ResourceType": "Custom::DynamoPlaneCredentials",
        "LogicalResourceId": "PlaneCredentials",
        "PhysicalResourceId": f"{DEPLOYMENT}-plane-credentials",
        "ResourceProperties": props,
    }
    if old is not None:
        event["OldResourceProperties"] = old
    load_handler_module("plane_credentials").lambda_handler(event, LambdaContext())
    answer = cloudformation.answers[-1]
    assert answer["Status"] == status, answer
    return dict(answer.get("Data") or {"Reason": answer.get("Reason")})


def test_the_rotation_parameter_reaches_the_function_and_each_of_its_values_is_a_step_it_takes(
    aws_env: Any, cloudformation: CloudFormationStub
) -> None:
    parameter = load_template()["Parameters"]["PlaneRotationStep"]
    props = {k: resolved(v) for k, v in resource("PlaneCredentials")["Properties"].items()}
    assert resource("PlaneCredentials")["Properties"]["Rotate"] == {"Ref": "PlaneRotationStep"}
    assert parameter["Default"] == "none" and props["Rotate"] == "none"
    # The first deploy (the default) makes the secrets and rotates nothing
    assert _request(cloudformation, "Create", props)["Rotated"] == ""
    ca = aws.client("secretsmanager").get_secret_value(SecretId=f"{DEPLOYMENT}/planes/ca")["SecretString"]
    # Then each later value, in the documented order, is one step the function applies
    rotated = {
        step: _request(cloudformation, "Update", {**props, "Rotate": step})["Rotated"]
        for step in parameter["AllowedValues"]
        if step != "none"
    }
    assert list(rotated) == ["trust", "issue", "retire"]
    assert all(rotated.values()), rotated
    # and the rotation went through: the CA is a new one; "none" again changes nothing
    after = aws.client("secretsmanager").get_secret_value(SecretId=f"{DEPLOYMENT}/planes/ca")["SecretString"]
    assert after != ca
    assert _request(cloudformation, "Update", props)["Rotated"] == ""


def test_a_rollback_from_retire_rotates_nothing_and_a_new_rotation_starts_from_trust(
    aws_env: Any, cloudformation: CloudFormationStub
) -> None:
    props = {k: resolved(v) for k, v in resource("PlaneCredentials")["Properties"].items()}
    secrets = aws.client("secretsmanager")
    _request(cloudformation, "Create", props)
    # 'issue' before any 'trust' is refused (FAILED, naming the step to run first)
    refused = _request(cloudformation, "Update", {**props, "Rotate": "issue"}, {**props}, status="FAILED")
    assert "trust" in refused["Reason"]
    previous = "none"
    for step in ("trust", "issue", "retire"):
        _request(cloudformation, "Update", {**props, "Rotate": step}, {**props, "Rotate": previous})
        previous = step
    after_retire = {
        h: secrets.get_secret_value(SecretId=f"{DEPLOYMENT}/planes/{h}")["VersionId"]
        for h in ("ca", "infra", "dynamo")
    }
    # When the deploy that ran 'retire' fails and CloudFormation rolls back to 'issue'
    rolled_back = _request(
        cloudformation, "Update", {**props, "Rotate": "issue"}, {**props, "Rotate": "retire"}
    )
    # Then it answers SUCCESS and changes nothing (the code refused it before: UPDATE_ROLLBACK_FAILED)
    assert rolled_back["Rotated"] == ""
    assert after_retire == {
        h: secrets.get_secret_value(SecretId=f"{DEPLOYMENT}/planes/{h}")["VersionId"]
        for h in ("ca", "infra", "dynamo")
    }
    # and the next rotation starts from 'trust' as usual
    assert _request(cloudformation, "Update", {**props, "Rotate": "trust"}, {**props, "Rotate": "retire"})[
        "Rotated"
    ]


def test_the_maker_role_allows_exactly_the_secrets_the_custom_resource_makes(
    aws_env: Any, cloudformation: CloudFormationStub
) -> None:
    props = {k: resolved(v) for k, v in resource("PlaneCredentials")["Properties"].items()}
    assert props["Deployment"] == DEPLOYMENT and props["ServiceTimeout"] > 120  # the function's timeout
    [statement] = resource("PlaneCredentialsFunction")["Properties"]["Policies"][0]["Statement"]
    allowed = resolved(statement["Resource"])
    # When the handler runs with the stack's properties
    event = {
        "RequestType": "Create",
        "ResponseURL": cloudformation.url,
        "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/dynamo/1",
        "RequestId": "r",
        "ResourceType": "Custom::DynamoPlaneCredentials",
        "LogicalResourceId": "PlaneCredentials",
        "ResourceProperties": props,
    }
    load_handler_module("plane_credentials").lambda_handler(event, LambdaContext())
    assert cloudformation.answers[-1]["Status"] == "SUCCESS", cloudformation.answers[-1]
    # Then every secret it made is inside the role's one resource pattern, and nothing else would be
    made = [s["ARN"] for s in aws.client("secretsmanager").list_secrets()["SecretList"]]
    assert len(made) == 4
    assert all(fnmatch.fnmatchcase(arn, allowed) for arn in made), (allowed, made)
    assert not fnmatch.fnmatchcase(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ngc-AbCdEf", allowed)
    assert not fnmatch.fnmatchcase(
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:other/planes/ca-x", allowed
    )
    assert set(statement["Action"]) == {
        "secretsmanager:CreateSecret",
        "secretsmanager:TagResource",
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:DeleteSecret",
    }
