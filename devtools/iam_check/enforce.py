"""Every AWS call a function makes, checked against that function's role before it is sent.

moto runs every call whatever the caller's role; AWS does not. While a function's handler
runs (`acting_as`, which `devtools.handlers.load_handler_module` wraps around every handler),
each call any botocore client makes in that context is turned into the IAM requests AWS would
authorize (`devtools.iam_check.requests`) and decided against the function's policies from
the transformed template (`devtools.iam_check.roles`). A call its role does not allow is
answered as AWS answers it (``AccessDenied...``) and recorded, so the test that made it fails
even where the handler catches the error. Calls made outside a handler (a test building its
world, the local ECS) are the account owner's and are not checked.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore.handlers
from botocore.exceptions import ClientError

from devtools.iam_check.evaluate import AuthorizationRequest, Decision, decide
from devtools.iam_check.requests import CallSite, UnmappedCallError, authorization_requests
from devtools.iam_check.roles import deployment_for, encrypted_topics, function_policies
from dynamo_ecs.config import DeploymentConfig

# botocore's service name -> IAM's service prefix, where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch"}
# The error code each service's protocol uses for a denied call.
DENIED_CODE = {
    "ecs": "AccessDeniedException",
    "dynamodb": "AccessDeniedException",
    "logs": "AccessDeniedException",
}


@dataclass(frozen=True)
class Identity:
    function: str
    config: DeploymentConfig


@dataclass(frozen=True)
class Violation:
    function: str
    operation: str
    request: AuthorizationRequest | None
    decision: str

    def __str__(self) -> str:
        if self.request is None:
            return f"{self.function}: {self.operation}: {self.decision}"
        return (
            f"{self.function}: {self.operation} needs {self.request.action} on {self.request.resource}"
            f"{' with ' + str(dict(self.request.context)) if self.request.context else ''}: {self.decision} "
            "by its role in template.yaml"
        )


_TEMPLATE_OVERRIDE: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "iam_template", default=None
)
_IDENTITY: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("iam_identity", default=None)
_LOCK = threading.Lock()
_VIOLATIONS: list[Violation] = []
_INSTALLED = False


@contextlib.contextmanager
def acting_as(function: str, config: DeploymentConfig) -> Iterator[None]:
    """Calls made in this context (and contexts copied from it) are ``function``'s."""
    token = _IDENTITY.set(Identity(function, config))
    try:
        yield
    finally:
        _IDENTITY.reset(token)


@contextlib.contextmanager
def roles_from(template: dict[str, Any]) -> Iterator[None]:
    """Check calls against the roles of ``template`` (a transformed template) instead of the stack's."""
    token = _TEMPLATE_OVERRIDE.set(template)
    try:
        yield
    finally:
        _TEMPLATE_OVERRIDE.reset(token)


def _policies(function: str, config: DeploymentConfig) -> tuple[list[dict[str, Any]], CallSite]:
    region = os.environ.get("AWS_REGION", "us-east-1")
    override = _TEMPLATE_OVERRIDE.get()
    if override is not None:
        return _policies_in(function, deployment_for(config, override, region))
    return _policies_for(function, config.model_dump_json(), region)


@cache
def _policies_for(function: str, config_json: str, region: str) -> tuple[list[dict[str, Any]], CallSite]:
    return _policies_in(
        function, deployment_for(DeploymentConfig.model_validate_json(config_json), region=region)
    )


def _policies_in(function: str, deployment: Any) -> tuple[list[dict[str, Any]], CallSite]:
    site = CallSite(
        region=deployment.region, account=deployment.account, encrypted_topics=encrypted_topics(deployment)
    )
    return function_policies(function, deployment), site


def check_call(identity: Identity, service: str, operation: str, params: dict[str, Any]) -> list[Violation]:
    """The violations one call would cause; empty when its role allows all it needs."""
    documents, site = _policies(identity.function, identity.config)
    prefix = IAM_PREFIX.get(service, service)
    try:
        requests = authorization_requests(prefix, operation, params, site)
    except UnmappedCallError as exc:
        return [Violation(identity.function, f"{prefix}:{operation}", None, str(exc))]
    found = []
    for request in requests:
        decision = decide(documents, request)
        if decision is not Decision.ALLOWED:
            found.append(Violation(identity.function, f"{prefix}:{operation}", request, decision.value))
    return found


def _before_parameter_build(params: dict[str, Any], model: Any, **_: Any) -> None:
    identity = _IDENTITY.get()
    if identity is None:
        return
    service = model.service_model.service_name
    violations = check_call(identity, service, model.name, params)
    if not violations:
        return
    with _LOCK:
        _VIOLATIONS.extend(violations)
    code = DENIED_CODE.get(service, "AccessDenied")
    message = "; ".join(str(v) for v in violations)
    answer: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    raise ClientError(answer, model.name)


def install() -> None:
    """Check every client of every botocore session made from now on (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build", _before_parameter_build))
    _INSTALLED = True


def exempt(client: Any) -> Any:
    """``client`` unchecked: the account owner's, for a harness that reads the world while a
    handler runs (`devtools.aws_state_rules`)."""
    client.meta.events.unregister("before-parameter-build", _before_parameter_build)
    return client


def take_violations() -> list[Violation]:
    """The violations recorded since the last call, and forget them."""
    with _LOCK:
        found = list(_VIOLATIONS)
        _VIOLATIONS.clear()
    return found
