"""The GPU services' life cycle, owned by the operator through a CloudFormation custom resource.

CloudFormation does not own the two GPU services: if it did, a later ``sam deploy`` would put
its own task definition (with ``IP_ADDRESS`` placeholders) and desired count back. Instead
the ``Custom::DynamoGpuServices`` resource hands the operator its properties:

- Create: store both specs, create each service (if it does not exist yet) on a revision
  rendered at the infra task running now, with the initial desired count;
- Update: store the new specs, then the usual endpoint reconcile rolls them out at the
  current address. Desired counts are never touched (the scaler owns them);
- Delete: stop the Auto Scaling group launching, scale both services to zero and delete them,
  deregister the families' revisions, wait until no task of the GPU cluster is left, abandon
  launches held in the launch hook and clear the group's scale-in protection, within the time
  left to answer (FAILED, saying what is left, when it runs out).

Every step is safe to repeat: CloudFormation may send the same request twice.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from dynamo_ecs import aws, capacity
from dynamo_ecs.config import (
    DEFAULT_WORKER_SYSTEM_PORTS,
    SERVICE_ROLES,
    DeploymentConfig,
    ServiceRole,
    format_validation_error,
)
from dynamo_ecs.dynamo_release import ENGINE_MODULES
from dynamo_ecs.endpoints.model_weights import HOST_DIR_PATTERN, with_model_weights
from dynamo_ecs.endpoints.reconcile import APPLIED_RECORD, EndpointReconciler, digest
from dynamo_ecs.endpoints.render import RenderContext, plane_credentials
from dynamo_ecs.endpoints.spec_validation import IMAGE_PATTERN, ModelId, validate_spec
from dynamo_ecs.endpoints.specs_store import read_spec, spec_record_name, with_image, with_model
from dynamo_ecs.endpoints.task_roles import StackRoles
from dynamo_ecs.endpoints.teardown import (
    Deadline,
    GroupRelease,
    deregister_revisions,
    release_instances,
    stop_launching,
    tasks_not_stopped,
)
from dynamo_ecs.errors import InfraNotReadyError, InvalidInputError, TeardownIncompleteError
from dynamo_ecs.infra import find_infra_endpoint
from dynamo_ecs.observability import logger
from dynamo_ecs.specs import load_default_spec


def _cfn_count(value: Any) -> Any:
    """CloudFormation sends numbers as text: ``"2"`` is 2; ``"two"``, ``"2.0"`` or ``true`` are errors."""
    if isinstance(value, str) and re.fullmatch(r"\d{1,4}", value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError('must be a whole number of tasks, e.g. "1"')


CfnCount = Annotated[int, BeforeValidator(_cfn_count), Field(ge=0, le=1000)]
ArnText = Annotated[str, StringConstraints(max_length=2048)]


class GpuServicesProperties(BaseModel):
    """The custom resource's properties. CloudFormation sends every value as a string."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)

    image: str = Field(alias="Image", pattern=IMAGE_PATTERN, max_length=512)
    model: ModelId = Field(alias="Model")
    execution_role_arn: ArnText = Field(
        alias="ExecutionRoleArn", pattern=r"^arn:aws[\w-]*:iam::\d{12}:role/.+"
    )
    task_role_arn: ArnText = Field(alias="TaskRoleArn", pattern=r"^arn:aws[\w-]*:iam::\d{12}:role/.+")
    ngc_secret_arn: ArnText | None = Field(
        None, alias="NgcSecretArn", pattern=r"^arn:aws[\w-]*:secretsmanager:"
    )
    frontend_log_group: str = Field(alias="FrontendLogGroup", pattern=r"^[A-Za-z0-9_#./-]+$", max_length=512)
    prefill_log_group: str = Field(alias="PrefillLogGroup", pattern=r"^[A-Za-z0-9_#./-]+$", max_length=512)
    capacity_provider: str | None = Field(None, alias="CapacityProvider", pattern=r"^\S+$", max_length=255)
    frontend_target_group_arn: ArnText | None = Field(
        None, alias="FrontendTargetGroupArn", pattern=r"^arn:aws[\w-]*:elasticloadbalancing:"
    )
    frontend_initial_count: CfnCount = Field(1, alias="FrontendInitialCount")
    prefill_initial_count: CfnCount = Field(1, alias="PrefillInitialCount")
    auto_scaling_group: str | None = Field(
        None, alias="AutoScalingGroup", pattern=r"^[\w .:/@+=,-]+$", max_length=255
    )  # read by the Delete only
    # The group's launch hook: the Delete abandons launches it still holds (read by the Delete only).
    launch_hook: str | None = Field(None, alias="LaunchHook", pattern=r"^[A-Za-z0-9/_-]+$", max_length=255)
    instance_type: capacity.InstanceTypeName | None = Field(None, alias="InstanceType")
    # With ModelWeightsS3Uri: the instance directory holding the model's files (model_weights.py).
    model_weights_dir: str | None = Field(None, alias="ModelWeightsDir", pattern=HOST_DIR_PATTERN)

    def log_group(self, role: ServiceRole) -> str:
        return self.frontend_log_group if role == "frontend" else self.prefill_log_group

    def initial_count(self, role: ServiceRole) -> int:
        return self.frontend_initial_count if role == "frontend" else self.prefill_initial_count


