"""Readiness on the real Dynamo 1.6.1: the load balancer's check follows whether the model can serve.

The check is the one template.yaml gives the target group (path, port, matcher), probed at a
frontend task's address; the container check is the one the operator gives the frontend
container (`with_worker_readiness`: the frontend's /live and its own decode worker's system
/health), run as the ECS agent runs it. A frontend task whose prefill side is missing fails the
first and passes the second: out of the load balancer, not replaced.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.local_ecs.client import chat
from devtools.local_ecs.deployment import MODEL, LocalDeployment, local_deployment
from devtools.local_ecs.health import TargetGroupCheck, run_container_check
from devtools.local_ecs.runner import GpuTask
from devtools.services import MotoServer
from dynamo_ecs.endpoints.gpu_services import FRONTEND_PORT, WORKER_SYSTEM_PORTS, with_worker_readiness
from dynamo_ecs.specs import load_default_spec

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time

FRONTEND_CONTAINER = "dynamo-vllm-frontend"
BOUND_S = 60.0  # for each change to show (a lost etcd lease: ~25 s); nothing here is timed


def frontend_spec_with_liveness() -> dict[str, object]:
    spec = copy.deepcopy(load_default_spec("frontend"))
    return with_worker_readiness(spec, WORKER_SYSTEM_PORTS["frontend"], FRONTEND_PORT)


def wait_for(condition: Callable[[], bool], deployment: LocalDeployment, what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        deployment.runner.tick()
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} within {BOUND_S:.0f} s; tasks stopped: {deployment.runner.stopped}")


def set_prefill(deployment: LocalDeployment, count: int) -> None:
    deployment.set_desired("prefill", count)
    deployment.runner.tick()


def liveness(task: GpuTask) -> int:
    container = task.local.containers[FRONTEND_CONTAINER]
    definition = task.local.definition(FRONTEND_CONTAINER)
    return run_container_check(definition["healthCheck"], container.plan, task.address)


def test_the_load_balancer_check_follows_the_prefill_side_and_etcd(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    check = TargetGroupCheck.from_template()
    assert check.path == f"/v1/models/{MODEL}"  # the stack's default ModelId
    specs = {"frontend": frontend_spec_with_liveness()}
    with local_deployment(tmp_path, desired={"frontend": 1, "prefill": 0}, specs=specs) as deployment:
        frontend = deployment.runner.running("frontend")[0]
        # Given a frontend task (frontend + decode worker) and no prefill task
        wait_for(lambda: check.probe(frontend.address) == 503, deployment, "the decode worker registered")
        # Then the load balancer's check fails, requests are refused, and the container check passes
        assert not check.passes(frontend.address)
        assert chat(deployment.frontend_url(), MODEL).status == 503
        assert liveness(frontend) == 0

        # When a prefill task starts, Then the check passes and requests are served
        set_prefill(deployment, 1)
        wait_for(lambda: check.passes(frontend.address), deployment, "the check passes once prefill runs")
        assert chat(deployment.frontend_url(), MODEL).ok

        # When the prefill side goes away, Then the check fails again (still live)
        set_prefill(deployment, 0)
        wait_for(lambda: not check.passes(frontend.address), deployment, "the check fails without prefill")
        assert check.probe(frontend.address) == 503
        assert liveness(frontend) == 0

        # When etcd is lost (the infra task replaced: a new, empty etcd at a new address)
        set_prefill(deployment, 1)
        wait_for(lambda: check.passes(frontend.address), deployment, "the check passes again")
        deployment.replace_infra()
        # Then the check keeps passing only while the task still serves (the request plane needs
        # no etcd until the lease runs out); once its processes exit, it fails with them.
        url = f"http://{frontend.address}:{check.port}"
        served_after_loss = 0

        def out_of_service() -> bool:
            nonlocal served_after_loss
            if check.passes(frontend.address):
                served_after_loss += chat(url, MODEL).ok
                return False
            return True

        wait_for(out_of_service, deployment, "the check fails once the lost lease stops the task")
        assert not chat(url, MODEL, timeout_s=2).ok
        assert any(s.arn == frontend.arn for s in deployment.runner.stopped)
        assert served_after_loss >= 1
