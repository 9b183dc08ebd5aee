"""The Delete's steps that must fit its time budget and leave no instance billing.

A custom resource's Delete runs in one Lambda invocation (900 s at most, Lambda's maximum)
and must answer CloudFormation before it ends. Its steps grow with the deployment's history
or size, or wait on AWS:

- deregistering the families' revisions: one call per revision, however many years of
  rollouts there were. `deregister_revisions` stops at its deadline and logs how to finish
  by hand; a revision left ACTIVE costs nothing and blocks nothing.
- waiting for the GPU cluster's tasks: ECS refuses to remove the capacity provider from the
  cluster (CloudFormation's next step) while any task is not STOPPED, and a deleted service's
  tasks stay STOPPING for the target group's deregistration delay plus their stop timeout.
  `tasks_not_stopped` says which are left.
- releasing the instances: the Auto Scaling group has ``NewInstancesProtectedFromScaleIn``
  (managed termination protection needs it), and instances keep that protection after the
  services and the capacity provider are gone, so CloudFormation's delete of the group would
  wait on them. AWS refuses SetInstanceProtection outside InService/EnteringStandby/Standby:
  `release_instances` abandons launches held in the launch hook (``Pending:Wait``) and
  unprotects only instances in those states; `stop_launching` first sizes the group to zero,
  so an abandoned launch is not replaced and nothing new launches while the Delete runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dynamo_ecs.observability import logger

# SetInstanceProtection takes at most 50 instance ids per call, DescribeTasks 100 tasks.
PROTECTION_BATCH = 50
DESCRIBE_TASKS_BATCH = 100


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


# Lifecycle states in which SetInstanceProtection is allowed (AWS refuses it in every other one).
PROTECTION_STATES = frozenset({"InService", "EnteringStandby", "Standby"})
# The launch hook holds an instance here until its hook is completed (or times out to CONTINUE).
LAUNCH_HOOK_STATE = "Pending:Wait"
# On the way out already: nothing to unprotect, nothing that can reach InService.
LEAVING_PREFIXES = ("Terminating", "Terminated", "Detaching", "Detached")
# Auto Scaling's answers to a call that may go through a moment later.
RETRY_NEXT_PASS = frozenset({"ScalingActivityInProgress", "ResourceContention"})


@dataclass
class GroupRelease:
    """What one pass over the group did, and what still holds the group's deletion."""

    found: bool = True
    unprotected: int = 0
    abandoned: int = 0
    # Protected instances on their way to InService (Pending, Pending:Proceed, in the hook when
    # its completion was refused): the next pass unprotects or abandons them.
    launching: list[str] = field(default_factory=list)
    # Protected instances left protected on this pass (``unprotect=False``, or a refused call).
    protected: list[str] = field(default_factory=list)
    sized_to_zero: bool = True

    @property
    def settled(self) -> bool:
        return not self.launching and not self.protected and self.sized_to_zero


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def stop_launching(autoscaling: Any, group: str, described: dict[str, Any] | None = None) -> bool:
    """Size the group to zero so nothing new launches (an abandoned launch is not replaced).

    True once the group is at zero (or gone: a repeated Delete). CloudFormation's own delete
    of the group does the same next; doing it first stops managed scaling from launching into
    a deployment that is being torn down. A scaling activity or a concurrent change that makes
    Auto Scaling refuse the update now is tried again on the next pass.
    """
    if described is None:
        found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group]).get(
            "AutoScalingGroups", []
        )
        if not found:
            return True
        described = found[0]
    if (described.get("MinSize"), described.get("MaxSize"), described.get("DesiredCapacity")) == (0, 0, 0):
        return True
    try:
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=group, MinSize=0, MaxSize=0, DesiredCapacity=0
        )
    except Exception as exc:
        if _error_code(exc) not in RETRY_NEXT_PASS:
            raise
        logger.info("group not sized to zero yet; retrying on the next pass", extra={"error": str(exc)})
        return False
    return True