def parse_properties(properties: dict[str, Any]) -> GpuServicesProperties:
    cleaned = {k: v for k, v in properties.items() if v not in ("", None)}
    try:
        return GpuServicesProperties.model_validate(cleaned)
    except ValidationError as exc:
        problems = format_validation_error(exc, prefix=None)
        raise InvalidInputError(f"invalid Custom::DynamoGpuServices properties: {problems}") from exc


def spec_from_properties(
    role: ServiceRole, props: GpuServicesProperties, config: DeploymentConfig
) -> dict[str, Any]:
    """The default Dynamo spec of ``role`` with the stack's image, model, roles, secret and logs.

    With ``ModelWeightsDir`` the engine loads the model from that instance directory, mounted
    read-only, and serves it under the stack's model id (`model_weights.with_model_weights`).
    """
    spec = copy.deepcopy(load_default_spec(role))
    spec["family"] = config.service(role).family
    spec["executionRoleArn"] = props.execution_role_arn
    spec["taskRoleArn"] = props.task_role_arn
    with_image(spec, props.image)
    with_model(spec, props.model)
    if props.model_weights_dir:
        with_model_weights(spec, props.model_weights_dir, props.model)
    if props.instance_type:
        with_task_size(spec, capacity.task_size(props.instance_type, config.service(role).gpus_per_task))
    for container in spec["containerDefinitions"]:
        if props.ngc_secret_arn:
            container["repositoryCredentials"] = {"credentialsParameter": props.ngc_secret_arn}
        else:
            container.pop("repositoryCredentials", None)
        options = container.get("logConfiguration", {}).get("options")
        if options is not None:
            options["awslogs-group"] = props.log_group(role)
            options.pop("awslogs-create-group", None)
    with_worker_readiness(
        spec, config.worker_system_port(role), FRONTEND_PORT if role == "frontend" else None
    )
    return spec


def with_worker_readiness(
    spec: dict[str, Any], port: int, frontend_port: int | None = None
) -> dict[str, Any]:
    """Each GPU container's ECS health check: its worker's readiness, its frontend's liveness.

    A container running a Dynamo worker gets the worker's system server on ``port``
    (``DYN_SYSTEM_PORT``, unless the container sets its own; only the worker binds it, not the
    frontend) with its ``/health`` following its ``generate`` endpoint, and a check of that
    ``/health``, plus the frontend's ``/live`` when the container maps ``frontend_port``; a
    frontend container without a worker gets the liveness alone. A container that has a check
    of its own keeps it; one running neither is left as it is.
    """
    for container in spec["containerDefinitions"]:
        if "healthCheck" in container:
            continue
        serves_frontend = frontend_port is not None and any(
            p.get("containerPort") == frontend_port for p in container.get("portMappings") or []
        )
        live = frontend_port if serves_frontend else None
        if not _runs_worker(container):
            if live is not None:
                container["healthCheck"] = gpu_container_check(live_port=live)
            continue
        environment = container.setdefault("environment", [])
        given = {v.get("name"): v.get("value") for v in environment}
        if "DYN_SYSTEM_PORT" not in given:
            environment.append({"name": "DYN_SYSTEM_PORT", "value": str(port)})
        if "DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS" not in given:
            environment.append({"name": "DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS", "value": ENDPOINT_HEALTH})
        container["healthCheck"] = gpu_container_check(int(given.get("DYN_SYSTEM_PORT") or port), live)
    return spec


