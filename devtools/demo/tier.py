"""`make demo`'s last part: the three-member etcd + NATS tier loses a member under load.

After the scenario on the single task (its outage when the task is replaced), the same
machinery runs template.yaml's default layout (``InfraMembers 3``) on a fresh moto server:
three members from their own task definitions, the real Dynamo on their names; member 0 (an
etcd member and the NATS seed) stops under 3 requests/s and its service starts a new task,
which rejoins; then the frontend service scales out. Everything stops at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL
from devtools.local_ecs.member_loss import (
    MemberLossResult,
    ScaleOutResult,
    lose_member_under_load,
    scale_out_under_load,
)
from devtools.local_ecs.tier_deployment import tier_deployment
from devtools.services import aws_test_environment, moto_server
from dynamo_ecs import aws

Narrate = Callable[[str], Any]


@dataclass
class TierDemoResult:
    loss: MemberLossResult
    scale_out: ScaleOutResult


def member_loss_demo(workdir: Path, narrate: Narrate) -> TierDemoResult:
    saved = dict(os.environ)
    try:
        with moto_server(workdir) as moto:
            os.environ.update(aws_test_environment(moto.url))
            aws.reset_clients()
            with tier_deployment(workdir, desired={"frontend": 1, "prefill": 1}) as deployment:
                names = ", ".join(deployment.tier.member_names)
                narrate(
                    f"[bold]three-member tier[/] (InfraMembers 3): etcd + NATS members {names}, each from "
                    "its own task definition, etcd and NATS with TLS and authentication; the GPU task "
                    "definitions name all three (https/tls) and take Dynamo's credentials as ECS secrets"
                )
                if not first_success(deployment.frontend_url(), MODEL, 90, on_wait=deployment.runner.tick):
                    raise RuntimeError("the deployment on the three members never served")
                narrate(
                    "member 0 (an etcd member and the NATS seed) stops under 3 requests/s; "
                    "its service starts a new task"
                )
                loss = lose_member_under_load(deployment, 0)
                rejoin = "never" if loss.rejoin_s is None else f"{loss.rejoin_s:.1f} s after the stop"
                narrate(
                    f"  {loss.requests} requests, {loss.failed} failed; {loss.dynamo_exits} Dynamo "
                    f"processes exited; {loss.gpu_tasks_started} GPU tasks started again; the "
                    f"replacement rejoined {rejoin}"
                )
                scale = scale_out_under_load(deployment)
                narrate(
                    f"  a frontend scale-out after it: new task served: {scale.new_task_served}; "
                    f"{scale.failed} of {scale.requests} requests failed meanwhile"
                )
                return TierDemoResult(loss, scale)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_clients()
