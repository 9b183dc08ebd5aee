"""Writes the authenticated planes accept from a client that should not write.

The infra task's own settings on loopback (devtools/planes.py: the writer script, etcd's TLS
environment, the auth script, nats-server's config) with the real etcd 3.5 and nats-server
2.11. Every kind of wrong credential tries to write: on etcd a key Dynamo's discovery reads
(`v1/...`), on NATS a KV event Dynamo's subscribers receive. A write counts as accepted when
etcd answers OK to the put or when Dynamo's own subscriber receives the message; the key
space and users are compared before and after as well. The right credentials write too, as
the control: a bench that accepted nothing at all would prove nothing.
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
    planes_on_loopback,
)

RIGHT_ETCD = EtcdAttempt(holder="dynamo", key="v1/bench/control")


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-planes-") as tmp, planes_on_loopback(Path(tmp)) as planes:
        accepted = 0
        for kind, case in WRONG_ETCD.items():
            before = etcd_state(planes)
            written = etcd_attempt(planes, case) or etcd_state(planes) != before
            accepted += written
            print(f"etcd  {kind}: {'ACCEPTED' if written else 'refused'}")
        for kind, nats_case in WRONG_NATS.items():
            published, seen = nats_attempt(planes, nats_case)
            accepted += seen
            print(f"nats  {kind}: {'ACCEPTED' if seen else 'refused'} (client published: {published})")
        control = int(etcd_attempt(planes, RIGHT_ETCD)) + int(nats_attempt(planes, RIGHT_NATS)[1])
        print(f"figure: unauthenticated_writes_accepted {accepted} count")
        print(f"figure: wrong_credential_kinds_tried {len(WRONG_ETCD) + len(WRONG_NATS)} count")
        print(f"figure: authenticated_writes_accepted {control} count")
