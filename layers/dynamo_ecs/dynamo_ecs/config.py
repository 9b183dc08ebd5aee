"""Deployment configuration: what the operator manages and within which bounds.

The stack hands configuration to every function as environment variables with the prefix
``DYNAMO_ECS_``; ``__`` separates nesting levels, so ``DYNAMO_ECS_FRONTEND__MAX=6`` sets
``frontend.max``. Values that start with ``[`` or ``{`` are read as JSON; ``null`` unsets an
optional field. The config is
validated once per cold start (`load_config`); any problem raises `ConfigError` with one
line per field that names the field, what is wrong and the variable that fixes it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dynamo_ecs import capacity
from dynamo_ecs.errors import ConfigError

ENV_PREFIX = "DYNAMO_ECS_"
ROLE_ARN_PATTERN = r"^arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+$"
ServiceRole = Literal["frontend", "prefill"]
SERVICE_ROLES: tuple[ServiceRole, ...] = ("frontend", "prefill")
# The workers' DYN_SYSTEM_PORT in the stack's GPU specs unless <role>.system_port names another
# (endpoints/gpu_services.py), and the ports the collector reads their /metrics on; template.yaml
# opens these two to the collector (GpuFromCollector*WorkerMetrics). Two ports, so a frontend task
# and a prefill task can share an instance.
DEFAULT_WORKER_SYSTEM_PORTS: dict[ServiceRole, int] = {"frontend": 9091, "prefill": 9090}
_DNS_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+")


class StrictModel(BaseModel):
    """Unknown fields are errors: a typo in a variable name must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InfraConfig(StrictModel):
    """Where etcd and NATS run: one Fargate service of one task, or three members under DNS names."""

    cluster: str = Field("dynamo-fargate", min_length=1)
    service: str = Field("dynamo-infra", min_length=1)
    etcd_port: int = Field(2379, ge=1, le=65535)
    nats_port: int = Field(4222, ge=1, le=65535)
    nats_monitor_port: int = Field(8222, ge=1, le=65535)
    # The three-member tier's private DNS names (docs/infra-tier.md); empty: the single task.
    members: list[str] = Field(default_factory=list)

    @field_validator("members")
    @classmethod
    def _dns_names(cls, members: list[str]) -> list[str]:
        for name in members:
            if not _DNS_NAME.fullmatch(name) or re.fullmatch(r"[\d.]+", name):
                raise ValueError(
                    f"infra member {name!r} is not a DNS name (letters, digits, hyphens, dots; not an "
                    "address, which changes with the task): give the members' names as template.yaml's "
                    "InfraMemberNames output has them"
                )
        if members and len(members) != len(set(members)):
            raise ValueError(f"infra members {members} name one member twice: give each name once")
        return members


_SECRET_ARN_PATTERN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$"  # noqa: S105 - an ARN pattern, not a password


class PlanesConfig(StrictModel):
    """The authenticated, encrypted planes (docs/security-planes.md). Off while no secret is named.

    ``dynamo_secret_arn``: the Dynamo holder's secret (``Custom::DynamoPlaneCredentials``);
    set, every GPU task definition the operator renders carries its credentials as ECS secrets
    and the planes' TLS URLs (``https://`` for etcd, ``tls://`` for NATS).
    ``operator_secret_arn``: the operator holder's secret (CA bundle, client certificate with
    CN ``operator``); set (the metrics collector, with the three members), the collector reads
    each member's etcd ``/health`` and ``/metrics`` over mutual TLS (signals/etcd_health.py).
    """

    dynamo_secret_arn: str | None = Field(None, pattern=_SECRET_ARN_PATTERN)
    operator_secret_arn: str | None = Field(None, pattern=_SECRET_ARN_PATTERN)
    ca_writer_image: str = Field(
        "public.ecr.aws/docker/library/busybox:1.37", pattern=r"^[A-Za-z0-9._/:#@-]+$"
    )

    @property
    def enabled(self) -> bool:
        return self.dynamo_secret_arn is not None


