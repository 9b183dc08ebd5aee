"""ModelWeightsS3Uri: what the stack grants and hands the operator, resolved by moto's CloudFormation.

CloudFormation has no substring function, so the bucket and prefix are cut from the URI with
Split/Select/Join (template.yaml); these tests create the stack for URIs of every depth the
parameter allows and read back the GPU instance role's policy and the custom resource's
``ModelWeightsDir``, as the stack resolved them.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import boto3
import pytest

from devtools.services import MotoServer
from devtools.template import load_template
from dynamo_ecs.endpoints.gpu_services import parse_properties
from tests.template.stack import (
    create_stack,
    fresh_account,
    moto_stack_template,
    transformed_template,
)

pytestmark = pytest.mark.xdist_group("moto-stack")

PATTERN = re.compile(load_template()["Parameters"]["ModelWeightsS3Uri"]["AllowedPattern"])


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "s3://my-models/Qwen3-0.6B",
        "s3://my.models-1/hf/Qwen/Qwen3-0.6B",
        "s3://b12/" + "/".join("abcdefgh"),
    ],
)
def test_the_parameter_takes_a_bucket_and_a_prefix_of_1_to_8_parts(uri: str) -> None:
    assert PATTERN.match(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://my-models",  # no prefix: the instance may not read a whole bucket
        "s3://my-models/",
        "s3://my-models/Qwen3-0.6B/",  # a trailing slash would empty a '/'-part
        "s3://my-models//Qwen3-0.6B",
        "s3://my-models/../etc",
        "s3://my-models/.hidden",
        "s3://My-Models/Qwen3-0.6B",  # bucket names are lower case
        "https://my-models.s3.amazonaws.com/Qwen3-0.6B",
        "s3://my-models/" + "/".join("abcdefghi"),  # 9 parts: more than the template cuts
        "s3://my-models/Qwen 3",
    ],
)
def test_the_parameter_refuses_anything_else(uri: str) -> None:
    assert not PATTERN.match(uri)


def created(moto: MotoServer, uri: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The warm-up policy's statements and the custom resource's properties, as the stack resolved them."""
    full = transformed_template()
    with fresh_account(moto) as parameters:
        given = {**parameters, "ModelWeightsS3Uri": uri}
        template = moto_stack_template(full, given)
        cfn = boto3.client("cloudformation")
        stack = create_stack(cfn, "dynamo", template, given)
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        summaries = cfn.list_stack_resources(StackName="dynamo")["StackResourceSummaries"]
        role = next(s["PhysicalResourceId"] for s in summaries if s["LogicalResourceId"] == "GpuInstanceRole")
        document = boto3.client("iam").get_role_policy(RoleName=role, PolicyName="warm-up")["PolicyDocument"]
    if isinstance(document, str):  # moto hands an inline policy back as Python's repr
        document = ast.literal_eval(document)
    # AWS::NoValue leaves no statement; moto keeps a None in its place
    statements: list[dict[str, Any]] = [dict(s) for s in document["Statement"] if s is not None]
    properties = {k.removeprefix("Prop"): v for k, v in outputs.items() if k.startswith("Prop")}
    return statements, properties


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://my-models/Qwen3-0.6B", "my-models", "Qwen3-0.6B"),
        ("s3://my.models-1/hf/Qwen/Qwen3-0.6B", "my.models-1", "hf/Qwen/Qwen3-0.6B"),
        ("s3://b12/" + "/".join("abcdefgh"), "b12", "/".join("abcdefgh")),
    ],
    ids=["1 part", "3 parts", "8 parts"],
)
def test_the_instances_may_list_and_read_that_prefix_and_nothing_else(
    moto: MotoServer, uri: str, bucket: str, prefix: str
) -> None:
    statements, properties = created(moto, uri)
    s3 = [s for s in statements if any(str(a).startswith("s3:") for a in [s["Action"]])]
    assert s3 == [
        {
            "Sid": "ListTheModelWeights",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{bucket}",
            "Condition": {"StringLike": {"s3:prefix": f"{prefix}/*"}},
        },
        {
            "Sid": "ReadTheModelWeights",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*",
        },
    ]
    # and the operator is told the instance directory the user data copies it to
    assert properties["ModelWeightsDir"] == f"/var/lib/dynamo-ecs/model/{bucket}/{prefix}"
    assert parse_properties(properties).model_weights_dir == properties["ModelWeightsDir"]


def test_without_the_parameter_nothing_of_s3_is_granted_or_mounted(moto: MotoServer) -> None:
    statements, properties = created(moto, "")
    assert [s["Sid"] for s in statements] == ["PullTheDynamoImage", "CompleteTheLaunchHook"]
    assert "ModelWeightsDir" not in properties
    assert parse_properties(properties).model_weights_dir is None
