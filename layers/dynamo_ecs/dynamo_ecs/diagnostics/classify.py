"""What ECS and Auto Scaling say went wrong, sorted into the four kinds of the Dynamo ECS guide.

Pure: an EventBridge event (as AWS documents it) in, a `Finding` (what broke, which kind,
the likely fix), a `Resolution` (the service or the instance group is healthy again) or
nothing out. The four kinds are the troubleshooting guide's: tasks that fail to start, no
GPU capacity, network problems, registry authentication. The runtime (`runtime.py`) adds
the last log lines of a stopped task, records the finding once and alerts once.

Each finding has a ``signature`` (kind, service, a short cause) that stays the same for the
same trouble, so one broken image is one diagnosis however many tasks stop on it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.errors import InvalidInputError

Kind = Literal["tasks_fail_to_start", "no_gpu_capacity", "network", "registry_auth"]
KIND_TITLES: dict[Kind, str] = {
    "tasks_fail_to_start": "tasks fail to start",
    "no_gpu_capacity": "no GPU capacity",
    "network": "network",
    "registry_auth": "registry authentication",
}
# The "service" of a finding about the GPU instances themselves (the Auto Scaling group).
GPU_INSTANCES = "gpu-instances"

SERVICE_ACTION = "ECS Service Action"
DEPLOYMENT_STATE_CHANGE = "ECS Deployment State Change"
TASK_STATE_CHANGE = "ECS Task State Change"
LAUNCH_UNSUCCESSFUL = "EC2 Instance Launch Unsuccessful"
LAUNCH_SUCCESSFUL = "EC2 Instance Launch Successful"
DETAIL_TYPES = (
    SERVICE_ACTION,
    DEPLOYMENT_STATE_CHANGE,
    TASK_STATE_CHANGE,
    LAUNCH_UNSUCCESSFUL,
    LAUNCH_SUCCESSFUL,
)

# Stops that are the scheduler's or a person's own doing (scale-in, a rollout, a stop-task).
BENIGN_STOP_CODES = {"ServiceSchedulerInitiated", "UserInitiated", "SpotInterruption", "TerminationNotice"}

_NETWORK = re.compile(
    r"i/o timeout|dial tcp|no such host|connection refused|context deadline exceeded|"
    r"tls handshake timeout|network is unreachable|connection reset|timed out",
    re.IGNORECASE,
)
_AUTH = re.compile(
    r"\b401\b|\b403\b|unauthori[sz]ed|authentication required|access ?denied|denied:|"
    r"no basic auth|unable to retrieve secret|secretsmanager|asm fetching secret|invalid username|"
    r"pull access denied",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"manifest unknown|not found|does not exist|no such manifest", re.IGNORECASE)
_PULL = re.compile(r"CannotPullContainerError|pull image|ResourceInitializationError", re.IGNORECASE)
_OOM = re.compile(r"OutOfMemory|killed due to memory", re.IGNORECASE)

FIX_CAPACITY = (
    "No GPU instance has room for the task. The capacity provider launches instances by itself: "
    "if none comes, the Auto Scaling group's launch failures say why (quota or no capacity in the "
    "zone, also diagnosed here); `dynamo-ecs doctor` checks the quota and the zones. Otherwise "
    "lower FrontendMax / PrefillMax or raise GpuBudget so the group may grow."
)
FIX_QUOTA = (
    "The account's vCPU quota for this instance family is used up. Request more in Service Quotas "
    "(EC2, 'Running On-Demand G and VT instances', L-DB2E81BA; P instances: L-417A185B) for "
    "GpuBudget x the instance type's vCPUs; `dynamo-ecs doctor` shows the quota and what the maximum needs."
)
FIX_INSUFFICIENT = (
    "AWS has no free capacity of this instance type in that zone right now; the group keeps retrying. "
    "Add subnets in other zones to TaskSubnetIds, choose another GpuInstanceType, or reserve capacity "
    "(On-Demand Capacity Reservation)."
)
FIX_NOT_OFFERED = (
    "The instance type is not offered in that zone: use TaskSubnetIds in zones that offer it "
    "(`dynamo-ecs doctor` lists them) or another GpuInstanceType."
)
FIX_LAUNCH = (
    "The Auto Scaling group cannot launch GPU instances: read the message, fix the launch template or role."
)
FIX_REGISTRY_AUTH = (
    "The registry refused the login, or the task could not read it. NgcSecretArn must be a Secrets "
    'Manager secret {"username": "$oauthtoken", "password": "<NGC API key>"} with a current key '
    "(`dynamo-ecs doctor` checks its shape without printing it); the execution role may read only that "
    "secret. After fixing it: `dynamo-ecs redeploy --force`."
)
FIX_NETWORK = (
    "The GPU instances could not reach the registry (nvcr.io) or Secrets Manager. TaskSubnetIds need a "
    "route out: a NAT gateway (nvcr.io and Hugging Face are on the internet; VPC endpoints alone cannot "
    "reach them), and security groups that allow outbound HTTPS. `dynamo-ecs doctor` checks the routes."
)
FIX_IMAGE_NOT_FOUND = (
    "The image does not exist in the registry: check DynamoImage (tag spelled as NGC lists it), then "
    "`dynamo-ecs redeploy --image IMAGE`."
)
FIX_OOM = (
    "A container ran out of memory: give the task more memory (the spec's memory, within the instance's), "
    "a larger GpuInstanceType, or a smaller model."
)
FIX_EXITED = (
    "An essential container exited, so ECS stopped the task. The last log lines below usually say why: "
    "a `cd` into a path the image release does not have, a model that could not be downloaded, a flag "
    "the Dynamo release does not know, or a lost etcd (the operator then rolls the service onto the new "
    "address by itself)."
)
FIX_DEPLOYMENT = (
    "ECS's circuit breaker stopped the rollout and rolled back. The stopped tasks' reasons (other "
    "diagnoses, `dynamo-ecs status`) say why; after the fix, `dynamo-ecs redeploy --force`."
)
FIX_START_IMPAIRED = (
    "The service cannot start tasks reliably: see the stopped tasks' reasons (other diagnoses, "
    "`dynamo-ecs status`)."
)
FIX_CONFIGURATION = (
    "ECS rejected the task's configuration: read the reason, fix the spec, `dynamo-ecs redeploy`."
)
FIX_HEALTH = (
    "The load balancer's health check failed: the frontend did not answer /health on :8000 in time "
    "(model still loading, or the process exited; see the log lines)."
)


# (what the stopped and container reasons match, kind, cause, what happened, fix): first match wins.
Rule = tuple[re.Pattern[str], Kind, str, str, str]
_PULL_RULES: list[Rule] = [
    (
        _NETWORK,
        "network",
        "pull-unreachable",
        "the image could not be pulled (registry unreachable)",
        FIX_NETWORK,
    ),
    (
        _AUTH,
        "registry_auth",
        "pull-unauthorized",
        "the image could not be pulled (login refused)",
        FIX_REGISTRY_AUTH,
    ),
    (_NOT_FOUND, "tasks_fail_to_start", "image-not-found", "the image does not exist", FIX_IMAGE_NOT_FOUND),
    (re.compile(""), "network", "pull-failed", "the image could not be pulled", FIX_NETWORK),
]
_STOP_RULES: list[Rule] = [
    (_OOM, "tasks_fail_to_start", "out-of-memory", "a container ran out of memory", FIX_OOM),
    (
        re.compile(r"health check", re.IGNORECASE),
        "tasks_fail_to_start",
        "health-check",
        "the task failed its health checks",
        FIX_HEALTH,
    ),
]


# (what the launch failure's message matches, cause, what happened, fix): first match wins.
_LAUNCH_RULES: list[tuple[re.Pattern[str], str, str, str]] = [
    (
        re.compile(r"vcpu limit|VcpuLimitExceeded|InstanceLimitExceeded|instance limit", re.IGNORECASE),
        "quota",
        "vCPU quota reached",
        FIX_QUOTA,
    ),
    (
        re.compile(r"sufficient .* capacity|InsufficientInstanceCapacity", re.IGNORECASE),
        "insufficient-capacity",
        "no capacity",
        FIX_INSUFFICIENT,
    ),
    (
        re.compile(r"not supported in your requested Availability Zone|Unsupported", re.IGNORECASE),
        "type-not-offered",
        "instance type not offered",
        FIX_NOT_OFFERED,
    ),
    (re.compile(""), "launch-failed", "see the message", FIX_LAUNCH),
]


# Service action events that mean tasks fail to start: event name -> (cause, what happened, fix).
_TASKS_FAIL_ACTIONS = {
    "SERVICE_TASK_CONFIGURATION_FAILURE": (
        "configuration",
        "ECS rejected the task configuration",
        FIX_CONFIGURATION,
    ),
    "SERVICE_TASK_START_IMPAIRED": (
        "start-impaired",
        "the service cannot start tasks consistently",
        FIX_START_IMPAIRED,
    ),
}


class Finding(BaseModel):
    """One thing that went wrong, classified, with the likely fix."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    service: str  # the role ("frontend", "prefill") or GPU_INSTANCES
    cause: str  # short and stable: the same trouble gives the same cause
    summary: str
    evidence: str  # what AWS said, as it said it
    fix: str
    source: str  # the event's detail-type
    event_id: str
    at: str  # the event's time (ISO 8601)
    task_arn: str | None = None
    task_definition_arn: str | None = None
    container: str | None = None

    @property
    def signature(self) -> str:
        return f"{self.kind}/{self.service}/{self.cause}"


