"""A real three-server NATS cluster with JetStream on loopback ports (tests of leader views).

Each server gets its own client, cluster and monitor port and its own store directory; the
context manager waits until every server reports JetStream healthy (meta leader elected)
and stops all of them at the end.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools.services import (
    LOOPBACK,
    ManagedProcess,
    NatsServer,
    ServiceStartError,
    find_binary,
    free_port,
    http_ok,
)


@dataclass
class ClusterServer(NatsServer):
    """One server of the cluster: a `NatsServer` with the name the cluster knows it by."""

    name: str = ""


def _jetstream_current(monitor_url: str) -> bool:
    """Healthy, and the server knows the JetStream meta leader (streams can be created)."""
    if not http_ok(f"{monitor_url}/healthz"):
        return False
    try:
        with urllib.request.urlopen(f"{monitor_url}/jsz", timeout=1) as response:
            meta = json.load(response).get("meta_cluster") or {}
    except (OSError, ValueError):
        return False
    return bool(meta.get("leader"))


def _answers(url: str) -> Callable[[], bool]:
    return lambda: http_ok(url)


@contextlib.contextmanager
def nats_cluster(
    size: int = 3, workdir: Path | None = None, timeout: float = 30.0
) -> Iterator[list[ClusterServer]]:
    base = Path(tempfile.mkdtemp(prefix="nats-cluster-", dir=workdir))
    ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
    routes = ",".join(f"nats://{LOOPBACK}:{cluster}" for _, cluster, _ in ports)
    servers: list[ClusterServer] = []
    try:
        for index, (port, cluster_port, monitor_port) in enumerate(ports):
            name = f"n{index}"
            process = ManagedProcess(
                name,
                [
                    find_binary("nats-server"),
                    "-a",
                    LOOPBACK,
                    "-p",
                    str(port),
                    "-m",
                    str(monitor_port),
                    "-js",
                    "-sd",
                    str(base / name),
                    "--name",
                    name,
                    "--cluster_name",
                    "dynamo-test",
                    "--cluster",
                    f"nats://{LOOPBACK}:{cluster_port}",
                    "--routes",
                    routes,
                ],
                ready=_answers(f"http://{LOOPBACK}:{monitor_port}/varz"),
                log_path=base / f"{name}.log",
            )
            process.start()
            servers.append(ClusterServer(port=port, monitor_port=monitor_port, process=process, name=name))
        deadline = time.monotonic() + timeout
        while not all(_jetstream_current(s.monitor_url) for s in servers):
            if time.monotonic() > deadline:
                raise ServiceStartError(f"NATS cluster: JetStream not healthy after {timeout:.0f} s")
            time.sleep(0.2)
        yield servers
    finally:
        for server in servers:
            server.process.stop()
