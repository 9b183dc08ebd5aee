"""Keep the planes' credentials in Secrets Manager: one secret per holder, made once.

`ensure_plane_secrets` is safe to run twice, concurrently and after a partial run: a secret
that exists is read and kept (a second deploy never re-issues anything), a missing one is made
from the CA that exists, and a concurrent maker that loses the race to create a secret reads
the winner's. The NATS password Dynamo presents is taken from the infra secret whenever that
exists, so the infra task and the GPU tasks can never hold different ones.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from dynamo_ecs import aws
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.observability import logger
from dynamo_ecs.planes import credentials
from dynamo_ecs.planes.credentials import HOLDERS, Authority

DEPLOYMENT_TAG = "dynamo-ecs:deployment"


def secret_name(deployment: str, holder: str) -> str:
    return f"{deployment}/planes/{holder}"


@dataclass
class PlaneSecrets:
    """What `ensure_plane_secrets` found or made: each holder's secret ARN, and what it created."""

    arns: dict[str, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    dry_run: bool = False


def _read(client: Any, name: str) -> tuple[str, dict[str, str]] | None:
    try:
        answer = client.get_secret_value(SecretId=name)
    except client.exceptions.ResourceNotFoundException:
        return None
    try:
        payload = json.loads(answer["SecretString"])
    except (KeyError, ValueError):
        raise InvalidInputError(
            f"secret {name} is not the JSON the planes need: delete it (the next deploy makes it again)"
        ) from None
    return answer["ARN"], payload


def _create(
    client: Any, deployment: str, holder: str, payload: dict[str, str]
) -> tuple[str, dict[str, str], bool]:
    """Create the holder's secret, or read it if a concurrent maker created it first."""
    name = secret_name(deployment, holder)
    try:
        answer = client.create_secret(
            Name=name,
            Description=f"The infra planes' credentials of the {holder} (docs/security-planes.md)",
            SecretString=json.dumps(payload),
            Tags=[{"Key": DEPLOYMENT_TAG, "Value": deployment}],
        )
    except client.exceptions.ResourceExistsException:
        found = _read(client, name)
        if found is None:  # created and deleted again meanwhile: let the caller retry
            raise
        return found[0], found[1], False
    return answer["ARN"], payload, True


def _check_fields(name: str, payload: dict[str, str], wanted: dict[str, str]) -> None:
    missing = sorted(set(wanted) - set(payload))
    if missing:
        raise InvalidInputError(
            f"secret {name} lacks {', '.join(missing)}: delete it (the next deploy makes it again "
            "from the CA)"
        )


def ensure_plane_secrets(
    deployment: str, server_names: list[str], *, dry_run: bool = False, now: dt.datetime | None = None
) -> PlaneSecrets:
    names = credentials.validate_server_names(server_names)
    now = now or dt.datetime.now(dt.UTC)
    client = aws.client("secretsmanager")
    result = PlaneSecrets(dry_run=dry_run)
    found = {holder: _read(client, secret_name(deployment, holder)) for holder in HOLDERS}
    missing = [holder for holder in HOLDERS if found[holder] is None]
    if dry_run:
        result.arns = {h: f[0] for h, f in found.items() if f is not None}
        result.created = missing
        return result

    ca = found["ca"]
    if ca is None:
        authority = credentials.make_authority(deployment, now)
        arn, payload, made = _create(
            client, deployment, "ca", {"ca_cert": authority.cert_pem, "ca_key": authority.key_pem}
        )
        ca = (arn, payload)
        if made:
            result.created.append("ca")
    _check_fields(secret_name(deployment, "ca"), ca[1], {"ca_cert": "", "ca_key": ""})
    result.arns["ca"] = ca[0]
    fresh = credentials.holder_payloads(signing_authority(ca[1]), names, now)
    for payload in fresh.values():  # mid-rotation, a new holder trusts both CAs as the others do
        if "ca_bundle" in payload:
            payload["ca_bundle"] = trust_bundle(ca[1])

    infra_payload: dict[str, str] = {}
    for holder in ("infra", "dynamo", "operator"):
        existing = found[holder]
        if existing is None:
            payload = fresh[holder]
            if holder == "dynamo":
                # nats-server accepts the password in the infra secret (made above or earlier).
                payload = {**payload, "nats_password": infra_payload["nats_dynamo_password"]}
            arn, kept, made = _create(client, deployment, holder, payload)
            existing = (arn, kept)
            if made:
                result.created.append(holder)
        _check_fields(secret_name(deployment, holder), existing[1], fresh[holder])
        if holder == "infra":
            infra_payload = existing[1]
            if _member_names(infra_payload["member_cert"]) != sorted(names):
                # The members' names changed (a new namespace, the tier's layout): only the
                # member certificate is issued again; every identity and password is kept.
                infra_payload = {
                    **infra_payload,
                    "member_cert": fresh["infra"]["member_cert"],
                    "member_key": fresh["infra"]["member_key"],
                }
                client.put_secret_value(SecretId=existing[0], SecretString=json.dumps(infra_payload))
                result.updated.append("infra")
        result.arns[holder] = existing[0]
    logger.info("plane secrets", extra={"secrets_created": result.created, "secrets_updated": result.updated})
    return result


def signing_authority(ca_payload: dict[str, str]) -> Authority:
    """The CA that signs leaves now: the next one once a rotation has reached its ``issue`` step."""
    if ca_payload.get("signing") == "next":
        return Authority(cert_pem=ca_payload["next_ca_cert"], key_pem=ca_payload["next_ca_key"])
    return Authority(cert_pem=ca_payload["ca_cert"], key_pem=ca_payload["ca_key"])


def trust_bundle(ca_payload: dict[str, str]) -> str:
    """What every holder trusts: the CA, and the next one while a rotation is under way."""
    return ca_payload["ca_cert"] + ca_payload.get("next_ca_cert", "")


def _member_names(cert_pem: str) -> list[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return sorted(
        [str(n) for n in sans.get_values_for_type(x509.DNSName)]
        + [str(n) for n in sans.get_values_for_type(x509.IPAddress)]
    )


def delete_plane_secrets(deployment: str, *, dry_run: bool = False) -> list[str]:
    """Delete every holder's secret at once (no recovery window, so a stack of the same name can
    be deployed again right away). Returns the holders whose secret existed."""
    client = aws.client("secretsmanager")
    deleted: list[str] = []
    for holder in HOLDERS:
        name = secret_name(deployment, holder)
        try:
            client.describe_secret(SecretId=name)
        except client.exceptions.ResourceNotFoundException:
            continue
        if not dry_run:
            # Forced deletion of a secret that is already gone is not an error (AWS's DeleteSecret).
            client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        deleted.append(holder)
    return deleted
