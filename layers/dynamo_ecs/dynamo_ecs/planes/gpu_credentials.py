"""The plane credentials of a GPU task definition: what the operator adds, and what it refuses. Pure.

Dynamo 1.6.1 takes etcd's CA, certificate and key as PEM *contents* and NATS's CA as a *path*
(FACTS.md §8), so a GPU task definition gets (docs/security-planes.md):

- on each Dynamo container, ECS ``secrets`` from the Dynamo holder's secret (`DYNAMO_SECRETS`)
  and ``NATS_TLS_CA_CERT_PATH`` pointing into a task volume;
- a short-lived busybox container (`CA_WRITER`) that receives the CA as a secret and writes it
  into that volume; each Dynamo container mounts the volume read-only and starts once the
  writer has exited 0.

Credentials never appear as values: a container that sets one of these variables as a plain
``environment`` value, or as a secret from another source, is refused with the fix named.
"""

from __future__ import annotations

import copy
from typing import Any

from dynamo_ecs.errors import InvalidInputError

# variable -> the Dynamo holder's JSON key
DYNAMO_SECRETS = {
    "ETCD_AUTH_CA": "ca_bundle",
    "ETCD_AUTH_CLIENT_CERT": "client_cert",
    "ETCD_AUTH_CLIENT_KEY": "client_key",
    "NATS_AUTH_USERNAME": "nats_user",
    "NATS_AUTH_PASSWORD": "nats_password",
}
# Variables Dynamo reads that would compete with the ones above (FACTS.md §8): a password for
# etcd disables its TLS; a token or credentials file for NATS replaces the user.
COMPETING = (
    "ETCD_AUTH_USERNAME",
    "ETCD_AUTH_PASSWORD",
    "NATS_AUTH_TOKEN",
    "NATS_AUTH_NKEY",
    "NATS_AUTH_CREDENTIALS_FILE",
)
CA_VOLUME = "dynamo-planes-ca"
CA_DIR = "/dynamo-planes"
CA_PATH = f"{CA_DIR}/ca.pem"
CA_WRITER = "dynamo-planes-ca"
CA_WRITER_VARIABLE = "PLANES_CA"


def secret_ref(secret_arn: str, key: str) -> str:
    """ECS's reference to one JSON key of a Secrets Manager secret (AWSCURRENT)."""
    return f"{secret_arn}:{key}::"


def plain_credential_problems(task_definition: dict[str, Any]) -> list[str]:
    """Plane credentials given as plain ``environment`` values (visible to anyone who may describe
    the task definition), as ``$.path: problem; fix``."""
    problems: list[str] = []
    containers = task_definition.get("containerDefinitions")
    for i, container in enumerate(containers if isinstance(containers, list) else []):
        environment = container.get("environment") if isinstance(container, dict) else None
        for j, variable in enumerate(environment if isinstance(environment, list) else []):
            if isinstance(variable, dict) and variable.get("name") in (*DYNAMO_SECRETS, *COMPETING):
                problems.append(
                    f"$.containerDefinitions[{i}].environment[{j}]: {variable['name']} is a plane credential "
                    "as a plain value; remove it (with the stack's planes on, the operator adds Dynamo's "
                    "credentials as ECS secrets; docs/security-planes.md)"
                )
    return problems


def check_no_plain_credentials(task_definition: dict[str, Any], secret_arn: str) -> None:
    """Refuse credentials as values or from another secret, naming the container, variable and fix."""
    problems = plain_credential_problems(task_definition)
    for container in task_definition.get("containerDefinitions", []):
        name = container.get("name", "?")
        for secret in container.get("secrets", []) or []:
            wanted = DYNAMO_SECRETS.get(secret.get("name", ""))
            if wanted and secret.get("valueFrom") != secret_ref(secret_arn, wanted):
                problems.append(
                    f"containerDefinitions[{name}].secrets {secret['name']}: from "
                    f"{secret.get('valueFrom')!r}, not the stack's Dynamo credentials; remove it (the "
                    "operator adds the right one)"
                )
            if secret.get("name") in COMPETING:
                problems.append(
                    f"containerDefinitions[{name}].secrets {secret['name']}: competes with the planes' "
                    "certificate identity (etcd ignores its CA with a password); remove it"
                )
    if problems:
        raise InvalidInputError("; ".join(problems))


def add_plane_credentials(
    task_definition: dict[str, Any], secret_arn: str, writer_image: str
) -> dict[str, Any]:
    """``task_definition`` with Dynamo's plane credentials added (a copy); the same result when run again."""
    check_no_plain_credentials(task_definition, secret_arn)
    result = copy.deepcopy(task_definition)
    containers = [c for c in result.get("containerDefinitions", []) if c.get("name") != CA_WRITER]
    for container in containers:
        secrets = [s for s in container.get("secrets", []) or [] if s.get("name") not in DYNAMO_SECRETS]
        secrets += [{"name": n, "valueFrom": secret_ref(secret_arn, k)} for n, k in DYNAMO_SECRETS.items()]
        container["secrets"] = secrets
        env = [v for v in container.get("environment", []) or [] if v.get("name") != "NATS_TLS_CA_CERT_PATH"]
        container["environment"] = [*env, {"name": "NATS_TLS_CA_CERT_PATH", "value": CA_PATH}]
        mounts = [m for m in container.get("mountPoints", []) or [] if m.get("sourceVolume") != CA_VOLUME]
        container["mountPoints"] = [
            *mounts,
            {"sourceVolume": CA_VOLUME, "containerPath": CA_DIR, "readOnly": True},
        ]
        depends = [d for d in container.get("dependsOn", []) or [] if d.get("containerName") != CA_WRITER]
        container["dependsOn"] = [*depends, {"containerName": CA_WRITER, "condition": "SUCCESS"}]
    writer: dict[str, Any] = {
        "name": CA_WRITER,
        "image": writer_image,
        "essential": False,
        "memory": 32,
        "entryPoint": ["sh", "-c"],
        "command": [f'umask 022; printf "%s\\n" "${CA_WRITER_VARIABLE}" > {CA_PATH}'],
        "secrets": [{"name": CA_WRITER_VARIABLE, "valueFrom": secret_ref(secret_arn, "ca_bundle")}],
        "mountPoints": [{"sourceVolume": CA_VOLUME, "containerPath": CA_DIR}],
    }
    log = next((c.get("logConfiguration") for c in containers if c.get("logConfiguration")), None)
    if log:
        writer["logConfiguration"] = copy.deepcopy(log)
    result["containerDefinitions"] = [*containers, writer]
    volumes = [v for v in result.get("volumes", []) or [] if v.get("name") != CA_VOLUME]
    result["volumes"] = [*volumes, {"name": CA_VOLUME}]
    return result
