"""Rotate the planes' CA and every certificate in three steps, each followed by rolling restarts
(docs/security-planes.md, "Rotation without losing a request").

1. ``trust``: a next CA is made; every holder's ``ca_bundle`` trusts both. Roll the infra
   members one at a time, then the GPU services: everyone now trusts both CAs.
2. ``issue``: every leaf (member, root, Dynamo, operator) is issued again by the next CA, with
   the same names and CNs; passwords are kept. Roll again: old and new leaves are trusted
   by everyone throughout.
3. ``retire``: the next CA becomes the CA; bundles trust it alone. Roll once more.

Each step is safe to run again; a step out of order is refused, naming the step to run
first, and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

from cryptography import x509

from dynamo_ecs import aws
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.observability import logger
from dynamo_ecs.planes import credentials
from dynamo_ecs.planes.credentials import Authority
from dynamo_ecs.planes.secrets_store import secret_name, signing_authority, trust_bundle

RotationStep = Literal["trust", "issue", "retire"]
STEPS: tuple[RotationStep, ...] = ("trust", "issue", "retire")
LEAVES = {  # holder -> (certificate field, key field, CN)
    "infra": [
        ("member_cert", "member_key", "infra-member"),
        ("root_cert", "root_key", credentials.ETCD_ROOT_USER),
    ],
    "dynamo": [("client_cert", "client_key", credentials.ETCD_DYNAMO_USER)],
    "operator": [("client_cert", "client_key", credentials.ETCD_OPERATOR_USER)],
}


def _read(client: Any, deployment: str, holder: str) -> tuple[str, dict[str, str]]:
    try:
        answer = client.get_secret_value(SecretId=secret_name(deployment, holder))
    except client.exceptions.ResourceNotFoundException:
        raise InvalidInputError(
            f"secret {secret_name(deployment, holder)} does not exist: deploy the stack first (it makes the "
            "planes' credentials), then rotate"
        ) from None
    return answer["ARN"], dict(json.loads(answer["SecretString"]))


def _put(client: Any, arn: str, payload: dict[str, str]) -> None:
    client.put_secret_value(SecretId=arn, SecretString=json.dumps(payload))


def _issued_by(cert_pem: str, authority: Authority) -> bool:
    return x509.load_pem_x509_certificate(cert_pem.encode()).issuer == authority.certificate.subject


def _san_names(cert_pem: str) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in sans.get_values_for_type(x509.DNSName)] + [
        str(n) for n in sans.get_values_for_type(x509.IPAddress)
    ]


def rotate(deployment: str, step: str, *, dry_run: bool = False, now: dt.datetime | None = None) -> list[str]:
    """Apply rotation ``step``; returns the holders whose secret changed (or would, with ``dry_run``)."""
    if step not in STEPS:
        raise InvalidInputError(
            f"Rotate: {step!r} is not a rotation step; give one of {', '.join(STEPS)} in order"
        )
    now = now or dt.datetime.now(dt.UTC)
    client = aws.client("secretsmanager")
    secrets = {holder: _read(client, deployment, holder) for holder in ("ca", "infra", "dynamo", "operator")}
    ca_arn, ca = secrets["ca"]
    changes: dict[str, dict[str, str]] = {}
    if step == "trust":
        if "next_ca_cert" not in ca:
            upcoming = credentials.make_authority(f"{deployment} next", now)
            ca = {**ca, "next_ca_cert": upcoming.cert_pem, "next_ca_key": upcoming.key_pem}
            changes["ca"] = ca
    elif "next_ca_cert" not in ca:
        if step == "issue":
            raise InvalidInputError("Rotate: 'issue' needs a next CA; run the 'trust' step first (and roll)")
        # 'retire' again, or with no rotation under way: nothing left to retire
    else:
        upcoming = Authority(ca["next_ca_cert"], ca["next_ca_key"])
        if step == "issue" and ca.get("signing") != "next":
            changes["ca"] = ca = {**ca, "signing": "next"}
        if step == "retire":
            stale = [
                f"{holder}.{cert_field}"
                for holder, fields in LEAVES.items()
                for cert_field, _, _ in fields
                if not _issued_by(secrets[holder][1][cert_field], upcoming)
            ]
            if stale:
                raise InvalidInputError(
                    f"Rotate: 'retire' would leave {', '.join(stale)} signed by the old CA; run the "
                    "'issue' step first (and roll)"
                )
            changes["ca"] = ca = {"ca_cert": ca["next_ca_cert"], "ca_key": ca["next_ca_key"]}
    signer = signing_authority(ca)
    for holder, fields in LEAVES.items():
        payload = dict(changes.get(holder, secrets[holder][1]))
        payload["ca_bundle"] = trust_bundle(ca)
        if step == "issue":
            for cert_field, key_field, common_name in fields:
                if _issued_by(payload[cert_field], signer):
                    continue
                names = _san_names(payload[cert_field]) if cert_field == "member_cert" else None
                leaf = credentials.issue(signer, common_name, now, server_names=names)
                payload[cert_field], payload[key_field] = leaf.cert_pem, leaf.key_pem
        if payload != secrets[holder][1]:
            changes[holder] = payload
    if not dry_run:
        for holder, payload in changes.items():
            _put(client, ca_arn if holder == "ca" else secrets[holder][0], payload)
    logger.info("plane secrets rotated", extra={"rotation_step": step, "secrets_changed": sorted(changes)})
    return sorted(changes)
