"""Plays ECS for the GPU services with real processes: the service scheduler and the agent.

moto keeps the books (services, task definitions, tasks, container instances) but runs
nothing and starts no service tasks. `GpuTaskRunner.tick` does what ECS would do next, from
what moto says now:

- a task whose essential container exited is stopped in moto with that exit as its
  ``stoppedReason``, and its service is short of a task again;
- a service short of tasks gets new ones from its *current* task definition, each on a free
  GPU instance (one GPU task per 1-GPU instance, as placement would allow), after
  ``start_delay_s`` (instance launch; the model load is the mocker's ``--startup-time``);
- a service over its desired count stops its newest tasks as ECS does: the task is stopped in
  moto at once (its desired status; DescribeTasks reports it STOPPING until its processes are
  gone, through `devtools.aws_state_rules`), a frontend task leaves the load balancer's targets
  (`LocalDeployment.frontend_urls`) and keeps serving what it has for the target group's
  deregistration delay, then its containers get SIGTERM and, after their ``stopTimeout``,
  SIGKILL; its instance is free once its processes are gone;
- a service on a new deployment (a new task definition, or UpdateService with
  ``forceNewDeployment``: moto gives the service's PRIMARY deployment a new id) replaces its
  tasks as ECS's rolling update does, within the service's ``deploymentConfiguration``: at most
  ``maximumPercent`` of the desired count running (rounded down), new tasks first where an
  instance is free; an old task stops (the same way as a scale-in: out of the load balancer,
  the deregistration delay, SIGTERM, ``stopTimeout``) only while at least
  ``minimumHealthyPercent`` of the desired count (rounded up) stays healthy without it. A task
  is healthy, as ECS counts it for a deployment: a load-balanced one once the target group's
  check (`target_check`, when given) passed ``HealthyThreshold`` times in a row; any other
  ``healthy_after_s`` after it started (ECS: 40 s for a task with no container health check;
  tests shorten it). A task with a container ``healthCheck`` counts healthy only while each
  such container's check is HEALTHY, as ECS counts it: the command (`health.run_container_check`)
  runs every ``interval`` (``container_check_interval_s`` when tests shorten it); one pass makes
  the container HEALTHY, ``retries`` failures in a row after its ``startPeriod`` UNHEALTHY.
  A task UNHEALTHY is not replaced here (ECS would replace it).

Each task's processes listen on its instance's loopback address (host network mode), so
the operator finds a frontend's ``/metrics`` at the address ECS reports for it; a host
volume is a directory of its instance (`containers.instance_disk`), where the instance's
user data would have written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools import aws_state_rules
from devtools.local_ecs import addresses
from devtools.local_ecs.containers import ContainerStartError, LocalTaskLayout, instance_disk
from devtools.local_ecs.health import TargetGroupCheck, run_container_check
from devtools.local_ecs.programs import TINY_MODEL, Toolbox
from devtools.local_ecs.task import LocalTask
from dynamo_ecs.endpoints.render import strip_read_only

Clock = Callable[[], float]


@dataclass
class GpuTask:
    role: str
    arn: str
    instance_index: int
    task_definition: str
    local: LocalTask
    started_at: float
    deployment: str = ""  # the service's PRIMARY deployment when the task was started
    target_passes: int = 0  # the target group's checks passed in a row
    target_failures: int = 0  # ... and failed in a row
    target_healthy: bool = False  # as the target group sees it (between the thresholds)
    container_health: dict[str, str] = field(default_factory=dict)  # checked container -> ECS's status
    check_failures: dict[str, int] = field(default_factory=dict)  # ... its checks failed in a row
    next_container_check: float = 0.0

    @property
    def address(self) -> str:
        return self.local.layout.address


@dataclass
class StoppedTask:
    role: str
    arn: str
    task_definition: str
    reason: str
    at: float
    logs: dict[str, str]
    killed: tuple[str, ...] = ()  # containers still running at their stop timeout (SIGKILLed)


@dataclass
class StoppingTask:
    """A task ECS is stopping: deregistered from the load balancer, SIGTERM at ``term_at``."""

    task: GpuTask
    reason: str
    term_at: float
    terminated: bool = False


# The services behind the load balancer (template.yaml: only the frontend's).
LOAD_BALANCED_ROLES = ("frontend",)
# A container's health status as ECS reports it (healthStatus).
UNKNOWN, HEALTHY, UNHEALTHY = "UNKNOWN", "HEALTHY", "UNHEALTHY"
# ECS's defaults for a REPLICA service whose deploymentConfiguration leaves them out.
DEFAULT_MINIMUM_HEALTHY_PERCENT = 100
DEFAULT_MAXIMUM_PERCENT = 200


@dataclass(frozen=True)
class RolloutBounds:
    """A service's rolling-update bounds in tasks, from its desired count and deploymentConfiguration."""

    minimum_healthy: int  # desired x minimumHealthyPercent, rounded up
    maximum: int  # desired x maximumPercent, rounded down

    @classmethod
    def of(cls, service: Mapping[str, Any]) -> RolloutBounds:
        desired = int(service["desiredCount"])
        configuration = service.get("deploymentConfiguration") or {}
        minimum = int(configuration.get("minimumHealthyPercent", DEFAULT_MINIMUM_HEALTHY_PERCENT))
        maximum = int(configuration.get("maximumPercent", DEFAULT_MAXIMUM_PERCENT))
        return cls(math.ceil(desired * minimum / 100), math.floor(desired * maximum / 100))