class Resolution(BaseModel):
    """The service (or the instance group) is healthy again: its open diagnoses close."""

    model_config = ConfigDict(frozen=True)

    service: str
    reason: str
    event_id: str
    at: str


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(min_length=1)
    source: str
    detail_type: str = Field(alias="detail-type")
    time: str
    resources: list[str] = Field(default_factory=list)
    detail: dict[str, Any]


def _role_of_service(name: str, config: DeploymentConfig) -> str | None:
    for role in ("frontend", "prefill"):
        if name == config.service(role).service:
            return role
    return None


def _service_role(resources: list[str], config: DeploymentConfig) -> str | None:
    for arn in resources:
        if ":service/" in arn:
            return _role_of_service(arn.rsplit("/", 1)[-1], config)
    return None


def classify(event: Any, config: DeploymentConfig) -> Finding | Resolution | None:
    """The finding or resolution an event carries; None when it says nothing wrong or is not ours.

    Raises `InvalidInputError` for something that is not an EventBridge event at all.
    """
    try:
        envelope = _Envelope.model_validate(event)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors(include_url=False))
        raise InvalidInputError(f"not an EventBridge event (bad or missing: {fields})") from exc
    if envelope.detail_type == SERVICE_ACTION:
        return _service_action(envelope, config)
    if envelope.detail_type == DEPLOYMENT_STATE_CHANGE:
        return _deployment(envelope, config)
    if envelope.detail_type == TASK_STATE_CHANGE:
        return _task_stopped(envelope, config)
    if envelope.detail_type in (LAUNCH_UNSUCCESSFUL, LAUNCH_SUCCESSFUL):
        return _launch(envelope)
    return None