def _runs_worker(container: dict[str, Any]) -> bool:
    words = " ".join(
        str(w) for w in [*(container.get("entryPoint") or []), *(container.get("command") or [])]
    )
    return any(f"-m {module}" in words for module in ENGINE_MODULES)


def with_task_size(spec: dict[str, Any], size: capacity.TaskSize) -> None:
    """Task-level cpu and memory, and the GPUs of the container that asks for GPUs."""
    spec["cpu"] = str(size.cpu)
    spec["memory"] = str(size.memory_mib)
    for container in spec["containerDefinitions"]:
        for requirement in container.get("resourceRequirements", []):
            if requirement.get("type") == "GPU":
                requirement["value"] = str(size.gpus)


# ECS replaces a task the load balancer reports unhealthy once this grace period is over, and
# has no switch to replace on the container check only. The frontend's readiness fails whenever
# the prefill side is missing (prefill at zero, prefill tasks failing): replacing every frontend
# then would reload their models and start instances for nothing. So ECS never replaces a
# frontend for its health; one whose process exits still stops the task (`wait -n` in its command).
FRONTEND_HEALTH_GRACE_S = 2_147_483_647  # ECS's maximum

# The GPU containers' ECS health checks (docs/template.md, "Readiness and scale-in").
#
# Readiness of the task's own worker: its system /health is 503 until its `generate` endpoint
# serves (Dynamo 1.6.1 with DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS; without it, 503 for ever).
# dynamo.vllm fetches the model before its runtime (and system server) starts and serves its
# endpoint only once the engine has loaded it, so a new task counts healthy for a deployment,
# and ECS stops an old one, only once its own worker serves. The start period is ECS's
# maximum: a load (fetch included) of up to 300 s never counts against the task, and a check
# passing earlier makes it healthy at once. After it, 6 failures 10 s apart (about a minute)
# make the container UNHEALTHY: ECS replaces a prefill task then; a frontend task never (its
# service's grace period covers container checks too). Measured on 1.6.1, a serving worker's
# /health stays 200 with its frontend gone and with NATS lost, and with etcd lost the
# processes exit by themselves at the lease's end.
#
# Liveness of the frontend (/live), not readiness: /live is 200 while the frontend process is
# up, also while its model cannot serve for want of a prefill worker (not the frontend's fault).
# Its readiness is the load balancer's check (/v1/models/<model>, template.yaml), which passes
# as soon as the frontend sees any decode worker, another task's included: hence its own
# worker's readiness in the container check. The image has Python, not necessarily curl.
FRONTEND_PORT = 8000
# The workers' DYN_SYSTEM_PORT unless <role>.system_port names another (the collector reads the
# same port). Two ports, so that a frontend task and a prefill task can share an instance.
WORKER_SYSTEM_PORTS = DEFAULT_WORKER_SYSTEM_PORTS
ENDPOINT_HEALTH = '["generate"]'
CHECK_REQUEST_TIMEOUT_S = 2  # each URL's; the check's own timeout covers both


def gpu_container_check(worker_port: int | None = None, live_port: int | None = None) -> dict[str, Any]:
    """The check of a GPU container: the frontend's /live and/or the worker's system /health, all 200."""
    urls = [f"http://localhost:{live_port}/live"] if live_port else []
    urls += [f"http://localhost:{worker_port}/health"] if worker_port else []
    if not urls:
        raise ValueError("a GPU container check needs a worker port or a frontend port")
    opens = "; ".join(f"u.urlopen('{url}', timeout={CHECK_REQUEST_TIMEOUT_S})" for url in urls)
    return {
        "command": ["CMD-SHELL", f'python3 -c "import urllib.request as u; {opens}"'],
        "interval": 10,
        "timeout": 5,
        "retries": 6,
        "startPeriod": 300,
    }


def store_spec(reconciler: EndpointReconciler, role: ServiceRole, spec: dict[str, Any]) -> None:
    _, record = read_spec(reconciler.store, reconciler.config, role)
    if record.data.get("spec") != spec:
        reconciler.store.put_record(spec_record_name(role), {"spec": spec}, record.version)


