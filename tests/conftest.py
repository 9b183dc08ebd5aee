"""Shared fixtures: real moto server, nats-server and etcd on free loopback ports.

Servers are session-scoped (one per pytest worker) because starting them costs seconds;
moto's state is reset before every test that asks for `aws`, so tests never see each other's
resources. The AWS environment points at moto with dummy credentials, so nothing here can
reach a real AWS account.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import netguard
from devtools.services import (
    EtcdServer,
    MotoServer,
    NatsServer,
    aws_test_environment,
    etcd_server,
    moto_server,
    nats_server,
)
from dynamo_ecs import aws

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    """No test may open a connection off this machine (moto hands out 10.x addresses)."""
    netguard.install()
    yield
    netguard.uninstall()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def aws_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A clean moto account and an environment that talks only to it."""
    moto.reset()
    for key, value in aws_test_environment(moto.url).items():
        monkeypatch.setenv(key, value)
    aws.reset_clients()
    yield moto
    aws.reset_clients()


@pytest.fixture(scope="session")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with nats_server(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def state_table(aws_env: MotoServer) -> str:
    """The state table, created on moto from template.yaml's own properties."""
    from devtools.template import create_state_table

    name = "dynamo-ecs-state"
    create_state_table(name)
    return name
