"""template.yaml as CloudFormation sees it: the SAM transform done locally, ready for moto.

moto's CloudFormation ignores ``Transform: AWS::Serverless-2016-10-31``, so the template is
translated here with samtranslator (as ``sam deploy`` has CloudFormation do), with the local
``CodeUri``/``ContentUri`` paths replaced by one S3 object, as ``sam package`` would.
"""

from __future__ import annotations

import copy
import io
import zipfile
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from devtools.template import load_template

ARTIFACT_BUCKET = "dynamo-ecs-artifacts"
ARTIFACT_KEY = "code.zip"


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
