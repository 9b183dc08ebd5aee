"""Capture real ``/jsz?consumers=true`` documents for tests/unit/signals/fixtures.

Run ``python -m devtools.capture_jsz_fixtures`` (with ``layers/dynamo_ecs`` on PYTHONPATH):
a standalone nats-server and a three-server cluster get the same streams, consumers and
partly acknowledged messages; every server's document (``/jsz?consumers=true&config=true``)
is saved as it answered.
Truth, by construction: workers 4 pending + 2 ack pending, audit 6 + 1, listener 0 + 2, and
abandoned 5 + 2, whose last activity is `ABANDONED_S` seconds older than the others'
(a consumer whose client went away: its backlog is nobody's work).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerConfig

from devtools.nats_cluster import nats_cluster
from devtools.services import nats_server

OUT = Path(__file__).resolve().parent.parent / "tests" / "unit" / "signals" / "fixtures"
ABANDONED_S = 3.0


async def load(url: str, replicas: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    for _ in range(60):
        try:
            await js.add_stream(name="prefill_queue", subjects=["prefill_queue.*"], num_replicas=replicas)
            break
        except Exception:  # the cluster may still be electing its JetStream leader
            await asyncio.sleep(0.5)
    await js.add_stream(name="events", subjects=["events.*"], num_replicas=replicas)
    for _ in range(7):
        await js.publish("prefill_queue.work", b"req")
    for _ in range(4):
        await js.publish("events.x", b"e")
    gone = await js.pull_subscribe(
        "prefill_queue.*", durable="abandoned", config=ConsumerConfig(num_replicas=replicas)
    )
    await gone.fetch(2, timeout=3)  # delivered, never acknowledged; then nothing more
    await asyncio.sleep(ABANDONED_S)
    a = await js.pull_subscribe(
        "prefill_queue.*", durable="workers", config=ConsumerConfig(num_replicas=replicas)
    )
    got = await a.fetch(3, timeout=3)
    await got[0].ack_sync()
    b = await js.pull_subscribe(
        "prefill_queue.*", durable="audit", config=ConsumerConfig(num_replicas=replicas)
    )
    got = await b.fetch(1, timeout=3)
    c = await js.pull_subscribe("events.*", durable="listener", config=ConsumerConfig(num_replicas=replicas))
    got = await c.fetch(4, timeout=3)
    for m in got[:2]:
        await m.ack_sync()
    await nc.close()


def jsz(monitor: str) -> Any:
    with urllib.request.urlopen(f"{monitor}/jsz?consumers=true&config=true", timeout=5) as r:
        return json.load(r)


def main() -> None:
    with nats_server() as s:
        asyncio.run(load(s.url, 1))
        (OUT / "jsz_standalone.json").write_text(json.dumps(jsz(s.monitor_url), indent=1) + "\n")
    with nats_cluster() as servers:
        asyncio.run(load(servers[0].url, 3))
        time.sleep(1.5)
        for srv in servers:
            (OUT / f"jsz_cluster_{srv.name}.json").write_text(
                json.dumps(jsz(srv.monitor_url), indent=1) + "\n"
            )


if __name__ == "__main__":
    main()
