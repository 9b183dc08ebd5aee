"""The planes' rotation under load: the whole documented procedure with the real Dynamo 1.6.1.

A fresh local deployment on loopback: the three-member tier with the planes on (real etcd and
nats-server from the stack's task definitions, the stack's secrets on moto's Secrets Manager), the
GPU tasks' real Dynamo frontend and workers (mocker engine), 3 requests/s. ``trust``, ``issue``,
``retire``, each followed by the members rolled one at a time and both GPU services rolled as ECS
rolls a new deployment (`devtools.local_ecs.rotation_under_load`; ECS's and the load balancer's
waits compressed: a member's replacement starts 2 s after the stop, target checks every 1 s, the
prefill task counts as healthy 5 s after it starts, a 3-s deregistration delay).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from devtools import netguard
from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL
from devtools.local_ecs.rotation_under_load import rolling_update_settings, rotate_under_load
from devtools.local_ecs.tier_deployment import tier_deployment
from devtools.services import aws_test_environment, moto_server
from dynamo_ecs import aws


def _rotation(workdir: Path) -> None:
    with tier_deployment(
        workdir, desired={"frontend": 1, "prefill": 1}, **rolling_update_settings()
    ) as deployment:
        if not first_success(deployment.frontend_url(), MODEL, 90, on_wait=deployment.runner.tick):
            raise RuntimeError("the deployment never served before the rotation")
        result = rotate_under_load(deployment, workdir / "rotation")
        print(f"# {result.requests} requests, statuses {result.statuses}; failed: {result.failures}")
        for step in result.steps:
            members = ", ".join(f"{s:.1f}" for s in step.members_s)
            print(
                f"# {step.step}: rotate {step.rotate_s:.2f} s, members rolled in {members} s "
                f"(2 s of each the replacement's start), GPU services rolled in {step.gpu_roll_s:.1f} s"
            )
        evidence = result.evidence
        print(f"# evidence after retire: {evidence}")
        print(f"# Dynamo process exits outside a roll: {result.unplanned_exits}")
        print(f"figure: rotation_failed_requests {result.failed} count")
        print(f"figure: rotation_requests {result.requests} count")
        print(f"figure: rotation_duration_s {result.duration_s:.1f} s")
        print(f"figure: rotation_dynamo_exits_outside_rolls {len(result.unplanned_exits)} count")
        member_rolls = [s for step in result.steps for s in step.members_s]
        print(f"figure: rotation_member_roll_max_s {max(member_rolls):.1f} s")
        print(f"figure: rotation_gpu_roll_max_s {max(s.gpu_roll_s for s in result.steps):.1f} s")
        print(f"figure: rotation_gpu_tasks_started {result.gpu_tasks_started} count")
        refused = int(bool(evidence and evidence.old_client_of_old_ca and evidence.old_client_refused))
        print(f"figure: rotation_old_client_refused_after_retire {refused} count")


def run() -> None:
    netguard.install()
    netguard.mirror_private_to_loopback()
    saved = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-rotation-") as tmp, moto_server(Path(tmp)) as moto:
            os.environ.update(aws_test_environment(moto.url))
            aws.reset_clients()
            _rotation(Path(tmp) / "rotation")
    finally:
        netguard.mirror_private_to_loopback(False)
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_clients()
