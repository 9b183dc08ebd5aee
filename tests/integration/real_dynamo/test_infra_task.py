"""The infra task of template.yaml, run by the real etcd and nats-server of its images' lines."""

from __future__ import annotations

import base64
import copy
import json
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from devtools.local_ecs.client import get
from devtools.local_ecs.containers import ContainerStartError, repository_name
from devtools.local_ecs.infra import running_infra, start_infra
from devtools.moto_stack import (
    DeployedStack,
    deploy_on_moto,
    network,
    placeable_infra_definition,
    revision_with_environment,
)
from devtools.services import MotoServer, http_post_json
from dynamo_ecs import aws
from dynamo_ecs.specs import load_default_spec

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time

PARAMETERS = {
    "DeploymentName": "dynamo",
    "NgcSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ngc-login-AbCdEf",
    "InfraMembers": "1",  # the single task (the three members: tests/integration/infra_tier)
}
# The nats command of the template before the config file: every test passed with it.
OLD_NATS_COMMAND = ["-js", "-m", "8222", "--max_payload", "15728640"]


@pytest.fixture
def deployed(aws_env: MotoServer) -> DeployedStack:
    return deploy_on_moto("dynamo", {**PARAMETERS, **network()})


def run_infra_task(deployed: DeployedStack, definition: str | None = None) -> str:
    ecs = aws.client("ecs")
    return str(
        ecs.run_task(
            cluster=deployed.outputs["InfraClusterName"],
            taskDefinition=definition or placeable_infra_definition(deployed.full, deployed.outputs),
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": deployed.parameters["TaskSubnetIds"].split(","),
                    "securityGroups": [deployed.physical["InfraSecurityGroup"]],
                }
            },
        )["tasks"][0]["taskArn"]
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_templates_infra_task_serves_etcd_and_nats_with_dynamos_settings(
    deployed: DeployedStack, tmp_path: Path
) -> None:
    # Given the infra task as the stack registered it
    task_arn = run_infra_task(deployed)
    # When its containers run (config writer, then nats-server on the file it wrote; etcd)
    with running_infra(aws.client("ecs"), deployed.outputs["InfraClusterName"], task_arn, tmp_path) as infra:
        # Then NATS runs Dynamo's settings: JetStream, the monitor on 8222, 15 MiB payloads
        status, body = get(f"{infra.monitor_url}/varz")
        varz = json.loads(body)
        assert status == 200
        assert varz["max_payload"] == 15728640
        assert varz["port"] == 4222 and varz["http_port"] == 8222
        assert get(f"{infra.monitor_url}/healthz?js-enabled-only=true")[0] == 200
        # and the config writer ran and exited 0, as the nats container's dependsOn requires
        assert infra.task.containers["nats-config"].exit_code() == 0
        # and etcd answers on 2379 at the task's address, while it advertises a loopback URL
        # nobody can reach: Dynamo's client never uses it (the GPU tests serve through this etcd)
        members = json.loads(http_post_json(f"{infra.etcd_url}/v3/cluster/member/list", {}))
        assert members["members"][0]["clientURLs"] == ["http://127.0.0.1:2379"]
        http_post_json(f"{infra.etcd_url}/v3/kv/put", {"key": _b64("k"), "value": _b64("v")})
        answer = json.loads(http_post_json(f"{infra.etcd_url}/v3/kv/range", {"key": _b64("k")}))
        assert base64.b64decode(answer["kvs"][0]["value"]) == b"v"


def test_the_old_max_payload_flag_stops_the_infra_task(deployed: DeployedStack, tmp_path: Path) -> None:
    # Given the infra task with the nats command the template had before
    ecs = aws.client("ecs")
    stored = ecs.describe_task_definition(
        taskDefinition=placeable_infra_definition(deployed.full, deployed.outputs)
    )["taskDefinition"]
    containers = copy.deepcopy(stored["containerDefinitions"])
    nats = next(c for c in containers if c["name"] == "nats")
    nats["command"], nats["dependsOn"], nats["mountPoints"] = OLD_NATS_COMMAND, [], []
    old = ecs.register_task_definition(
        family=stored["family"],
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="1024",
        memory="3072",
        containerDefinitions=[c for c in containers if c["name"] != "nats-config"],
    )["taskDefinition"]["taskDefinitionArn"]
    # When it starts, Then the real nats-server refuses the flag and the task stops
    with pytest.raises(ContainerStartError, match="flag provided but not defined: -max_payload"):
        start_infra(ecs, deployed.outputs["InfraClusterName"], run_infra_task(deployed, old), tmp_path)