def _active_services(reconciler: EndpointReconciler) -> dict[str, dict[str, Any]]:
    config = reconciler.config
    names = [config.service(role).service for role in SERVICE_ROLES]
    described = reconciler.ecs.describe_services(cluster=config.gpu_cluster, services=names)["services"]
    return {s["serviceName"]: s for s in described if s.get("status") == "ACTIVE"}


def create(reconciler: EndpointReconciler, props: GpuServicesProperties) -> dict[str, Any]:
    config, ecs = reconciler.config, reconciler.ecs
    selection = find_infra_endpoint(config.infra, ecs)
    if selection.endpoint is None:
        raise InfraNotReadyError(f"cannot create the GPU services yet: {selection.reason}")
    context = RenderContext(
        selection.endpoint,
        reconciler.account_id,
        reconciler.region,
        plane_credentials(config.planes.dynamo_secret_arn, config.planes.ca_writer_image),
    )
    use_stack_roles(reconciler, props)
    specs = checked_specs(props, config)
    existing = _active_services(reconciler)
    record = reconciler.store.get_record(APPLIED_RECORD)
    applied = dict(record.data)
    for role, spec in specs.items():
        store_spec(reconciler, role, spec)
        name = config.service(role).service
        if name in existing:
            continue
        rendered, _ = reconciler.render(spec, context)
        revision = reconciler.revision_for(rendered, digest(rendered))
        ecs.create_service(**_service_definition(config, role, props, revision))
        applied[role] = {"revision": revision, "digest": digest(rendered), "attempts": 0}
        logger.info("GPU service created", extra={"service": name, "revision": revision})
    reconciler.store.put_record(APPLIED_RECORD, applied, record.version)
    result = reconciler.reconcile({"custom_resource": "Create"})
    return {"Endpoint": selection.endpoint.ip, "Status": result.status}


def _service_definition(
    config: DeploymentConfig, role: ServiceRole, props: GpuServicesProperties, revision: str
) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "cluster": config.gpu_cluster,
        "serviceName": config.service(role).service,
        "taskDefinition": revision,
        "desiredCount": props.initial_count(role),
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        },
        # Fill an instance's GPUs before starting another (multi-GPU types; dynamo_ecs/capacity.py):
        # every task's memory is its GPUs' share of the instance, so packing memory packs GPUs.
        "placementStrategy": [{"type": "binpack", "field": "memory"}],
        "propagateTags": "SERVICE",
        "tags": [{"key": "dynamo-ecs:deployment", "value": config.deployment}],
    }
    if props.capacity_provider:
        definition["capacityProviderStrategy"] = [{"capacityProvider": props.capacity_provider, "weight": 1}]
    else:
        definition["launchType"] = "EC2"
    if role == "frontend" and props.frontend_target_group_arn:
        definition["loadBalancers"] = frontend_load_balancers(config, props.frontend_target_group_arn)
        definition["healthCheckGracePeriodSeconds"] = FRONTEND_HEALTH_GRACE_S
    return definition


def frontend_load_balancers(config: DeploymentConfig, target_group_arn: str) -> list[dict[str, Any]]:
    return [
        {
            "targetGroupArn": target_group_arn,
            "containerName": "dynamo-vllm-frontend",
            "containerPort": config.frontend.metrics_port,
        }
    ]


def move_frontend_to_target_group(reconciler: EndpointReconciler, props: GpuServicesProperties) -> bool:
    """Put the frontend service on the stack's target group if it is on another one.

    A target group serves one load balancer, so a change that replaces the load balancer
    (``LoadBalancerScheme``) replaces the target group with it (template.yaml names it after the
    scheme); the Update of this resource then carries the new group's ARN. ECS starts frontend
    tasks registered in the new group and stops the old ones (a rolling deployment), after which
    CloudFormation deletes the old load balancer and group. True when the service was moved.
    """
    if not props.frontend_target_group_arn:
        return False
    config = reconciler.config
    name = config.service("frontend").service
    service = _active_services(reconciler).get(name)
    wanted = frontend_load_balancers(config, props.frontend_target_group_arn)
    if service is None or service.get("loadBalancers") == wanted:
        return False
    reconciler.ecs.update_service(cluster=config.gpu_cluster, service=name, loadBalancers=wanted)
    logger.info(
        "frontend service moved to the stack's target group",
        extra={
            "service": name,
            "from": [lb.get("targetGroupArn") for lb in service.get("loadBalancers", [])],
            "to": props.frontend_target_group_arn,
        },
    )
    return True


