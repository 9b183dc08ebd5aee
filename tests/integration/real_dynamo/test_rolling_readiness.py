"""Rolling deployments of the GPU services under load, on the real Dynamo 1.6.1.

Each spec carries the container check the operator gives the stack's GPU containers
(`with_worker_readiness`: the task's own worker's system /health, and the frontend's /live);
the runner counts a task with a container check healthy only once its check passes, as ECS
does. The worker takes a load of ``LOAD_S`` before it serves (`devtools.local_ecs.engine`,
``--local-load-time``: the mocker alone serves at once). ECS's 40-s wait for a task without a
check is compressed to ``HEALTHY_AFTER_S`` and the load balancer's check interval to 1 s.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.ecs_world import task_private_ip, with_ip
from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL, LocalDeployment, local_deployment
from devtools.local_ecs.health import TargetGroupCheck
from devtools.local_ecs.load import LoadRun
from devtools.local_ecs.runner import GpuTask
from devtools.services import MotoServer
from dynamo_ecs.config import ServiceRole
from dynamo_ecs.endpoints.gpu_services import FRONTEND_PORT, WORKER_SYSTEM_PORTS, with_worker_readiness
from dynamo_ecs.specs import load_default_spec

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time

LOAD_S = 12.0  # the new worker's model load (dynamo.vllm: 35-60 s for 0.6B on AWS)
HEALTHY_AFTER_S = 3.0  # ECS counts a task without a container check healthy after 40 s
CHECK_INTERVAL_S = 1.0  # the check's interval (10 s), compressed
DEREGISTRATION_DELAY_S = 3.0  # the target group's (120 s)
RATE_PER_S = 4.0
ROLL_TIMEOUT_S = 90.0


def roll(
    deployment: LocalDeployment, role: ServiceRole, spec: dict[str, Any] | None
) -> tuple[int, int, list[str]]:
    """Under load, a new deployment of ``role``'s service (``spec`` registered, or forced);
    (requests completed, failed, what the runner did) once it completed and the new worker
    had time to load and serve."""
    world, config = deployment.world, deployment.config
    service = config.service(role).service
    load = LoadRun(deployment.frontend_urls, MODEL, RATE_PER_S, "hello world", max_tokens=8).start(300)
    notes: list[str] = []
    try:
        time.sleep(2)
        if spec is None:
            world.ecs.update_service(cluster=config.gpu_cluster, service=service, forceNewDeployment=True)
        else:
            filled = with_ip(world.gpu_spec(role, spec), task_private_ip(deployment.infra_task))
            revision = world.ecs.register_task_definition(**filled)["taskDefinition"]["taskDefinitionArn"]
            world.ecs.update_service(cluster=config.gpu_cluster, service=service, taskDefinition=revision)
        began = time.monotonic()
        while (
            not (notes and deployment.runner.rollout_complete(role)) or time.monotonic() - began < LOAD_S + 3
        ):
            assert time.monotonic() - began < ROLL_TIMEOUT_S, f"the roll did not complete: {notes}"
            notes += deployment.runner.tick()
            time.sleep(0.2)
    finally:
        load.stop()
    return load.completed(), load.errors(), notes


def wait_healthy(deployment: LocalDeployment, task: GpuTask) -> None:
    deadline = time.monotonic() + 10
    while not deployment.runner.healthy(task):  # the check's next run after the worker serves
        assert time.monotonic() < deadline, task.container_health
        deployment.runner.tick()
        time.sleep(0.2)


def test_a_prefill_roll_keeps_the_old_task_until_the_new_worker_serves(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    checked = with_worker_readiness(
        copy.deepcopy(load_default_spec("prefill")), WORKER_SYSTEM_PORTS["prefill"]
    )
    engine_args = {"prefill": ("--local-load-time", f"{LOAD_S:g}")}
    with local_deployment(tmp_path, specs={"prefill": checked}, engine_args=engine_args) as deployment:
        runner = deployment.runner
        runner.healthy_after_s, runner.container_check_interval_s = HEALTHY_AFTER_S, CHECK_INTERVAL_S
        assert first_success(deployment.frontend_url(), MODEL, 60, on_wait=runner.tick)
        first = runner.running("prefill")[0]
        wait_healthy(deployment, first)

        # When the prefill service rolls (a forced new deployment) under load, with the check
        completed, failed, notes = roll(deployment, "prefill", None)
        # Then the old task stopped only once the new one's check passed: no request failed
        assert failed == 0, (completed, failed, notes)
        assert completed >= RATE_PER_S * LOAD_S * 0.8, completed
        assert [s.arn for s in runner.stopped] == [first.arn]
        stopped_at = runner.stopped[0].at
        new = runner.running("prefill")[0]
        assert stopped_at - new.started_at >= LOAD_S, "the old task stopped while the new one loaded"

        # When it rolls to the default spec as it is, without the check
        completed, failed, notes = roll(deployment, "prefill", load_default_spec("prefill"))
        # Then ECS counts the new task healthy while it loads, stops the old one: requests fail
        assert failed > 0, (completed, failed, notes)
        assert runner.stopped[-1].at - runner.running("prefill")[0].started_at < LOAD_S


def test_a_frontend_roll_keeps_the_old_task_until_its_own_decode_worker_serves(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    spec = copy.deepcopy(load_default_spec("frontend"))
    checked = with_worker_readiness(spec, WORKER_SYSTEM_PORTS["frontend"], FRONTEND_PORT)
    engine_args = {"frontend": ("--local-load-time", f"{LOAD_S:g}")}
    with local_deployment(
        tmp_path,
        specs={"frontend": checked},
        engine_args=engine_args,
        deregistration_delay_s=DEREGISTRATION_DELAY_S,
    ) as deployment:
        runner = deployment.runner
        runner.healthy_after_s, runner.container_check_interval_s = HEALTHY_AFTER_S, CHECK_INTERVAL_S
        runner.target_check = dataclasses.replace(TargetGroupCheck.from_template(), interval_s=1)
        assert first_success(deployment.frontend_url(), MODEL, 60, on_wait=runner.tick)
        first = runner.running("frontend")[0]
        wait_healthy(deployment, first)

        # When the frontend service rolls under load, with the check: the new task's frontend
        # passes the load balancer's check at once (it sees the old task's decode worker)
        completed, failed, notes = roll(deployment, "frontend", None)
        # Then the old task stopped only once the new one's own decode worker served: none failed
        assert failed == 0, (completed, failed, notes)
        assert [s.arn for s in runner.stopped] == [first.arn]
        assert runner.stopped[0].at - runner.running("frontend")[0].started_at >= LOAD_S

        # When it rolls to the spec without the check
        completed, failed, notes = roll(deployment, "frontend", load_default_spec("frontend"))
        # Then the old task (and its decode worker) went before the new decode worker served
        assert failed > 0, (completed, failed, notes)
