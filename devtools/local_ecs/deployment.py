"""A Dynamo deployment as users have it on ECS, running for real on loopback.

moto holds the ECS side (`devtools.ecs_world`: the infra service and its RUNNING task, the
GPU cluster and its instances, the frontend and prefill services from the default specs);
the infra task's etcd and nats-server run from its task definition
(`devtools.local_ecs.infra`); the GPU services' tasks run the real Dynamo
(`devtools.local_ecs.runner`). Used by the real-Dynamo tests, the demo and the benchmark.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.ecs_world import EcsWorld, build_world, task_private_ip
from devtools.local_ecs import addresses
from devtools.local_ecs.infra import LocalInfra, start_infra
from devtools.local_ecs.runner import GpuTaskRunner
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole

REGION = "us-east-1"
MODEL = "Qwen/Qwen3-0.6B"  # the default specs' --model: the tiny model dir serves under this name


class GpuServicesView:
    """What every local deployment offers of its GPU services: the tasks the load balancer
    would reach, and UpdateService. Its dataclasses give ``config``, ``world`` and ``runner``."""

    config: DeploymentConfig
    world: EcsWorld
    runner: GpuTaskRunner

    def frontend_urls(self) -> list[str]:
        """The load balancer's targets: running frontend tasks, not those being stopped; with the
        target group's check modelled (`GpuTaskRunner.target_check`), the healthy ones."""
        return [
            f"http://{t.address}:{self.config.frontend.metrics_port}"
            for t in self.runner.load_balancer_targets("frontend")
        ]

    def frontend_url(self) -> str:
        """What the load balancer would send a request to: the first frontend task's address."""
        urls = self.frontend_urls()
        if not urls:
            raise LookupError("no frontend task is running")
        return urls[0]

    def check_instances_unserved(self) -> None:
        """Refuse to start where something already listens on a GPU instance's frontend port.

        Only this deployment's frontends may answer there; a process left by an earlier run
        would serve its requests and make every check of this one meaningless.
        """
        port = self.config.frontend.metrics_port
        for index in range(len(self.world.gpu_instances)):
            address = addresses.to_loopback(self.runner.instance_ip(index))
            with socket.socket() as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((address, port)) == 0:
                    raise RuntimeError(
                        f"{address}:{port} (GPU instance {index}) is already served by a process of no "
                        "task of this deployment, one left running by an earlier run: stop it first"
                    )

    def set_desired(self, role: ServiceRole, count: int) -> None:
        """UpdateService, as the scaler (or an operator) calls it; the runner acts on its next tick."""
        self.world.ecs.update_service(
            cluster=self.config.gpu_cluster, service=self.config.service(role).service, desiredCount=count
        )


@dataclass
class LocalDeployment(GpuServicesView):
    config: DeploymentConfig
    world: EcsWorld
    workdir: Path
    infra_task: dict[str, Any]
    infra: LocalInfra
    runner: GpuTaskRunner

    def replace_infra(self) -> dict[str, Any]:
        """Fargate replaces the infra task: a new task (new address, empty etcd) starts, the old one stops."""
        old = self.infra_task
        new = self.world.run_infra_task()
        self.infra.stop("Task replaced by the service scheduler")
        self.world.stop_task(
            self.config.infra.cluster, old["taskArn"], "Task replaced by the service scheduler"
        )
        self.infra = start_infra(self.world.ecs, self.config.infra.cluster, new["taskArn"], self.workdir)
        self.infra_task = new
        return new

    def stop(self) -> None:
        self.runner.stop_all()
        self.infra.stop()

    @classmethod
    def start(
        cls,
        config: DeploymentConfig,
        world: EcsWorld,
        workdir: Path,
        engine_args: Mapping[str, tuple[str, ...]] | None = None,
        deregistration_delay_s: float = 0.0,
    ) -> LocalDeployment:
        """The infra service's task started in ``world`` and for real; a runner for the GPU services."""
        infra_task = world.run_infra_task()
        infra = start_infra(world.ecs, config.infra.cluster, infra_task["taskArn"], workdir)
        runner = GpuTaskRunner(
            world.ecs,
            world.ec2,
            config.gpu_cluster,
            {role: config.service(role).service for role in SERVICE_ROLES},
            world.gpu_instances,
            workdir,
            engine_args=engine_args or {},
            deregistration_delay_s=deregistration_delay_s,
        )
        deployment = cls(config, world, workdir, infra_task, infra, runner)
        try:
            deployment.check_instances_unserved()
        except RuntimeError:
            deployment.stop()
            raise
        return deployment


@contextlib.contextmanager
def local_deployment(
    workdir: Path,
    config: DeploymentConfig | None = None,
    gpu_instances: int = 4,
    desired: int | Mapping[str, int] = 1,
    engine_args: Mapping[str, tuple[str, ...]] | None = None,
    specs: Mapping[str, dict[str, Any]] | None = None,
    deregistration_delay_s: float = 0.0,
) -> Iterator[LocalDeployment]:
    """Today's setup, for real: infra task running, both GPU services at ``desired`` tasks.

    The GPU task definitions have the infra task's address pasted in by hand (as users do
    today); ``specs`` replaces a role's default spec; ``desired`` is both services' task count,
    or one per role. Everything stops on exit.
    """
    config = config or DeploymentConfig()
    world = build_world(config, region=REGION, gpu_instances=gpu_instances)
    deployment = LocalDeployment.start(config, world, workdir, engine_args, deregistration_delay_s)
    try:
        world.create_gpu_services(
            pasted_ip=task_private_ip(deployment.infra_task), desired=desired, specs=specs
        )
        deployment.runner.tick()
        yield deployment
    finally:
        deployment.stop()
