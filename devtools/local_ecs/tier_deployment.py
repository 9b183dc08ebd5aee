"""A Dynamo deployment on the three-member tier, running for real on loopback.

The stack is template.yaml on moto (`devtools.moto_stack.deploy_on_moto`, ``InfraMembers`` 3);
its three member services run from their own task definitions (`devtools.local_ecs.infra.
LocalTier`); the GPU services run the real Dynamo (`devtools.local_ecs.runner`) from the default
specs rendered by the operator's own rendering at the members' names, which each GPU task
reaches where the member registered under the name listens now. Used by the real-Dynamo
tests of the tier and by the benchmark.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.ecs_world import ACCOUNT_ID, EcsWorld
from devtools.local_ecs.deployment import REGION, GpuServicesView
from devtools.local_ecs.health import TargetGroupCheck
from devtools.local_ecs.infra import LocalTier, local_tier
from devtools.local_ecs.runner import GpuTaskRunner
from devtools.moto_stack import DeployedStack, deploy_on_moto, network
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole, load_config
from dynamo_ecs.endpoints.render import RenderContext, plane_credentials, render_task_definition
from dynamo_ecs.infra import find_infra_endpoint

STACK_PARAMETERS = {
    "DeploymentName": "dynamo",
    "NgcSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ngc-login-AbCdEf",
    "InfraMembers": "3",
}


@dataclass
class TierDeployment(GpuServicesView):
    config: DeploymentConfig
    deployed: DeployedStack
    world: EcsWorld
    tier: LocalTier
    runner: GpuTaskRunner

    def rendered_spec(self, role: ServiceRole) -> dict[str, Any]:
        """The default spec for ``role`` as the operator renders it for this tier."""
        selection = find_infra_endpoint(self.config.infra, self.world.ecs)
        if selection.endpoint is None:
            raise RuntimeError(selection.reason)
        planes = self.config.planes
        context = RenderContext(
            selection.endpoint,
            ACCOUNT_ID,
            REGION,
            plane_credentials(planes.dynamo_secret_arn, planes.ca_writer_image),
        )
        return render_task_definition(self.world.gpu_spec(role), context)

    def stop(self) -> None:
        self.runner.stop_all()
        self.tier.stop()


@contextlib.contextmanager
def tier_deployment(
    workdir: Path,
    gpu_instances: int = 4,
    desired: int | Mapping[str, int] = 1,
    engine_args: Mapping[str, tuple[str, ...]] | None = None,
    target_check: TargetGroupCheck | None = None,
    healthy_after_s: float = 0.0,
    deregistration_delay_s: float = 0.0,
) -> Iterator[TierDeployment]:
    """The stack with three members running, both GPU services at ``desired`` tasks on them.

    ``target_check``, ``healthy_after_s`` and ``deregistration_delay_s``: how the runner models
    the load balancer and ECS's count of healthy tasks (`devtools.local_ecs.runner`).
    """
    deployed = deploy_on_moto("dynamo", {**STACK_PARAMETERS, **network()})
    config = load_config(deployed.function_environment("InfraWatcherFunction"))
    world = EcsWorld(
        config,
        REGION,
        vpc_id=deployed.parameters["VpcId"],
        subnet_ids=deployed.parameters["TaskSubnetIds"].split(","),
        security_group_id=deployed.physical["InfraSecurityGroup"],
    )
    for _ in range(gpu_instances):
        world.add_gpu_instance()
    tier = local_tier(deployed, workdir)
    runner = GpuTaskRunner(
        world.ecs,
        world.ec2,
        config.gpu_cluster,
        {role: config.service(role).service for role in SERVICE_ROLES},
        world.gpu_instances,
        workdir,
        engine_args=engine_args or {},
        names=tier.names,
        target_check=target_check,
        healthy_after_s=healthy_after_s,
        deregistration_delay_s=deregistration_delay_s,
    )
    deployment = TierDeployment(config, deployed, world, tier, runner)
    try:
        tier.start()
        world.create_gpu_services(
            desired=desired, specs={role: deployment.rendered_spec(role) for role in SERVICE_ROLES}
        )
        runner.tick()
        yield deployment
    finally:
        deployment.stop()
