"""Signals collection cost: concurrent scrapes under timeouts, and high-resolution sampling.

1. One frontend collection over 100 local ``/metrics`` servers, 10 of which never answer:
   ``figure: scrape_100_targets_s`` (goal: at most 2x ``scrape_timeout_s``, the per-target
   timeout, the default of ``signals.scrape_timeout_s``).
2. A whole collection (JetStream on a real nats-server, 4 frontends, GPU lookup, state
   table and PutMetricData on moto server) with 1 and with 6 samples per invocation:
   AWS API calls per minute and the Lambda duration each implies (the 6-sample run sleeps
   on a simulated clock; its duration is 5 x 10 s of waiting plus the measured rounds).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from devtools.dynamo_frontend import Behaviour, MetricsServer, metrics_servers
from devtools.services import aws_test_environment, moto_server, nats_server
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.signals.base import RoundContext
from dynamo_ecs.signals.collector import Collector
from dynamo_ecs.signals.discovery import ScrapeTarget
from dynamo_ecs.signals.gpu import GpuUtilizationSource
from dynamo_ecs.signals.jetstream import JetStreamSource
from dynamo_ecs.signals.prometheus_scrape import FrontendSource
from dynamo_ecs.state import StateStore


class CountingClient:
    """Counts the API calls made through a boto3 client."""

    def __init__(self, client: Any, counts: dict[str, int]) -> None:
        self._client, self._counts = client, counts

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith(("get_paginator", "meta")):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._counts[name] = self._counts.get(name, 0) + 1
            return attribute(*args, **kwargs)

        return counted


def scrape_many() -> None:
    config = DeploymentConfig()
    timeout = config.signals.scrape_timeout_s
    hanging: list[Behaviour] = ["hang"] * 10
    healthy: list[Behaviour] = ["ok"] * 90
    behaviours = hanging + healthy
    with metrics_servers(behaviours) as servers:
        for server in servers[10:]:
            server.metrics.observe(ttft=[0.1, 0.2, 0.5], itl=[0.02] * 50, duration=[3.0], requests=3)
            server.metrics.set_load(active=2, queued_by_stage={("route", "decode"): 1})
        source = FrontendSource(config, targets=[ScrapeTarget(f"t{i}", s.url) for i, s in enumerate(servers)])
        started = time.perf_counter()
        reading = source.read(RoundContext(now=time.time(), cluster=None), None)
        elapsed = time.perf_counter() - started
    print(f"100 targets: {reading.errors} errors (10 expected), {len(reading.data)} metrics")
    print(f"figure: scrape_100_targets_s {elapsed:.2f} s")
    print(f"figure: scrape_timeout_s {timeout:.2f} s")


def collection_cost(
    samples: int, run_id: int, nats_monitor: str, servers: list[MetricsServer]
) -> tuple[dict[str, int], float]:
    config = DeploymentConfig.model_validate(
        {"deployment": f"bench{samples}-{run_id}", "signals": {"samples_per_invocation": samples}}
    )
    counts: dict[str, int] = {}
    clock = [time.time()]
    waited = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        waited[0] += seconds

    def now() -> float:
        return clock[0] + (time.perf_counter() - started)

    store = StateStore(
        config.state_table, config.deployment, client=CountingClient(aws.client("dynamodb"), counts)
    )
    collector = Collector(
        config,
        store,
        [
            JetStreamSource(config, monitor_urls=[nats_monitor]),
            FrontendSource(config, targets=[ScrapeTarget(f"t{i}", s.url) for i, s in enumerate(servers)]),
            GpuUtilizationSource(config, cloudwatch=CountingClient(aws.client("cloudwatch"), counts)),
        ],
        cloudwatch=CountingClient(aws.client("cloudwatch"), counts),
        clock=now,
        sleep=sleep,
    )
    started = time.perf_counter()
    summary = collector.run()
    busy = time.perf_counter() - started
    assert all(r.status == "published" for r in summary.rounds), summary.as_dict()
    return counts, busy + waited[0]


def high_resolution_cost() -> None:
    with moto_server() as moto, nats_server() as nats, metrics_servers(["ok"] * 4) as servers:
        os.environ.update(aws_test_environment(moto.url))
        aws.reset_clients()
        from devtools.template import create_state_table

        create_state_table("dynamo-ecs-state")
        for samples in (1, 6):
            runs = [collection_cost(samples, i, nats.monitor_url, servers) for i in range(3)]
            counts = runs[-1][0]
            duration = statistics.median(d for _, d in runs)
            puts = counts.get("put_metric_data", 0)
            dynamo = counts.get("get_item", 0) + counts.get("put_item", 0)
            print(f"{samples} sample(s): calls per invocation {counts}")
            print(f"figure: put_metric_data_calls_per_minute_{samples}x {puts} calls")
            print(f"figure: dynamodb_calls_per_minute_{samples}x {dynamo} calls")
            print(f"figure: lambda_duration_per_invocation_{samples}x {duration:.2f} s")
        aws.reset_clients()


def run() -> None:
    scrape_many()
    high_resolution_cost()


if __name__ == "__main__":
    run()
