"""Requests lost to a scale-in under load, on the real Dynamo 1.6.1.

Three frontend tasks and two prefill tasks serve an open-loop load; then the frontend service
scales to one and the prefill service to one at the same moment. The runner stops each task
as ECS does (devtools/local_ecs/runner.py): a frontend leaves the load balancer's targets at
once and gets SIGTERM after the deregistration delay (5 s here, with requests of 1-2 s; the
template's 120 s is sized for long generations); a prefill task gets SIGTERM at once; SIGKILL
only after a container's stopTimeout (120 s in the specs). Figure: the requests that failed.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from devtools import netguard
from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL, local_deployment
from devtools.local_ecs.load import LoadRun
from devtools.services import aws_test_environment, moto_server
from dynamo_ecs import aws

DEREGISTRATION_DELAY_S = 5.0
ENGINE_ARGS = {"frontend": ("--speedup-ratio", "0.1"), "prefill": ()}
RATE_PER_S = 8.0
STOP_BOUND_S = 90.0


def _scale_in_under_load(workdir: Path) -> tuple[LoadRun, float, list[str]]:
    with local_deployment(
        workdir,
        desired={"frontend": 3, "prefill": 2},
        engine_args=ENGINE_ARGS,
        deregistration_delay_s=DEREGISTRATION_DELAY_S,
    ) as deployment:
        runner = deployment.runner
        for url in deployment.frontend_urls():
            if not first_success(url, MODEL, 90, on_wait=runner.tick):
                raise RuntimeError(f"{url} never served: {runner.stopped}")
        load = LoadRun(deployment.frontend_urls, MODEL, RATE_PER_S, prompt="hello world", max_tokens=12)
        load.start(STOP_BOUND_S + 30)
        time.sleep(8)
        deployment.set_desired("frontend", 1)
        deployment.set_desired("prefill", 1)
        began = time.monotonic()
        runner.tick()
        while (
            runner.stopping or len(runner.running("frontend")) > 1
        ) and time.monotonic() - began < STOP_BOUND_S:
            runner.tick()
            time.sleep(0.2)
        stopped_s = time.monotonic() - began
        time.sleep(5)  # the load goes on against what is left
        load.stop()
        killed = [f"{s.role}:{name}" for s in runner.stopped for name in s.killed]
        if runner.stopping:
            raise RuntimeError(f"tasks still stopping after {STOP_BOUND_S:.0f} s")
        return load, stopped_s, killed


def run() -> None:
    netguard.install()
    netguard.mirror_private_to_loopback()
    saved = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-in-") as tmp, moto_server(Path(tmp)) as moto:
            os.environ.update(aws_test_environment(moto.url))
            aws.reset_clients()
            load, stopped_s, killed = _scale_in_under_load(Path(tmp) / "deployment")
        statuses = sorted({o.status for o in load.outcomes if o.status != 200})
        print(f"# {load.completed()} requests completed; failed statuses: {statuses or 'none'}")
        print(f"# 3 frontend -> 1 and 2 prefill -> 1: stopped within {stopped_s:.1f} s")
        print(f"# containers SIGKILLed at their stopTimeout: {killed or 'none'}")
        print(f"figure: scale_in_failed_requests {load.errors()} count")
    finally:
        netguard.mirror_private_to_loopback(False)
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_clients()
