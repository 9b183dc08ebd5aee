"""JetStream depth read by the collector equals what the nats-server itself reports."""

from __future__ import annotations

import asyncio
import functools
import json
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats as nats_client
from nats import errors as nats_errors
from nats.js.api import ConsumerConfig

from devtools.ecs_world import build_world, task_private_ip
from devtools.nats_cluster import ClusterServer
from devtools.services import LOOPBACK, MotoServer, NatsServer, free_port
from dynamo_ecs import aws
from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.signals.base import RoundContext
from dynamo_ecs.signals.jetstream import JetStreamSource


def config_for(streams: list[str]) -> DeploymentConfig:
    return DeploymentConfig.model_validate({"signals": {"jetstream_streams": streams, "scrape_timeout_s": 2}})


async def settled[T](step: Callable[[], Awaitable[T]], attempts: int = 60) -> T:
    """Run ``step``, retrying while a fresh cluster is still electing stream or consumer leaders."""
    for _ in range(attempts - 1):
        try:
            return await step()
        except (nats_errors.Error, TimeoutError):
            await asyncio.sleep(0.25)
    return await step()


async def publish_once(jetstream: Any, subject: str, index: int) -> Any:
    """A message id makes a retried publish a no-op: the count stays exact."""
    return await jetstream.publish(subject, f"request {index}".encode(), headers={"Nats-Msg-Id": str(index)})


async def has_leader(info: Awaitable[Any]) -> None:
    """Raise until the stream or consumer reports a leader (a fresh R3 asset elects one first)."""
    cluster = (await info).cluster
    if cluster is not None and not cluster.leader:
        raise TimeoutError("no leader yet")


async def fetch_exactly(subscription: Any, count: int) -> list[Any]:
    """Fetch ``count`` messages; a fetch refused while the consumer's leader moves is retried
    for what is still missing, so the consumer ends with exactly ``count`` delivered."""
    taken: list[Any] = []

    async def more() -> None:
        taken.extend(await subscription.fetch(count - len(taken), timeout=5))
        if len(taken) < count:
            raise TimeoutError(f"{len(taken)} of {count} fetched")

    await settled(more)
    return taken


async def load_queue(url: str, stream: str, replicas: int = 1) -> None:
    """A work queue as Dynamo used one: durable pull consumers, some work done, some in flight."""
    connection = await nats_client.connect(url)
    jetstream = connection.jetstream()
    await settled(lambda: jetstream.add_stream(name=stream, subjects=[f"{stream}.*"], num_replicas=replicas))
    await settled(lambda: has_leader(jetstream.stream_info(stream)))
    for i in range(12):
        await settled(functools.partial(publish_once, jetstream, f"{stream}.req", i))
    config = ConsumerConfig(num_replicas=replicas)
    workers = await settled(lambda: jetstream.pull_subscribe(f"{stream}.*", durable="workers", config=config))
    await settled(lambda: has_leader(jetstream.consumer_info(stream, "workers")))
    taken = await fetch_exactly(workers, 5)
    for message in taken[:3]:
        await settled(message.ack_sync)  # 3 done, 2 in flight, 7 not yet delivered
    audit = await settled(lambda: jetstream.pull_subscribe(f"{stream}.*", durable="audit", config=config))
    await settled(lambda: has_leader(jetstream.consumer_info(stream, "audit")))
    await fetch_exactly(audit, 1)  # 1 in flight, 11 not yet delivered
    await connection.close()


