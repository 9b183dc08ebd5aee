"""A scale-in under load on the real Dynamo 1.6.1 loses no request.

The runner stops a task as ECS does (devtools/local_ecs/runner.py): out of the load balancer's
targets at once, SIGTERM after the deregistration delay (shortened here; the requests are
shorter still, as the template's 120 s is for its generations), SIGKILL after the container's
stopTimeout. Load goes to every frontend, and the KV router sends each frontend's requests to
any decode worker, so the stopped task's worker is serving other frontends when its SIGTERM
comes: Dynamo's graceful shutdown has to finish them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL, local_deployment
from devtools.local_ecs.load import LoadRun
from devtools.services import MotoServer
from dynamo_ecs import aws

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time

DEREGISTRATION_DELAY_S = 4.0
# Requests of about 1-2 s: the decode side at a tenth of its speed (the mocker's knob).
ENGINE_ARGS = {"frontend": ("--speedup-ratio", "0.1"), "prefill": ()}
STOP_BOUND_S = 60.0


def task_status(cluster: str, arn: str) -> tuple[str, str]:
    """(lastStatus, desiredStatus) as DescribeTasks answers."""
    [task] = aws.client("ecs").describe_tasks(cluster=cluster, tasks=[arn])["tasks"]
    return task["lastStatus"], task["desiredStatus"]


def test_a_frontend_scale_in_under_load_loses_no_request(aws_env: MotoServer, tmp_path: Path) -> None:
    with local_deployment(
        tmp_path,
        desired={"frontend": 2, "prefill": 1},
        engine_args=ENGINE_ARGS,
        deregistration_delay_s=DEREGISTRATION_DELAY_S,
    ) as deployment:
        runner = deployment.runner
        for url in deployment.frontend_urls():
            assert first_success(url, MODEL, 60, on_wait=runner.tick), url
        # Given load on both frontend tasks
        load = LoadRun(deployment.frontend_urls, MODEL, rate_per_s=6, prompt="hello world", max_tokens=12)
        load.start(STOP_BOUND_S + 20)
        time.sleep(4)
        # When the service scales in to one task
        deployment.set_desired("frontend", 1)
        runner.tick()
        [leaving] = runner.draining("frontend")
        leaving_url = f"http://{leaving.address}:{deployment.config.frontend.metrics_port}"
        assert leaving_url not in deployment.frontend_urls()  # out of the load balancer at once
        # and ECS reports it STOPPING (desired STOPPED) while its processes still run
        assert task_status(runner.cluster, leaving.arn) == ("STOPPING", "STOPPED")
        deadline = time.monotonic() + STOP_BOUND_S
        while runner.draining("frontend") and time.monotonic() < deadline:
            runner.tick()
            time.sleep(0.2)
        time.sleep(3)  # and the load goes on to the remaining task
        load.stop()
        # Then the task stopped on its own after SIGTERM, and no request failed
        [stopped] = [s for s in runner.stopped if s.arn == leaving.arn]
        assert stopped.reason == "Scaling activity initiated by the service"
        assert task_status(runner.cluster, leaving.arn) == ("STOPPED", "STOPPED")
        assert stopped.killed == ()  # every container exited before its stopTimeout
        failed = [o for o in load.outcomes if o.status != 200]
        assert failed == [], failed[:5]
        assert any(o.target == leaving_url for o in load.outcomes)  # it did serve before
        assert load.completed() >= 40
        assert len(runner.running("frontend")) == 1
