"""The states AWS refuses calls in, enforced on every AWS client the tests and the demo make.

moto accepts a call whatever state its resource is in; AWS does not. This layer hooks every
botocore client made in the process (the operator's, the tests' own, the CLI's) and answers
a call the way AWS would in the resource's live state, before it reaches moto:

==============================================  ===========================================
call                                            refused (error code: message)
==============================================  ===========================================
autoscaling SetInstanceProtection               an instance not InService, EnteringStandby or
                                                Standby: ``ValidationError: The instance ID
                                                is not in InService or EnteringStandby or
                                                Standby.`` (the whole call fails)
autoscaling CompleteLifecycleAction             no action of that group and hook waiting on the
                                                instance: ``ValidationError: No active
                                                Lifecycle Action found with instance ID ID``
ecs PutClusterCapacityProviders                 a provider left out while a task of the cluster
                                                is not STOPPED: ``ResourceInUseException: The
                                                specified capacity provider is in use and
                                                cannot be removed.``
ecs DeleteCapacityProvider                      a provider still associated with a cluster:
                                                ``ClientException`` (ECS's API reference: only
                                                capacity providers that aren't associated with
                                                a cluster can be deleted)
==============================================  ===========================================

Where moto cannot hold a state, the layer keeps it and shows it in moto's answers:

- an instance in a launch hook (``Pending:Wait``, or ``Pending`` before it): moto's Auto
  Scaling puts every instance InService at once and has no CompleteLifecycleAction. A test
  holds an instance with `AwsStateRules.hold_in_launch_hook`; DescribeAutoScalingGroups and
  DescribeAutoScalingInstances then report that state, and CompleteLifecycleAction (answered
  here) lets it go on (CONTINUE) or terminates it in moto (ABANDON), as Auto Scaling does.
- a task that is STOPPING: moto's StopTask makes a task STOPPED at once.
  `AwsStateRules.stop_task` stops it in moto and reports it STOPPING (desired status STOPPED)
  in DescribeTasks for as long as ECS would (deregistration delay plus stop timeout); the
  local runner (`devtools.local_ecs.runner`) reports its own stops the same way, from ECS's
  stop until its processes are gone (`task_stopping`, `task_stopped`).
- a stopped task's containers: moto's task has one container record, exit code 0, whatever
  ran. The local runner of one-off tasks (`devtools.local_ecs.one_off`) records each
  container's name, last status and exit code (`task_containers`); DescribeTasks shows them.
- a task's ``createdAt``: moto's tasks have none. The layer notes when RunTask or StartTask
  created each task; with `AwsStateRules.report_created_at` set (a test that needs ECS's order
  of creation), DescribeTasks reports it. Off by default: the rest of the suite sees moto's tasks.

`install` hooks every client created afterwards (``tests/conftest.py`` does it for the whole
session, the demo for its run); `rules` is the one table both share.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse, HTTPHeaders

from devtools.iam_check import enforce as iam_check

_PARAMS_KEY = "aws_state_rules_params"
PROTECTION_STATES = frozenset({"InService", "EnteringStandby", "Standby"})


@dataclass
class _Held:
    """An instance held before or in a launch hook, as moto cannot hold it."""

    group: str
    hook: str
    pending_until: float  # monotonic: ``Pending`` before this, ``Pending:Wait`` after

    def state(self, now: float) -> str:
        return "Pending" if now < self.pending_until else "Pending:Wait"


@dataclass
class AwsStateRules:
    clock: Callable[[], float] = time.monotonic
    held: dict[str, _Held] = field(default_factory=dict)
    stopping_until: dict[str, float] = field(default_factory=dict)  # task ARN -> monotonic
    refused: list[str] = field(default_factory=list)  # "Operation: code" of each refusal, in order
    containers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # task ARN -> containers
    created_at: dict[str, datetime] = field(default_factory=dict)  # task ARN -> when RunTask made it
    report_created_at: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self.held.clear()
            self.stopping_until.clear()
            self.refused.clear()
            self.containers.clear()
            self.created_at.clear()
            self.report_created_at = False

    # -- what tests set -----------------------------------------------------------------------

    def hold_in_launch_hook(self, instance_id: str, group: str, hook: str, pending_s: float = 0.0) -> None:
        """``instance_id`` is ``Pending`` for ``pending_s``, then waits in ``hook`` until completed."""
        with self._lock:
            self.held[instance_id] = _Held(group, hook, self.clock() + pending_s)

    def stop_task(self, cluster: str, task_arn: str, stopping_s: float, reason: str = "stopped") -> None:
        """Stop a task in moto and report it STOPPING for ``stopping_s``, STOPPED after."""
        _reader("ecs").stop_task(cluster=cluster, task=task_arn, reason=reason)
        with self._lock:
            self.stopping_until[task_arn] = self.clock() + stopping_s

    def task_stopping(self, task_arn: str) -> None:
        """A task stopped in moto is STOPPING until `task_stopped` (the local runner's own stop)."""
        with self._lock:
            self.stopping_until[task_arn] = math.inf

    def task_stopped(self, task_arn: str) -> None:
        with self._lock:
            self.stopping_until.pop(task_arn, None)

    def task_containers(self, task_arn: str, containers: list[dict[str, Any]]) -> None:
        """What DescribeTasks reports as ``task_arn``'s containers (name, lastStatus, exitCode)."""
        with self._lock:
            self.containers[task_arn] = [dict(c) for c in containers]

    def task_status(self, task_arn: str, moto_status: str) -> str:
        until = self.stopping_until.get(task_arn)
        if until is not None and self.clock() < until:
            return "STOPPING"
        return moto_status

    def instance_state(self, instance_id: str, moto_state: str) -> str:
        held = self.held.get(instance_id)
        return held.state(self.clock()) if held else moto_state

    # -- the hooks ----------------------------------------------------------------------------

    def remember_params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """The call's own parameters (``before-call`` sees them serialized), kept for `before_call`."""
        context[_PARAMS_KEY] = dict(params)

    def before_call(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        service, operation = model.service_model.service_name, model.name
        handler = _BEFORE.get((service, operation))
        return handler(self, context.get(_PARAMS_KEY, {})) if handler else None

    def after_call(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        service, operation = model.service_model.service_name, model.name
        if service == "autoscaling" and operation == "DescribeAutoScalingGroups":
            for group in parsed.get("AutoScalingGroups", []):
                for instance in group.get("Instances", []):
                    instance["LifecycleState"] = self.instance_state(
                        instance["InstanceId"], instance.get("LifecycleState", "")
                    )
        elif service == "autoscaling" and operation == "DescribeAutoScalingInstances":
            for instance in parsed.get("AutoScalingInstances", []):
                instance["LifecycleState"] = self.instance_state(
                    instance["InstanceId"], instance.get("LifecycleState", "")
                )
        elif service == "ecs" and operation in ("RunTask", "StartTask"):
            with self._lock:
                for task in parsed.get("tasks", []):
                    self.created_at.setdefault(task["taskArn"], datetime.now(UTC))
        elif service == "ecs" and operation == "DescribeTasks":
            for task in parsed.get("tasks", []):
                created = self.created_at.get(task["taskArn"])
                if self.report_created_at and created is not None:
                    task.setdefault("createdAt", created)
                task["lastStatus"] = self.task_status(task["taskArn"], task.get("lastStatus", ""))
                recorded = self.containers.get(task["taskArn"])
                if recorded is not None:
                    task["containers"] = [{**c, "taskArn": task["taskArn"]} for c in recorded]

    def _refuse(self, operation: str, code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
        self.refused.append(f"{operation}: {code}")
        return _error(code, message)

    # -- the rules ----------------------------------------------------------------------------

    def _set_instance_protection(self, params: dict[str, Any]) -> Any:
        ids = list(params.get("InstanceIds", []))
        found = _reader("autoscaling").describe_auto_scaling_instances(InstanceIds=ids)
        moto_states = {i["InstanceId"]: i["LifecycleState"] for i in found.get("AutoScalingInstances", [])}
        for instance_id in ids:
            if instance_id not in moto_states:
                continue  # moto answers for instances it does not know
            if self.instance_state(instance_id, moto_states[instance_id]) not in PROTECTION_STATES:
                return self._refuse(
                    "SetInstanceProtection",
                    "ValidationError",
                    f"The instance {instance_id} is not in InService or EnteringStandby or Standby.",
                )
        return None

    def _complete_lifecycle_action(self, params: dict[str, Any]) -> Any:
        instance_id = str(params.get("InstanceId", ""))
        group, hook = params.get("AutoScalingGroupName"), params.get("LifecycleHookName")
        with self._lock:
            held = self.held.get(instance_id)
            waiting = held is not None and held.state(self.clock()) == "Pending:Wait"
            if not waiting or held is None or (held.group, held.hook) != (group, hook):
                waiting = False
            else:
                del self.held[instance_id]
        if not waiting:
            return self._refuse(
                "CompleteLifecycleAction",
                "ValidationError",
                f"No active Lifecycle Action found with instance ID {instance_id}",
            )
        if params.get("LifecycleActionResult") == "ABANDON":
            # Auto Scaling terminates an abandoned launch (and would launch a replacement if the
            # group's desired capacity still asked for one).
            _reader("autoscaling").terminate_instance_in_auto_scaling_group(
                InstanceId=instance_id, ShouldDecrementDesiredCapacity=False
            )
        return _ok()

    def _tasks_not_stopped(self, cluster: str) -> list[str]:
        ecs = _reader("ecs")
        arns = [
            arn
            for desired in ("RUNNING", "STOPPED")
            for arn in ecs.list_tasks(cluster=cluster, desiredStatus=desired).get("taskArns", [])
        ]
        left = []
        for start in range(0, len(arns), 100):
            for task in ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100]).get("tasks", []):
                if self.task_status(task["taskArn"], task.get("lastStatus", "")) != "STOPPED":
                    left.append(task["taskArn"])
        return left

    def _put_cluster_capacity_providers(self, params: dict[str, Any]) -> Any:
        cluster = str(params.get("cluster", ""))
        described = _reader("ecs").describe_clusters(clusters=[cluster]).get("clusters", [])
        if not described:
            return None
        kept = {_provider_name(p) for p in params.get("capacityProviders", [])}
        removed = [p for p in described[0].get("capacityProviders", []) if _provider_name(p) not in kept]
        if removed and self._tasks_not_stopped(cluster):
            return self._refuse(
                "PutClusterCapacityProviders",
                "ResourceInUseException",
                "The specified capacity provider is in use and cannot be removed.",
            )
        return None

    def _delete_capacity_provider(self, params: dict[str, Any]) -> Any:
        name = _provider_name(str(params.get("capacityProvider", "")))
        ecs = _reader("ecs")
        arns = ecs.list_clusters().get("clusterArns", [])
        for cluster in ecs.describe_clusters(clusters=arns).get("clusters", []) if arns else []:
            if name in {_provider_name(p) for p in cluster.get("capacityProviders", [])}:
                return self._refuse(
                    "DeleteCapacityProvider",
                    "ClientException",
                    f"The capacity provider {name} is associated with cluster {cluster['clusterName']}: "
                    "only capacity providers that aren't associated with a cluster can be deleted.",
                )
        return None


_BEFORE: dict[tuple[str, str], Callable[[AwsStateRules, dict[str, Any]], Any]] = {
    ("autoscaling", "SetInstanceProtection"): AwsStateRules._set_instance_protection,
    ("autoscaling", "CompleteLifecycleAction"): AwsStateRules._complete_lifecycle_action,
    ("ecs", "PutClusterCapacityProviders"): AwsStateRules._put_cluster_capacity_providers,
    ("ecs", "DeleteCapacityProvider"): AwsStateRules._delete_capacity_provider,
}


def _provider_name(name_or_arn: str) -> str:
    return name_or_arn.rsplit("/", 1)[-1]


class _Body:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


def _response(status: int) -> AWSResponse:
    headers = HTTPHeaders()
    headers["x-amzn-RequestId"] = str(uuid.uuid4())
    return AWSResponse("http://aws-state-rules.invalid/", status, headers, _Body())


def _error(code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": "aws-state-rules"},
    }
    return _response(400), parsed


def _ok() -> tuple[AWSResponse, dict[str, Any]]:
    return _response(200), {"ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "aws-state-rules"}}


# -- installation ---------------------------------------------------------------------------------

rules = AwsStateRules()
_original_create_client = botocore.session.Session.create_client
_installed = False


_readers: dict[tuple[str, str | None, str | None], Any] = {}
_readers_lock = threading.Lock()


def _reader(service: str) -> Any:
    """A client for the rules' own reads and moto-side changes: unhooked, from the environment."""
    key = (service, os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_DEFAULT_REGION"))
    with _readers_lock:
        if key not in _readers:
            # The account owner's reads, not the calling function's: outside the IAM check.
            _readers[key] = iam_check.exempt(_original_create_client(botocore.session.get_session(), service))
        return _readers[key]


def _create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
    client = _original_create_client(self, *args, **kwargs)
    client.meta.events.register("before-parameter-build", rules.remember_params)
    client.meta.events.register("before-call", rules.before_call)
    client.meta.events.register("after-call", rules.after_call)
    return client


def install() -> None:
    """Every botocore client created from now on is checked (idempotent)."""
    global _installed
    if not _installed:
        botocore.session.Session.create_client = _create_client  # type: ignore[method-assign]
        _installed = True


def uninstall() -> None:
    global _installed
    if _installed:
        botocore.session.Session.create_client = _original_create_client  # type: ignore[method-assign]
        _installed = False


@contextlib.contextmanager
def enforced() -> Iterator[AwsStateRules]:
    """The rules on for the block, with a clean table (clients cached before keep no hooks)."""
    was_installed = _installed
    install()
    rules.clear()
    try:
        yield rules
    finally:
        rules.clear()
        if not was_installed:
            uninstall()
