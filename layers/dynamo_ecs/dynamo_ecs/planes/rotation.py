"""Rotate the planes' CA, every certificate and Dynamo's NATS password in three steps, each
followed by rolling restarts: the infra members one at a time, then the GPU services
(docs/security-planes.md, "Rotation without losing a request").

1. ``trust``: a next CA is made; every holder's ``ca_bundle`` trusts both. A next NATS user for
   Dynamo (``dynamo`` -> ``dynamo-2``: nats-server takes one password per user) with a new
   password joins the infra secret's accepted users. Roll: every member accepts both users,
   everyone trusts both CAs.
2. ``issue``: every leaf (member, root, Dynamo, operator) is issued again by the next CA, with
   the same names and CNs; the Dynamo secret switches to the next NATS user. Roll again: old
   and new leaves are trusted, old and new users accepted, by everyone throughout.
3. ``retire``: the next CA becomes the CA; bundles trust it alone; the old NATS user is dropped.
   Roll once more.

The routes' password is not rotated: nats-server's cluster ``authorization`` takes one user
(2.11: "Cluster authorization does not allow multiple users"), so members rolled one at a time
could not route to each other across a change. The routes also authenticate each other with the
member certificate, which does rotate.

Each step is safe to run again, also concurrently (every write is a compare-and-set on the
version read; a writer that loses reads again and computes from the winner's secrets); a step
out of order is refused, naming the step to run first, and changes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from cryptography import x509

from dynamo_ecs import aws
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.observability import logger
from dynamo_ecs.planes import credentials
from dynamo_ecs.planes.credentials import NATS_DYNAMO_USERS, Authority
from dynamo_ecs.planes.secrets_store import (
    ATTEMPTS,
    ConcurrentChangeError,
    Stored,
    put_if_unchanged,
    read_secret,
    secret_name,
    signing_authority,
    trust_bundle,
    upgraded_infra,
)

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


def _read(client: Any, deployment: str, holder: str) -> Stored:
    found = read_secret(client, secret_name(deployment, holder))
    if found is None:
        raise InvalidInputError(
            f"secret {secret_name(deployment, holder)} does not exist: deploy the stack first (it makes the "
            "planes' credentials), then rotate"
        )
    return found


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
    changed: set[str] = set()
    for _ in range(ATTEMPTS):
        secrets = {
            holder: _read(client, deployment, holder) for holder in ("ca", "infra", "dynamo", "operator")
        }
        changes = _changes(deployment, step, secrets, now)
        if dry_run:
            changed = set(changes)
            break
        try:
            for holder, payload in changes.items():
                put_if_unchanged(client, secrets[holder], payload)
                changed.add(holder)
        except ConcurrentChangeError:
            continue  # another writer moved a secret on: read everything again
        break
    else:
        raise InvalidInputError(
            f"Rotate: the planes' secrets kept changing under the {step!r} step (another rotation or "
            "deploy at the same time); run the step again"
        )
    logger.info("plane secrets rotated", extra={"rotation_step": step, "secrets_changed": sorted(changed)})
    return sorted(changed)


def _changes(
    deployment: str, step: str, secrets: dict[str, Stored], now: dt.datetime
) -> dict[str, dict[str, str]]:
    """Each holder's payload after ``step``, for the holders it changes (ca first, then the leaves'
    holders: infra before dynamo, so nats-server's users are written before Dynamo's switch)."""
    ca = secrets["ca"].payload
    changes: dict[str, dict[str, str]] = {}
    dynamo = secrets["dynamo"].payload
    users = _accepted_users(secrets["infra"].payload, deployment)
    presented = (dynamo.get("nats_user", ""), dynamo.get("nats_password", ""))
    if presented not in users:
        raise InvalidInputError(
            f"Rotate: the NATS user {presented[0]!r} in {secret_name(deployment, 'dynamo')} is not one "
            f"nats-server accepts ({secret_name(deployment, 'infra')}); delete the Dynamo secret (the next "
            "deploy makes it again from the infra secret), then rotate"
        )
    nats_issued = len(users) > 1 and presented == users[-1]
    if step == "trust" and (nats_issued or ca.get("signing") == "next"):
        # Past 'trust' (what it makes is still trusted and accepted): nothing to do. Not a new
        # rotation before 'retire' (a third user nobody drops), and not a refusal either: the
        # rollback of a deploy that ran 'issue' sends the previous 'trust' again.
        return {}
    if step == "trust":
        if "next_ca_cert" not in ca:
            made = credentials.make_authority(f"{deployment} next", now)
            ca = {**ca, "next_ca_cert": made.cert_pem, "next_ca_key": made.key_pem}
            changes["ca"] = ca
        if len(users) == 1:
            users = [*users, (credentials.next_nats_user(users[0][0]), credentials.new_password())]
    elif step == "issue" and ("next_ca_cert" not in ca or len(users) == 1):
        raise InvalidInputError(
            "Rotate: 'issue' needs a next CA and NATS user; run the 'trust' step first (and roll)"
        )
    elif step == "issue":
        if ca.get("signing") != "next":
            changes["ca"] = ca = {**ca, "signing": "next"}
    else:  # retire; again, or with no rotation under way, it has nothing left to retire
        upcoming = Authority(ca["next_ca_cert"], ca["next_ca_key"]) if "next_ca_cert" in ca else None
        stale = [
            f"{holder}.{cert_field}"
            for holder, fields in LEAVES.items()
            for cert_field, _, _ in fields
            if upcoming is not None and not _issued_by(secrets[holder].payload[cert_field], upcoming)
        ]
        if len(users) > 1 and not nats_issued:
            stale.append("dynamo.nats_user")
        if stale:
            raise InvalidInputError(
                f"Rotate: 'retire' would leave {', '.join(stale)} on the CA or NATS user it retires; run "
                "the 'issue' step first (and roll)"
            )
        if upcoming is not None:
            changes["ca"] = ca = {"ca_cert": ca["next_ca_cert"], "ca_key": ca["next_ca_key"]}
        users = users[-1:]
    signer = signing_authority(ca)
    for holder, fields in LEAVES.items():
        before = secrets[holder].payload
        payload = dict(upgraded_infra(before) if holder == "infra" else before)
        payload["ca_bundle"] = trust_bundle(ca)
        if step == "issue":
            for cert_field, key_field, common_name in fields:
                if _issued_by(payload[cert_field], signer):
                    continue
                names = _san_names(payload[cert_field]) if cert_field == "member_cert" else None
                leaf = credentials.issue(signer, common_name, now, server_names=names)
                payload[cert_field], payload[key_field] = leaf.cert_pem, leaf.key_pem
        _apply_nats(holder, payload, users, step)
        if payload != before:
            changes[holder] = payload
    return changes


def _accepted_users(infra: dict[str, str], deployment: str) -> list[tuple[str, str]]:
    """Every Dynamo user nats-server accepts, oldest first; an infra secret of the older layout
    (one user, no list) accepts its one user."""
    payload = upgraded_infra(infra)
    return credentials.parse_nats_users(
        payload.get(NATS_DYNAMO_USERS), where=f"secret {secret_name(deployment, 'infra')}"
    )


def _apply_nats(holder: str, payload: dict[str, str], users: list[tuple[str, str]], step: str) -> None:
    """The NATS part of ``step``: the infra secret lists ``users``; from 'issue' on, Dynamo
    presents (and the infra secret records it presents) the newest user."""
    if holder == "infra":
        payload[NATS_DYNAMO_USERS] = credentials.nats_users_text(users)
        if step != "trust":
            payload["nats_dynamo_user"], payload["nats_dynamo_password"] = users[-1]
    elif holder == "dynamo" and step != "trust":
        payload["nats_user"], payload["nats_password"] = users[-1]