def _finding(envelope: _Envelope, **fields: Any) -> Finding:
    return Finding(source=envelope.detail_type, event_id=envelope.id, at=envelope.time, **fields)


def _service_action(envelope: _Envelope, config: DeploymentConfig) -> Finding | Resolution | None:
    role = _service_role(envelope.resources, config)
    if role is None:
        return None
    name = str(envelope.detail.get("eventName", ""))
    reason = str(envelope.detail.get("reason", "") or "")
    if name == "SERVICE_STEADY_STATE":
        return Resolution(service=role, reason=name, event_id=envelope.id, at=envelope.time)
    if name == "SERVICE_TASK_PLACEMENT_FAILURE":
        resource = reason.removeprefix("RESOURCE:") if reason.startswith("RESOURCE:") else "placement"
        return _finding(
            envelope,
            kind="no_gpu_capacity",
            service=role,
            cause=f"placement-{resource.lower()}",
            summary=f"{role}: a task cannot be placed ({reason or 'no reason given'})",
            evidence=f"{name}: {reason}",
            fix=FIX_CAPACITY,
        )
    if name in _TASKS_FAIL_ACTIONS:
        cause, what, fix = _TASKS_FAIL_ACTIONS[name]
        return _finding(
            envelope,
            kind="tasks_fail_to_start",
            service=role,
            cause=cause,
            summary=f"{role}: {what}",
            evidence=f"{name}: {reason}".rstrip(": "),
            fix=fix,
        )
    return None


