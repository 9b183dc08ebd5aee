"""Scale-ahead: ask the GPU Auto Scaling group for a scale-out's instances at once.

The capacity provider's managed scaling learns that tasks wait for instances through its
``CapacityProviderReservation`` metric, published once a minute, so a scale-out waits a
minute or more before the group launches anything (FACTS.md §6). The scaler knows the
moment it decides: after a scale-out it raises the group's desired capacity to the
instances the new desired counts need (never above the group's max, never lowering it).
Lowering stays the capacity provider's: it scales in only instances without tasks, and
managed termination protection keeps every instance that runs one. Raising to a count
twice, or late, is harmless: the same value again, or capacity the provider already added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dynamo_ecs import capacity
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.observability import logger


def instances_for(config: DeploymentConfig, counts: Mapping[ServiceRole, int]) -> int:
    """Instances the desired counts need: one frontend per instance, the GPUs shared. Pure."""
    gpus = {r: config.service(r).gpus_per_task for r in SERVICE_ROLES}
    if config.gpu_instance_type is None:
        return sum(counts[r] for r in SERVICE_ROLES)  # one task per instance
    return capacity.instances_needed(
        config.gpu_instance_type, counts["frontend"], counts["prefill"], gpus["frontend"], gpus["prefill"]
    )


def new_desired_capacity(needed: int, group: Mapping[str, Any]) -> int | None:
    """The group's new desired capacity, or None when it already has (or is asked for) enough. Pure."""
    target = min(needed, int(group["MaxSize"]))
    return target if target > int(group["DesiredCapacity"]) else None


def scale_ahead(config: DeploymentConfig, autoscaling: Any, counts: Mapping[ServiceRole, int]) -> str:
    """Raise the group's desired capacity for ``counts``; what was done, for the decision log.

    An AWS error is logged and swallowed: the capacity provider still adds the instances,
    a minute later; the desired counts are already applied.
    """
    name = config.gpu_autoscaling_group
    if name is None:
        return "scale-ahead: no Auto Scaling group configured"
    needed = instances_for(config, counts)
    try:
        groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if not groups:
            return f"scale-ahead: Auto Scaling group {name} not found"
        target = new_desired_capacity(needed, groups[0])
        if target is None:
            return f"scale-ahead: {name} already asks for {groups[0]['DesiredCapacity']} (needs {needed})"
        autoscaling.set_desired_capacity(
            AutoScalingGroupName=name, DesiredCapacity=target, HonorCooldown=False
        )
    except (ClientError, BotoCoreError) as exc:
        logger.warning(
            "scale-ahead failed; the capacity provider adds the instances", extra={"error": str(exc)}
        )
        return f"scale-ahead failed ({exc.__class__.__name__}); left to the capacity provider"
    return f"scale-ahead: {name} desired capacity {groups[0]['DesiredCapacity']} -> {target}"
