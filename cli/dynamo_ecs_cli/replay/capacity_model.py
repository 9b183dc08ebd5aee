"""GPU instances and the tasks on them: how long a new replica takes to serve, phase by phase.

A task the scaler asks for goes through what ECS on EC2 makes it go through (FACTS.md §6,
docs/replay.md "Start-up"):

1. PROVISIONING until an instance is free for it. When none is, the capacity provider's
   managed scaling notices after ``capacity_reaction_s`` (its once-a-minute
   ``CapacityProviderReservation`` metric), or at once when the policy asks the Auto
   Scaling group itself (our scaler's scale-ahead), and the group launches one: ``instance_launch_s`` cold, or
   ``warm_launch_s`` from the warm pool, whose instances pulled the image while warming;
2. PENDING while the instance pulls the image (``image_pull_s``, skipped when the instance
   already has it: warm-pool instances, and any instance that ran a task before);
3. RUNNING (ECS's ``runningCount``) while the worker loads the model (``model_load_s``),
   serving after that.

A stopped task drains for ``drain_s`` and leaves its instance idle. An idle instance stays
(billed) until the capacity provider scales in, ``idle_instance_s`` later (its scale-in
needs 15 one-minute datapoints below target), and is terminated: ECS does not allow a warm
pool's ``ReuseOnScaleIn``. An instance that leaves the warm pool is replaced in the pool,
which warms it (launch, image pull) in the background. GPU-hours count instances, not
tasks: a launching, idle or draining instance is billed as much as a busy one. Each task
gets an instance of its own (one GPU per instance, the template's default type).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dynamo_ecs.scaling.decide import ServiceState


@dataclass(frozen=True)
class Startup:
    """The start-up and shut-down knobs of `ModelParams`, in seconds."""

    capacity_reaction_s: float
    instance_launch_s: float
    warm_launch_s: float
    image_pull_s: float
    model_load_s: float
    warm_pool_size: int
    drain_s: float
    idle_instance_s: float

    @property
    def cold_s(self) -> float:
        """Asked for to serving, when no instance is free and the warm pool is empty."""
        return self.capacity_reaction_s + self.instance_launch_s + self.image_pull_s + self.model_load_s

    @property
    def warm_s(self) -> float:
        """Asked for to serving, from a warm-pool instance that pulled the image while warming."""
        return self.capacity_reaction_s + self.warm_launch_s + self.model_load_s

    @property
    def idle_instance_start_s(self) -> float:
        """Asked for to serving, on an idle instance that has the image."""
        return self.model_load_s

    @property
    def expected_s(self) -> float:
        """The start-up a new replica should expect: warm when there is a warm pool."""
        return self.warm_s if self.warm_pool_size > 0 else self.cold_s


@dataclass(eq=False)
class Instance:
    gpus: int
    ready_at: float  # registered with the cluster
    image_cached: bool
    task: Task | None = None
    free_at: float = 0.0  # a stopped task drains until then
    idle_since: float | None = None


@dataclass(eq=False)
class Task:
    asked_at: float
    gpus: int
    # When the Auto Scaling group learns that the task needs an instance: after the capacity
    # provider's reaction, or at once when the scaler asks the group itself (scale-ahead).
    noticed_at: float = float("-inf")
    instance: Instance | None = None
    running_at: float = float("inf")  # container started (ECS runningCount)
    serving_at: float = float("inf")  # model loaded

    def serving(self, now: float) -> bool:
        return self.serving_at <= now

    def running(self, now: float) -> bool:
        return self.running_at <= now


@dataclass
class ServicePool:
    """One ECS service's tasks."""

    tasks: list[Task] = field(default_factory=list)

    @property
    def desired(self) -> int:
        return len(self.tasks)

    def serving_count(self, now: float) -> int:
        return sum(1 for t in self.tasks if t.serving(now))

    def running(self, now: float) -> int:
        """ECS's runningCount: serving tasks plus those loading the model."""
        return sum(1 for t in self.tasks if t.running(now))

    def state(self, now: float) -> ServiceState:
        return ServiceState(self.desired, self.running(now))


class Cluster:
    """The GPU Auto Scaling group (with its warm pool) behind the capacity provider."""

    def __init__(self, startup: Startup, max_instances: int) -> None:
        self.startup = startup
        self.max_instances = max_instances
        self.instances: list[Instance] = []
        self.warm_stock = startup.warm_pool_size  # capped below, once the first tasks are placed
        self.warm_refills: list[float] = []  # when a new warm-pool instance will be ready

    def place_running(self, task: Task, now: float) -> None:
        """A task that serves from the start of the replay, on an instance of its own.

        The warm pool holds what the group's max leaves (MaxGroupPreparedCapacity = max).
        """
        instance = Instance(task.gpus, now, True, task)
        task.instance, task.running_at, task.serving_at = instance, now, now
        self.instances.append(instance)
        self.warm_stock = min(self.warm_stock, max(self.max_instances - len(self.instances), 0))

    def gpus(self) -> int:
        return sum(i.gpus for i in self.instances)

    def release(self, task: Task, now: float) -> None:
        """The task stops: its instance drains (if it served) and then is idle."""
        instance = task.instance
        if instance is None:
            return
        instance.task = None
        instance.free_at = now + (self.startup.drain_s if task.serving(now) else 0.0)
        instance.idle_since = None

    def advance(self, now: float, waiting: list[Task]) -> None:
        """Refill the warm pool, scale idle instances in, place waiting tasks, launch instances."""
        refilled = [t for t in self.warm_refills if t <= now]
        if refilled:
            self.warm_stock = min(self.warm_stock + len(refilled), self.startup.warm_pool_size)
            self.warm_refills = [t for t in self.warm_refills if t > now]
        self._scale_in_idle(now)
        free = [i for i in self.instances if i.task is None and i.ready_at <= now and i.free_at <= now]
        for task in sorted(waiting, key=lambda t: t.asked_at):
            instance = next((i for i in free if i.gpus == task.gpus), None)
            if instance is None:
                continue
            free.remove(instance)
            self._start(task, instance, now)
        unplaced = [t for t in waiting if t.instance is None]
        on_the_way = sum(1 for i in self.instances if i.task is None and i.ready_at > now)
        noticed = [t for t in unplaced if t.noticed_at <= now]
        for task in noticed[on_the_way:]:
            if len(self.instances) >= self.max_instances:
                break
            self._launch(task.gpus, now)

    def _start(self, task: Task, instance: Instance, now: float) -> None:
        pull = 0.0 if instance.image_cached else self.startup.image_pull_s
        instance.task, instance.image_cached, instance.idle_since = task, True, None
        task.instance = instance
        task.running_at = now + pull
        task.serving_at = task.running_at + self.startup.model_load_s

    def _launch(self, gpus: int, now: float) -> None:
        s = self.startup
        if self.warm_stock > 0:
            self.warm_stock -= 1
            # The group launches a replacement into the pool; it warms (launch, image pull) in
            # the background and is ready for the next scale-out after that.
            self.warm_refills.append(now + s.instance_launch_s + s.image_pull_s)
            self.instances.append(Instance(gpus, now + s.warm_launch_s, True))
        else:
            self.instances.append(Instance(gpus, now + s.instance_launch_s, False))

    def _scale_in_idle(self, now: float) -> None:
        keep: list[Instance] = []
        for instance in self.instances:
            idle = instance.task is None and instance.ready_at <= now and instance.free_at <= now
            if not idle:
                keep.append(instance)
                continue
            if instance.idle_since is None:
                instance.idle_since = now
            if now - instance.idle_since < self.startup.idle_instance_s:
                keep.append(instance)
        self.instances = keep
