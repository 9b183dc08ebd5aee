"""Fixtures of the signals tests: Dynamo-like /metrics servers and a NATS cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.dynamo_frontend import Behaviour, MetricsServer
from devtools.nats_cluster import ClusterServer, nats_cluster


@pytest.fixture
def metrics_server() -> Iterator[Callable[[Behaviour], MetricsServer]]:
    """Start /metrics servers on free loopback ports; every one is stopped at the end."""
    started: list[MetricsServer] = []

    def start(behaviour: Behaviour = "ok") -> MetricsServer:
        server = MetricsServer(behaviour=behaviour).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def nats_three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ClusterServer]]:
    workdir: Path = tmp_path_factory.mktemp("nats-cluster")
    with nats_cluster(3, workdir) as servers:
        yield servers
