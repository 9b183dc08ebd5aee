"""Writes the authenticated planes accept from a client that should not write.

The infra task's own settings on loopback (devtools/planes.py: the writer script, etcd's TLS
environment, the auth script, nats-server's config) with the real etcd 3.5 and nats-server
2.11. Every kind of wrong credential tries to write, on every plane:

- etcd clients: a key Dynamo's discovery reads (``v1/...``); accepted when etcd answers OK or
  the key space, users or auth revision change;
- NATS clients: a KV event Dynamo's subscribers receive; accepted when Dynamo's own
  subscriber receives it;
- NATS routes: a node routing to the tier the wrong way; accepted when it becomes a route
  (it could then inject messages);
- etcd peers: a process with another CN of the stack's CA, added as a member by root;
  accepted when it joins.

The right credentials write too, as the control: a bench that accepted nothing at all would
prove nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from devtools.planes import (
    RIGHT_NATS,
    WRONG_ETCD,
    WRONG_NATS,
    EtcdAttempt,
    etcd_attempt,
    etcd_state,
    nats_attempt,
    peer_started,
    planes_on_loopback,
    rogue_route_configs,
    rogue_route_joins,
    secured_infra,
    start_peer,
)
from devtools.services import free_port
from dynamo_ecs.planes.infra_settings import MEMBER_CN

RIGHT_ETCD = EtcdAttempt(holder="dynamo", key="v1/bench/control")


def report(plane: str, kind: str, accepted: bool) -> int:
    print(f"{plane:<11} {kind}: {'ACCEPTED' if accepted else 'refused'}")
    return int(accepted)


def run() -> None:
    accepted = tried = control = 0
    with tempfile.TemporaryDirectory(prefix="bench-planes-") as tmp:
        work = Path(tmp)
        with planes_on_loopback(work / "clients") as planes:
            for kind, case in WRONG_ETCD.items():
                before = etcd_state(planes)
                accepted += report("etcd", kind, etcd_attempt(planes, case) or etcd_state(planes) != before)
            for kind, nats_case in WRONG_NATS.items():
                accepted += report("nats", kind, nats_attempt(planes, nats_case)[1])
            tried += len(WRONG_ETCD) + len(WRONG_NATS)
            control += int(etcd_attempt(planes, RIGHT_ETCD)) + int(nats_attempt(planes, RIGHT_NATS)[1])
        with planes_on_loopback(work / "peer-wrong") as planes:
            process = start_peer(planes, work / "peer-wrong-2", "dynamo")
            try:
                accepted += report("etcd peer", "another CN of the stack's CA", peer_started(planes))
            finally:
                process.stop()
            tried += 1
        with planes_on_loopback(work / "peer-right") as planes:
            process = start_peer(planes, work / "peer-right-2", MEMBER_CN)
            try:
                control += int(peer_started(planes))
            finally:
                process.stop()
        ports = [free_port(), free_port()]
        routes = [f"localhost:{port}" for port in ports]
        infra = planes.payloads["infra"]
        with secured_infra(
            work / "route-seed",
            infra,
            cluster_name="dynamo",
            routes=routes,
            cluster_port=ports[0],
            with_etcd=False,
        ) as seed:
            for i, (kind, config) in enumerate(rogue_route_configs(work, planes.payloads, routes[0]).items()):
                accepted += report("nats route", kind, rogue_route_joins(work / f"rogue-{i}", seed, config))
                tried += 1
    print(f"figure: unauthenticated_writes_accepted {accepted} count")
    print(f"figure: wrong_credential_kinds_tried {tried} count")
    print(f"figure: authenticated_writes_accepted {control} count")
