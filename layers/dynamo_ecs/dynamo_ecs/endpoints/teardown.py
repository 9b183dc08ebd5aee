"""The Delete's steps that must fit its time budget and leave no instance billing.

A custom resource's Delete runs in one Lambda invocation (300 s at most here) and must answer
CloudFormation before it ends. Two of its steps grow with the deployment's history or size:

- deregistering the families' revisions: one call per revision, however many years of
  rollouts there were. `deregister_revisions` stops at its deadline and logs how to finish
  by hand; a revision left ACTIVE costs nothing and blocks nothing.
- clearing scale-in protection: the Auto Scaling group has ``NewInstancesProtectedFromScaleIn``
  (managed termination protection needs it), and instances keep that protection after the
  services and the capacity provider are gone, so CloudFormation's delete of the group would
  wait on them. `clear_scale_in_protection` unprotects every instance of the stack's group.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dynamo_ecs.observability import logger

# SetInstanceProtection takes at most 50 instance ids per call.
PROTECTION_BATCH = 50


@dataclass
class Deadline:
    """A point in monotonic time; ``clock`` is swappable so tests need no real waiting."""

    at: float
    clock: Callable[[], float] = field(default=time.monotonic)

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + max(seconds, 0.0), clock)

    def remaining(self) -> float:
        return max(self.at - self.clock(), 0.0)

    def share(self, fraction: float) -> Deadline:
        """An earlier deadline: ``fraction`` of the time left from now."""
        return Deadline(self.clock() + self.remaining() * fraction, self.clock)


@dataclass
class Deregistration:
    deregistered: int = 0
    complete: bool = True


def family_of(arn: str) -> str:
    """``arn:...:task-definition/NAME:7`` -> ``NAME``."""
    return arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]


def deregister_revisions(
    ecs: Any, families: list[str], deadline: Deadline, seconds_per_call: float = 1.0
) -> Deregistration:
    """Deregister the families' ACTIVE revisions until ``deadline``; say what is left.

    ``seconds_per_call`` is the time kept in hand for the call under way (a throttled
    DeregisterTaskDefinition with botocore's retries can take that long).
    """
    result = Deregistration()
    for family in families:
        pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status="ACTIVE")
        for page in pages:
            for arn in page.get("taskDefinitionArns", []):
                if family_of(arn) != family:  # familyPrefix also matches "<family>-other"
                    continue
                if deadline.remaining() < seconds_per_call:
                    result.complete = False
                    logger.warning(
                        "time is up: revisions left ACTIVE (harmless); finish by hand with "
                        "aws ecs list-task-definitions --family-prefix FAMILY --status ACTIVE "
                        "and aws ecs deregister-task-definition",
                        extra={"families": families, "deregistered": result.deregistered},
                    )
                    return result
                ecs.deregister_task_definition(taskDefinition=arn)
                result.deregistered += 1
    return result


def clear_scale_in_protection(autoscaling: Any, group: str) -> int:
    """Unprotect every instance of Auto Scaling group ``group``; the number unprotected.

    A group that is gone already (a repeated Delete) has nothing to unprotect.
    """
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    protected = [
        instance["InstanceId"]
        for found in described.get("AutoScalingGroups", [])
        for instance in found.get("Instances", [])
        if instance.get("ProtectedFromScaleIn")
    ]
    for start in range(0, len(protected), PROTECTION_BATCH):
        autoscaling.set_instance_protection(
            AutoScalingGroupName=group,
            InstanceIds=protected[start : start + PROTECTION_BATCH],
            ProtectedFromScaleIn=False,
        )
    if protected:
        logger.info("scale-in protection cleared", extra={"group": group, "instances": len(protected)})
    return len(protected)
