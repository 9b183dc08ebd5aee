"""GPU instance types, what one GPU task may ask of them, and how many instances tasks need. Pure.

ECS places a task only on a container instance whose *registered* CPU, memory and GPUs
cover it. Registered memory is less than the installed memory: the kernel and platform
keep some (AWS's ECS guide: an m4.large with 8 GiB registers 7985 MiB; AWS Batch's guide
recommends a 5 % buffer), and the agent subtracts ``ECS_RESERVED_MEMORY`` (set in the
launch template's user data to `ECS_RESERVED_MEMORY_MIB`, for the ECS agent, Docker, the
CloudWatch and SSM agents). CPU registers whole: 1,024 units per vCPU.

Each task gets the slice of one instance that its GPUs are of the instance's GPUs, so any
mix of tasks that fits the GPUs fits CPU and memory too. Both GPU services run in ``host``
network mode and reserve the ports other hosts call as host-mode port mappings (the
frontend 8000 and its workers' pinned ports, a prefill task its own, `dynamo_ecs.cross_host`),
so one instance holds at most one frontend task and one prefill task, which may share it.
The instances a set of tasks needs is therefore ``max(frontends, prefills, ceil(GPUs asked /
GPUs per instance))``, and the GPUs paid for are that many instances' GPUs: the figure the
GPU budget bounds. On a multi-GPU type, give each task more GPUs (``gpus_per_task``) rather
than more tasks.

Instance figures: Amazon EC2 accelerated computing instance specifications (vCPUs, memory
GiB, NVIDIA GPUs), https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

CPU_UNITS_PER_VCPU = 1024
# What the kernel and platform keep of the installed memory (conservative; see above).
PLATFORM_MEMORY_FRACTION = 0.05
# ECS_RESERVED_MEMORY in the launch template's user data (template.yaml, GpuLaunchTemplate).
ECS_RESERVED_MEMORY_MIB = 1024
MEMORY_STEP_MIB = 128
# The host ports each service reserves: one task of each per instance.
FRONTEND_TASKS_PER_INSTANCE = 1
PREFILL_TASKS_PER_INSTANCE = 1


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: int
    gpus: int

    @property
    def memory_mib(self) -> int:
        return self.memory_gib * 1024

    @property
    def registered_memory_mib(self) -> int:
        """The memory ECS can give tasks (a lower bound of what the agent registers)."""
        return int(self.memory_mib * (1 - PLATFORM_MEMORY_FRACTION)) - ECS_RESERVED_MEMORY_MIB

    @property
    def cpu_units(self) -> int:
        return self.vcpus * CPU_UNITS_PER_VCPU


INSTANCE_TYPES: dict[str, InstanceType] = {
    t.name: t
    for t in (
        InstanceType("g5.xlarge", 4, 16, 1),
        InstanceType("g5.2xlarge", 8, 32, 1),
        InstanceType("g5.4xlarge", 16, 64, 1),
        InstanceType("g5.12xlarge", 48, 192, 4),
        InstanceType("g6.xlarge", 4, 16, 1),
        InstanceType("g6.2xlarge", 8, 32, 1),
        InstanceType("g6.4xlarge", 16, 64, 1),
        InstanceType("g6.12xlarge", 48, 192, 4),
        InstanceType("g6e.xlarge", 4, 32, 1),
        InstanceType("g6e.2xlarge", 8, 64, 1),
        InstanceType("g6e.4xlarge", 16, 128, 1),
        InstanceType("g6e.12xlarge", 48, 384, 4),
        InstanceType("g6e.48xlarge", 192, 1536, 8),
        InstanceType("p4d.24xlarge", 96, 1152, 8),
        InstanceType("p5.48xlarge", 192, 2048, 8),
    )
}


@dataclass(frozen=True)
class TaskSize:
    """Task-level ``cpu`` (units) and ``memory`` (MiB) and the GPUs of one GPU task."""

    cpu: int
    memory_mib: int
    gpus: int


def instance_type(name: str) -> InstanceType:
    found = INSTANCE_TYPES.get(name)
    if found is None:
        raise ValueError(f"unknown GPU instance type {name!r}; known: {', '.join(INSTANCE_TYPES)}")
    return found


def known_instance_type(name: str) -> str:
    instance_type(name)
    return name


# A field that holds one of `INSTANCE_TYPES` (the config's and the custom resource's).
InstanceTypeName = Annotated[str, AfterValidator(known_instance_type)]


def task_size(name: str, gpus: int = 1) -> TaskSize:
    """The slice of instance type ``name`` a task with ``gpus`` GPUs may ask for."""
    instance = instance_type(name)
    if not 1 <= gpus <= instance.gpus:
        raise ValueError(f"a task with {gpus} GPUs does not fit {name} ({instance.gpus} GPUs)")
    memory = instance.registered_memory_mib * gpus // instance.gpus
    return TaskSize(
        cpu=instance.cpu_units * gpus // instance.gpus,
        memory_mib=memory - memory % MEMORY_STEP_MIB,
        gpus=gpus,
    )


def tasks_per_instance(name: str, gpus_per_task: int = 1) -> dict[str, int]:
    """The most tasks of each kind one instance holds (alone; together they share the GPUs)."""
    slots = instance_type(name).gpus // gpus_per_task
    frontend = min(FRONTEND_TASKS_PER_INSTANCE, slots)
    prefill = min(PREFILL_TASKS_PER_INSTANCE, slots)
    return {"frontend": frontend, "prefill": prefill, "together": min(frontend + prefill, slots)}


def instances_needed(
    name: str, frontend: int, prefill: int, frontend_gpus: int = 1, prefill_gpus: int = 1
) -> int:
    """Instances that hold ``frontend`` and ``prefill`` tasks: one of each per instance, GPUs shared."""
    gpus = instance_type(name).gpus
    return max(frontend, prefill, math.ceil((frontend * frontend_gpus + prefill * prefill_gpus) / gpus))


def gpus_paid(name: str, frontend: int, prefill: int, frontend_gpus: int = 1, prefill_gpus: int = 1) -> int:
    """GPUs of the instances those tasks need: what the GPU budget counts."""
    return instances_needed(name, frontend, prefill, frontend_gpus, prefill_gpus) * instance_type(name).gpus
