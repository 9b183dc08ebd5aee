"""The planes' credential maker against moto server's Secrets Manager."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devtools.cloudformation_stub import CloudFormationStub
from devtools.handlers import load_handler_module
from devtools.services import MotoServer
from dynamo_ecs import aws
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.planes.secrets_store import delete_plane_secrets, ensure_plane_secrets, secret_name

NAMES = ["infra-0.dynamo-infra.internal", "infra-1.dynamo-infra.internal", "infra-2.dynamo-infra.internal"]


def secret(holder: str, deployment: str = "dynamo") -> dict[str, str]:
    answer = aws.client("secretsmanager").get_secret_value(SecretId=secret_name(deployment, holder))
    return dict(json.loads(answer["SecretString"]))


def all_secrets() -> list[str]:
    return sorted(s["Name"] for s in aws.client("secretsmanager").list_secrets()["SecretList"])


def cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def common_name(pem: str) -> str:
    return str(cert(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_first_deploy_makes_one_secret_per_holder_all_from_one_ca(aws_env: Any) -> None:
    # When the maker runs on an empty account
    made = ensure_plane_secrets("dynamo", NAMES)
    # Then every holder has its own secret, all issued by the one CA
    assert sorted(made.created) == ["ca", "dynamo", "infra", "operator"]
    assert all_secrets() == [f"dynamo/planes/{h}" for h in ("ca", "dynamo", "infra", "operator")]
    ca = cert(secret("ca")["ca_cert"])
    infra, dynamo, operator = secret("infra"), secret("dynamo"), secret("operator")
    for pem in (infra["member_cert"], infra["root_cert"], dynamo["client_cert"], operator["client_cert"]):
        cert(pem).verify_directly_issued_by(ca)
    # each client identity's CN is its etcd user
    assert [common_name(p) for p in (infra["root_cert"], dynamo["client_cert"], operator["client_cert"])] == [
        "root",
        "dynamo",
        "operator",
    ]
    # the member certificate serves and peers under the members' names (and loopback for in-task probes)
    member = cert(infra["member_cert"])
    sans = member.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(NAMES) | {"localhost"} <= set(sans.get_values_for_type(x509.DNSName))
    usages = member.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    # a client identity cannot serve
    client_usages = (
        cert(dynamo["client_cert"]).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert list(client_usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # the CA key is in the CA secret only; the NATS password nats-server accepts is the one Dynamo holds
    assert all(
        "PRIVATE KEY" not in v or k.endswith("_key") for h in (infra, dynamo, operator) for k, v in h.items()
    )
    assert "ca_key" not in infra and "ca_key" not in dynamo and "ca_key" not in operator
    assert dynamo["nats_password"] == infra["nats_dynamo_password"]
    # the field the members' writer reads lists that one user (a rotation adds a second)
    assert infra["nats_dynamo_users"] == f"dynamo:{dynamo['nats_password']}"
    assert len(dynamo["nats_password"]) >= 32 and infra["nats_route_password"] != dynamo["nats_password"]


def test_a_second_deploy_reissues_nothing(aws_env: Any) -> None:
    first = ensure_plane_secrets("dynamo", NAMES)
    before = {h: secret(h) for h in ("ca", "infra", "dynamo", "operator")}
    again = ensure_plane_secrets("dynamo", NAMES)
    assert again.created == [] and again.updated == []
    assert again.arns == first.arns
    assert {h: secret(h) for h in before} == before


def test_a_partial_run_is_completed_from_the_existing_ca_and_password(aws_env: Any) -> None:
    # Given an earlier run that stopped after the CA and the infra secret
    ensure_plane_secrets("dynamo", NAMES)
    ca_before, infra_before = secret("ca"), secret("infra")
    client = aws.client("secretsmanager")
    for holder in ("dynamo", "operator"):
        client.delete_secret(SecretId=secret_name("dynamo", holder), ForceDeleteWithoutRecovery=True)
    # When the maker runs again
    made = ensure_plane_secrets("dynamo", NAMES)
    # Then only the missing holders are made, from the same CA, with the password nats-server has
    assert sorted(made.created) == ["dynamo", "operator"]
    assert secret("ca") == ca_before and secret("infra") == infra_before
    cert(secret("dynamo")["client_cert"]).verify_directly_issued_by(cert(ca_before["ca_cert"]))
    assert secret("dynamo")["nats_password"] == infra_before["nats_dynamo_password"]


def test_concurrent_makers_agree_on_one_ca_and_one_password(aws_env: Any) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ensure_plane_secrets("dynamo", NAMES)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ca = cert(secret("ca")["ca_cert"])
    for holder, key in (("infra", "member_cert"), ("dynamo", "client_cert"), ("operator", "client_cert")):
        cert(secret(holder)[key]).verify_directly_issued_by(ca)
    assert secret("dynamo")["nats_password"] == secret("infra")["nats_dynamo_password"]


def test_new_member_names_reissue_only_the_member_certificate(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    before = {h: secret(h) for h in ("ca", "infra", "dynamo", "operator")}
    made = ensure_plane_secrets("dynamo", ["infra-0.other.internal"])
    assert made.updated == ["infra"] and made.created == []
    after = secret("infra")
    sans = cert(after["member_cert"]).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "infra-0.other.internal" in sans.get_values_for_type(x509.DNSName)
    assert NAMES[0] not in sans.get_values_for_type(x509.DNSName)
    kept = {k: v for k, v in after.items() if k not in ("member_cert", "member_key")}
    assert kept == {k: v for k, v in before["infra"].items() if k not in ("member_cert", "member_key")}
    assert {h: secret(h) for h in ("ca", "dynamo", "operator")} == {
        h: before[h] for h in ("ca", "dynamo", "operator")
    }


def test_an_infra_secret_of_the_older_layout_is_upgraded_keeping_every_password(
    aws_env: Any, cloudformation: CloudFormationStub
) -> None:
    # Given secrets made before the infra secret listed NATS users
    ensure_plane_secrets("dynamo", NAMES)
    older = {k: v for k, v in secret("infra").items() if k != "nats_dynamo_users"}
    aws.client("secretsmanager").put_secret_value(
        SecretId=secret_name("dynamo", "infra"), SecretString=json.dumps(older)
    )
    before = {h: secret(h) for h in ("ca", "infra", "dynamo", "operator")}
    # When the stack is updated: a dry run reports the upgrade and changes nothing
    handler = load_handler_module("plane_credentials").lambda_handler
    props = {"Deployment": "dynamo", "ServerNames": NAMES}
    handler(
        request("Update", cloudformation.url, {**props, "DryRun": "true"}, "dynamo-plane-credentials"),
        LambdaContext(),
    )
    assert cloudformation.answers[-1]["Data"]["Updated"] == "infra"
    assert {h: secret(h) for h in before} == before
    handler(request("Update", cloudformation.url, props, "dynamo-plane-credentials"), LambdaContext())
    assert cloudformation.answers[-1]["Status"] == "SUCCESS"
    assert cloudformation.answers[-1]["Data"]["Updated"] == "infra"
    # Then the infra secret has the field the task definitions refer to, listing the user and
    # password in use; nothing else changed
    upgraded = secret("infra")
    assert upgraded == {**older, "nats_dynamo_users": f"dynamo:{older['nats_dynamo_password']}"}
    assert {h: secret(h) for h in ("ca", "dynamo", "operator")} == {
        h: before[h] for h in ("ca", "dynamo", "operator")
    }
    # and a second update finds nothing to do
    handler(request("Update", cloudformation.url, props, "dynamo-plane-credentials"), LambdaContext())
    assert cloudformation.answers[-1]["Data"]["Updated"] == "" and secret("infra") == upgraded


def test_dry_run_and_bad_names_change_nothing(aws_env: Any) -> None:
    made = ensure_plane_secrets("dynamo", NAMES, dry_run=True)
    assert sorted(made.created) == ["ca", "dynamo", "infra", "operator"] and all_secrets() == []
    with pytest.raises(InvalidInputError, match=r"ServerNames: 'infra 0\$' is neither"):
        ensure_plane_secrets("dynamo", ["infra 0$"])
    assert all_secrets() == []


def test_delete_removes_every_holder_and_can_run_twice(aws_env: Any) -> None:
    ensure_plane_secrets("dynamo", NAMES)
    ensure_plane_secrets("other", NAMES)
    assert sorted(delete_plane_secrets("dynamo")) == ["ca", "dynamo", "infra", "operator"]
    assert delete_plane_secrets("dynamo") == []
    assert all_secrets() == [f"other/planes/{h}" for h in ("ca", "dynamo", "infra", "operator")]
    # and a stack of the same name can be deployed again at once (no recovery window)
    assert sorted(ensure_plane_secrets("dynamo", NAMES).created) == ["ca", "dynamo", "infra", "operator"]


# --- the custom resource --------------------------------------------------------------------


@dataclass
class LambdaContext:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def request(kind: str, url: str, props: dict[str, Any], physical: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/dynamo/1",
        "RequestId": f"req-{kind}",
        "ResourceType": "Custom::DynamoPlaneCredentials",
        "LogicalResourceId": "PlaneCredentials",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:x", **props},
    }
    if physical:
        event["PhysicalResourceId"] = physical
    return event


def test_custom_resource_create_update_delete(aws_env: Any, cloudformation: CloudFormationStub) -> None:
    handler = load_handler_module("plane_credentials").lambda_handler
    props = {"Deployment": "dynamo", "ServerNames": NAMES}
    handler(request("Create", cloudformation.url, props), LambdaContext())
    created = cloudformation.answers[-1]
    assert created["Status"] == "SUCCESS", created
    assert created["PhysicalResourceId"] == "dynamo-plane-credentials"
    arns = aws.client("secretsmanager").describe_secret(SecretId="dynamo/planes/dynamo")["ARN"]
    assert created["Data"]["DynamoSecretArn"] == arns
    assert set(created["Data"]) == {
        "InfraSecretArn",
        "DynamoSecretArn",
        "OperatorSecretArn",
        "Created",
        "Updated",
        "Rotated",
    }
    # the answer carries ARNs only, never a credential
    assert "PRIVATE KEY" not in json.dumps(created) and secret("dynamo")["nats_password"] not in json.dumps(
        created
    )
    handler(request("Update", cloudformation.url, props, "dynamo-plane-credentials"), LambdaContext())
    assert cloudformation.answers[-1]["Status"] == "SUCCESS"
    assert cloudformation.answers[-1]["Data"]["Created"] == ""
    handler(request("Delete", cloudformation.url, props, "dynamo-plane-credentials"), LambdaContext())
    assert cloudformation.answers[-1]["Status"] == "SUCCESS" and all_secrets() == []


def test_custom_resource_refuses_bad_properties_naming_the_field(
    aws_env: Any, cloudformation: CloudFormationStub
) -> None:
    handler = load_handler_module("plane_credentials").lambda_handler
    handler(
        request("Create", cloudformation.url, {"Deployment": "a b", "ServerNames": NAMES}), LambdaContext()
    )
    assert cloudformation.answers[-1]["Status"] == "FAILED"
    assert "Deployment: 'a b'" in cloudformation.answers[-1]["Reason"]
    handler(
        request("Create", cloudformation.url, {"Deployment": "d", "ServerNames": ["-x"]}), LambdaContext()
    )
    assert "ServerNames: '-x'" in cloudformation.answers[-1]["Reason"]
    assert all_secrets() == []
    # the rollback's Delete of a Create that failed answers SUCCESS and touches nothing
    handler(
        request("Delete", cloudformation.url, {"Deployment": "a b"}, "plane-credentials-not-created"),
        LambdaContext(),
    )
    assert cloudformation.answers[-1]["Status"] == "SUCCESS"


@pytest.fixture(scope="module")
def moto(serial_moto: MotoServer) -> MotoServer:
    """Handlers run concurrently here: moto answering one request at a time, so that conditional
    writes are atomic as on AWS (tests/conftest.py, `serial_moto`)."""
    return serial_moto
