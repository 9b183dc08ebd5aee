"""Losing an infra member under load with the real Dynamo 1.6.1 loses nothing, with the planes on.

The three-member tier of template.yaml (real etcd cluster, real NATS cluster, each member from
its own task definition, serving etcd and NATS with TLS and authentication) and the GPU services
on the members' names, over TLS with Dynamo's credentials: a member's task stops
while a bounded load runs, and its replacement rejoins under the same name. No request fails,
no Dynamo process exits, no GPU task is started again; afterwards a scale-out's new task
registers on the same task definition (every member it names is live).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL
from devtools.local_ecs.member_loss import lose_member_under_load, scale_out_under_load
from devtools.local_ecs.tier_deployment import tier_deployment
from devtools.services import MotoServer

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time


def secured(ecs: Any, revision: str, dynamo_secret: str) -> bool:
    """The revision's Dynamo container names the members by https/tls and takes its credentials
    from the Dynamo secret (nothing of them as a plain value)."""
    definition = ecs.describe_task_definition(taskDefinition=revision)["taskDefinition"]
    dynamo = next(c for c in definition["containerDefinitions"] if c.get("secrets"))
    env = {e["name"]: e["value"] for e in dynamo["environment"]}
    urls = env["ETCD_ENDPOINTS"].split(",")
    return (
        len(urls) == 3
        and all(u.startswith("https://infra-") for u in urls)
        and env["NATS_SERVER"].startswith("tls://infra-0.")
        and all(s["valueFrom"].startswith(dynamo_secret) for s in dynamo["secrets"])
        and not {"ETCD_AUTH_CLIENT_KEY", "NATS_AUTH_PASSWORD"} & set(env)
    )


def test_a_member_lost_under_load_costs_no_request_and_a_scale_out_registers_after_it(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    with tier_deployment(tmp_path, desired={"frontend": 1, "prefill": 1}) as deployment:
        assert first_success(deployment.frontend_url(), MODEL, 90, on_wait=deployment.runner.tick)
        revisions = {t.task_definition for t in deployment.runner.tasks}
        # (the planes on: every GPU task reaches the members over TLS with Dynamo's credentials)
        for revision in revisions:
            assert secured(deployment.world.ecs, revision, deployment.deployed.planes["DynamoSecretArn"])
        # When member 0 (etcd member and the GPU tasks' NATS seed) is lost under load and replaced
        result = lose_member_under_load(deployment, 0)
        # Then nothing failed, no Dynamo process exited, no GPU task was started again
        assert result.requests >= 30, result
        assert result.failed == 0, result
        assert result.dynamo_exits == 0, result
        assert result.gpu_tasks_started == 0, result
        # and the replacement rejoined: three started etcd members, every named member live
        assert result.rejoin_s is not None, result
        assert {t.task_definition for t in deployment.runner.tasks} == revisions
        # When the frontend service scales out on the same task definition
        scale = scale_out_under_load(deployment)
        # Then its new task registers and serves, and the running ones lost nothing meanwhile
        assert scale.new_task_served, scale
        assert scale.failed == 0, scale
