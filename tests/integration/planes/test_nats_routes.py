"""NATS cluster routes with the infra task's settings: TLS both ways and the routes' password.

A node that holds the infra secret joins; a node without the routes' credentials, or without a
certificate from the stack's CA, never becomes a route (checked on the real node's ``/routez``).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from pathlib import Path

from devtools.planes import SecuredInfra, secured_infra
from devtools.services import LOOPBACK, ManagedProcess, find_binary, free_port, http_ok
from dynamo_ecs.planes import credentials

NOW = dt.datetime.now(dt.UTC)


def routes_of(node: SecuredInfra) -> int:
    with urllib.request.urlopen(f"{node.monitor_url}/routez", timeout=2) as response:
        return int(json.loads(response.read())["num_routes"])


def routes_within(node: SecuredInfra, within_s: float) -> int:
    """The node's route connections once any appear, or 0 after ``within_s`` (2.11 pools
    several connections per peer)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and routes_of(node) == 0:
        time.sleep(0.2)
    return routes_of(node)


def rogue_node(workdir: Path, seed_port: int, config: str) -> ManagedProcess:
    monitor = free_port()
    (workdir / "rogue.conf").write_text(
        f"host: {LOOPBACK}\nport: {free_port()}\nhttp_port: {monitor}\n"
        f"cluster {{ name: dynamo, host: {LOOPBACK}, port: {free_port()}, {config} }}\n"
    )
    return ManagedProcess(
        "rogue",
        [find_binary("nats-server"), "--config", str(workdir / "rogue.conf")],
        ready=lambda: http_ok(f"http://{LOOPBACK}:{monitor}/healthz"),
        log_path=workdir / "rogue.log",
    )


def test_only_a_node_with_the_infra_secret_becomes_a_route(tmp_path: Path) -> None:
    payloads = credentials.holder_payloads(credentials.make_authority("dynamo", NOW), [], NOW)
    infra = payloads["infra"]
    # every node lists every node's route, itself included (as the three members do)
    ports = [free_port(), free_port()]
    routes = [f"localhost:{port}" for port in ports]
    seed_route = routes[0]
    with secured_infra(
        tmp_path / "a", infra, cluster_name="dynamo", routes=routes, cluster_port=ports[0], with_etcd=False
    ) as seed:
        # a node that knows the routes' password but has no certificate of the stack's CA
        (tmp_path / "r1").mkdir()
        plain = rogue_node(
            tmp_path / "r1",
            seed.cluster_port,
            f'routes: [ "nats-route://route:{infra["nats_route_password"]}@{seed_route}" ]',
        )
        # a node with TLS but no routes' password (it has Dynamo's client certificate and the CA)
        (tmp_path / "r2").mkdir()
        for name in ("client_cert", "client_key", "ca_bundle"):
            (tmp_path / "r2" / f"{name}.pem").write_text(payloads["dynamo"][name])
        d = tmp_path / "r2"
        no_password = rogue_node(
            d,
            seed.cluster_port,
            f'tls {{ cert_file: "{d}/client_cert.pem", key_file: "{d}/client_key.pem", '
            f'ca_file: "{d}/ca_bundle.pem" }}, '
            f'routes: [ "nats-route://{seed_route}" ]',
        )
        for rogue in (plain, no_password):
            rogue.start()
            try:
                assert routes_within(seed, within_s=4) == 0, rogue.name
            finally:
                rogue.stop()
        # Then a node started from the infra task's own settings joins
        with secured_infra(
            tmp_path / "b",
            infra,
            cluster_name="dynamo",
            routes=routes,
            cluster_port=ports[1],
            with_etcd=False,
        ) as second:
            assert routes_within(seed, within_s=10) > 0
            assert routes_within(second, within_s=5) > 0
