"""Rotating the planes' CA and certificates in three steps, on moto's Secrets Manager."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography import x509

from dynamo_ecs import aws
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.planes.rotation import rotate
from dynamo_ecs.planes.secrets_store import ensure_plane_secrets, secret_name

NAMES = ["infra-0.dynamo-infra.internal"]
HOLDERS = ("ca", "infra", "dynamo", "operator")


def secret(holder: str) -> dict[str, str]:
    answer = aws.client("secretsmanager").get_secret_value(SecretId=secret_name("dynamo", holder))
    return dict(json.loads(answer["SecretString"]))


def everything() -> dict[str, dict[str, str]]:
    return {h: secret(h) for h in HOLDERS}


def certs(bundle: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle.encode())


def issuer_of(pem: str) -> x509.Name:
    return x509.load_pem_x509_certificate(pem.encode()).issuer


def test_a_full_rotation_trusts_both_cas_until_every_leaf_is_reissued(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    before = everything()
    old_ca = certs(before["ca"]["ca_cert"])[0]
    # trust: a next CA, trusted by every holder next to the old one; no leaf changes
    assert rotate("dynamo", "trust") == ["ca", "dynamo", "infra", "operator"]
    trusted = everything()
    new_ca = certs(trusted["ca"]["next_ca_cert"])[0]
    for holder in ("infra", "dynamo", "operator"):
        assert certs(trusted[holder]["ca_bundle"]) == [old_ca, new_ca]
        assert trusted[holder].get("client_cert") == before[holder].get("client_cert")
    assert rotate("dynamo", "trust") == [] and everything() == trusted
    # issue: every leaf from the next CA, same CNs and names, passwords kept; bundles still both
    rotate("dynamo", "issue")
    issued = everything()
    for holder, field in (
        ("infra", "member_cert"),
        ("infra", "root_cert"),
        ("dynamo", "client_cert"),
        ("operator", "client_cert"),
    ):
        assert issuer_of(issued[holder][field]) == new_ca.subject, (holder, field)
        old = x509.load_pem_x509_certificate(before[holder][field].encode())
        new = x509.load_pem_x509_certificate(issued[holder][field].encode())
        assert new.subject == old.subject
    member = x509.load_pem_x509_certificate(issued["infra"]["member_cert"].encode())
    assert NAMES[0] in member.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    assert (
        issued["dynamo"]["nats_password"]
        == before["dynamo"]["nats_password"]
        == issued["infra"]["nats_dynamo_password"]
    )
    assert certs(issued["dynamo"]["ca_bundle"]) == [old_ca, new_ca]
    assert rotate("dynamo", "issue") == [] and everything() == issued
    # a second deploy mid-rotation re-issues nothing
    ensure_plane_secrets("dynamo", NAMES)
    assert everything() == issued
    # retire: the next CA is the CA; every holder trusts it alone
    rotate("dynamo", "retire")
    retired = everything()
    assert certs(retired["ca"]["ca_cert"]) == [new_ca] and "next_ca_cert" not in retired["ca"]
    for holder in ("infra", "dynamo", "operator"):
        assert certs(retired[holder]["ca_bundle"]) == [new_ca]
    assert rotate("dynamo", "retire") == [] and everything() == retired


def test_steps_out_of_order_are_refused_naming_the_step_first_and_change_nothing(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    before = everything()
    with pytest.raises(InvalidInputError, match="run the 'trust' step first"):
        rotate("dynamo", "issue")
    assert everything() == before
    rotate("dynamo", "trust")
    trusted = everything()
    with pytest.raises(InvalidInputError, match=r"retire' would leave .*run the 'issue' step first"):
        rotate("dynamo", "retire")
    assert everything() == trusted
    with pytest.raises(InvalidInputError, match="Rotate: 'rekey' is not a rotation step"):
        rotate("dynamo", "rekey")


def test_a_holder_made_mid_rotation_trusts_both_cas(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    rotate("dynamo", "trust")
    aws.client("secretsmanager").delete_secret(
        SecretId=secret_name("dynamo", "operator"), ForceDeleteWithoutRecovery=True
    )
    ensure_plane_secrets("dynamo", NAMES)
    assert len(certs(secret("operator")["ca_bundle"])) == 2


def test_dry_run_changes_nothing(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    before = everything()
    assert rotate("dynamo", "trust", dry_run=True) == ["ca", "dynamo", "infra", "operator"]
    assert everything() == before


def test_rotating_before_the_first_deploy_names_the_fix(aws_env: Any) -> None:
    with pytest.raises(InvalidInputError, match="deploy the stack first"):
        rotate("dynamo", "trust")
