"""The plane credentials the operator adds to GPU task definitions (pure)."""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

import pytest

from dynamo_ecs.endpoints.render import PlaneCredentials, RenderContext, render_task_definition
from dynamo_ecs.endpoints.spec_validation import spec_problems
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.infra import InfraEndpoint
from dynamo_ecs.planes.gpu_credentials import (
    CA_PATH,
    CA_WRITER,
    DYNAMO_SECRETS,
    add_plane_credentials,
    secret_ref,
)
from dynamo_ecs.specs import load_default_spec

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dynamo/planes/dynamo-AbCdEf"
BUSYBOX = "public.ecr.aws/docker/library/busybox:1.37"
ENDPOINT = InfraEndpoint(task_arn="t", ip="10.0.1.5", started_at=None)
PLANES = RenderContext(ENDPOINT, "123456789012", "us-east-1", PlaneCredentials(ARN, BUSYBOX))
PLAIN = RenderContext(ENDPOINT, "123456789012", "us-east-1")


def env(container: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["value"] for v in container.get("environment", [])}


@pytest.mark.parametrize("role", ["frontend", "prefill"])
def test_rendering_with_planes_adds_secrets_tls_urls_and_the_ca_writer(
    role: Literal["frontend", "prefill"],
) -> None:
    # Given the default spec, When rendered with the planes on
    rendered = render_task_definition(load_default_spec(role), PLANES)
    dynamo, writer = rendered["containerDefinitions"]
    # Then Dynamo's container takes every credential as a secret of the Dynamo holder
    assert {s["name"]: s["valueFrom"] for s in dynamo["secrets"]} == {
        name: f"{ARN}:{key}::" for name, key in DYNAMO_SECRETS.items()
    }
    # the TLS URLs, and the CA by path from the writer's volume, once the writer succeeded
    assert env(dynamo)["ETCD_ENDPOINTS"] == "https://10.0.1.5:2379"
    assert env(dynamo)["NATS_SERVER"] == "tls://10.0.1.5:4222"
    assert env(dynamo)["NATS_TLS_CA_CERT_PATH"] == CA_PATH
    assert {"containerName": CA_WRITER, "condition": "SUCCESS"} in dynamo["dependsOn"]
    assert writer["name"] == CA_WRITER and writer["essential"] is False and writer["image"] == BUSYBOX
    assert writer["secrets"] == [{"name": "PLANES_CA", "valueFrom": secret_ref(ARN, "ca_bundle")}]
    assert writer["logConfiguration"] == dynamo["logConfiguration"]
    assert {"name": "dynamo-planes-ca"} in rendered["volumes"]
    # and no credential value anywhere: only references
    assert "PRIVATE KEY" not in json.dumps(rendered)
    # the result is a valid task definition for the operator's own checks
    assert spec_problems(rendered) == []


def test_rendering_twice_or_from_a_described_revision_gives_the_same_task_definition() -> None:
    once = render_task_definition(load_default_spec("frontend"), PLANES)
    twice = render_task_definition(copy.deepcopy(once), PLANES)
    assert twice == once


def test_without_planes_nothing_is_added() -> None:
    rendered = render_task_definition(load_default_spec("frontend"), PLAIN)
    assert len(rendered["containerDefinitions"]) == 1
    assert "secrets" not in rendered["containerDefinitions"][0]
    assert env(rendered["containerDefinitions"][0])["ETCD_ENDPOINTS"] == "http://10.0.1.5:2379"


@pytest.mark.parametrize(
    "variable", ["ETCD_AUTH_CLIENT_KEY", "NATS_AUTH_PASSWORD", "ETCD_AUTH_PASSWORD", "NATS_AUTH_TOKEN"]
)
def test_a_credential_as_a_plain_value_is_refused_naming_the_path_and_fix(variable: str) -> None:
    spec = load_default_spec("prefill")
    spec["containerDefinitions"][0]["environment"].append({"name": variable, "value": "s3cret"})
    problems = spec_problems(spec)
    assert any(
        p.startswith("$.containerDefinitions[0].environment[") and variable in p and "remove it" in p
        for p in problems
    ), problems
    with pytest.raises(
        InvalidInputError, match=rf"{variable} is a plane credential as a plain value; remove it"
    ):
        render_task_definition(spec, PLANES)


def test_a_credential_secret_from_another_source_is_refused() -> None:
    spec = load_default_spec("frontend")
    spec["containerDefinitions"][0]["secrets"] = [
        {"name": "ETCD_AUTH_CLIENT_KEY", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:mine"}
    ]
    with pytest.raises(InvalidInputError, match=r"secrets ETCD_AUTH_CLIENT_KEY: from .*not the stack's"):
        add_plane_credentials(spec, ARN, BUSYBOX)


def test_other_secrets_of_the_users_are_kept() -> None:
    spec = load_default_spec("frontend")
    spec["containerDefinitions"][0]["secrets"] = [{"name": "HF_TOKEN", "valueFrom": "arn:x:hf"}]
    rendered = render_task_definition(spec, PLANES)
    assert {"name": "HF_TOKEN", "valueFrom": "arn:x:hf"} in rendered["containerDefinitions"][0]["secrets"]


def test_with_the_members_every_etcd_url_of_the_list_takes_tls() -> None:
    members = tuple(f"infra-{k}.dynamo-infra.internal" for k in range(3))
    endpoint = InfraEndpoint("t", members[0], None, etcd_hosts=members)
    context = RenderContext(endpoint, "123456789012", "us-east-1", PlaneCredentials(ARN, BUSYBOX))
    rendered = render_task_definition(load_default_spec("frontend"), context)
    dynamo, _writer = rendered["containerDefinitions"]
    assert env(dynamo)["ETCD_ENDPOINTS"] == ",".join(f"https://{m}:2379" for m in members)
    assert env(dynamo)["NATS_SERVER"] == f"tls://{members[0]}:4222"
