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
- a service on a new task definition replaces every task (start the new, stop the old at once).

Each task's processes listen on its instance's loopback address (host network mode), so
the operator finds a frontend's ``/metrics`` at the address ECS reports for it; a host
volume is a directory of its instance (`containers.instance_disk`), where the instance's
user data would have written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools import aws_state_rules
from devtools.local_ecs import addresses
from devtools.local_ecs.containers import ContainerStartError, LocalTaskLayout, instance_disk
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
    clock: Clock = time.monotonic
    tasks: list[GpuTask] = field(default_factory=list)
    stopping: list[StoppingTask] = field(default_factory=list)
    stopped: list[StoppedTask] = field(default_factory=list)
    started_count: int = 0
    dynamo_processes_started: int = 0
    pending: dict[str, list[float]] = field(default_factory=dict)
    _placeable: dict[str, str] = field(default_factory=dict)
    _instance_ips: dict[int, str] = field(default_factory=dict)

    def running(self, role: str) -> list[GpuTask]:
        return [t for t in self.tasks if t.role == role]

    def service(self, role: str) -> dict[str, Any]:
        answer = self.ecs.describe_services(cluster=self.cluster, services=[self.services[role]])
        return dict(answer["services"][0])

    def tick(self) -> list[str]:
        """Converge every service one step; what happened, for a narration."""
        notes = [self._reap(task) for task in list(self.tasks) if task.local.check() is not None]
        for role in self.services:
            service = self.service(role)
            desired, definition = int(service["desiredCount"]), service["taskDefinition"]
            stale = [t for t in self.running(role) if t.task_definition != definition]
            waiting = self.pending.setdefault(role, [])
            missing = desired - (len(self.running(role)) - len(stale)) - len(waiting)
            now = self.clock()
            if missing > 0:
                waiting.extend([now + (0.0 if stale else self.start_delay_s)] * missing)
            while waiting and len(self.running(role)) - len(stale) + len(waiting) > desired:
                waiting.pop()
            ready = [at for at in waiting if at <= now]
            self.pending[role] = [at for at in waiting if at > now]
            # A rollout (maximumPercent 200): new tasks on free instances first, then the old stop;
            # with no free instance, an old task makes room (the frontend binds :8000 once per host).
            started = 0
            for _ in ready:
                if self._free_instance() is None and stale:
                    self._stop(stale.pop(0), "Task replaced: the service runs a new task definition")
                started += self._start(role, definition)
            for task in stale:
                self._stop(task, "Task replaced: the service runs a new task definition")
            if stale:
                notes.append(f"{role}: task(s) replaced by {definition.rsplit('/', 1)[-1]}")
            if started:
                notes.append(f"{role}: {started} task(s) started")
            extra = self.running(role)[desired:] if len(self.running(role)) > desired else []
            for task in reversed(extra):
                self._scale_in(task, "Scaling activity initiated by the service")
                notes.append(f"{role}: one task stopping (scale-in)")
        notes += self._advance_stopping()  # a SIGTERM due now goes out in this tick
        return [n for n in notes if n]

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

    def _start(self, role: str, definition: str) -> int:
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
        self.tasks.append(GpuTask(role, arn, index, definition, local, self.clock()))
        self.started_count += 1
        try:
            local.start(described)
        except (ContainerStartError, ValueError) as error:
            local.stop(f"CannotStartContainerError: {error}")
        self.dynamo_processes_started += sum(
            " ".join(c.plan.argv).count("-m dynamo.") for c in local.containers.values()
        )
        return 1

    def _stop(self, task: GpuTask, reason: str) -> None:
        task.local.stop(reason)
        self.ecs.stop_task(cluster=self.cluster, task=task.arn, reason=reason)
        self.tasks.remove(task)

    def stop_all(self) -> None:
        for task in [*self.tasks, *(s.task for s in self.stopping)]:
            task.local.stop("runner stopped")
        self.tasks.clear()
        self.stopping.clear()
