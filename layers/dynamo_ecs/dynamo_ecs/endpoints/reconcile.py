"""The level-triggered endpoint reconcile shared by ``infra_watcher`` and ``redeploy``.

Every call reads live state and applies only the difference:

1. find the infra task RUNNING now (`dynamo_ecs.infra`); none: change nothing;
2. render each GPU service's spec at that endpoint (`render`);
3. compare with what the service runs now. The ``endpoints#applied`` record remembers, per
   service, the revision the operator registered and a digest of what it rendered; when the
   service still runs that revision and the digest is unchanged, nothing is written. A
   no-op therefore costs four API calls: ListTasks, DescribeTasks, DescribeServices and one
   BatchGetItem (the applied record and both specs);
4. otherwise, under the deployment lease, read everything again (another invocation may have
   just done the work) and register exactly one revision per family and update each service
   once (new deployment). Every applied change is written to the decision log.

Duplicates, concurrent invocations and events out of order all end in the endpoint of the
task RUNNING now: the event itself is never trusted for the address.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.endpoints.render import (
    RENDERING_TAG,
    RenderContext,
    endpoint_of,
    plane_credentials,
    render_task_definition,
    strip_read_only,
)
from dynamo_ecs.endpoints.specs_store import read_spec, spec_record_name
from dynamo_ecs.endpoints.task_roles import StackRoles, check_passable, with_stack_roles
from dynamo_ecs.infra import InfraEndpoint, find_infra_endpoint
from dynamo_ecs.observability import logger
from dynamo_ecs.state import StateStore

APPLIED_RECORD = "endpoints#applied"
LEASE_WAIT_S = 30.0
REUSE_LOOKBACK = 10  # newest ACTIVE revisions of a family checked for one identical to the rendering
REGISTER_ATTEMPTS = 3
_TRANSIENT_CODES = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServerException",
    "ServiceUnavailable",
    "InternalFailure",
}
Status = Literal["no_endpoint", "unchanged", "applied", "dry_run"]


@dataclass(frozen=True)
class ServiceChange:
    role: ServiceRole
    service: str
    old_revision: str
    new_revision: str | None
    old_endpoints: dict[str, str]
    new_endpoints: dict[str, str]
    diff: dict[str, Any] = field(default_factory=dict)
    # What the operator changed in the spec to register it (a role it may not pass, replaced).
    notes: list[str] = field(default_factory=list)


@dataclass
class ReconcileResult:
    status: Status
    reason: str
    endpoint: str | None = None
    changes: list[ServiceChange] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "endpoint": self.endpoint,
            "changes": [change.__dict__ for change in self.changes],
        }


def digest(task_definition: Mapping[str, Any]) -> str:
    canonical = json.dumps(canonical_form(task_definition), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def canonical_form(node: Any) -> Any:
    """Drop what ECS adds on describe (empty lists and maps, container ``cpu: 0``) so equal means equal."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            value = canonical_form(value)
            if value in ([], {}, None) or (key == "cpu" and value == 0):
                continue
            out[key] = value
        return out
    if isinstance(node, list):
        return [canonical_form(item) for item in node]
    return node


