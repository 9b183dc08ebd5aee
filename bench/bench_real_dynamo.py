"""The infra task replaced under the real Dynamo: outage with and without the operator.

Each case is a fresh local deployment (moto for ECS; the infra task's real etcd and
nats-server; the GPU tasks' real Dynamo 1.6.1 frontend and workers with the mocker engine).
The outage runs from the replacement to the first chat completion served by a task on the
new address. Without the operator it never ends: the figure is -1 when there was none
within `WITHOUT_OPERATOR_BOUND_S`.
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
from devtools.local_ecs.outage import replace_infra_and_measure
from devtools.services import aws_test_environment, moto_server
from devtools.template import create_state_table
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig

WITHOUT_OPERATOR_BOUND_S = 120.0
WITH_OPERATOR_BOUND_S = 120.0


class Context:
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-infra-watcher"


def _case(workdir: Path, operator: bool) -> tuple[float, int]:
    create_state_table(DeploymentConfig().state_table)
    watcher = load_handler_module("infra_watcher", fresh=True)

    def infra_watcher(event: dict[str, Any]) -> dict[str, Any]:
        return dict(watcher.lambda_handler(event, Context()))

    with local_deployment(workdir) as deployment:
        if not first_success(deployment.frontend_url(), MODEL, 90, on_wait=deployment.runner.tick):
            raise RuntimeError("the deployment never served before the replacement")
        bound = WITH_OPERATOR_BOUND_S if operator else WITHOUT_OPERATOR_BOUND_S
        result = replace_infra_and_measure(deployment, infra_watcher if operator else None, bound)
        return (
            -1.0 if result.outage_s is None else result.outage_s
        ), deployment.runner.dynamo_processes_started


def run() -> None:
    netguard.install()
    netguard.mirror_private_to_loopback()
    saved = dict(os.environ)
    processes = 0
    try:
        with tempfile.TemporaryDirectory(prefix="bench-real-dynamo-") as tmp, moto_server(Path(tmp)) as moto:
            os.environ.update(aws_test_environment(moto.url))
            for operator in (True, False):
                moto.reset()
                aws.reset_clients()
                outage, started = _case(Path(tmp) / ("with" if operator else "without"), operator)
                processes += started
                name = "outage_with_operator_s" if operator else "outage_without_operator_s"
                print(f"figure: {name} {outage:.1f} s")
        print(f"# outage_without_operator_s: -1 means no completion within {WITHOUT_OPERATOR_BOUND_S:.0f} s")
        print(f"figure: dynamo_processes_started {processes} count")
    finally:
        netguard.mirror_private_to_loopback(False)
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_clients()
