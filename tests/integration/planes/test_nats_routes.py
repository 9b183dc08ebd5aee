"""NATS cluster routes with the infra task's settings: TLS both ways and the routes' password.

A node that holds the infra secret joins; a node without the routes' credentials, or without a
certificate from the stack's CA, never becomes a route (checked on the real node's ``/routez``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from devtools.planes import rogue_route_configs, rogue_route_joins, routes_within, secured_infra
from devtools.services import free_port
from dynamo_ecs.planes import credentials

NOW = dt.datetime.now(dt.UTC)


def test_only_a_node_with_the_infra_secret_becomes_a_route(tmp_path: Path) -> None:
    payloads = credentials.holder_payloads(credentials.make_authority("dynamo", NOW), [], NOW)
    infra = payloads["infra"]
    # every node lists every node's route, itself included (as the three members do)
    ports = [free_port(), free_port()]
    routes = [f"localhost:{port}" for port in ports]
    with secured_infra(
        tmp_path / "a", infra, cluster_name="dynamo", routes=routes, cluster_port=ports[0], with_etcd=False
    ) as seed:
        for i, (kind, config) in enumerate(rogue_route_configs(tmp_path, payloads, routes[0]).items()):
            assert not rogue_route_joins(tmp_path / f"rogue-{i}", seed, config), kind
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