def checked_specs(
    props: GpuServicesProperties, config: DeploymentConfig
) -> dict[ServiceRole, dict[str, Any]]:
    """Both services' specs from the properties, each checked whole before either is stored."""
    return {
        role: validate_spec(spec_from_properties(role, props, config), f"{role} spec")
        for role in SERVICE_ROLES
    }


def use_stack_roles(reconciler: EndpointReconciler, props: GpuServicesProperties) -> None:
    """The roles the GPU task definitions name are the stack's: the properties' and the config's agree.

    Both come from the stack's GpuExecutionRole and GpuTaskRole (template.yaml); the config's
    are what the operator's iam:PassRole allows on every path. Unconfigured (tests, local
    runs), the properties' roles are the stack's for this request.
    """
    given = StackRoles(props.execution_role_arn, props.task_role_arn)
    if reconciler.roles is None:
        reconciler.roles = given
        return
    for name, field, variable in (
        ("ExecutionRoleArn", "executionRoleArn", "DYNAMO_ECS_GPU_EXECUTION_ROLE_ARN"),
        ("TaskRoleArn", "taskRoleArn", "DYNAMO_ECS_GPU_TASK_ROLE_ARN"),
    ):
        if given.for_field(field) != reconciler.roles.for_field(field):
            raise InvalidInputError(
                f"{name}: {given.for_field(field)!r} is not the role the operator may pass to ECS "
                f"({variable} is {reconciler.roles.for_field(field)!r}); both must be the stack's own "
                "GPU role, as template.yaml sets them"
            )


def update(reconciler: EndpointReconciler, props: GpuServicesProperties) -> dict[str, Any]:
    use_stack_roles(reconciler, props)
    specs = checked_specs(props, reconciler.config)
    moved = move_frontend_to_target_group(reconciler, props)
    for role, spec in specs.items():
        store_spec(reconciler, role, spec)
    result = reconciler.reconcile({"custom_resource": "Update"})
    return {
        "Endpoint": result.endpoint or "",
        "Status": result.status,
        "FrontendTargetGroupMoved": str(moved).lower(),
    }


def delete(
    reconciler: EndpointReconciler,
    properties: dict[str, Any] | None = None,
    deadline: Deadline | None = None,
    poll_s: float = 5.0,
    autoscaling: Any = None,
) -> dict[str, Any]:
    """Tear the GPU side down until nothing blocks CloudFormation's next steps, within ``deadline``.

    CloudFormation next removes the capacity provider association, which ECS refuses while any
    task of the GPU cluster is not STOPPED (deleted services' tasks stay STOPPING for the
    load balancer's deregistration delay and their stop timeout), then deletes the Auto
    Scaling group, which waits on every instance that is still protected from scale-in. So:
    no new launches (the group sized to zero), both services to zero and deleted, the
    families' revisions deregistered (at most half of the time), then, pass after pass, launches
    held in the launch hook abandoned, and once no task is left, every instance unprotected.
    SUCCESS only when that is done; when ``deadline`` comes first, `TeardownIncompleteError`
    says what is left (the Delete is safe to repeat).
    """
    config, ecs = reconciler.config, reconciler.ecs
    deadline = deadline or Deadline.after(0.0)
    properties = properties or {}
    group = str(properties.get("AutoScalingGroup") or "")
    launch_hook = str(properties.get("LaunchHook") or "") or None
    if group:
        autoscaling = autoscaling or aws.client("autoscaling")
        stop_launching(autoscaling, group)
    deleted = []
    for name, service in _active_services(reconciler).items():
        ecs.update_service(cluster=config.gpu_cluster, service=name, desiredCount=0)
        ecs.delete_service(cluster=config.gpu_cluster, service=name, force=True)
        deleted.append(service["serviceName"])
    families = [config.service(role).family for role in SERVICE_ROLES]
    revisions = deregister_revisions(ecs, families, deadline.share(0.5))
    released = wait_until_released(
        ecs, config.gpu_cluster, deleted, deadline, poll_s, autoscaling if group else None, group, launch_hook
    )
    logger.info(
        "GPU services deleted",
        extra={
            "services": deleted,
            "deregistered": revisions.deregistered,
            "all_deregistered": revisions.complete,
            "unprotected_instances": released.unprotected,
            "abandoned_launches": released.abandoned,
        },
    )
    return {
        "Deleted": ",".join(deleted),
        "Deregistered": str(revisions.deregistered),
        "AllDeregistered": str(revisions.complete).lower(),
        "Drained": "true",
        "UnprotectedInstances": str(released.unprotected),
        "AbandonedLaunches": str(released.abandoned),
    }


