"""The three-member etcd + NATS tier under the real Dynamo: a member lost under load, beside the
single task's outage when the model takes a minute to load.

Each case is a fresh local deployment on loopback (moto for AWS; real etcd and nats-server run
from the stack's task definitions; the GPU tasks' real Dynamo 1.6.1 frontend and workers with
the mocker engine), requests bounded:

- three members (template.yaml's default): member 0 (an etcd member and the GPU tasks' NATS
  seed) stops under 3 requests/s, stays absent `ABSENT_S` (the time Fargate takes to start
  its replacement, compressed), and its service starts a new task, which rejoins; then the
  frontend service scales out by one on the same task definition, under the same load;
- one task (``InfraMembers`` 1) with the operator, the mocker loading for 60 s
  (``--startup-time 60``, a model load's stand-in): the outage from the replacement to the
  first completion served on the new address.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from devtools import netguard
from devtools.handlers import load_handler_module
from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL, local_deployment
from devtools.local_ecs.member_loss import lose_member_under_load, scale_out_under_load
from devtools.local_ecs.outage import replace_infra_and_measure
from devtools.local_ecs.tier_deployment import tier_deployment
from devtools.services import aws_test_environment, moto_server
from devtools.template import create_state_table
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig

ABSENT_S = 5.0
MODEL_LOAD_S = 60
SINGLE_BOUND_S = 240.0


class Context:
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-infra-watcher"


def _three_members(workdir: Path) -> None:
    with tier_deployment(workdir, desired={"frontend": 1, "prefill": 1}) as deployment:
        if not first_success(deployment.frontend_url(), MODEL, 90, on_wait=deployment.runner.tick):
            raise RuntimeError("the deployment never served before the member loss")
        loss = lose_member_under_load(deployment, 0, absent_s=ABSENT_S)
        print(f"# member 0 lost under load: {loss.requests} requests, statuses {loss.statuses}")
        print(f"figure: infra_member_loss_failed_requests {loss.failed} count")
        print(f"figure: infra_member_loss_dynamo_exits {loss.dynamo_exits} count")
        rejoin = -1.0 if loss.rejoin_s is None else loss.rejoin_s
        print(f"# infra_member_rejoin_s includes the {ABSENT_S:.0f} s the member is left absent; -1: never")
        print(f"figure: infra_member_rejoin_s {rejoin:.1f} s")
        print(f"figure: gpu_task_restarts_per_member_replacement {loss.gpu_tasks_started} count")
        scale = scale_out_under_load(deployment)
        if not scale.new_task_served:
            print("# the scale-out's new task never served")
        print(
            f"# scale-out after the loss: {scale.requests} requests; new task served: {scale.new_task_served}"
        )
        print(f"figure: scale_out_after_member_loss_failed_requests {scale.failed} count")


def _single_task(workdir: Path) -> None:
    create_state_table(DeploymentConfig().state_table)
    watcher = load_handler_module("infra_watcher", fresh=True)

    def infra_watcher(event: dict[str, Any]) -> dict[str, Any]:
        return dict(watcher.lambda_handler(event, Context()))

    load = ("--startup-time", str(MODEL_LOAD_S))
    with local_deployment(workdir, engine_args={"frontend": load, "prefill": load}) as deployment:
        if not first_success(
            deployment.frontend_url(), MODEL, MODEL_LOAD_S + 90, on_wait=deployment.runner.tick
        ):
            raise RuntimeError("the deployment never served before the replacement")
        result = replace_infra_and_measure(deployment, infra_watcher, SINGLE_BOUND_S)
        outage = -1.0 if result.outage_s is None else result.outage_s
        print(
            f"# single task replaced, operator on, model load {MODEL_LOAD_S} s: -1 means none within "
            f"{SINGLE_BOUND_S:.0f} s"
        )
        print(f"figure: outage_single_infra_model_load_60s_s {outage:.1f} s")


def run() -> None:
    netguard.install()
    netguard.mirror_private_to_loopback()
    saved = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-infra-tier-") as tmp, moto_server(Path(tmp)) as moto:
            os.environ.update(aws_test_environment(moto.url))
            for name, case in (("three", _three_members), ("single", _single_task)):
                moto.reset()
                aws.reset_clients()
                case(Path(tmp) / name)
    finally:
        netguard.mirror_private_to_loopback(False)
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_clients()
