"""``dynamo-ecs status``: the deployment as it runs now, from ECS, the load balancer and the state table."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from dynamo_ecs.diagnostics.record import DiagnosisLog
from dynamo_ecs.infra import eni_private_ip
from dynamo_ecs.state import StateStore
from dynamo_ecs_cli.stack import Aws, Stack, running_service_tasks

DECISIONS_SHOWN = 5


def infra_status(aws: Aws, stack: Stack) -> dict[str, Any]:
    ecs = aws.client("ecs")
    # One service, or the three members' (InfraMembers 3: the output lists them comma-separated)
    cluster, service = stack.output("InfraClusterName"), stack.output("InfraServiceName")
    return {
        "service": service,
        "tasks": [
            {
                "task": t["taskArn"].rsplit("/", 1)[-1],
                "service": name,
                "status": t.get("lastStatus"),
                "address": eni_private_ip(t),
            }
            for name in service.split(",")
            for t in running_service_tasks(ecs, cluster, name)
        ],
    }


def _ready_targets(aws: Aws, service: dict[str, Any]) -> dict[str, int] | None:
    groups = [lb["targetGroupArn"] for lb in service.get("loadBalancers", []) if lb.get("targetGroupArn")]
    if not groups:
        return None
    counts: dict[str, int] = {}
    for group in groups:
        try:
            health = aws.client("elbv2").describe_target_health(TargetGroupArn=group)[
                "TargetHealthDescriptions"
            ]
        except ClientError:
            continue
        for target in health:
            state = target.get("TargetHealth", {}).get("State", "unknown")
            counts[state] = counts.get(state, 0) + 1
    return counts


def gpu_services(aws: Aws, stack: Stack) -> list[dict[str, Any]]:
    names = [stack.output("FrontendServiceName"), stack.output("PrefillServiceName")]
    described = aws.client("ecs").describe_services(cluster=stack.output("GpuClusterName"), services=names)
    found = []
    for service in described["services"]:
        if service.get("status") != "ACTIVE":  # deleted (INACTIVE) or being deleted (DRAINING)
            continue
        primary: dict[str, Any] = next(
            (d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), {}
        )
        targets = _ready_targets(aws, service)
        running, desired = int(service.get("runningCount", 0)), int(service.get("desiredCount", 0))
        if targets is not None:
            ready = f"{targets.get('healthy', 0)} of {desired} healthy behind the load balancer"
        else:
            ready = f"{running} of {desired} running"
        found.append(
            {
                "service": service["serviceName"],
                "revision": service.get("taskDefinition", "").rsplit("/", 1)[-1],
                "desired": desired,
                "running": running,
                "pending": int(service.get("pendingCount", 0)),
                "rollout": primary.get("rolloutState", ""),
                "ready": ready,
                "targets": targets,
            }
        )
    missing = sorted(set(names) - {s["service"] for s in found})
    found.extend({"service": name, "missing": True} for name in missing)
    return found


def gather(aws: Aws, stack: Stack, decisions: int = DECISIONS_SHOWN) -> dict[str, Any]:
    store = StateStore(stack.output("StateTableName"), stack.deployment, client=aws.client("dynamodb"))
    diagnoses = DiagnosisLog(store).all()
    return {
        "stack": stack.name,
        "stack_status": stack.status,
        "deployment": stack.deployment,
        "infra": infra_status(aws, stack),
        "services": gpu_services(aws, stack),
        "open_diagnoses": [d for d in diagnoses if d["status"] == "open"],
        "resolved_diagnoses": len([d for d in diagnoses if d["status"] != "open"]),
        "decisions": store.decisions(limit=decisions),
    }


def healthy(report: dict[str, Any]) -> bool:
    """No open diagnosis, an infra task with an address, every GPU service at its desired count."""
    return (
        not report["open_diagnoses"]
        and any(t.get("address") for t in report["infra"]["tasks"])
        and all(not s.get("missing") and s["running"] >= s["desired"] for s in report["services"])
    )