LatencyStatistic = Literal["mean", "p90"]


class LatencyTargets(StrictModel):
    """Latency targets and the statistic each is set on.

    Defaults are Dynamo planner's SLA defaults, which are **means** over its interval
    (TTFT 500 ms, ITL 50 ms; FACTS.md §5): ``mean`` reads ``TimeToFirstTokenMean`` /
    ``InterTokenLatencyMean``, ``p90`` the p90 metrics. The older fields ``ttft_p90_ms`` /
    ``itl_p90_ms`` are still read: a p90 target of that value.
    """

    ttft_ms: float | None = Field(500.0, gt=0)
    ttft_statistic: LatencyStatistic = "mean"

    @model_validator(mode="before")
    @classmethod
    def _read_p90_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for signal in ("ttft", "itl"):
                if f"{signal}_p90_ms" in data:
                    value = data.pop(f"{signal}_p90_ms")
                    if f"{signal}_ms" in data:
                        raise ValueError(f"set {signal}_ms or {signal}_p90_ms, not both")
                    data[f"{signal}_ms"] = value
                    data.setdefault(f"{signal}_statistic", "p90")
        return data


class FrontendTargets(LatencyTargets):
    """Scaling targets of the frontend service (each task also runs one decode worker).

    A target set to null switches that signal off. Queue targets are requests per task:
    ``queue_depth_per_replica`` on Dynamo's queue depth outside the prefill phase (read as
    well under its older name ``queued_requests_per_replica``); the KV router's queue and
    the decode workers' own queue are off by default (parts of the same backlog).
    """

    itl_ms: float | None = Field(50.0, gt=0)
    itl_statistic: LatencyStatistic = "mean"
    # ITL at no load (a profile measures it). ITL cannot fall below it, so HPA's ratio rule
    # would keep replicas that do nothing; with the floor set, scale-in reads the part above
    # it, ``(value - floor) / (target - floor)``; without it, ITL only ever scales out.
    itl_floor_ms: float | None = Field(None, ge=0)
    queue_depth_per_replica: float | None = Field(8.0, gt=0)
    router_queue_per_replica: float | None = Field(None, gt=0)
    worker_queue_per_replica: float | None = Field(None, gt=0)
    gpu_utilization_pct: float | None = Field(80.0, gt=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _read_queued_requests_field(cls, data: Any) -> Any:
        if isinstance(data, dict) and "queued_requests_per_replica" in data:
            data = dict(data)
            if "queue_depth_per_replica" in data:
                raise ValueError("set queue_depth_per_replica or queued_requests_per_replica, not both")
            data["queue_depth_per_replica"] = data.pop("queued_requests_per_replica")
        return data


class PrefillTargets(LatencyTargets):
    """Scaling targets of the prefill service.

    Sized by Dynamo's prefill-side queue depth (``stage_requests{phase="prefill"}``). JetStream
    lag counts only for streams named in ``signals.jetstream_streams`` and is off by default:
    current Dynamo keeps no work in JetStream (FACTS.md §2); KEDA's default threshold is 10.
    """

    queue_depth_per_replica: float | None = Field(8.0, gt=0)
    router_queue_per_replica: float | None = Field(None, gt=0)
    worker_queue_per_replica: float | None = Field(None, gt=0)
    jetstream_lag_per_replica: float | None = Field(None, gt=0)
    gpu_utilization_pct: float | None = Field(80.0, gt=0, le=100)


class GpuServiceConfig(StrictModel):
    """One GPU service on the EC2 cluster and its scaling bounds."""

    service: str = Field(min_length=1)
    family: str = Field(min_length=1)
    min: int = Field(1, ge=0)
    max: int = Field(4, ge=0)
    gpus_per_task: int = Field(1, ge=1)
    metrics_port: int = Field(8000, ge=1, le=65535)
    # The workers' system port (DYN_SYSTEM_PORT): the stack's GPU specs bind it (their container
    # checks) and the collector reads the workers' /metrics on it. None: the role's default
    # (DEFAULT_WORKER_SYSTEM_PORTS), the one template.yaml opens to the collector; another port
    # needs its own rule there. Dynamo 1.6.1 parses DYN_SYSTEM_PORT as a signed 16-bit integer.
    system_port: int | None = Field(None, ge=1, le=32767)
    # Requests/s one task serves within the SLA (``dynamo-ecs profile``, or measured on your
    # GPUs): turns on the predictive floor for this service (scaling/forecast.py).
    capacity_rps: float | None = Field(None, gt=0)
    # Tokens/s one task serves within the SLA: input (prompt) tokens for prefill, output tokens
    # for the frontend's decode worker (a profile at your lengths: capacity_rps x its mean
    # length). With the token-rate datapoints it sizes the floor on tokens instead of requests,
    # so long prompts and long answers count for what they cost (scaling/forecast.py).
    capacity_tokens_per_s: float | None = Field(None, gt=0)


class FrontendConfig(GpuServiceConfig):
    service: str = Field("dynamo-frontend", min_length=1)
    family: str = Field("dynamo-frontend", min_length=1)
    targets: FrontendTargets = FrontendTargets()


class PrefillConfig(GpuServiceConfig):
    service: str = Field("dynamo-prefill", min_length=1)
    family: str = Field("dynamo-prefill", min_length=1)
    targets: PrefillTargets = PrefillTargets()


class ScalingPolicy(StrictModel):
    """How proposals become desired counts (semantics documented in docs/scaling.md)."""

    tolerance: float = Field(0.1, ge=0, lt=1)
    scale_up_stabilization_s: int = Field(0, ge=0)
    scale_down_stabilization_s: int = Field(300, ge=0)
    scale_up_max_step: int = Field(4, ge=1)
    scale_down_max_step: int = Field(1, ge=1)
    rate_limit_period_s: int = Field(60, ge=1)
    metric_max_age_s: int = Field(180, ge=10)
    # The period the scaler reads metrics at: 60 for standard metrics, 10 or 30 when the
    # collector samples several times a minute (signals.samples_per_invocation > 1).
    metric_period_s: int = 60

    @field_validator("metric_period_s")
    @classmethod
    def _cloudwatch_period(cls, value: int) -> int:
        if value not in (10, 30, 60):
            raise ValueError("must be 10, 30 or 60 (CloudWatch periods the collector can fill)")
        return value

    prefill_scale_to_zero: bool = False
    # Prefill is active (floor one replica, woken from zero) while its queue depth is above
    # this, while JetStream lag (when that signal is on) is above prefill_activation_lag, or
    # while the frontend refuses requests for lack of a worker.
    prefill_activation_queue: float = Field(0.0, ge=0)
    prefill_activation_lag: float = Field(0.0, ge=0)
    decision_log_ttl_days: int = Field(14, ge=1)
    # The predictive floor (with <role>.capacity_rps set): the request-rate trend over the last
    # trend_window_s, projected over startup_s, the time a new task takes to serve.
    startup_s: int = Field(120, ge=0, le=3600)
    trend_window_s: int = Field(300, ge=30, le=3600)
    # Spare capacity the floor keeps above the projected rate: capacity_rps is where a replica
    # just meets the SLA, and latency varies around its mean.
    floor_headroom: float = Field(0.15, ge=0, le=2)
    # A scale-in stops where the projected rate with this much more headroom needs the tasks.
    floor_hysteresis: float = Field(0.15, ge=0, le=2)
    # A service under the predictive floor scales in after this window instead of
    # scale_down_stabilization_s: the floor (with its hysteresis) holds what the rate still
    # needs, so the rest can go quickly. null: the long window always.
    floor_scale_down_s: int | None = Field(60, ge=0, le=3600)
    # Scale-in that pays. A task stopped leaves its instance billed, idle, until the capacity
    # provider releases it instance_release_s later (its scale-in needs 15 one-minute
    # datapoints); a burst within that time finds the task gone but the instance still billed,
    # and waits for a start-up. When a service's last scale-in was undone by a scale-out within
    # lull_hold_s (None: startup_s + instance_release_s), its traffic has lulls too short for a
    # release to pay: its next scale-in under the floor waits lull_hold_s instead of
    # floor_scale_down_s. 0 turns the hold off.
    instance_release_s: int = Field(900, ge=0, le=7200)
    lull_hold_s: int | None = Field(None, ge=0, le=7200)

    @property
    def lull_hold_window_s(self) -> int:
        """The hold before a scale-in under the predictive floor (`lull_hold_s`, or its default)."""
        return self.startup_s + self.instance_release_s if self.lull_hold_s is None else self.lull_hold_s

    # Ask the GPU Auto Scaling group for the instances a scale-out needs at once, instead of
    # waiting for the capacity provider's once-a-minute reservation metric (needs
    # gpu_autoscaling_group).
    scale_ahead: bool = True


# A JetStream selector: ``STREAM`` or ``STREAM/CONSUMER``. NATS forbids ``/`` (and whitespace,
# ``.``, ``*``, ``>``) in stream and consumer names, so the separator is unambiguous.
_JETSTREAM_SELECTOR = r"^[^\s.*>/\\]+(/[^\s.*>/\\]+)?$"


# The workers' request subjects on a NATS request plane, measured on 1.6.1 (component
# "backend" for decode, "prefill" for prefill; namespace "dynamo").
_REQUEST_SUBJECTS: dict[ServiceRole, str] = {
    "frontend": "dynamo_backend.generate-",
    "prefill": "dynamo_prefill.generate-",
}


def _request_subjects() -> dict[ServiceRole, str]:
    return dict(_REQUEST_SUBJECTS)


class SignalsConfig(StrictModel):
    """What the metrics collector reads and where it publishes (semantics in docs/signals.md)."""

    namespace: str = Field("DynamoEcs", min_length=1)
    scrape_timeout_s: float = Field(2.0, gt=0, le=30)
    # The JetStream streams whose depth counts (STREAM or STREAM/CONSUMER); empty: none is read.
    jetstream_streams: list[Annotated[str, Field(pattern=_JETSTREAM_SELECTOR)]] = Field(default_factory=list)
    # A consumer without its own inactive_threshold is inactive after this long without a
    # delivery or acknowledgement while nobody waits on it: reported, not counted.
    jetstream_inactive_after_s: float = Field(300.0, ge=1, le=86400)
    # The request plane is NATS (--request-plane nats): read NATS core's view of the
    # workers' request subscriptions (/connz). Their subjects start with these prefixes.
    nats_request_plane: bool = False
    nats_request_subjects: dict[ServiceRole, str] = Field(default_factory=_request_subjects)
    samples_per_invocation: int = Field(1, ge=1, le=6)
    # After publishing, send the scaler an EventBridge event when a value is above its scaling
    # target (signals/breach_events.py): scale-out without waiting for alarm evaluation.
    breach_events: bool = True
    # Monitor URLs of the other servers of a NATS cluster (http://host:8222). Empty: the infra
    # task's monitor only. With a cluster, each consumer is read from its leader's view.
    nats_cluster_monitors: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+/?$")]] = Field(
        default_factory=list
    )
    # A previous scrape older than this is a new baseline, not the start of a window: a
    # percentile over a long gap would be published as if it were the last minute.
    max_window_s: int = Field(300, ge=20, le=3600)
    gpu_metric_namespace: str = Field("CWAgent", min_length=1)
    gpu_metric_name: str = Field("nvidia_smi_utilization_gpu", min_length=1)
    gpu_metric_max_age_s: int = Field(300, ge=60, le=3600)


