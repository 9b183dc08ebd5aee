"""The AWS client factory: one retry policy, endpoint from the environment, clients reused."""

from __future__ import annotations

import pytest

from dynamo_ecs import aws


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws.reset_clients()
    yield
    aws.reset_clients()


def test_clients_are_reused_across_calls() -> None:
    assert aws.client("ecs") is aws.client("ecs")


def test_retry_policy_is_standard_mode_with_bounded_attempts() -> None:
    config = aws.client("ecs").meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": aws.DEFAULT_MAX_ATTEMPTS}


def test_endpoint_url_from_environment_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    client = aws.client("dynamodb")
    assert client.meta.endpoint_url == "http://127.0.0.1:5999"
    assert client.meta.region_name == "eu-west-1"


def test_a_new_endpoint_gets_a_new_client(monkeypatch: pytest.MonkeyPatch) -> None:
    first = aws.client("ecs")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5998")
    assert aws.client("ecs") is not first
