"""etcd's /health and /metrics -> the infra tier's datums; the operator identity's files and cache.

The documents are the real etcd 3.5.1's (fixtures captured from a running member); the
identity is made by the credential maker's own code.
"""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import load_config
from dynamo_ecs.errors import ConfigError, InvalidInputError
from dynamo_ecs.planes import credentials
from dynamo_ecs.signals.base import Datum
from dynamo_ecs.signals.etcd_health import (
    MemberHealth,
    NotEtcdHealthError,
    OperatorIdentity,
    client_context,
    forget_cached_identities,
    member_health,
    parse_health,
    parse_metrics,
    private_files,
    tier_data,
)
from dynamo_ecs.signals.publish import metric_data

FIXTURES = Path(__file__).parent / "fixtures"
HEALTH = (FIXTURES / "etcd_3_5_1_leader_health.json").read_bytes()
METRICS = (FIXTURES / "etcd_3_5_1_leader_metrics.txt").read_bytes()
NOSPACE = (FIXTURES / "etcd_3_5_1_nospace_health.json").read_bytes()
TWO_GIB = 2 * 1024**3


def test_the_real_health_document_says_healthy() -> None:
    assert parse_health(HEALTH) == (True, "")


def test_a_health_document_with_an_alarm_is_not_healthy_and_keeps_its_reason() -> None:
    # etcd 3.5.1 past its quota (HTTP 503 with this body, captured)
    assert parse_health(NOSPACE) == (False, "ALARM NOSPACE")


@pytest.mark.parametrize("body", [b"<html>", b"[]", b'{"status":"ok"}', b""])
def test_what_is_not_a_health_document_is_refused(body: bytes) -> None:
    with pytest.raises(NotEtcdHealthError):
        parse_health(body)


def test_the_real_metrics_give_leader_database_and_quota() -> None:
    # etcd 3.5.1's default quota is 2 GiB, reported as 2.147483648e+09 (measured)
    assert parse_metrics(METRICS) == {
        "etcd_server_has_leader": 1.0,
        "etcd_server_is_leader": 1.0,
        "etcd_mvcc_db_total_size_in_bytes": 32768.0,
        "etcd_server_quota_backend_bytes": float(TWO_GIB),
    }


def test_a_member_with_health_true_and_a_leader_is_healthy() -> None:
    member = member_health("infra-0", HEALTH, METRICS)
    assert member.healthy and member.problem is None
    assert (member.db_size_bytes, member.quota_bytes, member.is_leader) == (32768.0, TWO_GIB, True)
    assert member.quota_used_pct == pytest.approx(100 * 32768 / TWO_GIB)


def test_a_member_without_a_leader_is_not_healthy_even_when_health_says_true() -> None:
    no_leader = METRICS.replace(b"etcd_server_has_leader 1", b"etcd_server_has_leader 0")
    member = member_health("infra-1", HEALTH, no_leader)
    assert not member.healthy and member.problem == "no leader"


def test_a_member_whose_health_is_false_is_not_healthy() -> None:
    member = member_health("infra-1", NOSPACE, METRICS)
    assert not member.healthy and member.problem == "/health false: ALARM NOSPACE"


def test_a_member_that_does_not_answer_is_not_healthy_and_says_why() -> None:
    errors = [
        "https://infra-2:2379/health: connection refused",
        "https://infra-2:2379/metrics: connection refused",
    ]
    member = member_health("infra-2", None, None, errors)
    assert not member.healthy and member.problem == "; ".join(errors)
    # one document of two is not enough either
    assert not member_health("infra-2", HEALTH, None, ["https://infra-2:2379/metrics: timeout"]).healthy
    assert not member_health("infra-2", None, METRICS, ["https://infra-2:2379/health: HTTP 503"]).healthy


def test_metrics_without_the_leader_gauge_are_not_etcds() -> None:
    member = member_health("infra-0", HEALTH, b"up 1\n")
    assert not member.healthy and member.problem == "/metrics: no etcd_server_has_leader"


def test_the_tier_counts_healthy_members_and_reports_the_largest_database() -> None:
    bigger = METRICS.replace(
        b"etcd_mvcc_db_total_size_in_bytes 32768", b"etcd_mvcc_db_total_size_in_bytes 1.073741824e+09"
    )
    members = [
        member_health("infra-0", HEALTH, METRICS),
        member_health("infra-1", HEALTH, bigger),
        member_health("infra-2", None, None, ["refused"]),
    ]
    assert tier_data(members) == [
        Datum(names.ETCD_MEMBERS_HEALTHY, "infra", 2.0),
        Datum(names.ETCD_DATABASE_SIZE, "infra", float(2**30)),
        Datum(names.ETCD_DATABASE_QUOTA_USED, "infra", 50.0),
    ]


def test_no_member_answering_publishes_zero_healthy_and_no_database_figure() -> None:
    members = [MemberHealth(f"infra-{k}", problem="timeout") for k in range(3)]
    assert tier_data(members) == [Datum(names.ETCD_MEMBERS_HEALTHY, "infra", 0.0)]


