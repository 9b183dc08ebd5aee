"""The failure the operator exists for, measured on real processes: the infra task is replaced.

A new infra task starts (new address, empty etcd) and the old one stops. Without the
operator, the GPU tasks keep the old address in their task definitions: the workers lose
their etcd lease and exit, ECS starts replacements from the same task definitions, and they
cannot reach anything. With it, the ECS Task State Change events reach ``infra_watcher``,
which registers revisions at the new address and rolls the services.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devtools.ecs_world import task_state_change_event
from devtools.local_ecs.client import chat
from devtools.local_ecs.deployment import MODEL, REGION, LocalDeployment
from devtools.local_ecs.runner import GpuTask

InfraWatcher = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class OutageResult:
    # replacement -> first completion served by a task on the new address; None: not within the bound
    outage_s: float | None
    bound_s: float
    tasks_started: int  # GPU tasks ECS (the runner) started after the replacement
    stopped_reasons: list[str] = field(default_factory=list)
    watcher_statuses: list[str] = field(default_factory=list)
    old_tasks_served_until_s: float | None = None  # the old tasks keep serving until their lease runs out


def replace_infra_and_measure(
    deployment: LocalDeployment, infra_watcher: InfraWatcher | None, bound_s: float, poll_s: float = 0.5
) -> OutageResult:
    """Replace the infra task; poll chat completions until one succeeds or ``bound_s`` passes."""
    runner = deployment.runner
    started_before, stopped_before = runner.started_count, len(runner.stopped)
    old = deployment.infra_task
    begin = time.monotonic()
    new = deployment.replace_infra()
    statuses: list[str] = []
    if infra_watcher is not None:  # EventBridge delivers both state changes, at least once
        stopped = deployment.world.describe_task(deployment.config.infra.cluster, old["taskArn"])
        for version, task, event_id in ((2, new, "infra-new-running"), (3, stopped, "infra-old-stopped")):
            answer = infra_watcher(
                task_state_change_event(task, version=version, region=REGION, event_id=event_id)
            )
            statuses.append(str(answer.get("status")))
    outage: float | None = None
    old_served_until: float | None = None
    while time.monotonic() - begin < bound_s:
        runner.tick()
        for frontend in runner.running("frontend"):
            url = f"http://{frontend.address}:{deployment.config.frontend.metrics_port}"
            on_new = _etcd_of(frontend) == deployment.infra.etcd_url
            if chat(url, MODEL, timeout_s=min(5.0, bound_s)).ok:
                if on_new:
                    outage = time.monotonic() - begin
                    break
                old_served_until = time.monotonic() - begin
        if outage is not None:
            break
        time.sleep(poll_s)
    return OutageResult(
        outage_s=outage,
        bound_s=bound_s,
        tasks_started=runner.started_count - started_before,
        stopped_reasons=[s.reason for s in runner.stopped[stopped_before:]],
        watcher_statuses=statuses,
        old_tasks_served_until_s=old_served_until,
    )


def _etcd_of(task: GpuTask) -> str:
    """ETCD_ENDPOINTS as the task's processes got it (mapped to loopback)."""
    for container in task.local.containers.values():
        if "ETCD_ENDPOINTS" in container.plan.env:
            return str(container.plan.env["ETCD_ENDPOINTS"])
    return ""
