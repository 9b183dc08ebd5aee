"""The collector's etcd health source against the real secured etcd 3.5 (`planes_on_loopback`:
the infra task's own TLS settings and auth script), with the identity read from Secrets
Manager (moto): the operator's certificate is answered, another CA's is refused (counted, not
raised), and an identity the members no longer accept is read again after the TLS failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devtools import netguard
from devtools.planes import Planes, planes_on_loopback
from devtools.services import MotoServer
from dynamo_ecs import aws
from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.signals.base import RoundContext, SourceReading
from dynamo_ecs.signals.etcd_health import EtcdHealthSource, forget_cached_identities

MEMBER = "infra-0.dynamo-infra.internal"  # a name the member certificate carries
ROUND = RoundContext(now=0.0, cluster=None)


@pytest.fixture(scope="module")
def planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planes]:
    with planes_on_loopback(tmp_path_factory.mktemp("etcd-health")) as running:
        yield running


@pytest.fixture
def resolving(planes: Planes) -> Iterator[None]:
    """Cloud Map's stand-in: the member's name resolves to where it listens."""
    forget_cached_identities()
    with netguard.resolving({MEMBER: planes.infra.host}):
        yield
    forget_cached_identities()


def secret_holding(payload: dict[str, str]) -> str:
    made = aws.client("secretsmanager").create_secret(
        Name="dynamo/planes/operator", SecretString=json.dumps(payload)
    )
    return str(made["ARN"])


def source_for(planes: Planes, secret_arn: str) -> EtcdHealthSource:
    config = DeploymentConfig.model_validate(
        {
            "infra": {"members": [MEMBER], "etcd_port": planes.infra.etcd_port},
            "planes": {"operator_secret_arn": secret_arn},
        }
    )
    return EtcdHealthSource(config)


def values(reading: SourceReading) -> dict[str, float]:
    return {d.metric: d.value for d in reading.data}


def test_the_operator_identity_reads_the_members_health_and_database(
    planes: Planes, aws_env: MotoServer, resolving: None
) -> None:
    # Given the operator's secret as the credential maker made it
    source = source_for(planes, secret_holding(planes.payloads["operator"]))
    # When the source reads the member by its name over mutual TLS
    reading = source.read(ROUND, None)
    # Then the member is healthy, and its database is measured against etcd's 2 GiB default quota
    got = values(reading)
    assert got[names.ETCD_MEMBERS_HEALTHY] == 1.0, reading.notes
    assert got[names.ETCD_DATABASE_SIZE] > 0
    assert got[names.ETCD_DATABASE_QUOTA_USED] == pytest.approx(100 * got[names.ETCD_DATABASE_SIZE] / 2**31)
    assert (reading.targets, reading.errors) == (1, 0)


def test_a_certificate_from_another_ca_is_refused_and_counted_not_healthy(
    planes: Planes, aws_env: MotoServer, resolving: None
) -> None:
    # Given a secret holding a certificate of another CA (and that CA as its trust)
    source = source_for(planes, secret_holding(planes.payloads["stranger"]))
    # When the source reads: no exception, the member counts as not healthy, for a TLS reason
    reading = source.read(ROUND, None)
    assert values(reading) == {names.ETCD_MEMBERS_HEALTHY: 0.0}
    assert (reading.targets, reading.errors) == (1, 1)
    assert any(f"{MEMBER}: not healthy" in note and "TLS" in note for note in reading.notes), reading.notes
    # and nothing of the secret is in what is logged
    assert "BEGIN" not in json.dumps(reading.notes)


def test_an_identity_the_members_no_longer_accept_is_read_again_once_after_the_tls_failure(
    planes: Planes, aws_env: MotoServer, resolving: None
) -> None:
    # Given the collector's container holds an identity the member refuses (here: another CA's;
    # after a rotation's retire: the old CA's)
    secrets = aws.client("secretsmanager")
    arn = secret_holding(planes.payloads["stranger"])
    assert values(source_for(planes, arn).read(ROUND, None))[names.ETCD_MEMBERS_HEALTHY] == 0.0
    # When the secret now holds what the members accept, and the next invocation reads
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(planes.payloads["operator"]))
    reading = source_for(planes, arn).read(ROUND, None)
    # Then the cached identity failed, the secret was read again, and the member is healthy
    assert values(reading)[names.ETCD_MEMBERS_HEALTHY] == 1.0, reading.notes
    assert any("secret read again" in note for note in reading.notes), reading.notes


def test_the_cached_identity_is_used_while_the_members_accept_it(
    planes: Planes, aws_env: MotoServer, resolving: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = secret_holding(planes.payloads["operator"])
    source_for(planes, arn).read(ROUND, None)
    # Given the secret can no longer be read (any call to Secrets Manager fails)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    aws.reset_clients()
    # When a later invocation of the same container reads: the cached identity serves it
    reading = source_for(planes, arn).read(ROUND, None)
    assert values(reading)[names.ETCD_MEMBERS_HEALTHY] == 1.0, reading.notes


def test_a_member_that_does_not_answer_counts_not_healthy_and_the_read_goes_on(
    planes: Planes, aws_env: MotoServer
) -> None:
    # Given a second name that resolves where nothing listens
    forget_cached_identities()
    arn = secret_holding(planes.payloads["operator"])
    config = DeploymentConfig.model_validate(
        {
            "infra": {
                "members": [MEMBER, "infra-1.dynamo-infra.internal"],
                "etcd_port": planes.infra.etcd_port,
            },
            "planes": {"operator_secret_arn": arn},
            "signals": {"scrape_timeout_s": 0.5},
        }
    )
    with netguard.resolving({MEMBER: planes.infra.host, "infra-1.dynamo-infra.internal": "127.0.0.77"}):
        reading = EtcdHealthSource(config).read(ROUND, None)
    forget_cached_identities()
    assert values(reading)[names.ETCD_MEMBERS_HEALTHY] == 1.0
    assert (reading.targets, reading.errors) == (2, 1)
    assert any("infra-1.dynamo-infra.internal: not healthy" in note for note in reading.notes)
