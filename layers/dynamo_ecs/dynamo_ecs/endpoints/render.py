"""Render a GPU service's task definition from its spec and the infra endpoint. Pure.

A spec is a task definition in the format ``aws ecs register-task-definition
--cli-input-json`` takes, as in Dynamo's ECS example, placeholders included. Rendering:

- ``IP_ADDRESS`` anywhere in a string value (environment, command, entryPoint, ...) becomes
  the infra task's private IP;
- ``ETCD_ENDPOINTS`` and ``NATS_SERVER`` are rewritten to the endpoint's URLs even when the
  spec holds an address pasted by hand earlier (scheme and port from the config);
- ``AWS_ID`` and ``AWS_REGION`` (role ARNs, secret ARNs, log options) become the account and
  region the operator runs in. Environment variable *names* are never touched, so a
  variable called ``AWS_REGION`` keeps its name;
- with the authenticated planes on (``planes``), the URLs take the TLS schemes (``https://``,
  ``tls://``) and every container gets Dynamo's plane credentials as ECS secrets
  (`dynamo_ecs.planes.gpu_credentials`); credentials given as plain values are refused;
- the read-only fields of a described revision are dropped;
- everything else is kept exactly. A result that still holds a placeholder is refused with
  `PlaceholderError` naming every JSON path, so it can never be registered.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from dynamo_ecs.errors import PlaceholderError
from dynamo_ecs.infra import InfraEndpoint
from dynamo_ecs.planes.gpu_credentials import add_plane_credentials

PLACEHOLDERS = ("IP_ADDRESS", "AWS_ID", "AWS_REGION")
_PLACEHOLDER_RE = re.compile(r"\b(IP_ADDRESS|AWS_ID|AWS_REGION)\b")
# Stricter than the substitution: a placeholder glued to other text (``IP_ADDRESS_x``) is not
# filled, so it must be refused rather than registered half-rendered.
_LEFTOVER_RE = re.compile("|".join(PLACEHOLDERS))
READ_ONLY_FIELDS = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
)
ENDPOINT_VARIABLES = ("ETCD_ENDPOINTS", "NATS_SERVER")
# The tag the operator puts on each revision it registers: the digest of the rendering, so a
# retry after a crash or a lost answer finds that revision instead of registering a twin.
RENDERING_TAG = "dynamo-ecs:rendering-sha256"


@dataclass(frozen=True)
class PlaneCredentials:
    """The Dynamo holder's secret and the image that writes the CA file into each GPU task."""

    dynamo_secret_arn: str
    ca_writer_image: str


@dataclass(frozen=True)
class RenderContext:
    endpoint: InfraEndpoint
    account_id: str
    region: str
    planes: PlaneCredentials | None = None

    def substitute(self, text: str) -> str:
        values = {"IP_ADDRESS": self.endpoint.ip, "AWS_ID": self.account_id, "AWS_REGION": self.region}
        return _PLACEHOLDER_RE.sub(lambda match: values[match.group(1)], text)


def strip_read_only(task_definition: dict[str, Any]) -> dict[str, Any]:
    """A described revision made fit for RegisterTaskDefinition again (our rendering tag dropped too)."""
    stripped = {k: v for k, v in task_definition.items() if k not in READ_ONLY_FIELDS}
    tags = stripped.get("tags")
    if isinstance(tags, list):
        stripped["tags"] = [t for t in tags if not (isinstance(t, dict) and t.get("key") == RENDERING_TAG)]
    return stripped


def _substitute_values(node: Any, context: RenderContext, key: str | None = None) -> Any:
    if isinstance(node, str):
        return node if key == "name" else context.substitute(node)
    if isinstance(node, list):
        return [_substitute_values(item, context) for item in node]
    if isinstance(node, dict):
        return {k: _substitute_values(v, context, k) for k, v in node.items()}
    return node


def secure_url(url: str) -> str:
    """The planes' TLS scheme for an etcd (``http``) or NATS (``nats``) URL, or for each URL of
    a comma-separated list (``ETCD_ENDPOINTS`` names every member of the three-member tier)."""
    secured = []
    for one in url.split(","):
        scheme, sep, rest = one.partition("://")
        secured.append(f"{ {'http': 'https', 'nats': 'tls'}.get(scheme, scheme) }{sep}{rest}")
    return ",".join(secured)


def _rewrite_endpoint_variables(container: dict[str, Any], endpoint: InfraEndpoint, secure: bool) -> None:
    urls = {"ETCD_ENDPOINTS": endpoint.etcd_url, "NATS_SERVER": endpoint.nats_url}
    if secure:
        urls = {name: secure_url(url) for name, url in urls.items()}
    environment = container.get("environment")
    for variable in environment if isinstance(environment, list) else []:
        if isinstance(variable, dict) and variable.get("name") in urls:
            variable["value"] = urls[variable["name"]]


def find_placeholders(node: Any, path: str = "$") -> list[str]:
    """JSON paths of every string value that still holds a placeholder."""
    if isinstance(node, str):
        return [path] if _LEFTOVER_RE.search(node) else []
    if isinstance(node, list):
        return [p for i, item in enumerate(node) for p in find_placeholders(item, f"{path}[{i}]")]
    if isinstance(node, dict):
        return [p for k, v in node.items() if k != "name" for p in find_placeholders(v, f"{path}.{k}")]
    return []


def plane_credentials(dynamo_secret_arn: str | None, ca_writer_image: str) -> PlaneCredentials | None:
    return PlaneCredentials(dynamo_secret_arn, ca_writer_image) if dynamo_secret_arn else None


def render_task_definition(spec: dict[str, Any], context: RenderContext) -> dict[str, Any]:
    """The RegisterTaskDefinition input for ``spec`` at ``context``'s endpoint."""
    rendered: dict[str, Any] = _substitute_values(strip_read_only(copy.deepcopy(spec)), context)
    containers = rendered.get("containerDefinitions")
    for container in containers if isinstance(containers, list) else []:
        if isinstance(container, dict):
            _rewrite_endpoint_variables(container, context.endpoint, context.planes is not None)
    if context.planes is not None:
        rendered = add_plane_credentials(
            rendered, context.planes.dynamo_secret_arn, context.planes.ca_writer_image
        )
    left = find_placeholders(rendered)
    if left:
        raise PlaceholderError(
            f"task definition {rendered.get('family', '?')!r} still holds placeholders at "
            f"{', '.join(left)}: fill them in the spec or redeploy with a complete spec"
        )
    return rendered


def endpoint_of(task_definition: dict[str, Any]) -> dict[str, str]:
    """The ETCD_ENDPOINTS / NATS_SERVER values a task definition carries (first container that has them)."""
    for container in task_definition.get("containerDefinitions") or []:
        found = {
            v["name"]: str(v.get("value", ""))
            for v in container.get("environment") or []
            if v.get("name") in ENDPOINT_VARIABLES
        }
        if found:
            return found
    return {}