def release_instances(
    autoscaling: Any, group: str, launch_hook: str | None, unprotect: bool = True
) -> GroupRelease:
    """One pass: abandon launches held in ``launch_hook``; with ``unprotect``, unprotect what AWS allows.

    AWS refuses SetInstanceProtection for an instance outside InService, EnteringStandby and
    Standby (a ValidationError that fails the whole call), so only those are sent. An instance
    in the launch hook (``Pending:Wait``) is abandoned instead: Auto Scaling terminates it, and
    it never reaches InService protected. A protected instance still launching before or after
    the hook is left for the next pass (`GroupRelease.launching`). Safe to repeat and to run
    concurrently: a hook completed meanwhile, or an instance that changed state between the
    describe and the call, is looked at again on the next pass.
    """
    result = GroupRelease()
    described = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    groups = described.get("AutoScalingGroups", [])
    if not groups:
        result.found = False
        return result
    result.sized_to_zero = stop_launching(autoscaling, group, groups[0])
    to_unprotect: list[str] = []
    for instance in groups[0].get("Instances", []):
        instance_id, state = instance["InstanceId"], str(instance.get("LifecycleState", ""))
        if state.startswith(LEAVING_PREFIXES):
            continue
        if (
            state == LAUNCH_HOOK_STATE
            and launch_hook
            and _abandon_launch(autoscaling, group, launch_hook, instance_id)
        ):
            result.abandoned += 1
            continue
        if not instance.get("ProtectedFromScaleIn"):
            continue
        if state not in PROTECTION_STATES:
            result.launching.append(instance_id)
        elif unprotect:
            to_unprotect.append(instance_id)
        else:
            result.protected.append(instance_id)
    for start in range(0, len(to_unprotect), PROTECTION_BATCH):
        batch = to_unprotect[start : start + PROTECTION_BATCH]
        try:
            autoscaling.set_instance_protection(
                AutoScalingGroupName=group, InstanceIds=batch, ProtectedFromScaleIn=False
            )
            result.unprotected += len(batch)
        except Exception as exc:
            if _error_code(exc) not in RETRY_NEXT_PASS | {"ValidationError"}:
                raise
            # One of them left InService since the describe: look again on the next pass.
            logger.info("instance protection refused; retrying on the next pass", extra={"error": str(exc)})
            result.protected.extend(batch)
    if result.unprotected or result.abandoned:
        logger.info(
            "GPU instances released",
            extra={"group": group, "unprotected": result.unprotected, "abandoned": result.abandoned},
        )
    return result


def _abandon_launch(autoscaling: Any, group: str, hook: str, instance_id: str) -> bool:
    """Complete ``instance_id``'s launch hook with ABANDON; False if no action was waiting on it."""
    try:
        autoscaling.complete_lifecycle_action(
            AutoScalingGroupName=group,
            LifecycleHookName=hook,
            InstanceId=instance_id,
            LifecycleActionResult="ABANDON",
        )
    except Exception as exc:
        if _error_code(exc) not in RETRY_NEXT_PASS | {"ValidationError"}:
            raise
        # Completed meanwhile (its user data, a concurrent Delete) or held by another hook.
        logger.info("no launch action to abandon", extra={"instance": instance_id, "error": str(exc)})
        return False
    return True


def tasks_not_stopped(ecs: Any, cluster: str) -> list[str]:
    """The cluster's tasks whose last status is not STOPPED yet (STOPPING ones included).

    ECS refuses to take a capacity provider off a cluster while any of its tasks is not
    STOPPED. A task being stopped has desired status STOPPED, so both lists are read.
    """
    arns: list[str] = []
    paginator = ecs.get_paginator("list_tasks")
    for desired in ("RUNNING", "STOPPED"):
        for page in paginator.paginate(cluster=cluster, desiredStatus=desired):
            arns.extend(page.get("taskArns", []))
    left: list[str] = []
    for start in range(0, len(arns), DESCRIBE_TASKS_BATCH):
        described = ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + DESCRIBE_TASKS_BATCH])
        left.extend(t["taskArn"] for t in described.get("tasks", []) if t.get("lastStatus") != "STOPPED")
    return left
