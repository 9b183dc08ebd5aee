"""The local ECS resolves a container's ``secrets`` from Secrets Manager (moto server) as the agent does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtools.local_ecs.containers import LocalTaskLayout
from devtools.local_ecs.programs import Toolbox
from devtools.local_ecs.secrets import SecretResolutionError, resolve_secret
from dynamo_ecs import aws


def make_secret(value: str) -> str:
    return str(
        aws.client("secretsmanager").create_secret(Name="dynamo/planes/dynamo", SecretString=value)["ARN"]
    )


def test_a_json_key_or_the_whole_secret(aws_env: Any) -> None:
    arn = make_secret(json.dumps({"nats_user": "dynamo", "client_key": "-----BEGIN PRIVATE KEY-----\nx\n"}))
    assert resolve_secret(f"{arn}:nats_user::") == "dynamo"
    assert resolve_secret(f"{arn}:client_key:AWSCURRENT:") == "-----BEGIN PRIVATE KEY-----\nx\n"
    assert json.loads(resolve_secret(arn))["nats_user"] == "dynamo"


@pytest.mark.parametrize(
    ("suffix", "reason"), [(":missing::", "no JSON key 'missing'"), ("-gone", "no such secret")]
)
def test_an_unresolvable_reference_stops_the_task_naming_it(aws_env: Any, suffix: str, reason: str) -> None:
    arn = make_secret(json.dumps({"a": "b"}))
    with pytest.raises(SecretResolutionError, match=reason):
        resolve_secret(arn + suffix)


def test_a_parameter_store_reference_is_named_as_not_resolved_here(aws_env: Any) -> None:
    with pytest.raises(SecretResolutionError, match="only Secrets Manager"):
        resolve_secret("arn:aws:ssm:us-east-1:123456789012:parameter/x")


def test_the_containers_environment_carries_its_secrets(aws_env: Any, tmp_path: Path) -> None:
    arn = make_secret(json.dumps({"ca_bundle": "PEM"}))
    layout = LocalTaskLayout(root=tmp_path, address="127.32.1.5", toolbox=Toolbox(), model_dir=tmp_path)
    plan = layout.plan(
        {
            "name": "dynamo-planes-ca",
            "image": "public.ecr.aws/docker/library/busybox:1.37",
            "entryPoint": ["sh", "-c"],
            "command": ['printf "%s\\n" "$PLANES_CA" > /dynamo-planes/ca.pem'],
            "secrets": [{"name": "PLANES_CA", "valueFrom": f"{arn}:ca_bundle::"}],
            "mountPoints": [{"sourceVolume": "dynamo-planes-ca", "containerPath": "/dynamo-planes"}],
        }
    )
    assert plan.env["PLANES_CA"] == "PEM"
