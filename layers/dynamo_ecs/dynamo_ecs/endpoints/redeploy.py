"""The manual redeploy: a new image, model, command or whole spec, or a forced re-resolution.

Every field of the payload is optional; unknown fields are errors. A new image/model/spec
is stored as the service's spec (so the next infra change keeps it), then the same
reconcile as the infra watcher runs. ``dry_run`` stores nothing and writes nothing: it
returns, per service, the diff between the running and the would-be task definition.

A service whose engine loads the model from the instances' copy of ``ModelWeightsS3Uri``
keeps serving that model: a redeploy that would serve those files under another name is
refused, dry run or not (`check_weights_unchanged`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole, env_name, format_validation_error
from dynamo_ecs.endpoints.model_weights import CONTAINER_PATH, served_models
from dynamo_ecs.endpoints.reconcile import EndpointReconciler, ReconcileResult
from dynamo_ecs.endpoints.spec_validation import IMAGE_PATTERN, ModelId, validate_spec
from dynamo_ecs.endpoints.specs_store import read_spec, spec_record_name, with_command, with_image, with_model
from dynamo_ecs.endpoints.task_roles import StackRoles, written_role_problems
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.signals.discovery import definition_facts

MAX_COMMAND_PARTS = 64
MAX_COMMAND_PART = 8192


class RedeployPayload(BaseModel):
    """Strict: ``"yes"`` is not true and ``"1"`` is not a number; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    services: list[ServiceRole] | None = Field(None, min_length=1, max_length=len(SERVICE_ROLES))
    image: str | None = Field(None, pattern=IMAGE_PATTERN, max_length=512)
    model: ModelId | None = None
    command: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_COMMAND_PART)]] | None = (
        Field(None, min_length=1, max_length=MAX_COMMAND_PARTS)
    )
    force: bool = False
    dry_run: bool = False
    spec: dict[ServiceRole, dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _spec_only_for_selected_services(self) -> RedeployPayload:
        """A spec for a service the redeploy does not select would be ignored: refuse it instead."""
        if self.spec is None:
            return self
        if not self.spec:
            raise ValueError(
                'spec: empty; send {"frontend": {...}} and/or {"prefill": {...}}, or leave spec out'
            )
        outside = [role for role in self.spec if role not in self.roles]
        if outside:
            selected = ", ".join(self.roles)
            raise ValueError(
                "; ".join(
                    f"spec.{role}: this redeploy selects services [{selected}], so this spec would be "
                    f"ignored; add {role!r} to services or leave spec.{role} out"
                    for role in outside
                )
            )
        return self

    @property
    def roles(self) -> tuple[ServiceRole, ...]:
        return tuple(self.services or SERVICE_ROLES)

    @property
    def changes_spec(self) -> bool:
        return any(v is not None for v in (self.image, self.model, self.command, self.spec))


def parse_payload(event: Any) -> RedeployPayload:
    try:
        return RedeployPayload.model_validate(event if event is not None else {})
    except ValidationError as exc:
        raise InvalidInputError(
            f"invalid redeploy payload: {format_validation_error(exc, prefix=None)}"
        ) from exc


def new_specs(payload: RedeployPayload, reconciler: EndpointReconciler) -> dict[ServiceRole, dict[str, Any]]:
    """Each selected service's spec after the payload's changes, each checked whole (nothing stored yet).

    Raises `InvalidSpecError` naming every problem of every spec before anything is written.
    """
    specs: dict[ServiceRole, dict[str, Any]] = {}
    for role in payload.roles:
        stored = read_spec(reconciler.store, reconciler.config, role)[0]
        served = served_models(stored)
        written = (payload.spec or {}).get(role)
        found = list(written_spec_problems(written, role, reconciler)) if written is not None else []
        spec = copy.deepcopy(written if written is not None else stored)
        spec["family"] = reconciler.config.service(role).family
        if payload.image:
            with_image(spec, payload.image)
        if payload.model and not (served and served == {payload.model}):
            with_model(spec, payload.model)  # the same model from the weights: nothing to change
        if payload.command:
            with_command(spec, payload.command)
        check_weights_unchanged(payload, role, served, spec)
        specs[role] = validate_spec(spec, f"spec.{role}", found=found)
    return specs


def written_spec_problems(
    written: dict[str, Any], role: ServiceRole, reconciler: EndpointReconciler
) -> Iterator[str]:
    """What a spec sent in the payload names that the operator cannot run as written.

    The family: the operator keeps one family per service (its revisions, their digests and
    the teardown's deregistration are found by it), so a spec names that family or none, and
    any other is refused rather than replaced. The roles: the stack's own or none
    (`task_roles.written_role_problems`): the operator may pass no other role to ECS.
    """
    family = reconciler.config.service(role).family
    if "family" in written and written["family"] != family:
        yield (
            f"$.family: {str(written['family'])[:255]!r} is not this stack's {role} family; write "
            f"{family!r} or leave family out (the operator registers every {role} revision in its "
            "own family)"
        )
    roles = StackRoles.from_config(reconciler.config)
    if roles is not None:
        yield from written_role_problems(written, roles, reconciler.account_id)
    yield from worker_port_problems(written, role, reconciler.config)


def worker_port_problems(
    written: dict[str, Any], role: ServiceRole, config: DeploymentConfig
) -> Iterator[str]:
    """A worker queue target needs the spec's worker to serve /metrics where the collector reads it.

    The collector reads ``role``'s workers on `DeploymentConfig.worker_system_port` (the port
    the stack's security group opens to it). A spec whose worker serves none there publishes
    no ``WorkerQueueDepth``, and a target on missing data blocks the service's every scale-in.
    Without such a target a spec may bind what it likes (the collector notes it and reads nothing).
    """
    targets = config.frontend.targets if role == "frontend" else config.prefill.targets
    if targets.worker_queue_per_replica is None:
        return
    port = config.worker_system_port(role)
    bound = definition_facts(written).system_port
    if bound != port:
        what = "sets no DYN_SYSTEM_PORT" if bound is None else f"sets DYN_SYSTEM_PORT={bound}"
        target = env_name(role, "targets", "worker_queue_per_replica")
        yield (
            f"$.containerDefinitions: {role}.targets.worker_queue_per_replica reads the workers' queue on "
            f'their system port {port}, and this spec {what}: add {{"name": "DYN_SYSTEM_PORT", '
            f'"value": "{port}"}} to the worker container\'s environment, or set {target}=null'
        )


def check_weights_unchanged(
    payload: RedeployPayload, role: ServiceRole, served: set[str], spec: dict[str, Any]
) -> None:
    """Refuse a new model for a service that loads its model from the instances' weights.

    Each instance holds one model's files (copied from ``ModelWeightsS3Uri`` at first boot):
    a new ``--model`` would either download another model while the mount stays, or, with a
    new ``--served-model-name``, serve the old files under the new name.
    """
    if not served:
        return
    field = "model" if payload.model else "command" if payload.command else f"spec.{role}"
    if payload.model:
        changed = served != {payload.model}
        wanted = payload.model
    else:
        now = served_models(spec)
        changed = bool(now) and now != served
        wanted = ", ".join(sorted(now))
    if changed:
        raise InvalidInputError(
            f"{field}: the {role} tasks load {', '.join(sorted(served))} from the GPU instances' copy "
            f"of ModelWeightsS3Uri (mounted at {CONTAINER_PATH}); a redeploy to {wanted!r} would serve "
            "those files under a new name. Change ModelWeightsS3Uri and ModelId together with "
            "`sam deploy` (new instances copy the new model); nothing was changed"
        )


def store_specs(
    config: DeploymentConfig, reconciler: EndpointReconciler, specs: dict[ServiceRole, dict[str, Any]]
) -> dict[ServiceRole, tuple[dict[str, Any], int]]:
    """Store each spec that changed; returns, per role written, what was there and the new version."""
    replaced: dict[ServiceRole, tuple[dict[str, Any], int]] = {}
    for role, spec in specs.items():
        _, record = read_spec(reconciler.store, config, role)
        if record.data.get("spec") != spec:
            written = reconciler.store.put_record(spec_record_name(role), {"spec": spec}, record.version)
            replaced[role] = (record.data, written.version)
    return replaced


def redeploy(payload: RedeployPayload, reconciler: EndpointReconciler) -> ReconcileResult:
    trigger = {"manual": payload.model_dump(exclude={"spec"}, exclude_none=True), "spec": bool(payload.spec)}
    specs = new_specs(payload, reconciler) if payload.changes_spec else None
    if payload.dry_run:
        return reconciler.reconcile(trigger, payload.roles, payload.force, dry_run=True, specs=specs)
    replaced: dict[ServiceRole, tuple[dict[str, Any], int]] = {}
    if specs:
        replaced = store_specs(reconciler.config, reconciler, specs)
        reconciler.store.append_decision("redeploy", {"trigger": trigger, "services": list(specs)})
    try:
        return reconciler.reconcile(trigger, payload.roles, payload.force)
    except Exception as exc:
        if not replaced or not _refused_by_ecs(exc):
            raise
        # ECS refused a rendering the checks let through: put the last good specs back, so the
        # automatic path keeps serving them. Every revision is registered before any roll, so
        # no service runs the refused spec.
        for role, (previous, version) in replaced.items():
            reconciler.store.put_record(spec_record_name(role), previous, version)
        reconciler.store.append_decision("redeploy_refused", {"trigger": trigger, "error": str(exc)[:1000]})
        raise InvalidInputError(f"ECS refused the new spec, the previous one is kept: {exc}") from exc


def _refused_by_ecs(exc: Exception) -> bool:
    """RegisterTaskDefinition said no (ClientException, InvalidParameterException): retrying cannot help."""
    from botocore.exceptions import ClientError

    return (
        isinstance(exc, ClientError)
        and exc.operation_name == "RegisterTaskDefinition"
        and exc.response.get("Error", {}).get("Code") in ("ClientException", "InvalidParameterException")
    )
