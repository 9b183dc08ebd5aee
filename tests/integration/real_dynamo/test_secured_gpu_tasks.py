"""The GPU task definitions as the operator renders them with the planes on, run by the local ECS.

End to end: the credential maker's own secrets (moto's Secrets Manager), the infra task's
secured etcd and nats-server on the infra address's loopback stand-in, both default specs
rendered by `render_task_definition` with the planes on, registered with ECS and described
back, and started by the local ECS: the CA writer container first (its secret resolved as
the agent does), then Dynamo with the etcd credentials as secrets and the CA by path.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.local_ecs import addresses
from devtools.local_ecs.client import chat
from devtools.local_ecs.containers import LocalTaskLayout
from devtools.local_ecs.deployment import MODEL
from devtools.local_ecs.programs import TINY_MODEL, Toolbox
from devtools.local_ecs.task import LocalTask
from devtools.planes import secured_infra
from dynamo_ecs import aws
from dynamo_ecs.endpoints.render import PlaneCredentials, RenderContext, render_task_definition
from dynamo_ecs.infra import InfraEndpoint
from dynamo_ecs.planes.secrets_store import ensure_plane_secrets, secret_name
from dynamo_ecs.specs import load_default_spec

pytestmark = pytest.mark.xdist_group("real_dynamo")
BUSYBOX = "public.ecr.aws/docker/library/busybox:1.37"


def private_ip() -> str:
    """A 10.x address of this checkout's local VPC that moto's tasks do not use (third octet 200+)."""
    return f"10.{addresses.vpc_octet()}.{random.randint(200, 250)}.{random.randint(2, 250)}"


def secret_payload(holder: str) -> dict[str, str]:
    import json

    value = aws.client("secretsmanager").get_secret_value(SecretId=secret_name("dynamo", holder))
    return dict(json.loads(value["SecretString"]))


def registered(rendered: dict[str, Any]) -> dict[str, Any]:
    """Registered with ECS (moto) and described back, as the local ECS starts tasks."""
    ecs = aws.client("ecs")
    arn = ecs.register_task_definition(**rendered)["taskDefinition"]["taskDefinitionArn"]
    return dict(ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"])


def test_the_rendered_gpu_tasks_serve_on_the_secured_planes(aws_env: Any, tmp_path: Path) -> None:
    infra_ip = private_ip()
    loopback = addresses.to_loopback(infra_ip)
    # Given the maker's secrets, the member certificate naming the infra address's stand-in
    made = ensure_plane_secrets("dynamo", [loopback])
    planes = PlaneCredentials(made.arns["dynamo"], BUSYBOX)
    context = RenderContext(InfraEndpoint("infra", infra_ip, None), "123456789012", "us-east-1", planes)
    # and the infra task's secured etcd and NATS on the task's ports at that address
    with secured_infra(
        tmp_path / "infra", secret_payload("infra"), host=loopback, etcd_port=2379, nats_port=4222
    ):
        tasks = []
        try:
            for role in ("prefill", "frontend"):
                # When the operator's rendering of the default spec is registered and started
                definition = registered(render_task_definition(load_default_spec(role), context))
                assert all(
                    "value" not in s for c in definition["containerDefinitions"] for s in c.get("secrets", [])
                )
                layout = LocalTaskLayout(
                    root=tmp_path / role,
                    address=addresses.to_loopback(private_ip()),
                    toolbox=Toolbox(),
                    model_dir=TINY_MODEL,
                )
                task = LocalTask(f"arn:{role}", layout)
                task.start(definition)
                tasks.append(task)
            frontend = tasks[-1]
            url = f"http://{frontend.layout.address}:8000"
            # Then the deployment serves
            deadline, result = time.monotonic() + 90, chat(url, MODEL, timeout_s=5)
            while not result.ok and time.monotonic() < deadline:
                assert all(t.check() is None for t in tasks), [t.logs() for t in tasks]
                time.sleep(1)
                result = chat(url, MODEL, timeout_s=5)
            assert result.ok, (result, frontend.logs())
            assert [chat(url, MODEL, timeout_s=10).status for _ in range(3)] == [200] * 3
            # with the CA writer done and every Dynamo process still up
            assert frontend.containers["dynamo-planes-ca"].exit_code() == 0
            assert all(t.check() is None for t in tasks)
        finally:
            for task in tasks:
                task.stop()
