"""Keep the planes' credentials in Secrets Manager: one secret per holder, made once.

`ensure_plane_secrets` is safe to run twice, concurrently and after a partial run: a secret
that exists is read and kept (a second deploy never re-issues anything), a missing one is made
from the CA that exists, and a concurrent maker that loses the race to create a secret reads
the winner's. The NATS user and password Dynamo presents are taken from the infra secret
whenever that exists, so the infra task and the GPU tasks can never hold different ones.

Every change of an existing secret is a compare-and-set (`put_if_unchanged`): the new version's
id is derived from the version that was read, so of two writers that read the same version only
the first lands a different content; the second gets `ConcurrentChangeError`, reads again and
computes its result from the winner's.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dynamo_ecs import aws
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.observability import logger
from dynamo_ecs.planes import credentials
from dynamo_ecs.planes.credentials import HOLDERS, Authority

DEPLOYMENT_TAG = "dynamo-ecs:deployment"
ATTEMPTS = 5  # reads and computes again after a concurrent writer changed a secret first
_VERSIONS = uuid.UUID("5b0c1c52-8d0e-4c55-9a57-2f1f3c3f6b0e")  # namespace of derived version ids


class Stored(NamedTuple):
    """A secret as read: its ARN, its JSON and the id of the version read."""

    arn: str
    payload: dict[str, str]
    version: str


class ConcurrentChangeError(Exception):
    """Another writer changed the secret since it was read: read again, compute again."""


def put_if_unchanged(client: Any, stored: Stored, payload: dict[str, str]) -> None:
    """Write ``payload`` as the secret's next version, unless another writer has put a different
    one on top of the version read (``ConcurrentChangeError``). The same content from two writers
    lands once (Secrets Manager ignores a repeated request token with the same content)."""
    token = str(uuid.uuid5(_VERSIONS, f"{stored.arn}|{stored.version}"))
    try:
        client.put_secret_value(
            SecretId=stored.arn, SecretString=json.dumps(payload), ClientRequestToken=token
        )
    except client.exceptions.ResourceExistsException:
        raise ConcurrentChangeError(stored.arn) from None


def secret_name(deployment: str, holder: str) -> str:
    return f"{deployment}/planes/{holder}"


@dataclass
class PlaneSecrets:
    """What `ensure_plane_secrets` found or made: each holder's secret ARN, and what it created."""

    arns: dict[str, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    dry_run: bool = False


def read_secret(client: Any, name: str) -> Stored | None:
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
    if not isinstance(payload, dict):
        raise InvalidInputError(
            f"secret {name} is not the JSON object the planes need: delete it (the next deploy makes it "
            "again)"
        )
    return Stored(answer["ARN"], payload, answer["VersionId"])


def _create(client: Any, deployment: str, holder: str, payload: dict[str, str]) -> tuple[Stored, bool]:
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
        found = read_secret(client, name)
        if found is None:  # created and deleted again meanwhile: let the caller retry
            raise
        return found, False
    return Stored(answer["ARN"], payload, answer["VersionId"]), True


def _check_fields(name: str, payload: dict[str, str], wanted: dict[str, str]) -> None:
    missing = sorted(set(wanted) - set(payload))
    if missing:
        raise InvalidInputError(
            f"secret {name} lacks {', '.join(missing)}: delete it (the next deploy makes it again "
            "from the CA)"
        )


def upgraded_infra(payload: dict[str, str]) -> dict[str, str]:
    """An infra secret of an older layout with the fields today's task definitions refer to:
    the list of accepted NATS users, made of the one user and password in use (nothing changes
    for a running task)."""
    if credentials.NATS_DYNAMO_USERS in payload or not {"nats_dynamo_user", "nats_dynamo_password"} <= set(
        payload
    ):
        return payload
    users = credentials.nats_users_text([(payload["nats_dynamo_user"], payload["nats_dynamo_password"])])
    return {**payload, credentials.NATS_DYNAMO_USERS: users}


def _infra_update(payload: dict[str, str], names: list[str], fresh: dict[str, str]) -> dict[str, str]:
    """The infra secret as this deploy wants it: upgraded to today's fields and, when the members'
    names changed (a new namespace, the tier's layout), with a member certificate for them (only
    that certificate is issued again; every identity and password is kept)."""
    payload = upgraded_infra(payload)
    if "member_cert" in payload and _member_names(payload["member_cert"]) != sorted(names):
        payload = {**payload, "member_cert": fresh["member_cert"], "member_key": fresh["member_key"]}
    return payload


def ensure_plane_secrets(
    deployment: str, server_names: list[str], *, dry_run: bool = False, now: dt.datetime | None = None
) -> PlaneSecrets:
    names = credentials.validate_server_names(server_names)
    now = now or dt.datetime.now(dt.UTC)
    client = aws.client("secretsmanager")
    for _ in range(ATTEMPTS):
        try:
            result = _ensure_once(client, deployment, names, dry_run=dry_run, now=now)
        except ConcurrentChangeError:
            continue
        logger.info(
            "plane secrets", extra={"secrets_created": result.created, "secrets_updated": result.updated}
        )
        return result
    raise InvalidInputError(
        f"the planes' secrets of {deployment} kept changing while this deploy read them (a rotation at "
        "the same time?); deploy again"
    )


def _ensure_once(
    client: Any, deployment: str, names: list[str], *, dry_run: bool, now: dt.datetime
) -> PlaneSecrets:
    result = PlaneSecrets(dry_run=dry_run)
    found = {holder: read_secret(client, secret_name(deployment, holder)) for holder in HOLDERS}
    missing = [holder for holder in HOLDERS if found[holder] is None]
    if dry_run:
        result.arns = {h: f.arn for h, f in found.items() if f is not None}
        result.created = missing
        infra = found["infra"]
        if infra is not None:
            fresh_member = {"member_cert": "", "member_key": ""}
            if _infra_update(infra.payload, names, fresh_member) != infra.payload:
                result.updated.append("infra")
        return result

    ca = found["ca"]
    if ca is None:
        authority = credentials.make_authority(deployment, now)
        ca, made = _create(
            client, deployment, "ca", {"ca_cert": authority.cert_pem, "ca_key": authority.key_pem}
        )
        if made:
            result.created.append("ca")
    _check_fields(secret_name(deployment, "ca"), ca.payload, {"ca_cert": "", "ca_key": ""})
    result.arns["ca"] = ca.arn
    fresh = credentials.holder_payloads(signing_authority(ca.payload), names, now)
    for payload in fresh.values():  # mid-rotation, a new holder trusts both CAs as the others do
        if "ca_bundle" in payload:
            payload["ca_bundle"] = trust_bundle(ca.payload)

    infra_payload: dict[str, str] = {}
    for holder in ("infra", "dynamo", "operator"):
        existing = found[holder]
        if existing is None:
            payload = fresh[holder]
            if holder == "dynamo":
                # nats-server accepts the user and password in the infra secret (made above or
                # earlier; after a rotation's 'issue' step, the next user's).
                payload = {
                    **payload,
                    "nats_user": infra_payload["nats_dynamo_user"],
                    "nats_password": infra_payload["nats_dynamo_password"],
                }
            existing, made = _create(client, deployment, holder, payload)
            if made:
                result.created.append(holder)
        if holder == "infra":
            infra_payload = _infra_update(existing.payload, names, fresh["infra"])
            _check_fields(secret_name(deployment, holder), infra_payload, fresh[holder])
            if infra_payload != existing.payload:
                put_if_unchanged(client, existing, infra_payload)
                result.updated.append("infra")
        else:
            _check_fields(secret_name(deployment, holder), existing.payload, fresh[holder])
        result.arns[holder] = existing.arn
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
