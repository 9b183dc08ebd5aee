"""The infra task (etcd + NATS) for real: its registered task definition, run as local processes.

The containers, their commands and environment are read back from ECS (moto), where the
stack registered them from template.yaml: no argument of the harness's own reaches
nats-server or etcd beyond the substitutions `devtools.local_ecs.containers` lists. A flag or
a setting the real server rejects stops the task here as it would on Fargate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.local_ecs import addresses
from devtools.local_ecs.containers import LocalTaskLayout
from devtools.local_ecs.programs import TINY_MODEL, Toolbox
from devtools.local_ecs.task import LocalTask
from devtools.services import http_ok
from dynamo_ecs.infra import eni_private_ip

START_TIMEOUT_S = 30.0


@dataclass
class LocalInfra:
    """A running infra task: where its etcd, NATS and NATS monitor answer on loopback."""

    task: LocalTask
    private_ip: str  # as ECS reports it (10.x)
    address: str  # where it listens here (127.x)
    etcd_port: int = 2379
    nats_port: int = 4222
    monitor_port: int = 8222

    @property
    def etcd_url(self) -> str:
        return f"http://{self.address}:{self.etcd_port}"

    @property
    def nats_url(self) -> str:
        return f"nats://{self.address}:{self.nats_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.address}:{self.monitor_port}"

    def ready(self) -> bool:
        return http_ok(f"{self.etcd_url}/health") and http_ok(
            f"{self.monitor_url}/healthz?js-enabled-only=true"
        )

    def stop(self, reason: str = "Task stopped") -> None:
        self.task.stop(reason)


def start_infra(
    ecs: Any, cluster: str, task_arn: str, workdir: Path, toolbox: Toolbox | None = None
) -> LocalInfra:
    """Start the processes of the infra task ``task_arn`` and wait until etcd and NATS answer."""
    described = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    definition = ecs.describe_task_definition(taskDefinition=described["taskDefinitionArn"])["taskDefinition"]
    private_ip = eni_private_ip(described)
    if not private_ip:
        raise RuntimeError(f"infra task {task_arn} has no private IPv4 address")
    address = addresses.to_loopback(private_ip)
    layout = LocalTaskLayout(
        root=workdir / f"infra-{task_arn.rsplit('/', 1)[-1]}",
        address=address,
        toolbox=toolbox or Toolbox(),
        model_dir=TINY_MODEL,
    )
    task = LocalTask(task_arn, layout)
    try:
        task.start(definition)
        infra = LocalInfra(task, private_ip, address)
        task.wait_until(infra.ready, START_TIMEOUT_S, f"infra task at {address}")
    except Exception:
        task.stop("Task failed to start")
        raise
    return infra


@contextlib.contextmanager
def running_infra(ecs: Any, cluster: str, task_arn: str, workdir: Path) -> Iterator[LocalInfra]:
    infra = start_infra(ecs, cluster, task_arn, workdir)
    try:
        yield infra
    finally:
        infra.stop()