def primary_deployment(service: Mapping[str, Any]) -> str:
    """The id of the service's PRIMARY deployment ("" when moto reports none)."""
    return next((str(d["id"]) for d in service.get("deployments") or [] if d.get("status") == "PRIMARY"), "")


@dataclass
class GpuTaskRunner:
    ecs: Any
    ec2: Any
    cluster: str
    services: Mapping[str, str]  # role -> service name
    instances: list[dict[str, Any]]  # registered container instances
    workdir: Path
    toolbox: Toolbox = field(default_factory=Toolbox)
    model_dir: Path = TINY_MODEL
    engine_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)  # private DNS name -> its loopback address
    start_delay_s: float = 0.0
    # The target group's deregistration_delay.timeout_seconds (template.yaml: 120 s); tests shorten it.
    deregistration_delay_s: float = 0.0
    # The target group's health check (`TargetGroupCheck.from_template`; tests shorten its
    # interval); None: no check modelled, a load-balanced task counts as healthy like any other.
    target_check: TargetGroupCheck | None = None
    # ECS counts a task without a health check as healthy 40 s after it runs; tests shorten it.
    healthy_after_s: float = 0.0
    # How often the containers' own health checks run; None: each check's ``interval`` (ECS's).
    container_check_interval_s: float | None = None
    clock: Clock = time.monotonic
    tasks: list[GpuTask] = field(default_factory=list)
    stopping: list[StoppingTask] = field(default_factory=list)
    stopped: list[StoppedTask] = field(default_factory=list)
    started_count: int = 0
    dynamo_processes_started: int = 0
    pending: dict[str, list[float]] = field(default_factory=dict)
    _placeable: dict[str, str] = field(default_factory=dict)
    _instance_ips: dict[int, str] = field(default_factory=dict)
    _next_target_check: float = 0.0

    def running(self, role: str) -> list[GpuTask]:
        return [t for t in self.tasks if t.role == role]

    def healthy(self, task: GpuTask) -> bool:
        """Whether ECS counts ``task`` as healthy for a deployment (see the module's docstring)."""
        if any(status != HEALTHY for status in task.container_health.values()):
            return False
        if task.role in LOAD_BALANCED_ROLES and self.target_check is not None:
            return task.target_healthy
        if task.container_health:
            return True
        return self.clock() - task.started_at >= self.healthy_after_s

    def load_balancer_targets(self, role: str) -> list[GpuTask]:
        """The tasks of ``role`` the load balancer sends requests to: with a target check, the
        healthy ones, or every registered one while none is healthy (an ALB fails open); tasks
        being stopped are deregistered already."""
        registered = self.running(role)
        if role not in LOAD_BALANCED_ROLES or self.target_check is None:
            return registered
        return [t for t in registered if t.target_healthy] or registered

    def rollout_complete(self, role: str) -> bool:
        """The service runs only tasks of its current deployment, as many as desired, all healthy,
        and none of its old tasks is still stopping."""
        service = self.service(role)
        current = self._current(role, service)
        return (
            len(current) == len(self.running(role)) == int(service["desiredCount"])
            and all(self.healthy(t) for t in current)
            and not self.draining(role)
        )

    def _current(self, role: str, service: Mapping[str, Any]) -> list[GpuTask]:
        definition, deployment = service["taskDefinition"], primary_deployment(service)
        return [
            t for t in self.running(role) if t.task_definition == definition and t.deployment == deployment
        ]

    def _check_targets(self) -> None:
        check = self.target_check
        now = self.clock()
        if check is None or now < self._next_target_check:
            return
        self._next_target_check = now + check.interval_s
        for task in self.tasks:
            if task.role not in LOAD_BALANCED_ROLES:
                continue
            if check.passes(task.address):
                task.target_passes, task.target_failures = task.target_passes + 1, 0
                task.target_healthy = task.target_healthy or task.target_passes >= check.healthy_threshold
            else:
                task.target_passes, task.target_failures = 0, task.target_failures + 1
                task.target_healthy = task.target_healthy and task.target_failures < check.unhealthy_threshold

    def _check_containers(self) -> None:
        """Each task's container health checks, due ones only, as the ECS agent runs them."""
        now = self.clock()
        for task in self.tasks:
            if not task.container_health or now < task.next_container_check:
                continue
            interval = 0.0
            for name in task.container_health:
                check = task.local.definition(name)["healthCheck"]
                interval = self.container_check_interval_s or float(check.get("interval", 30))
                code = run_container_check(check, task.local.containers[name].plan, task.address)
                if code == 0:
                    task.container_health[name], task.check_failures[name] = HEALTHY, 0
                elif now - task.started_at >= float(check.get("startPeriod", 0)):
                    task.check_failures[name] = task.check_failures.get(name, 0) + 1
                    if task.check_failures[name] >= int(check.get("retries", 3)):
                        task.container_health[name] = UNHEALTHY
            task.next_container_check = now + interval

    def service(self, role: str) -> dict[str, Any]:
        answer = self.ecs.describe_services(cluster=self.cluster, services=[self.services[role]])
        return dict(answer["services"][0])

    def tick(self) -> list[str]:
        """Converge every service one step; what happened, for a narration."""
        notes = [self._reap(task) for task in list(self.tasks) if task.local.check() is not None]
        self._check_targets()
        self._check_containers()
        for role in self.services:
            notes += self._converge(role, self.service(role))
        notes += self._advance_stopping()  # a SIGTERM due now goes out in this tick
        return [n for n in notes if n]

    def _converge(self, role: str, service: Mapping[str, Any]) -> list[str]:
        notes = []
        desired, definition = int(service["desiredCount"]), service["taskDefinition"]
        deployment = primary_deployment(service)
        bounds = RolloutBounds.of(service)
        current = self._current(role, service)
        stale = [t for t in self.running(role) if t not in current]
        waiting = self.pending.setdefault(role, [])
        missing = desired - len(current) - len(waiting)
        now = self.clock()
        if missing > 0:
            waiting.extend([now + (0.0 if stale else self.start_delay_s)] * missing)
        while waiting and len(current) + len(waiting) > desired:
            waiting.pop()
        # New tasks first, within maximumPercent, where an instance is free; with none free, an
        # old task makes room only if minimumHealthyPercent allows stopping it (its instance is
        # free once its processes are gone: the new task starts on a later tick).
        started = 0
        for at in sorted(waiting):
            if at > now or len(self.running(role)) >= max(bounds.maximum, desired):
                break
            if self._free_instance() is None:
                victim = self._stoppable(role, stale, bounds)
                if victim is not None:
                    self._scale_in(victim, replaced_reason(deployment))
                    stale.remove(victim)
                    notes.append(f"{role}: an old task stopping to make room for the new deployment")
                break
            if not self._start(role, definition, deployment):
                break
            waiting.remove(at)
            started += 1
        # Old tasks stop as new ones turn healthy, keeping minimumHealthyPercent.
        while stale and (victim := self._stoppable(role, stale, bounds)) is not None:
            self._scale_in(victim, replaced_reason(deployment))
            stale.remove(victim)
            notes.append(f"{role}: an old task stopping (deployment {deployment or definition})")
        if started:
            notes.append(f"{role}: {started} task(s) started")
        current = self._current(role, service)
        for task in reversed(current[desired:]):
            self._scale_in(task, "Scaling activity initiated by the service")
            notes.append(f"{role}: one task stopping (scale-in)")
        return notes

    def _stoppable(self, role: str, stale: list[GpuTask], bounds: RolloutBounds) -> GpuTask | None:
        """An old task whose stop keeps ``minimum_healthy`` healthy tasks (an unhealthy one first)."""
        healthy = [t for t in self.running(role) if self.healthy(t)]
        for task in sorted(stale, key=self.healthy):
            if len(healthy) - (task in healthy) >= bounds.minimum_healthy:
                return task
        return None

    def _scale_in(self, task: GpuTask, reason: str) -> None:
        """ECS's stop of a service task: desired STOPPED now, out of the load balancer, SIGTERM later."""
        self.ecs.stop_task(cluster=self.cluster, task=task.arn, reason=reason)
        aws_state_rules.rules.task_stopping(
            task.arn
        )  # STOPPING to DescribeTasks until its processes are gone
        self.tasks.remove(task)
        delay = self.deregistration_delay_s if task.role in LOAD_BALANCED_ROLES else 0.0
        self.stopping.append(StoppingTask(task, reason, self.clock() + delay))

    def _advance_stopping(self) -> list[str]:
        notes = []
        now = self.clock()
        for stopping in list(self.stopping):
            local = stopping.task.local
            if not stopping.terminated and now >= stopping.term_at:
                local.begin_stop(stopping.reason, now)
                stopping.terminated = True
            if stopping.terminated and local.finish_stop(self.clock()):
                self.stopping.remove(stopping)
                task = stopping.task
                aws_state_rules.rules.task_stopped(task.arn)
                self.stopped.append(
                    StoppedTask(
                        task.role,
                        task.arn,
                        task.task_definition,
                        stopping.reason,
                        now,
                        local.logs(),
                        tuple(local.killed_at_timeout),
                    )
                )
                notes.append(f"{task.role}: task stopped ({stopping.reason})")
        return notes

    def draining(self, role: str) -> list[GpuTask]:
        """Tasks of ``role`` being stopped: still running, no longer the load balancer's targets."""
        return [s.task for s in self.stopping if s.task.role == role]

    def _reap(self, task: GpuTask) -> str:
        reason = task.local.stopped_reason or "stopped"
        self.ecs.stop_task(cluster=self.cluster, task=task.arn, reason=reason[:1024])
        self.stopped.append(
            StoppedTask(task.role, task.arn, task.task_definition, reason, self.clock(), task.local.logs())
        )
        self.tasks.remove(task)
        return f"{task.role}: task stopped: {reason}"

    def _free_instance(self) -> int | None:
        used = {t.instance_index for t in self.tasks} | {s.task.instance_index for s in self.stopping}
        return next((i for i in range(len(self.instances)) if i not in used), None)

    def instance_ip(self, index: int) -> str:
        if index not in self._instance_ips:
            ec2_id = self.instances[index]["ec2InstanceId"]
            reservation = self.ec2.describe_instances(InstanceIds=[ec2_id])["Reservations"][0]
            self._instance_ips[index] = str(reservation["Instances"][0]["PrivateIpAddress"])
        return self._instance_ips[index]

    def placeable_copy(self, definition: str) -> str:
        """A copy of ``definition`` moto can place (it needs container-level memory; ECS does not).

        Registered under a family of its own, so the operator's families and revision counts
        stay exact; containers, environment and image are the service's own.
        """
        if definition not in self._placeable:
            described = self.ecs.describe_task_definition(taskDefinition=definition)["taskDefinition"]
            spec = strip_read_only(described)
            spec["family"] = f"moto-placement-{spec['family']}"
            for container in spec["containerDefinitions"]:
                container.setdefault("memory", 512)
            registered = self.ecs.register_task_definition(**spec)["taskDefinition"]
            self._placeable[definition] = registered["taskDefinitionArn"]
        return self._placeable[definition]

    def _start(self, role: str, definition: str, deployment: str = "") -> int:
        index = self._free_instance()
        if index is None:
            return 0  # no free GPU instance: the task stays pending, as on ECS
        name = self.services[role]
        arn = self.ecs.start_task(
            cluster=self.cluster,
            taskDefinition=self.placeable_copy(definition),
            containerInstances=[self.instances[index]["containerInstanceArn"]],
            group=f"service:{name}",
            startedBy=f"ecs-svc/{name}",
        )["tasks"][0]["taskArn"]
        described = self.ecs.describe_task_definition(taskDefinition=definition)["taskDefinition"]
        layout = LocalTaskLayout(
            root=self.workdir / f"{role}-{arn.rsplit('/', 1)[-1]}",
            address=addresses.to_loopback(self.instance_ip(index)),
            toolbox=self.toolbox,
            model_dir=self.model_dir,
            extra_engine_args=self.engine_args.get(role, ()),
            extra_env=dict(self.extra_env),
            instance_disk=instance_disk(self.workdir, index),
            names=dict(self.names),
        )
        local = LocalTask(arn, layout)
        checked = {c["name"]: UNKNOWN for c in described["containerDefinitions"] if c.get("healthCheck")}
        self.tasks.append(
            GpuTask(role, arn, index, definition, local, self.clock(), deployment, container_health=checked)
        )
        self.started_count += 1
        try:
            local.start(described)
        except (ContainerStartError, ValueError) as error:
            local.stop(f"CannotStartContainerError: {error}")
        self.dynamo_processes_started += sum(
            " ".join(c.plan.argv).count("-m dynamo.") for c in local.containers.values()
        )
        return 1

    def stop_all(self) -> None:
        for task in [*self.tasks, *(s.task for s in self.stopping)]:
            task.local.stop("runner stopped")
        self.tasks.clear()
        self.stopping.clear()


def replaced_reason(deployment: str) -> str:
    """The stopped reason ECS gives a task its service's rolling deployment replaced."""
    return f"Scaling activity initiated by (deployment {deployment or 'new task definition'})"