def _essentials(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("name", "entryPoint", "command", "environment", "mountPoints", "dependsOn", "essential")
    return [
        {"image": repository_name(c["image"]), **{k: c.get(k) or None for k in keys}}
        for c in sorted(containers, key=lambda c: c["name"])
    ]


def test_the_default_infra_spec_runs_what_the_template_runs(deployed: DeployedStack) -> None:
    # The local worlds of the other tests (devtools.ecs_world) use specs/infra.json: it must be
    # the template's infra task, or those tests would prove nothing about the stack.
    stored = aws.client("ecs").describe_task_definition(
        taskDefinition=placeable_infra_definition(deployed.full, deployed.outputs)
    )["taskDefinition"]
    spec = load_default_spec("infra")
    assert _essentials(spec["containerDefinitions"]) == _essentials(stored["containerDefinitions"])
    assert [v["name"] for v in spec["volumes"]] == [v["name"] for v in stored["volumes"]]
    template_images = {repository_name(c["image"]): c["image"] for c in stored["containerDefinitions"]}
    assert {repository_name(c["image"]): c["image"] for c in spec["containerDefinitions"]} == template_images


def test_the_single_tasks_etcd_compacts_the_history_older_than_its_retention(
    deployed: DeployedStack, tmp_path: Path
) -> None:
    # Given the infra task with a 5-s retention: the template keeps 10 minutes, which a test
    # cannot wait for; the one value changed, in the etcd environment the template sets it in
    ecs = aws.client("ecs")
    placeable = placeable_infra_definition(deployed.full, deployed.outputs)
    [etcd] = [
        c
        for c in ecs.describe_task_definition(taskDefinition=placeable)["taskDefinition"][
            "containerDefinitions"
        ]
        if c["name"] == "etcd"
    ]
    environment = {e["name"]: e["value"] for e in etcd["environment"]}
    assert environment["ETCD_AUTO_COMPACTION_MODE"] == "periodic"
    assert environment["ETCD_AUTO_COMPACTION_RETENTION"] == "10m"
    shortened = revision_with_environment(placeable, "etcd", {"ETCD_AUTO_COMPACTION_RETENTION": "5s"}, ecs)
    task_arn = run_infra_task(deployed, shortened)
    with running_infra(ecs, deployed.outputs["InfraClusterName"], task_arn, tmp_path) as infra:
        # When one key is written five times
        revisions = [
            json.loads(
                http_post_json(
                    f"{infra.etcd_url}/v3/kv/put", {"key": _b64("v1/probe"), "value": _b64(f"v{n}")}
                )
            )["header"]["revision"]
            for n in range(5)
        ]
        written_at = time.monotonic()

        def first_revision() -> str:
            body = {"key": _b64("v1/probe"), "revision": revisions[0]}
            try:
                answer = json.loads(http_post_json(f"{infra.etcd_url}/v3/kv/range", body, timeout=3))
            except urllib.error.HTTPError as error:
                return str(error.read().decode())
            return base64.b64decode(answer["kvs"][0]["value"]).decode()

        # Then the first revision is there at first, and compacted once older than the retention
        assert first_revision() == "v0"
        while "compacted" not in first_revision() and time.monotonic() < written_at + 30:
            time.sleep(0.5)
        elapsed = time.monotonic() - written_at
        assert "required revision has been compacted" in first_revision()
        assert 4 <= elapsed < 30
        # and the live value is untouched
        answer = json.loads(http_post_json(f"{infra.etcd_url}/v3/kv/range", {"key": _b64("v1/probe")}))
        assert base64.b64decode(answer["kvs"][0]["value"]) == b"v4"