def test_infra_datums_are_published_with_the_deployment_and_service_infra() -> None:
    [entry] = metric_data([Datum(names.ETCD_MEMBERS_HEALTHY, "infra", 3.0)], "dyn", 1_800_000_000, False)
    assert entry["Dimensions"] == [
        {"Name": "Deployment", "Value": "dyn"},
        {"Name": "Service", "Value": "infra"},
    ]
    assert (entry["MetricName"], entry["Unit"], entry["Value"]) == ("EtcdMembersHealthy", "Count", 3.0)
    sizes = metric_data([Datum(names.ETCD_DATABASE_SIZE, "infra", 1.0)], "dyn", 1_800_000_000, False)
    assert sizes[0]["Unit"] == "Bytes"


# --- the operator identity ------------------------------------------------------------------


def operator_payload() -> dict[str, str]:
    now = dt.datetime.now(dt.UTC)
    authority = credentials.make_authority("dynamo", now)
    return credentials.holder_payloads(authority, ["infra-0.dynamo-infra.internal"], now)["operator"]


def test_the_key_is_written_private_and_deleted_once_loaded() -> None:
    seen: dict[str, Any] = {}
    with private_files({"client.pem": "CERT", "client-key.pem": "KEY"}) as paths:
        directory = Path(paths["client-key.pem"]).parent
        seen["dir_mode"] = stat.S_IMODE(directory.stat().st_mode)
        seen["modes"] = {name: stat.S_IMODE(Path(path).stat().st_mode) for name, path in paths.items()}
        seen["key"] = Path(paths["client-key.pem"]).read_text()
    assert seen == {"dir_mode": 0o700, "modes": {"client.pem": 0o600, "client-key.pem": 0o600}, "key": "KEY"}
    assert not directory.exists()


def test_the_files_are_deleted_when_loading_fails() -> None:
    with pytest.raises(RuntimeError), private_files({"client-key.pem": "KEY"}) as paths:
        directory = Path(paths["client-key.pem"]).parent
        raise RuntimeError("load failed")
    assert not directory.exists()


def test_a_secret_without_the_identity_is_refused_naming_what_lacks_and_nothing_of_it() -> None:
    payload = operator_payload()
    del payload["client_key"]
    with pytest.raises(InvalidInputError) as refused:
        client_context(
            payload, "arn:aws:secretsmanager:us-east-1:123456789012:secret:d/planes/operator-AbCdEf"
        )
    assert "lacks client_key" in str(refused.value)
    assert "BEGIN" not in str(refused.value)


def test_the_identity_loads_the_makers_certificate_and_trusts_its_ca() -> None:
    context = client_context(operator_payload(), "arn")
    assert context.verify_mode.name == "CERT_REQUIRED" and context.check_hostname
    assert len(context.get_ca_certs()) == 1


class CountingSecrets:
    """Secrets Manager's GetSecretValue for one secret, counting the reads (pure logic: the cache)."""

    def __init__(self, payload: dict[str, str]) -> None:
        self.payload = payload
        self.reads = 0

    def get_secret_value(self, SecretId: str) -> dict[str, str]:  # noqa: N803 - boto3's name
        self.reads += 1
        return {"ARN": SecretId, "SecretString": json.dumps(self.payload)}


def test_the_identity_is_cached_for_a_bounded_time_and_read_again_when_asked() -> None:
    forget_cached_identities()
    secrets, now = CountingSecrets(operator_payload()), [1000.0]
    identity = OperatorIdentity("arn:x", secrets=secrets, ttl_s=300, clock=lambda: now[0])
    first, fresh = identity.context()
    assert fresh and secrets.reads == 1
    # a later invocation in the same container (a new source, the same cache)
    now[0] += 299
    again, fresh = OperatorIdentity("arn:x", secrets=secrets, ttl_s=300, clock=lambda: now[0]).context()
    assert (again, fresh, secrets.reads) == (first, False, 1)
    # past the bound: read again
    now[0] += 2
    _, fresh = identity.context()
    assert fresh and secrets.reads == 2
    # after a TLS failure the caller asks for a fresh read
    _, fresh = identity.context(fresh=True)
    assert fresh and secrets.reads == 3
    forget_cached_identities()


def test_a_secret_that_is_not_json_is_refused_without_its_contents() -> None:
    forget_cached_identities()

    class NotJson:
        def get_secret_value(self, SecretId: str) -> dict[str, str]:  # noqa: N803
            return {"ARN": SecretId, "SecretString": "-----BEGIN PRIVATE KEY----- secret"}

    with pytest.raises(InvalidInputError) as refused:
        OperatorIdentity("arn:x", secrets=NotJson()).context()
    assert "is not JSON" in str(refused.value) and "PRIVATE" not in str(refused.value)


def test_the_operator_secret_needs_the_members() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dynamo/planes/operator-AbCdEf"
    with pytest.raises(ConfigError) as refused:
        load_config({"DYNAMO_ECS_PLANES__OPERATOR_SECRET_ARN": arn})
    assert "DYNAMO_ECS_INFRA__MEMBERS" in str(refused.value)
    config = load_config(
        {"DYNAMO_ECS_PLANES__OPERATOR_SECRET_ARN": arn, "DYNAMO_ECS_INFRA__MEMBERS": '["infra-0.d.internal"]'}
    )
    assert config.planes.operator_secret_arn == arn and not config.planes.enabled