@dataclass
class Released:
    unprotected: int = 0
    abandoned: int = 0


def wait_until_released(
    ecs: Any,
    cluster: str,
    services: list[str],
    deadline: Deadline,
    poll_s: float,
    autoscaling: Any = None,
    group: str = "",
    launch_hook: str | None = None,
) -> Released:
    """Pass after pass until the services are INACTIVE, no task is left and no instance is protected.

    Instances are unprotected only once no task is left, so the group (sized to zero) does not
    terminate an instance under a task that is still stopping. Raises `TeardownIncompleteError`
    when ``deadline`` comes first.
    """
    total = Released()
    while True:
        inactive = services_inactive(ecs, cluster, services)
        tasks = tasks_not_stopped(ecs, cluster)
        settled = True
        release: GroupRelease | None = None
        if autoscaling is not None and group:
            release = release_instances(autoscaling, group, launch_hook, unprotect=inactive and not tasks)
            total.unprotected += release.unprotected
            total.abandoned += release.abandoned
            settled = release.settled
        if inactive and not tasks and settled:
            return total
        if deadline.remaining() < poll_s:
            raise TeardownIncompleteError(_what_is_left(cluster, services, inactive, tasks, group, release))
        time.sleep(poll_s)


def services_inactive(ecs: Any, cluster: str, names: list[str]) -> bool:
    """True once every named service is INACTIVE (or gone)."""
    if not names:
        return True
    described = ecs.describe_services(cluster=cluster, services=names).get("services", [])
    return all(s.get("status") == "INACTIVE" for s in described)


def _what_is_left(
    cluster: str,
    services: list[str],
    inactive: bool,
    tasks: list[str],
    group: str,
    release: GroupRelease | None,
) -> str:
    left = []
    if not inactive:
        left.append(f"services {', '.join(services)} still draining")
    if tasks:
        left.append(
            f"{len(tasks)} task(s) of cluster {cluster} not STOPPED yet (ECS refuses to remove the "
            f"capacity provider while they stop), e.g. {tasks[0]}"
        )
    if release is not None and release.launching:
        left.append(
            f"{len(release.launching)} instance(s) of group {group} still launching, protected from "
            f"scale-in, e.g. {release.launching[0]}"
        )
    if release is not None and release.protected:
        left.append(f"{len(release.protected)} instance(s) of group {group} still protected from scale-in")
    if release is not None and not release.sized_to_zero:
        left.append(f"group {group} not sized to zero yet (Auto Scaling refused the update so far)")
    return (
        "the GPU side is not torn down yet: "
        + "; ".join(left)
        + ". Run `sam delete` again in a few minutes: the Delete is safe to repeat"
        " (docs/template.md, 'Teardown')"
    )


RequestType = Literal["Create", "Update", "Delete"]
# The physical id of a Create that failed before it made anything: its rollback Delete is a no-op.
NOT_CREATED_SUFFIX = "-not-created"


def handle(
    request_type: RequestType,
    properties: dict[str, Any],
    reconciler: EndpointReconciler,
    deadline_s: float = 0.0,
) -> dict[str, Any]:
    """``deadline_s``: how long a Delete may take before CloudFormation must be answered."""
    if request_type == "Delete":
        return delete(reconciler, properties, Deadline.after(deadline_s))
    props = parse_properties(properties)
    return create(reconciler, props) if request_type == "Create" else update(reconciler, props)