def diff_documents(old: Any, new: Any, path: str = "$") -> dict[str, Any]:
    """``{json path: {"old": ..., "new": ...}}`` for every leaf that differs."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: dict[str, Any] = {}
        for key in sorted(set(old) | set(new)):
            out |= diff_documents(old.get(key), new.get(key), f"{path}.{key}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = {}
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            out |= diff_documents(a, b, f"{path}[{index}]")
        return out
    return {} if old == new else {path: {"old": old, "new": new}}


@dataclass
class _Plan:
    role: ServiceRole
    service: dict[str, Any]
    rendered: dict[str, Any]
    digest: str
    notes: list[str] = field(default_factory=list)


def _change(
    plan: _Plan, current: dict[str, Any], new_revision: str | None, diff: dict[str, Any] | None = None
) -> ServiceChange:
    return ServiceChange(
        role=plan.role,
        service=plan.service["serviceName"],
        old_revision=plan.service["taskDefinition"],
        new_revision=new_revision,
        old_endpoints=endpoint_of(current),
        new_endpoints=endpoint_of(plan.rendered),
        diff=diff or {},
        notes=list(plan.notes),
    )


class EndpointReconciler:
    def __init__(
        self,
        config: DeploymentConfig,
        store: StateStore,
        ecs: Any,
        account_id: str,
        region: str,
        register_ecs: Any = None,
    ) -> None:
        """``register_ecs``: an ECS client without automatic retries for RegisterTaskDefinition
        (`revision_for` retries it itself, looking first); defaults to ``ecs``."""
        self.config = config
        self.store = store
        self.ecs = ecs
        self.register_ecs = register_ecs or ecs
        self.account_id = account_id
        self.region = region
        self.given_up: list[str] = []
        # The only roles a registered task definition may name (None: not configured, passed as is).
        self.roles: StackRoles | None = StackRoles.from_config(config)

    def reconcile(
        self,
        trigger: Mapping[str, Any],
        roles: Iterable[ServiceRole] = SERVICE_ROLES,
        force: bool = False,
        dry_run: bool = False,
        specs: Mapping[ServiceRole, dict[str, Any]] | None = None,
    ) -> ReconcileResult:
        """Bring the GPU services to the infra endpoint now. ``specs`` overrides stored specs (dry runs)."""
        roles = tuple(roles)
        selection = find_infra_endpoint(self.config.infra, self.ecs)
        if selection.endpoint is None:
            logger.warning("no infra endpoint: nothing changed", extra={"reason": selection.reason})
            return ReconcileResult("no_endpoint", selection.reason)
        endpoint = selection.endpoint
        logger.info(
            "infra endpoint chosen",
            extra={"task": endpoint.task_arn, "ip": endpoint.ip, "rule": selection.reason},
        )

        self.given_up = []
        pending = self._pending(endpoint, roles, force, specs)
        if not pending:
            reason = "every service runs its rendered task definition"
            if self.given_up:
                reason = (
                    f"gave up on {', '.join(self.given_up)} after repeated rollbacks (redeploy with force)"
                )
            return ReconcileResult("unchanged", reason, endpoint.ip)
        if dry_run or self.config.dry_run:
            return ReconcileResult(
                "dry_run", "would register and roll", endpoint.ip, [self._preview(p) for p in pending]
            )
        with self.store.lease(self.config.rollout.lease_ttl_s, wait_s=LEASE_WAIT_S):
            # Read again inside the lease: a concurrent invocation may have done the work.
            selection = find_infra_endpoint(self.config.infra, self.ecs)
            if selection.endpoint is None:
                return ReconcileResult("no_endpoint", selection.reason)
            endpoint = selection.endpoint
            pending = self._pending(endpoint, roles, force, specs)
            if not pending:
                return ReconcileResult("unchanged", "another invocation applied it", endpoint.ip)
            changes = self._apply(pending, force)
        entry = {
            "trigger": dict(trigger),
            "endpoint": {"task": endpoint.task_arn, "ip": endpoint.ip},
            "changes": [
                {
                    "service": c.service,
                    "old_revision": c.old_revision,
                    "new_revision": c.new_revision,
                    "old_endpoints": c.old_endpoints,
                    "new_endpoints": c.new_endpoints,
                    **({"notes": c.notes} if c.notes else {}),
                }
                for c in changes
            ],
        }
        if any(c.notes for c in changes):
            logger.warning(
                "the operator changed what a spec names to register it",
                extra={"notes": {c.service: c.notes for c in changes if c.notes}},
            )
        self.store.append_decision("endpoints", entry, self.config.scaling.decision_log_ttl_days)
        logger.info("endpoints applied", extra=entry)
        return ReconcileResult("applied", "registered and rolled", endpoint.ip, changes)

    # -- steps -----------------------------------------------------------------------------

    def _pending(
        self,
        endpoint: InfraEndpoint,
        roles: tuple[ServiceRole, ...],
        force: bool,
        specs: Mapping[ServiceRole, dict[str, Any]] | None,
    ) -> list[_Plan]:
        names = {self.config.service(role).service: role for role in roles}
        described = self.ecs.describe_services(cluster=self.config.gpu_cluster, services=list(names))[
            "services"
        ]
        records = self.store.get_records([APPLIED_RECORD, *(spec_record_name(role) for role in roles)])
        applied = records[APPLIED_RECORD].data
        planes = self.config.planes
        context = RenderContext(
            endpoint,
            self.account_id,
            self.region,
            plane_credentials(planes.dynamo_secret_arn, planes.ca_writer_image),
        )
        plans = []
        for service in described:
            role = names[service["serviceName"]]
            stored = records[spec_record_name(role)]
            spec = dict((specs or {}).get(role) or read_spec(self.store, self.config, role, stored)[0])
            rendered, notes = self.render(spec, context)
            plan = _Plan(role, service, rendered, digest(rendered), notes)
            mine = applied.get(role, {})
            if (
                not force
                and mine.get("revision") == service["taskDefinition"]
                and mine.get("digest") == plan.digest
            ):
                continue
            if not force and self._given_up(service, plan, mine):
                continue
            plans.append(plan)
        return plans

    def render(self, spec: dict[str, Any], context: RenderContext) -> tuple[dict[str, Any], list[str]]:
        """The RegisterTaskDefinition input for ``spec``, naming the stack's roles, and what was changed.

        Every registration renders here: the automatic path never refuses a stored or default
        spec for its roles (the services would stay on a dead address), it replaces them and
        says so (`task_roles.with_stack_roles`).
        """
        rendered = render_task_definition(spec, context)
        if self.roles is None:
            return rendered, []
        return with_stack_roles(rendered, self.roles)

    def _given_up(self, service: dict[str, Any], plan: _Plan, mine: dict[str, Any]) -> bool:
        """ECS rolled this very rendering back ``max_attempts_per_endpoint`` times: stop writing.

        The deployment circuit breaker puts a service back on its previous revision when the
        new one fails; retrying the same task definition forever would only flap. A new
        endpoint, a new spec or ``force`` starts counting again.
        """
        limit = self.config.rollout.max_attempts_per_endpoint
        if mine.get("digest") != plan.digest or int(mine.get("attempts", 0)) < limit:
            return False
        logger.error(
            "service keeps rolling back from the operator's revision: no further writes",
            extra={
                "service": service["serviceName"],
                "revision": mine.get("revision"),
                "attempts": mine.get("attempts"),
            },
        )
        self.given_up.append(service["serviceName"])
        return True

    def _current(self, plan: _Plan) -> dict[str, Any]:
        answer = self.ecs.describe_task_definition(
            taskDefinition=plan.service["taskDefinition"], include=["TAGS"]
        )
        current = strip_read_only(answer["taskDefinition"] | {"tags": answer.get("tags") or []})
        return current

    def revision_for(self, rendered: dict[str, Any], rendering_digest: str) -> str:
        """An ACTIVE revision identical to ``rendered``: found, or registered exactly once.

        RegisterTaskDefinition is not idempotent, so it is never retried blindly: before each
        attempt the family's newest revisions are checked for this rendering (its digest tag,
        or the same canonical form). A crash, timeout or lost answer after an earlier call
        therefore reuses that revision instead of registering a twin.
        """
        check_passable(rendered, self.roles)
        family = rendered["family"]
        for attempt in range(1, REGISTER_ATTEMPTS + 1):
            found = self._find_revision(family, rendering_digest)
            if found:
                logger.info("reusing a revision identical to the rendering", extra={"revision": found})
                return found
            tags = [*(rendered.get("tags") or []), {"key": RENDERING_TAG, "value": rendering_digest}]
            try:
                answer = self.register_ecs.register_task_definition(**(rendered | {"tags": tags}))
            except Exception as exc:
                if attempt == REGISTER_ATTEMPTS or not _transient(exc):
                    raise
                logger.warning("RegisterTaskDefinition failed; looking again", extra={"error": repr(exc)})
                time.sleep(0.2 * 2**attempt)
                continue
            arn: str = answer["taskDefinition"]["taskDefinitionArn"]
            return arn
        raise AssertionError("unreachable")  # pragma: no cover

    def _find_revision(self, family: str, rendering_digest: str) -> str | None:
        listed = self.ecs.list_task_definitions(
            familyPrefix=family, status="ACTIVE", sort="DESC", maxResults=REUSE_LOOKBACK
        )["taskDefinitionArns"]
        ours = [arn for arn in listed if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family]
        ours.sort(key=lambda arn: int(arn.rsplit(":", 1)[-1]), reverse=True)
        for arn in ours[:REUSE_LOOKBACK]:
            answer = self.ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
            tags = answer.get("tags") or []
            if {"key": RENDERING_TAG, "value": rendering_digest} in tags or (
                digest(strip_read_only(answer["taskDefinition"] | {"tags": tags})) == rendering_digest
            ):
                return str(arn)
        return None

    def _preview(self, plan: _Plan) -> ServiceChange:
        current = self._current(plan)
        return _change(
            plan, current, None, diff_documents(canonical_form(current), canonical_form(plan.rendered))
        )

    def _alert(self, plan: _Plan, revision: str, attempts: int) -> None:
        message = (
            f"{plan.service['serviceName']}: attempt {attempts} of "
            f"{self.config.rollout.max_attempts_per_endpoint} to roll {revision}; ECS rolled the same "
            "task definition back before. If it rolls back again the operator stops writing to this "
            "service until the endpoint or spec changes or a redeploy with force=true."
        )
        logger.error(message)
        if self.config.alert_topic_arn:
            from dynamo_ecs import aws

            aws.client("sns").publish(
                TopicArn=self.config.alert_topic_arn,
                Subject="dynamo-ecs-operator: rollout keeps failing",
                Message=message,
            )

    def _apply(self, plans: list[_Plan], force: bool) -> list[ServiceChange]:
        """Every revision first, then every roll: a rendering ECS refuses leaves every service as it was."""
        record = self.store.get_record(APPLIED_RECORD)
        applied = dict(record.data)
        rolls = []
        for plan in plans:
            current = self._current(plan)
            revision = plan.service["taskDefinition"]
            previous = applied.get(plan.role, {})
            attempts = int(previous.get("attempts", 0)) + 1 if previous.get("digest") == plan.digest else 1
            applied[plan.role] = {"revision": revision, "digest": plan.digest, "attempts": 0}
            if digest(current) == plan.digest and not force:
                continue  # already runs exactly this (set up by hand): adopt it, roll nothing
            if previous.get("digest") == plan.digest and previous.get("revision"):
                revision = previous["revision"]  # rolled back from it before: retry it, register nothing
            elif digest(current) != plan.digest:
                revision = self.revision_for(plan.rendered, plan.digest)
            rolls.append((plan, current, revision, attempts))
        changes = []
        for plan, current, revision, attempts in rolls:
            self.ecs.update_service(
                cluster=self.config.gpu_cluster,
                service=plan.service["serviceName"],
                taskDefinition=revision,
                forceNewDeployment=True,
            )
            applied[plan.role] = {
                "revision": revision,
                "digest": plan.digest,
                "attempts": 0 if force else attempts,
            }
            if attempts == self.config.rollout.max_attempts_per_endpoint and not force:
                self._alert(plan, revision, attempts)
            changes.append(_change(plan, current, revision))
        self.store.put_record(APPLIED_RECORD, applied, record.version)
        return changes


def _transient(exc: Exception) -> bool:
    """Throttling, a 5xx, a timeout or a lost connection: the call may or may not have happened."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES or status >= 500
    return isinstance(exc, BotoCoreError)
