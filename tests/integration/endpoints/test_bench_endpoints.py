"""The endpoint benchmark's call counts are the calls the operator made, through every client."""

from __future__ import annotations

from bench import bench_endpoints
from devtools.services import MotoServer
from dynamo_ecs import aws
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig

CONFIG = DeploymentConfig()


def test_register_calls_are_counted_on_the_client_that_makes_them(aws_env: MotoServer) -> None:
    # Given the benchmark's deployment; When it measures a no-op reconcile and an address change
    figures = bench_endpoints.measure()
    # Then each service runs its family's newest revision, registered by the address change
    # through the RegisterTaskDefinition client without automatic retries, and the figure
    # counts those registrations: one per family
    ecs = aws.client("ecs")
    names = [CONFIG.service(role).service for role in SERVICE_ROLES]
    running = {
        s["taskDefinition"]
        for s in ecs.describe_services(cluster=CONFIG.gpu_cluster, services=names)["services"]
    }
    newest = {
        max(
            ecs.list_task_definitions(familyPrefix=CONFIG.service(role).family)["taskDefinitionArns"],
            key=lambda arn: int(arn.rsplit(":", 1)[1]),
        )
        for role in SERVICE_ROLES
    }
    assert running == newest
    assert figures["ip_change_register_calls"] == len(SERVICE_ROLES)
    assert figures["ip_change_update_calls"] == len(SERVICE_ROLES)
    assert figures["noop_reconcile_api_calls"] == 4
    assert figures["noop_reconcile_writes"] == 0