def server_view(monitor_url: str, stream: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{monitor_url}/jsz?consumers=true", timeout=5) as response:
        document = json.load(response)
    return [
        consumer
        for account in document.get("account_details", [])
        for detail in account.get("stream_detail", [])
        if detail["name"] == stream
        for consumer in detail.get("consumer_detail", [])
    ]


def published(reading_data: list[Any]) -> dict[str, float]:
    return {d.metric: d.value for d in reading_data if d.service == "prefill"}


def test_lag_equals_the_servers_pending_plus_ack_pending(nats: NatsServer) -> None:
    # Given a stream with two durable pull consumers, messages partly delivered and acked
    stream = f"prefill_{uuid.uuid4().hex[:8]}"
    asyncio.run(load_queue(nats.url, stream))
    # When the collector's JetStream source reads the monitor
    source = JetStreamSource(config_for([stream]), monitor_urls=[nats.monitor_url])
    reading = source.read(RoundContext(now=time.time(), cluster=None), None)
    # Then its lag is the server's own num_pending + num_ack_pending over the consumers
    consumers = server_view(nats.monitor_url, stream)
    expected = sum(c["num_pending"] + c["num_ack_pending"] for c in consumers)
    assert expected == (7 + 2) + (11 + 1)
    values = published(reading.data)
    assert values[names.JETSTREAM_LAG] == expected
    assert values[names.JETSTREAM_WAITING] == sum(c["num_waiting"] for c in consumers)
    assert values[names.JETSTREAM_REDELIVERED] == sum(c["num_redelivered"] for c in consumers)
    assert (reading.targets, reading.errors) == (1, 0)


def test_selecting_one_consumer(nats: NatsServer) -> None:
    stream = f"prefill_{uuid.uuid4().hex[:8]}"
    asyncio.run(load_queue(nats.url, stream))
    source = JetStreamSource(config_for([f"{stream}/workers"]), monitor_urls=[nats.monitor_url])
    reading = source.read(RoundContext(now=time.time(), cluster=None), None)
    assert published(reading.data)[names.JETSTREAM_LAG] == 7 + 2


def test_cluster_lag_comes_from_each_consumers_leader(nats_three: list[ClusterServer]) -> None:
    # Given a replicated stream on a three-server cluster
    stream = f"prefill_{uuid.uuid4().hex[:8]}"
    asyncio.run(load_queue(nats_three[0].url, stream, replicas=3))
    time.sleep(1.0)  # let followers apply; they may still lag, which is the point
    # When every server's monitor is read
    urls = [s.monitor_url for s in nats_three]
    reading = JetStreamSource(config_for([stream]), monitor_urls=urls).read(
        RoundContext(now=time.time(), cluster=None), None
    )
    # Then each consumer counts once, with its leader's numbers
    leader_numbers = 0
    for server in nats_three:
        for consumer in server_view(server.monitor_url, stream):
            if consumer["cluster"]["leader"] == server.name:
                leader_numbers += consumer["num_pending"] + consumer["num_ack_pending"]
    assert leader_numbers == 21
    assert published(reading.data)[names.JETSTREAM_LAG] == 21
    assert not any("no reachable leader" in note for note in reading.notes)


def test_a_monitor_that_refuses_is_counted_and_publishes_no_depth() -> None:
    dead = f"http://{LOOPBACK}:{free_port()}"
    reading = JetStreamSource(config_for([]), monitor_urls=[dead]).read(RoundContext(time.time(), None), None)
    assert (reading.targets, reading.errors) == (1, 1)
    assert reading.data == []
    assert "refused" in reading.notes[0]


def test_monitor_address_comes_from_the_infra_task(aws_env: MotoServer) -> None:
    config = DeploymentConfig()
    world = build_world(config, region="us-east-1")
    infra = world.run_infra_task()
    urls, problem = JetStreamSource(config, ecs=aws.client("ecs")).monitors()
    assert problem is None
    assert urls == [f"http://{task_private_ip(infra)}:{config.infra.nats_monitor_port}"]

    world.stop_task(config.infra.cluster, infra["taskArn"])
    reading = JetStreamSource(config, ecs=aws.client("ecs")).read(RoundContext(time.time(), None), None)
    assert (reading.targets, reading.errors, reading.data) == (1, 1, [])
    assert "no NATS monitor" in reading.notes[0]