def _deployment(envelope: _Envelope, config: DeploymentConfig) -> Finding | Resolution | None:
    role = _service_role(envelope.resources, config)
    if role is None:
        return None
    name = str(envelope.detail.get("eventName", ""))
    if name == "SERVICE_DEPLOYMENT_COMPLETED":
        return Resolution(service=role, reason=name, event_id=envelope.id, at=envelope.time)
    if name != "SERVICE_DEPLOYMENT_FAILED":
        return None
    reason = str(envelope.detail.get("reason", "") or "")
    return _finding(
        envelope,
        kind="tasks_fail_to_start",
        service=role,
        cause="deployment-failed",
        summary=f"{role}: the deployment failed and was rolled back",
        evidence=f"{name}: {reason}",
        fix=FIX_DEPLOYMENT,
    )


def _task_stopped(envelope: _Envelope, config: DeploymentConfig) -> Finding | None:
    detail = envelope.detail
    if detail.get("lastStatus") != "STOPPED":
        return None
    group = str(detail.get("group", ""))
    role = _role_of_service(group.removeprefix("service:"), config) if group.startswith("service:") else None
    if role is None:
        return None
    stop_code = str(detail.get("stopCode", "") or "")
    stopped_reason = str(detail.get("stoppedReason", "") or "")
    containers = [c for c in detail.get("containers", []) if isinstance(c, dict)]
    failing = next((c for c in containers if c.get("reason")), None) or next(
        (c for c in containers if c.get("exitCode") not in (None, 0)), None
    )
    container_reason = str(failing.get("reason", "")) if failing else ""
    text = f"{stopped_reason} {container_reason}"
    if stop_code in BENIGN_STOP_CODES and not _OOM.search(text):
        return None
    base = {
        "service": role,
        "task_arn": detail.get("taskArn"),
        "task_definition_arn": detail.get("taskDefinitionArn"),
        "container": failing.get("name") if failing else None,
        "evidence": " | ".join(p for p in (stop_code, stopped_reason, container_reason) if p),
    }
    rules = _PULL_RULES if _PULL.search(text) else _STOP_RULES
    for pattern, kind, cause, what, fix in rules:
        if pattern.search(text):
            return _finding(envelope, kind=kind, cause=cause, summary=f"{role}: {what}", fix=fix, **base)
    if "RESOURCE:" in text:
        resource = text.split("RESOURCE:", 1)[1].split()[0].strip(".,)").lower()
        return _finding(
            envelope,
            kind="no_gpu_capacity",
            cause=f"placement-{resource}",
            summary=f"{role}: the task could not be placed (RESOURCE:{resource.upper()})",
            fix=FIX_CAPACITY,
            **base,
        )
    exit_code = failing.get("exitCode") if failing else None
    return _finding(
        envelope,
        kind="tasks_fail_to_start",
        cause=f"exited-{exit_code}" if exit_code is not None else "stopped",
        summary=f"{role}: an essential container exited"
        + (f" with code {exit_code}" if exit_code is not None else ""),
        fix=FIX_EXITED,
        **base,
    )


def _launch(envelope: _Envelope) -> Finding | Resolution | None:
    detail = envelope.detail
    if envelope.detail_type == LAUNCH_SUCCESSFUL:
        return Resolution(
            service=GPU_INSTANCES, reason="instance launched", event_id=envelope.id, at=envelope.time
        )
    message = str(detail.get("StatusMessage", "") or "")
    zone = str((detail.get("Details") or {}).get("Availability Zone", ""))
    group = str(detail.get("AutoScalingGroupName", ""))
    where = f" in {zone}" if zone else ""
    evidence = f"{group}{where}: {message}"
    for pattern, cause, what, fix in _LAUNCH_RULES:
        if pattern.search(message):
            return _finding(
                envelope,
                kind="no_gpu_capacity",
                service=GPU_INSTANCES,
                cause=cause,
                summary=f"GPU instances cannot launch: {what}" + (where if cause != "quota" else ""),
                evidence=evidence,
                fix=fix,
            )
    raise AssertionError("the last launch rule matches everything")


_TOKEN_LIKE = re.compile(r"nvapi-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{8,}")
_KEY_VALUE = re.compile(r"(?i)\b(password|passwd|token|secret|api[_-]?key)(\"?\s*[=:]\s*\"?)[^\s\",]+")


def redact(line: str) -> str:
    """A log line with what looks like an NGC key, a Hugging Face token or a password masked."""
    return _KEY_VALUE.sub(r"\1\2****", _TOKEN_LIKE.sub("****", line))