class RolloutConfig(StrictModel):
    """Guards on rolling GPU services to new task definition revisions."""

    max_attempts_per_endpoint: int = Field(3, ge=1)
    lease_ttl_s: int = Field(120, ge=10)


class DeploymentConfig(StrictModel):
    """Everything one operator deployment manages."""

    deployment: str = Field("dynamo", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    state_table: str = Field("dynamo-ecs-state", min_length=3)
    alert_topic_arn: str | None = None
    gpu_cluster: str = Field("dynamo-gpu", min_length=1)
    infra: InfraConfig = InfraConfig()
    planes: PlanesConfig = PlanesConfig()
    frontend: FrontendConfig = FrontendConfig()
    prefill: PrefillConfig = PrefillConfig()
    gpu_budget: int = Field(8, ge=1)
    # The GPU instance type (dynamo_ecs/capacity.py). Set, the budget counts the GPUs of the
    # instances the tasks need (one frontend per instance); unset, the GPUs the tasks ask for.
    gpu_instance_type: capacity.InstanceTypeName | None = None
    # The GPU cluster's Auto Scaling group: scaling.scale_ahead raises its desired capacity.
    gpu_autoscaling_group: str | None = Field(None, min_length=1)
    scaling: ScalingPolicy = ScalingPolicy()
    signals: SignalsConfig = SignalsConfig()
    rollout: RolloutConfig = RolloutConfig()
    dry_run: bool = False
    # The stack's GPU task roles: the only roles the operator's iam:PassRole allows, so the only
    # ones a GPU task definition may name (endpoints/task_roles.py). The stack sets both on
    # every function that registers task definitions; unset (tests, local runs), the roles of
    # a spec are passed as they are.
    gpu_execution_role_arn: str | None = Field(None, pattern=ROLE_ARN_PATTERN, max_length=2048)
    gpu_task_role_arn: str | None = Field(None, pattern=ROLE_ARN_PATTERN, max_length=2048)

    def service(self, role: ServiceRole) -> GpuServiceConfig:
        return self.frontend if role == "frontend" else self.prefill

    def worker_system_port(self, role: ServiceRole) -> int:
        """The port the stack's GPU specs give ``role``'s worker as DYN_SYSTEM_PORT (its health check)."""
        return self.service(role).system_port or DEFAULT_WORKER_SYSTEM_PORTS[role]

    def gpus_used(self, counts: Mapping[ServiceRole, int]) -> int:
        """The GPUs ``counts`` tasks take from the budget (see ``gpu_instance_type``)."""
        gpus = {r: self.service(r).gpus_per_task for r in SERVICE_ROLES}
        if self.gpu_instance_type is None:
            return sum(counts[r] * gpus[r] for r in SERVICE_ROLES)
        return capacity.gpus_paid(
            self.gpu_instance_type, counts["frontend"], counts["prefill"], gpus["frontend"], gpus["prefill"]
        )

    @model_validator(mode="after")
    def _check_bounds(self) -> DeploymentConfig:
        problems: list[str] = []
        for role in SERVICE_ROLES:
            svc = self.service(role)
            if svc.max < svc.min:
                problems.append(
                    f"{role}.max ({svc.max}) < {role}.min ({svc.min}): raise "
                    f"{env_name(role, 'max')} or lower {env_name(role, 'min')}"
                )
        if self.frontend.min < 1:
            problems.append(
                f"frontend.min ({self.frontend.min}) must be >= 1: the frontend serves the API; "
                f"set {env_name('frontend', 'min')}=1"
            )
        if self.prefill.min == 0 and not self.scaling.prefill_scale_to_zero:
            problems.append(
                "prefill.min (0) needs scaling.prefill_scale_to_zero: set "
                f"{env_name('scaling', 'prefill_scale_to_zero')}=true or "
                f"{env_name('prefill', 'min')}=1"
            )
        # A target whose metric is never published would block every scale-in (missing data).
        if self.prefill.targets.jetstream_lag_per_replica is not None and not self.signals.jetstream_streams:
            problems.append(
                "prefill.targets.jetstream_lag_per_replica needs the streams to count: set "
                f"{env_name('signals', 'jetstream_streams')} or "
                f"{env_name('prefill', 'targets', 'jetstream_lag_per_replica')}=null"
            )
        # The stack's GPU specs serve each worker's system server on this port (its container
        # check); a frontend task and a prefill task may share a multi-GPU instance (host mode).
        if self.worker_system_port("frontend") == self.worker_system_port("prefill"):
            problems.append(
                f"frontend.system_port and prefill.system_port are both {self.worker_system_port('prefill')} "
                "(set or by default): a frontend task and a prefill task on one instance cannot both bind "
                f"it; set {env_name('frontend', 'system_port')} and {env_name('prefill', 'system_port')} "
                "to two ports"
            )
        itl = self.frontend.targets
        if itl.itl_floor_ms is not None and itl.itl_ms is not None and itl.itl_floor_ms >= itl.itl_ms:
            problems.append(
                f"frontend.targets.itl_floor_ms ({itl.itl_floor_ms:g}) must be below itl_ms "
                f"({itl.itl_ms:g}): a target at or under the no-load latency can never be met; raise "
                f"{env_name('frontend', 'targets', 'itl_ms')} or lower "
                f"{env_name('frontend', 'targets', 'itl_floor_ms')}"
            )
        if self.gpu_instance_type is not None:
            instance = capacity.instance_type(self.gpu_instance_type)
            for role in SERVICE_ROLES:
                if self.service(role).gpus_per_task > instance.gpus:
                    problems.append(
                        f"{role}.gpus_per_task ({self.service(role).gpus_per_task}) > the GPUs of one "
                        f"{instance.name} ({instance.gpus}): lower {env_name(role, 'gpus_per_task')} "
                        "or choose a larger instance type"
                    )
        if not problems:
            min_gpus = self.gpus_used({r: self.service(r).min for r in SERVICE_ROLES})
            on = f" on {self.gpu_instance_type} instances" if self.gpu_instance_type else ""
            if self.gpu_budget < min_gpus:
                problems.append(
                    f"gpu_budget ({self.gpu_budget}) < GPUs the minimums need ({min_gpus}{on}): raise "
                    f"{env_name('gpu_budget')} or lower frontend.min / prefill.min"
                )
        if self.planes.operator_secret_arn is not None and not self.infra.members:
            problems.append(
                "planes.operator_secret_arn needs the three members' names (the planes are on only "
                f"with them): set {env_name('infra', 'members')} or "
                f"{env_name('planes', 'operator_secret_arn')}=null"
            )
        if (self.gpu_execution_role_arn is None) != (self.gpu_task_role_arn is None):
            problems.append(
                "gpu_execution_role_arn and gpu_task_role_arn go together: set both "
                f"({env_name('gpu_execution_role_arn')}, {env_name('gpu_task_role_arn')}) or neither"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def env_name(*path: str) -> str:
    """The environment variable that sets the config field at ``path``."""
    return ENV_PREFIX + "__".join(p.upper() for p in path)


def _nest_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__")]
        value: Any = raw
        if raw == "null":
            value = None  # switches an optional field (a scaling target) off
        elif raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{key}: not valid JSON ({exc.msg}); fix the value") from exc
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: conflicts with {env_name(*path[:-1])}; keep one")
            node = child
        node[path[-1]] = value
    return tree


def format_validation_error(exc: ValidationError, prefix: str | None = ENV_PREFIX) -> str:
    """One line per problem: ``field.path: message``, plus ``(set VARIABLE)`` when ``prefix`` is given."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        if not loc:
            lines.append(message)
        elif prefix is None:
            lines.append(f"{'.'.join(loc)}: {message}")
        else:
            variable = prefix + "__".join(p.upper() for p in loc)
            lines.append(f"{'.'.join(loc)}: {message} (set {variable})")
    return "; ".join(lines)


def load_config(environ: Mapping[str, str] | None = None) -> DeploymentConfig:
    """Read and validate the configuration from the environment, or raise `ConfigError`."""
    tree = _nest_environment(os.environ if environ is None else environ)
    try:
        return DeploymentConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {format_validation_error(exc)}") from exc
