"""Rotating the planes' CA and certificates in three steps, on moto's Secrets Manager."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from cryptography import x509

from devtools.services import MotoServer
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


def users(secrets: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    """The Dynamo users nats-server accepts, as the writer reads them from the infra secret."""
    return [
        (user, password)
        for user, _, password in (e.partition(":") for e in secrets["infra"]["nats_dynamo_users"].split())
    ]


def issuer_of(pem: str) -> x509.Name:
    return x509.load_pem_x509_certificate(pem.encode()).issuer


def test_a_full_rotation_trusts_both_cas_until_every_leaf_is_reissued(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    before = everything()
    old_ca = certs(before["ca"]["ca_cert"])[0]
    # trust: a next CA, trusted by every holder next to the old one; no leaf changes
    assert rotate("dynamo", "trust") == ["ca", "dynamo", "infra", "operator"]
    trusted = everything()
    # and nats-server's users: the one in use and a next one, with a new password
    old_password = before["dynamo"]["nats_password"]
    (_, next_password) = users(trusted)[1]
    assert users(trusted) == [("dynamo", old_password), ("dynamo-2", next_password)]
    assert next_password != old_password and len(next_password) >= 32
    assert (trusted["dynamo"]["nats_user"], trusted["dynamo"]["nats_password"]) == ("dynamo", old_password)
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
    # Dynamo's secret switches to the next NATS user; nats-server still accepts both
    assert (issued["dynamo"]["nats_user"], issued["dynamo"]["nats_password"]) == ("dynamo-2", next_password)
    assert (issued["infra"]["nats_dynamo_user"], issued["infra"]["nats_dynamo_password"]) == (
        "dynamo-2",
        next_password,
    )
    assert users(issued) == users(trusted)
    assert issued["infra"]["nats_route_password"] == before["infra"]["nats_route_password"]
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
    # the old NATS user is dropped; the routes' password is never rotated (one cluster user only)
    assert users(retired) == [("dynamo-2", next_password)]
    assert retired["dynamo"]["nats_password"] == next_password
    assert retired["infra"]["nats_route_password"] == before["infra"]["nats_route_password"]
    assert rotate("dynamo", "retire") == [] and everything() == retired
    # the next rotation's user is the next generation
    rotate("dynamo", "trust")
    assert [user for user, _ in users(everything())] == ["dynamo-2", "dynamo-3"]


def test_steps_out_of_order_are_refused_naming_the_step_first_and_change_nothing(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    before = everything()
    with pytest.raises(InvalidInputError, match="run the 'trust' step first"):
        rotate("dynamo", "issue")
    assert everything() == before
    rotate("dynamo", "trust")
    trusted = everything()
    with pytest.raises(
        InvalidInputError, match=r"retire' would leave .*dynamo\.nats_user.*run the 'issue' step first"
    ):
        rotate("dynamo", "retire")
    assert everything() == trusted
    rotate("dynamo", "issue")
    issued = everything()
    # 'trust' again after 'issue' (a rollback's) starts no new rotation: no third user, no third CA
    assert rotate("dynamo", "trust") == [] and everything() == issued
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


def test_dry_run_reports_each_step_and_changes_nothing(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    for step in ("trust", "issue", "retire"):
        before = everything()
        assert rotate("dynamo", step, dry_run=True) == ["ca", "dynamo", "infra", "operator"], step
        assert everything() == before, step
        rotate("dynamo", step)
    # nothing left to retire: the dry run says so too
    assert rotate("dynamo", "retire", dry_run=True) == []


def test_a_dynamo_secret_made_after_issue_holds_the_next_nats_user(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    rotate("dynamo", "trust")
    rotate("dynamo", "issue")
    issued = everything()
    aws.client("secretsmanager").delete_secret(
        SecretId=secret_name("dynamo", "dynamo"), ForceDeleteWithoutRecovery=True
    )
    ensure_plane_secrets("dynamo", NAMES)
    made = secret("dynamo")
    assert (made["nats_user"], made["nats_password"]) == (
        issued["dynamo"]["nats_user"],
        issued["dynamo"]["nats_password"],
    )
    rotate("dynamo", "retire")  # and the rotation can finish


def run_concurrently(step: str, runs: int = 4) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(runs)

    def run() -> None:
        barrier.wait()
        try:
            rotate("dynamo", step)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_runs_of_each_step_agree_on_one_next_ca_and_one_next_password(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    # Given four runs of 'trust' at once (two deploys, a retry, a person)
    assert run_concurrently("trust") == []
    trusted = everything()
    # Then every holder trusts the one next CA the CA secret keeps, and nats-server's users list
    # the one next password that 'issue' will hand to Dynamo
    next_ca = certs(trusted["ca"]["next_ca_cert"])[0]
    for holder in ("infra", "dynamo", "operator"):
        assert certs(trusted[holder]["ca_bundle"])[-1] == next_ca, holder
    assert len(users(trusted)) == 2
    assert run_concurrently("issue") == []
    issued = everything()
    assert (issued["dynamo"]["nats_user"], issued["dynamo"]["nats_password"]) == users(trusted)[1]
    for holder, field in (("infra", "member_cert"), ("dynamo", "client_cert"), ("operator", "client_cert")):
        assert issuer_of(issued[holder][field]) == next_ca.subject, holder
    assert run_concurrently("retire") == []
    retired = everything()
    assert users(retired) == [users(trusted)[1]]
    assert certs(retired["dynamo"]["ca_bundle"]) == [next_ca]


def infra_versions() -> list[dict[str, str]]:
    client = aws.client("secretsmanager")
    name = secret_name("dynamo", "infra")
    listed = client.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]
    return [
        json.loads(client.get_secret_value(SecretId=name, VersionId=v["VersionId"])["SecretString"])
        for v in sorted(listed, key=lambda v: v["CreatedDate"])
    ]


def test_a_run_overtaken_by_another_never_replaces_the_next_password_it_wrote(aws_env: Any) -> None:
    # Given a 'trust' run that has read the secrets and written the CA secret when a second
    # 'trust' runs to its end (a member may be rolled right after, accepting that one's password)
    ensure_plane_secrets("dynamo", NAMES)
    client = aws.client("secretsmanager")
    overtaken: list[str] = []

    def overtake(**_: Any) -> None:
        if not overtaken:
            overtaken.append("once")
            rotate("dynamo", "trust")

    client.meta.events.register("after-call.secretsmanager.PutSecretValue", overtake)
    try:
        rotate("dynamo", "trust")
    finally:
        client.meta.events.unregister("after-call.secretsmanager.PutSecretValue", overtake)
    assert overtaken
    # Then the first run reads again instead of writing what it computed before: every version of
    # the infra secret that has a next user has the same password, the one Dynamo will get
    next_passwords = {users({"infra": v})[1] for v in infra_versions() if len(users({"infra": v})) > 1}
    assert len(next_passwords) == 1, next_passwords
    rotate("dynamo", "issue")
    assert (secret("dynamo")["nats_user"], secret("dynamo")["nats_password"]) == next_passwords.pop()


def test_a_bad_users_field_is_refused_naming_it_and_changes_nothing(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    infra = secret("infra")
    aws.client("secretsmanager").put_secret_value(
        SecretId=secret_name("dynamo", "infra"),
        SecretString=json.dumps({**infra, "nats_dynamo_users": "dynamo"}),
    )
    before = everything()
    with pytest.raises(InvalidInputError, match=r"dynamo/planes/infra: nats_dynamo_users is not a list"):
        rotate("dynamo", "trust")
    assert everything() == before


def test_an_infra_secret_of_the_older_layout_rotates_from_its_one_user(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    older = {k: v for k, v in secret("infra").items() if k != "nats_dynamo_users"}
    aws.client("secretsmanager").put_secret_value(
        SecretId=secret_name("dynamo", "infra"), SecretString=json.dumps(older)
    )
    rotate("dynamo", "trust")
    assert users(everything())[0] == ("dynamo", older["nats_dynamo_password"])


def test_rotating_before_the_first_deploy_names_the_fix(aws_env: Any) -> None:
    with pytest.raises(InvalidInputError, match="deploy the stack first"):
        rotate("dynamo", "trust")


@pytest.fixture(scope="module")
def moto(serial_moto: MotoServer) -> MotoServer:
    """Handlers run concurrently here: moto answering one request at a time, so that conditional
    writes are atomic as on AWS (tests/conftest.py, `serial_moto`)."""
    return serial_moto
