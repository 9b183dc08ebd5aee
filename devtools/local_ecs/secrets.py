"""ECS ``secrets`` of a container, resolved as the ECS agent does, from Secrets Manager (moto server here).

``valueFrom`` is a secret's ARN, optionally followed by ``:json-key:version-stage:version-id``
(any of them empty): the whole ``SecretString``, or one key of its JSON. A reference that
cannot be resolved stops the task before it starts, as on ECS (the agent's
``ResourceInitializationError``), with the reference and the reason.
"""

from __future__ import annotations

import json
from typing import Any

from dynamo_ecs import aws

_SECRET_ARN_PARTS = 7  # arn:partition:secretsmanager:region:account:secret:name-suffix


class SecretResolutionError(RuntimeError):
    """A container's secret could not be read: the task does not start."""


def resolve_secret(value_from: str) -> str:
    parts = value_from.split(":")
    if len(parts) < _SECRET_ARN_PARTS or parts[2] != "secretsmanager" or parts[5] != "secret":
        raise SecretResolutionError(
            f"valueFrom {value_from!r}: only Secrets Manager ARNs are resolved here "
            "(arn:...:secret:NAME[:KEY::])"
        )
    arn = ":".join(parts[:_SECRET_ARN_PARTS])
    key, stage, version = [*parts[_SECRET_ARN_PARTS:], "", "", ""][:3]
    request: dict[str, Any] = {"SecretId": arn}
    if stage:
        request["VersionStage"] = stage
    if version:
        request["VersionId"] = version
    client = aws.client("secretsmanager")
    try:
        text = str(client.get_secret_value(**request)["SecretString"])
    except client.exceptions.ResourceNotFoundException:
        raise SecretResolutionError(f"valueFrom {value_from!r}: no such secret") from None
    if not key:
        return text
    try:
        value = json.loads(text)[key]
    except (ValueError, KeyError, TypeError):
        raise SecretResolutionError(f"valueFrom {value_from!r}: the secret has no JSON key {key!r}") from None
    return value if isinstance(value, str) else json.dumps(value)


def secret_environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's ``secrets`` as environment variables."""
    return {s["name"]: resolve_secret(s["valueFrom"]) for s in container.get("secrets") or []}
