"""`make demo` today: the metrics collector's whole path on this machine, with real parts.

Until the full end-to-end demo exists (its own issue), this runs the smallest honest local
run of the operator: it starts moto server and a real nats-server with JetStream on
loopback, builds the Dynamo-on-ECS deployment in moto and the state table from
template.yaml, queues prefill work in a real JetStream stream with a durable pull consumer,
starts three simulated Dynamo frontends (real HTTP servers serving Prometheus text with
Dynamo's metric names), and runs the collector twice, one simulated minute apart. It then
reads what was published back from CloudWatch (moto) with GetMetricData and prints it next
to the true values. Every process it starts is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devtools import netguard
from devtools.dynamo_frontend import MetricsServer
from devtools.ecs_world import build_world
from devtools.services import aws_test_environment, moto_server, nats_server
from devtools.template import create_state_table
from dynamo_ecs import aws
from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.observability import logger
from dynamo_ecs.signals.collector import Collector
from dynamo_ecs.signals.discovery import ScrapeTarget
from dynamo_ecs.signals.gpu import GpuUtilizationSource
from dynamo_ecs.signals.jetstream import JetStreamSource
from dynamo_ecs.signals.prometheus_scrape import FrontendSource
from dynamo_ecs.state import StateStore

STREAM, CONSUMER = "dynamo-prefill", "prefill-worker"
PUBLISHED, FETCHED, ACKED = 40, 15, 10


class SimulatedClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def say(text: str) -> None:
    print(text, flush=True)


async def queue_prefill_work(nats_url: str) -> None:
    """Publish work, let a worker take some and acknowledge part of what it took."""
    import nats

    connection = await nats.connect(nats_url)
    jetstream = connection.jetstream()
    await jetstream.add_stream(name=STREAM, subjects=[f"{STREAM}.*"])
    for i in range(PUBLISHED):
        await jetstream.publish(f"{STREAM}.request", f"prefill {i}".encode())
    subscription = await jetstream.pull_subscribe(f"{STREAM}.*", durable=CONSUMER)
    messages = await subscription.fetch(FETCHED, timeout=5)
    for message in messages[:ACKED]:
        await message.ack_sync()
    await connection.close()


def feed_frontends(servers: list[MetricsServer], rng: random.Random, ttft_ms: float) -> list[float]:
    """One minute of traffic on every frontend; returns the true TTFT values in seconds."""
    observed: list[float] = []
    for server in servers:
        ttft = [rng.lognormvariate(0, 0.35) * ttft_ms / 1000 for _ in range(120)]
        itl = [rng.lognormvariate(0, 0.2) * 0.03 for _ in range(120)]
        server.metrics.observe(ttft=ttft, itl=itl, duration=[t + 2.0 for t in ttft], requests=len(ttft))
        server.metrics.set_load(active=6, queued_by_stage={("preprocess", "waiting"): 3})
        observed.extend(ttft)
    return observed


def read_back(config: DeploymentConfig, metric: str, service: str, at: float) -> float | None:
    answer = aws.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": config.signals.namespace,
                        "MetricName": metric,
                        "Dimensions": [
                            {"Name": names.DIMENSION_DEPLOYMENT, "Value": config.deployment},
                            {"Name": names.DIMENSION_SERVICE, "Value": service},
                        ],
                    },
                    "Period": 60,
                    "Stat": "Average",
                },
            }
        ],
        StartTime=at - 120,
        EndTime=at + 120,
    )
    values: list[float] = answer["MetricDataResults"][0]["Values"]
    return values[0] if values else None


def run(workdir: Path) -> None:
    with moto_server(workdir) as moto, nats_server(workdir) as nats:
        os.environ.update(aws_test_environment(moto.url))
        aws.reset_clients()
        config = DeploymentConfig()
        say(f"moto server {moto.url}, nats-server {nats.url} (monitor {nats.monitor_url})")

        world = build_world(config, region=os.environ["AWS_REGION"])
        infra = world.run_infra_task()
        world.create_gpu_services()
        create_state_table(config.state_table)
        say(f"ECS in moto: infra task {infra['taskArn'].rsplit('/', 1)[-1]}, GPU services created")

        asyncio.run(queue_prefill_work(nats.url))
        say(
            f"JetStream: {PUBLISHED} prefill requests queued, "
            f"{FETCHED} taken by a worker, {ACKED} acknowledged"
        )

        servers = [MetricsServer().start() for _ in range(3)]
        try:
            clock = SimulatedClock(time.time())
            collector = Collector(
                config,
                StateStore(config.state_table, config.deployment),
                [
                    JetStreamSource(config, monitor_urls=[nats.monitor_url]),
                    FrontendSource(
                        config, targets=[ScrapeTarget(f"frontend-{i}", s.url) for i, s in enumerate(servers)]
                    ),
                    GpuUtilizationSource(config),
                ],
                clock=clock,
                sleep=clock.sleep,
            )
            rng = random.Random(7)
            feed_frontends(servers, rng, ttft_ms=300)
            first = collector.run().as_dict()
            say(f"collection 1 (baseline scrape, no window yet): {summary_line(first)}")
            clock.sleep(60)
            true_ttft = feed_frontends(servers, rng, ttft_ms=450)
            second = collector.run().as_dict()
            say(f"collection 2 (one simulated minute later): {summary_line(second)}")
            report(config, clock.now, true_ttft)
        finally:
            for server in servers:
                server.stop()
    say("all local processes stopped")


def summary_line(summary: dict[str, Any]) -> str:
    rounds = summary.get("rounds", [summary])
    last = rounds[-1]
    errors = last.get("scrape_errors")
    return f"status {last.get('status')}, {last.get('metrics')} metrics, scrape errors {errors}"


def report(config: DeploymentConfig, at: float, true_ttft: list[float]) -> None:
    expected_p90 = statistics.quantiles(true_ttft, n=10)[-1] * 1000
    expected_lag = PUBLISHED - ACKED
    rows = [
        (names.JETSTREAM_LAG, "prefill", f"{expected_lag} (pending + ack pending)"),
        (names.TTFT_P90, "frontend", f"{expected_p90:.0f} ms true p90; estimated from ~2x-wide buckets"),
        (names.ITL_P90, "frontend", "about 38 ms"),
        (names.REQUEST_RATE, "frontend", f"{3 * 120 / 60:.1f} requests/s"),
        (names.QUEUED_REQUESTS, "frontend", "9 (3 per frontend)"),
        (names.SCRAPE_ERRORS, "frontend", "0"),
    ]
    say("\nread back from CloudWatch (moto) with GetMetricData:")
    say(f"  {'metric':<24} {'service':<9} {'published':>10}   expected")
    for metric, service, expected in rows:
        value = read_back(config, metric, service, at)
        shown = "missing" if value is None else f"{value:.1f}"
        say(f"  {metric:<24} {service:<9} {shown:>10}   {expected}")


def main() -> int:
    netguard.install()
    logger.setLevel("WARNING")  # the demo narrates; the operator's JSON logs only on warnings
    with tempfile.TemporaryDirectory(prefix="dynamo-ecs-demo-") as workdir:
        try:
            run(Path(workdir))
        except KeyboardInterrupt:
            say("interrupted: local processes stopped")
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
