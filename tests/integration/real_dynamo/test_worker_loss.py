"""A Dynamo worker that dies with requests in flight costs no request the frontend can move.

On a GPU fault, an out-of-memory kill or a lost instance, a worker ends without its graceful
shutdown. The default frontend spec sets ``DYN_MIGRATION_LIMIT=3`` (Dynamo 1.6.1's frontend,
``--migration-limit``; default 0): the frontend then re-sends a request whose worker
disconnected to another worker, up to three times. Measured here with the real 1.6.1
frontend and mocker, requests sent to one frontend while a decode worker of another task, or
a prefill worker, is SIGKILLed: none fails with the default spec; with migration off the same
crash fails several (503). Requests on a dead task's *own* frontend are lost either way (its
connections close); the load balancer's retries are the client's business.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL, LocalDeployment, local_deployment
from devtools.local_ecs.load import LoadRun, Outcome
from devtools.services import MotoServer
from dynamo_ecs.specs import load_default_spec

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time

# Requests of about 2.5 s (the decode side at a tenth of its speed): about ten in flight at 4/s.
ENGINE_ARGS = {"frontend": ("--speedup-ratio", "0.1"), "prefill": ()}
RATE_PER_S = 4.0
MAX_TOKENS = 40
WARM_UP_S = 8.0
AFTER_CRASH_S = 15.0  # the frontend notices the lost worker and the task is replaced meanwhile


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["value"] for v in spec["containerDefinitions"][0]["environment"]}


def _without_migration() -> dict[str, Any]:
    spec = copy.deepcopy(load_default_spec("frontend"))
    for variable in spec["containerDefinitions"][0]["environment"]:
        if variable["name"] == "DYN_MIGRATION_LIMIT":
            variable["value"] = "0"
    return spec


@pytest.fixture
def two_of_each(
    aws_env: MotoServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[LocalDeployment]:
    specs = getattr(request, "param", None)
    with local_deployment(
        tmp_path, desired={"frontend": 2, "prefill": 2}, engine_args=ENGINE_ARGS, specs=specs
    ) as deployment:
        for url in deployment.frontend_urls():
            assert first_success(url, MODEL, 90, on_wait=deployment.runner.tick), url
        yield deployment


def _crash_under_load(
    deployment: LocalDeployment, victims: list[tuple[str, int]]
) -> tuple[LoadRun, list[str]]:
    """Load on the first frontend task only; each (role, index) task's engine SIGKILLed in turn."""
    runner = deployment.runner
    kept = runner.running("frontend")[0]
    url = f"http://{kept.address}:{deployment.config.frontend.metrics_port}"
    tasks = [runner.running(role)[index] for role, index in victims]
    assert kept not in tasks
    load = LoadRun(lambda: [url], MODEL, RATE_PER_S, prompt="hello world", max_tokens=MAX_TOKENS)
    load.start(WARM_UP_S + len(tasks) * AFTER_CRASH_S + 30)
    crashed: list[str] = []
    time.sleep(WARM_UP_S)
    for task in tasks:
        assert task.local.crash("dynamo.mocker"), f"no engine process in {task.arn}"
        crashed.append(task.arn)
        deadline = time.monotonic() + AFTER_CRASH_S
        while time.monotonic() < deadline:
            runner.tick()
            time.sleep(0.3)
    load.stop()
    return load, crashed


def _failed(load: LoadRun) -> list[Outcome]:
    return [o for o in load.outcomes if o.status != 200]


def test_the_default_frontend_moves_requests_off_a_crashed_decode_or_prefill_worker(
    two_of_each: LocalDeployment,
) -> None:
    assert _environment(load_default_spec("frontend"))["DYN_MIGRATION_LIMIT"] == "3"
    # When the other frontend task's decode worker, then a prefill worker, die under load
    load, crashed = _crash_under_load(two_of_each, [("frontend", 1), ("prefill", 0)])
    # Then every request the kept frontend took completed
    assert _failed(load) == [], _failed(load)[:5]
    assert load.completed() >= RATE_PER_S * (WARM_UP_S + 2 * AFTER_CRASH_S) * 0.8
    # and each crashed task stopped as ECS stops it and was replaced
    stopped = {s.arn: s.reason for s in two_of_each.runner.stopped}
    assert all("Essential container in task exited" in stopped.get(arn, "") for arn in crashed), stopped
    assert len(two_of_each.runner.running("prefill")) == 2


@pytest.mark.parametrize("two_of_each", [{"frontend": _without_migration()}], indirect=True)
def test_without_migration_the_same_crash_fails_requests(two_of_each: LocalDeployment) -> None:
    # The control: the crash above does hit requests in flight, which only migration saves
    load, _ = _crash_under_load(two_of_each, [("frontend", 1)])
    failed = _failed(load)
    assert failed, f"{load.completed()} completed, none failed: the crash hit no request in flight"
    assert {o.status for o in failed} == {503}
