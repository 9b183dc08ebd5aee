"""A member of the three-member tier lost under load, measured on real processes.

Member ``index``'s task stops while the real Dynamo serves a bounded load; after
``absent_s`` (Fargate placing and starting the replacement, compressed) its service starts a
new task from the same task definition, which rejoins etcd (remove and add) and the NATS
cluster under the member's name. Counted: the requests that failed, the Dynamo processes that
exited, the GPU tasks ECS started (each a model load on AWS), and the time from the stop to the
replacement serving as a started etcd member with the GPU task definitions naming only live
members (with names, they name the same three throughout).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.ecs_world import task_state_change_event
from devtools.local_ecs.deployment import REGION
from devtools.local_ecs.load import LoadRun
from devtools.local_ecs.runner import GpuTask
from devtools.local_ecs.tier_deployment import TierDeployment

InfraWatcher = Callable[[dict[str, Any]], dict[str, Any]]

RATE_PER_S = 3.0
MAX_TOKENS = 16


@dataclass
class MemberLossResult:
    requests: int
    failed: int
    dynamo_exits: int
    gpu_tasks_started: int
    rejoin_s: float | None
    statuses: dict[int, int] = field(default_factory=dict)
    watcher_statuses: list[str] = field(default_factory=list)  # infra_watcher's answers, in order


def dynamo_pids(deployment: TierDeployment) -> set[int]:
    """The live Dynamo processes (``python -m dynamo.*``) of every GPU task."""
    return {pid for task in deployment.runner.tasks for pid in task_dynamo_pids(task)}


def task_dynamo_pids(task: GpuTask) -> set[int]:
    """The live Dynamo processes (``python -m dynamo.*``) of one GPU task."""
    pids = set()
    for container in task.local.containers.values():
        for pid in container.pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(word.startswith(b"dynamo.") for word in argv):
                pids.add(pid)
    return pids


def live_members_named(deployment: TierDeployment) -> bool:
    """Every member the GPU task definitions name is a started etcd member serving here."""
    tier = deployment.tier
    if len(tier.members) != len(tier.names) or not all(m.ready() for m in tier.members.values()):
        return False
    started = [m for m in tier.etcd_members() if m.get("clientURLs")]  # a member that never started has none
    return len(started) == len(tier.names)


def tick_for(deployment: TierDeployment, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        deployment.runner.tick()
        time.sleep(0.2)


def lose_member_under_load(
    deployment: TierDeployment,
    index: int,
    absent_s: float = 5.0,
    warm_up_s: float = 5.0,
    after_s: float = 10.0,
    model: str = "Qwen/Qwen3-0.6B",
    infra_watcher: InfraWatcher | None = None,
) -> MemberLossResult:
    """``infra_watcher``: given each ECS Task State Change of the member's tasks (the old one
    STOPPED, the new one RUNNING), as EventBridge delivers them to the operator."""
    runner = deployment.runner
    tier = deployment.tier
    watcher_statuses: list[str] = []

    def deliver(task_arn: str, version: int, event_id: str) -> None:
        if infra_watcher is None:
            return
        task = tier.ecs.describe_tasks(cluster=tier.cluster, tasks=[task_arn])["tasks"][0]
        answer = infra_watcher(
            task_state_change_event(task, version=version, region=REGION, event_id=event_id)
        )
        watcher_statuses.append(str(answer.get("status")))

    before = dynamo_pids(deployment)
    started_before = runner.started_count
    targets = deployment.frontend_urls()
    load = LoadRun(lambda: targets, model, RATE_PER_S, "hello world the model is a token", MAX_TOKENS)
    load.start(warm_up_s + absent_s + 60.0 + after_s)
    try:
        tick_for(deployment, warm_up_s)
        stopped_at = time.monotonic()
        stopped = tier.stop_member(index, "Task stopped: the member's host failed")
        deliver(stopped, 3, f"member-{index}-stopped")
        tick_for(deployment, absent_s)
        new = tier.start_member(index)
        deliver(new.task_arn, 2, f"member-{index}-running")
        rejoin_s: float | None = None
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            if live_members_named(deployment):
                rejoin_s = time.monotonic() - stopped_at
                break
            tick_for(deployment, 0.2)
        tick_for(deployment, after_s)
    finally:
        load.stop()
    after = dynamo_pids(deployment)
    statuses: dict[int, int] = {}
    for outcome in load.outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    return MemberLossResult(
        requests=len(load.outcomes),
        failed=load.errors(),
        dynamo_exits=len(before - after),  # processes running before the loss and gone after it
        gpu_tasks_started=runner.started_count - started_before,
        rejoin_s=rejoin_s,
        statuses=statuses,
        watcher_statuses=watcher_statuses,
    )


@dataclass
class ScaleOutResult:
    requests: int
    failed: int
    new_task_served: bool
    new_task_url: str | None


def scale_out_under_load(
    deployment: TierDeployment, timeout_s: float = 90.0, model: str = "Qwen/Qwen3-0.6B"
) -> ScaleOutResult:
    """One more frontend task (frontend + decode worker) while the running ones serve a load;
    the new task must register (its own frontend serves a completion through the workers it
    discovers in etcd) on the names its task definition carries."""
    from devtools.local_ecs.client import chat

    targets = deployment.frontend_urls()
    load = LoadRun(lambda: targets, model, RATE_PER_S, "hello world the model is a token", MAX_TOKENS)
    load.start(timeout_s + 10.0)
    new_url: str | None = None
    served = False
    try:
        deployment.set_desired("frontend", len(targets) + 1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not served:
            deployment.runner.tick()
            fresh = [u for u in deployment.frontend_urls() if u not in targets]
            if fresh:
                new_url = fresh[0]
                served = chat(new_url, model, timeout_s=5.0).ok
            time.sleep(0.5)
    finally:
        load.stop()
    return ScaleOutResult(len(load.outcomes), load.errors(), served, new_url)
