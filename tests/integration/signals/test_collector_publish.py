"""One collection end to end: sources -> state table (compare-and-set) -> CloudWatch (moto server)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats as nats_client
import pytest

from devtools import netguard
from devtools.dynamo_frontend import Behaviour, FrontendMetrics, MetricsServer
from devtools.ecs_world import EcsWorld, build_world
from devtools.handlers import load_handler_module
from devtools.services import MotoServer, NatsServer
from devtools.sim_clock import SimClock
from dynamo_ecs import aws
from dynamo_ecs import metric_names as names
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.endpoints.gpu_services import FRONTEND_PORT, with_worker_readiness
from dynamo_ecs.signals.base import RoundContext, SignalSource, SourceReading
from dynamo_ecs.signals.collector import STATE_RECORD, Collector
from dynamo_ecs.signals.discovery import ScrapeTarget, read_cluster
from dynamo_ecs.signals.gpu import GpuUtilizationSource
from dynamo_ecs.signals.jetstream import JetStreamSource
from dynamo_ecs.signals.nats_core import NatsCoreSource
from dynamo_ecs.signals.prometheus_scrape import FrontendSource
from dynamo_ecs.signals.workers import WorkerSource
from dynamo_ecs.specs import load_default_spec
from dynamo_ecs.state import StateStore

ROOT = Path(__file__).resolve().parents[3]
StartServer = Callable[[Behaviour], MetricsServer]
NOW = datetime.now(UTC).replace(microsecond=0).timestamp()


FIXTURES = Path(__file__).resolve().parents[2] / "unit" / "signals" / "fixtures"


def make_config(stream: str = "prefill_queue", **overrides: Any) -> DeploymentConfig:
    data: dict[str, Any] = {
        "state_table": "dynamo-ecs-state",
        "signals": {"scrape_timeout_s": 0.5, "jetstream_streams": [stream]},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return DeploymentConfig.model_validate(data)


def collector(
    config: DeploymentConfig,
    servers: list[MetricsServer],
    nats: NatsServer,
    clock: SimClock,
    world: EcsWorld | None = None,
) -> Collector:
    targets = [ScrapeTarget(f"task-{i}", s.url) for i, s in enumerate(servers)]
    return Collector(
        config,
        StateStore(config.state_table, config.deployment),
        [
            JetStreamSource(config, monitor_urls=[nats.monitor_url]),
            FrontendSource(config, targets=targets),
            GpuUtilizationSource(config),
        ],
        read_cluster=(lambda: read_cluster(config, aws.client("ecs"), aws.client("ec2"))) if world else None,
        clock=clock,
        sleep=clock.sleep,
    )


def read_back(
    metric: str, service: str, unit: str, at: float, period: int = 60, deployment: str = "dynamo"
) -> list[float]:
    """Values of one metric, read with GetMetricData filtered on dimensions and unit."""
    answer = aws.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "DynamoEcs",
                        "MetricName": metric,
                        "Dimensions": [
                            {"Name": "Deployment", "Value": deployment},
                            {"Name": "Service", "Value": service},
                        ],
                    },
                    "Period": period,
                    "Stat": "Average",
                    "Unit": unit,
                },
            }
        ],
        StartTime=datetime.fromtimestamp(at, UTC) - timedelta(minutes=5),
        EndTime=datetime.fromtimestamp(at, UTC) + timedelta(minutes=5),
    )
    return [float(v) for v in answer["MetricDataResults"][0]["Values"]]


async def queue(url: str, stream: str) -> None:
    connection = await nats_client.connect(url)
    jetstream = connection.jetstream()
    await jetstream.add_stream(name=stream, subjects=[f"{stream}.*"])
    for _ in range(5):
        await jetstream.publish(f"{stream}.req", b"r")
    consumer = await jetstream.pull_subscribe(f"{stream}.*", durable="workers")
    taken = await consumer.fetch(2, timeout=5)
    await taken[0].ack_sync()  # lag: 3 pending + 1 ack pending
    await connection.close()


@pytest.fixture
def stream(nats: NatsServer) -> str:
    name = f"prefill_{uuid.uuid4().hex[:8]}"
    asyncio.run(queue(nats.url, name))
    return name


def test_published_metrics_read_back_with_dimensions_and_units(
    state_table: str, nats: NatsServer, stream: str, metrics_server: StartServer
) -> None:
    # Given a frontend with traffic, a JetStream backlog, and GPU instances reporting to CWAgent
    config = make_config(stream)
    world = build_world(config, region="us-east-1", gpu_instances=2)
    world.create_gpu_services(pasted_ip="10.0.0.9")
    world.run_gpu_task("frontend", 0)
    world.run_gpu_task("prefill", 1)
    clock = SimClock(NOW)
    cloudwatch = aws.client("cloudwatch")
    for instance, utilization in zip(world.gpu_instances, (70.0, 30.0), strict=True):
        cloudwatch.put_metric_data(
            Namespace="CWAgent",
            MetricData=[
                {
                    "MetricName": "nvidia_smi_utilization_gpu",
                    "Dimensions": [{"Name": "InstanceId", "Value": instance["ec2InstanceId"]}],
                    "Timestamp": datetime.fromtimestamp(clock.now - 60, UTC),
                    "Value": utilization,
                    "Unit": "Percent",
                }
            ],
        )
    server = metrics_server("ok")
    server.metrics.observe(ttft=[0.1] * 5, requests=5, input_tokens=[800] * 5, output_tokens=[90] * 5)
    server.metrics.set_load(
        active=4, queued_by_stage={("route", "decode"): 2, ("dispatch", "decode"): 1, ("route", "prefill"): 3}
    )
    first = collector(config, [server], nats, clock, world).run()
    assert first.rounds[0].status == "published"

    # When a minute later the frontend served 30 more requests and the collector runs again
    server.metrics.observe(
        ttft=[0.3] * 30,
        itl=[0.02] * 300,
        duration=[3.0] * 30,
        requests=30,
        input_tokens=[1000] * 30,
        output_tokens=[200] * 30,
    )
    clock.sleep(60)
    summary = collector(config, [server], nats, clock, world).run().as_dict()
    assert summary["rounds"][0]["status"] == "published"

    # Then every metric reads back under its Deployment/Service dimensions and unit
    at = clock.now
    assert read_back(names.REQUEST_RATE, "frontend", "Count/Second", at) == [pytest.approx(0.5)]
    # the token rates the predictive floor in tokens reads: 30 prompts of 1,000, outputs of 200
    assert read_back(names.INPUT_TOKEN_RATE, "frontend", "Count/Second", at) == [pytest.approx(500.0)]
    assert read_back(names.OUTPUT_TOKEN_RATE, "frontend", "Count/Second", at) == [pytest.approx(100.0)]
    assert read_back(names.ACTIVE_REQUESTS, "frontend", "Count", at) == [4.0, 4.0]  # gauges: both rounds
    assert read_back(names.QUEUE_DEPTH, "frontend", "Count", at) == [3.0, 3.0]
    assert read_back(names.QUEUE_DEPTH, "prefill", "Count", at) == [3.0, 3.0]
    assert read_back(names.QUEUE_DEPTH_TOTAL, "frontend", "Count", at) == [6.0, 6.0]
    [ttft_p90] = read_back(names.TTFT_P90, "frontend", "Milliseconds", at)
    assert 220 <= ttft_p90 <= 470
    assert read_back(names.TTFT_MEAN, "frontend", "Milliseconds", at) == [pytest.approx(300.0)]
    assert read_back(names.ITL_P50, "frontend", "Milliseconds", at)
    assert read_back(names.REQUEST_DURATION_P99, "frontend", "Milliseconds", at)
    assert read_back(names.JETSTREAM_LAG, "prefill", "Count", at) == [4.0, 4.0]  # both rounds
    assert read_back(names.GPU_UTILIZATION, "frontend", "Percent", at) == [70.0, 70.0]
    assert read_back(names.GPU_UTILIZATION, "prefill", "Percent", at) == [30.0, 30.0]
    assert read_back(names.SCRAPE_TARGETS, "frontend", "Count", at) == [1.0, 1.0]
    assert read_back(names.SCRAPE_ERRORS, "frontend", "Count", at) == [0.0, 0.0]
    # And a wrong unit finds nothing (the unit is part of what was published)
    assert read_back(names.TTFT_P90, "frontend", "Seconds", at) == []
    assert read_back(names.TTFT_P90, "prefill", "Milliseconds", at) == []


def test_duplicate_schedule_delivery_publishes_once(
    state_table: str, nats: NatsServer, stream: str, metrics_server: StartServer
) -> None:
    config = make_config(stream)
    server = metrics_server("ok")
    clock = SimClock(NOW)
    first = collector(config, [server], nats, clock).run()
    clock.sleep(2)  # the same schedule event, delivered again
    again = collector(config, [server], nats, clock).run()
    assert [r.status for r in first.rounds + again.rounds] == ["published", "duplicate"]
    assert read_back(names.JETSTREAM_LAG, "prefill", "Count", clock.now) == [4.0]


def test_overlapping_invocations_publish_a_round_once(
    state_table: str, nats: NatsServer, stream: str, metrics_server: StartServer
) -> None:
    # Given invocation A that reads the state, and B that runs a whole round while A scrapes
    config = make_config(stream)
    server = metrics_server("ok")
    server.metrics.observe(ttft=[0.1], requests=1)
    clock = SimClock(NOW)
    collector(config, [server], nats, clock).run()
    clock.sleep(60)
    server.metrics.observe(ttft=[0.2] * 10, requests=10)
    b = collector(config, [server], nats, clock)

    class RunsBWhileAScrapes:
        name = "interleave"
        scrape_service: ServiceRole | None = None

        def read(self, context: RoundContext, previous_state: dict[str, Any] | None) -> SourceReading:
            self.b_round = b.collect_round(None)
            return SourceReading(self.name)

    a = collector(config, [server], nats, clock)
    interleave = RunsBWhileAScrapes()
    a.sources.append(interleave)
    a_round = a.collect_round(None)
    # Then B published the window and A, whose compare-and-set failed, published nothing
    assert (interleave.b_round.status, a_round.status) == ("published", "lost_race")
    assert read_back(names.REQUEST_RATE, "frontend", "Count/Second", clock.now) == [
        pytest.approx(10 / 60, rel=1e-4)
    ]


def test_dry_run_publishes_nothing_and_keeps_the_state(
    state_table: str, nats: NatsServer, stream: str, metrics_server: StartServer
) -> None:
    config = make_config(stream, dry_run=True)
    server = metrics_server("ok")
    clock = SimClock(NOW)
    summary = collector(config, [server], nats, clock).run().as_dict()
    round_ = summary["rounds"][0]
    assert round_["status"] == "dry_run"
    assert "JetStreamLag[prefill]=4" in round_["would_publish"]
    assert StateStore(config.state_table, config.deployment).get_record(STATE_RECORD).version == 0
    assert read_back(names.JETSTREAM_LAG, "prefill", "Count", clock.now) == []


def test_high_resolution_sampling_publishes_every_interval(
    state_table: str, nats: NatsServer, stream: str, metrics_server: StartServer
) -> None:
    config = make_config(stream, signals={"samples_per_invocation": 3})
    server = metrics_server("ok")
    clock = SimClock(NOW - NOW % 60)
    summary = collector(config, [server], nats, clock).run()
    assert [r.status for r in summary.rounds] == ["published"] * 3
    assert [r.at - summary.rounds[0].at for r in summary.rounds] == [0, 20, 40]
    lags = read_back(names.JETSTREAM_LAG, "prefill", "Count", clock.now, period=1)
    assert lags == [4.0, 4.0, 4.0]


def test_handler_on_the_schedule_event_never_raises_on_bad_targets(
    state_table: str, aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the deployed shape: frontend tasks on instances whose addresses do not answer,
    # and no infra task (no NATS monitor)
    config = make_config()
    world = build_world(config, region="us-east-1", gpu_instances=1)
    world.create_gpu_services(pasted_ip="10.0.0.9")
    world.run_gpu_task("frontend")
    monkeypatch.setenv("DYNAMO_ECS_STATE_TABLE", config.state_table)
    monkeypatch.setenv("DYNAMO_ECS_SIGNALS__SCRAPE_TIMEOUT_S", "0.3")
    handler = load_handler_module("metrics_collector", fresh=True)
    event = json.loads((ROOT / "events" / "metrics_collector_schedule.json").read_text())
    # When the schedule fires
    summary = handler.lambda_handler(event, None)
    # Then the run completes and says what could not be read (the example task definition sets
    # no DYN_SYSTEM_PORT: its worker is not scraped, which is no error)
    round_ = summary["rounds"][0]
    assert round_["status"] == "published"
    assert round_["targets"] == {"frontend": 1, "prefill": 0}
    assert round_["scrape_errors"] == {
        "frontend": 1,
        "prefill": 0,
    }  # no JetStream stream named: NATS is not read
    now = datetime.now(UTC).timestamp()
    assert read_back(names.SCRAPE_ERRORS, "frontend", "Count", now) == [1.0]
    # And an event that is not a schedule event is ignored, not retried
    ignored = handler.lambda_handler({"detail-type": "Object Created"}, None)
    assert ignored["status"] == "ignored" and "detail-type" in ignored["reason"]


def instance_ip(ecs_world: EcsWorld, index: int) -> str:
    instance_id = ecs_world.gpu_instances[index]["ec2InstanceId"]
    [reservation] = aws.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(reservation["Instances"][0]["PrivateIpAddress"])


def test_workers_that_never_answer_cost_a_round_one_deadline_not_one_per_task(
    state_table: str, aws_env: MotoServer, monkeypatch: pytest.MonkeyPatch, metrics_server: StartServer
) -> None:
    # Given the stack's GPU specs (each worker binds its system port for its container check),
    # two frontend and two prefill tasks on four instances, whose frontends answer and whose
    # workers accept the connection and never answer (the worst a scrape can meet)
    config = make_config()
    world = build_world(config, region="us-east-1", gpu_instances=4)
    specs: dict[str, dict[str, Any]] = {
        role: with_worker_readiness(
            load_default_spec(role),
            config.worker_system_port(role),
            FRONTEND_PORT if role == "frontend" else None,
        )
        for role in SERVICE_ROLES
    }
    world.create_gpu_services(pasted_ip="10.0.0.9", specs=specs)
    roles: tuple[ServiceRole, ...] = ("frontend", "frontend", "prefill", "prefill")
    for index, role in enumerate(roles):
        world.run_gpu_task(role, instance_index=index)
    frontend, hanging = metrics_server("ok"), metrics_server("hang")
    ips = [instance_ip(world, index) for index in range(4)]
    for ip in ips:
        netguard.redirect(ip, config.frontend.metrics_port, frontend.port)
        for role in SERVICE_ROLES:
            netguard.redirect(ip, config.worker_system_port(role), hanging.port)
    timeout_s = 2.0
    monkeypatch.setenv("DYNAMO_ECS_STATE_TABLE", config.state_table)
    monkeypatch.setenv("DYNAMO_ECS_SIGNALS__SCRAPE_TIMEOUT_S", str(timeout_s))
    handler = load_handler_module("metrics_collector", fresh=True)
    event = json.loads((ROOT / "events" / "metrics_collector_schedule.json").read_text())
    try:
        # When the schedule fires
        started = time.monotonic()
        summary = handler.lambda_handler(event, None)
        elapsed = time.monotonic() - started
    finally:
        for ip in ips:
            netguard.clear_redirects(ip)
    # Then every worker was a target, on its spec's port, and each one is a scrape error
    round_ = summary["rounds"][0]
    assert round_["status"] == "published"
    assert round_["targets"] == {"frontend": 4, "prefill": 2}  # two frontends and their decode workers
    assert round_["scrape_errors"] == {"frontend": 2, "prefill": 2}
    now = datetime.now(UTC).timestamp()
    assert read_back(names.WORKER_QUEUE_DEPTH, "frontend", "Count", now) == []  # no value, not zero
    assert read_back(names.SCRAPE_ERRORS, "prefill", "Count", now) == [2.0]
    # and the four deadlines ran at once: the round took about one, not four
    assert timeout_s <= elapsed < 2 * timeout_s, elapsed


class CapturedText(FrontendMetrics):
    """Serves what a real Dynamo 1.6.1 process answered (tests/unit/signals/fixtures)."""

    def __init__(self, fixture: str) -> None:
        super().__init__()
        self.body = (FIXTURES / f"dynamo_1_6_1_{fixture}.txt").read_bytes()

    def text(self) -> bytes:
        return self.body


def test_real_dynamo_queues_publish_by_service(
    state_table: str, aws_env: MotoServer, nats: NatsServer
) -> None:
    # Given a frontend and two workers serving what real 1.6.1 processes served under load
    # (prefill the bottleneck, router queueing on; the decode worker of the decode-bound run),
    # and a NATS server no worker uses for requests (the default TCP request plane)
    config = make_config(signals={"nats_request_plane": True})
    servers = {
        name: MetricsServer(CapturedText(fixture)).start()
        for name, fixture in (
            ("frontend", "tcp_prefill_bound_frontend_loaded"),
            ("decode", "tcp_worker_decode_loaded"),
            ("prefill", "tcp_prefill_bound_worker_prefill_loaded"),
        )
    }
    try:
        clock = SimClock(NOW)
        sources: list[SignalSource] = [
            FrontendSource(config, targets=[ScrapeTarget("fe", servers["frontend"].url)]),
            WorkerSource(config, "frontend", targets=[ScrapeTarget("decode", servers["decode"].url)]),
            WorkerSource(config, "prefill", targets=[ScrapeTarget("prefill", servers["prefill"].url)]),
            NatsCoreSource(config, monitor_urls=[nats.monitor_url]),
        ]
        store = StateStore(config.state_table, config.deployment)
        # When the collector publishes one round
        summary = Collector(config, store, sources, clock=clock, sleep=clock.sleep).run()
    finally:
        for server in servers.values():
            server.stop()
    assert summary.rounds[0].status == "published"
    assert summary.rounds[0].targets == {"frontend": 2, "prefill": 1}  # the frontend and its decode worker
    # Then each queue reads back under the service it sizes
    at = clock.now
    assert read_back(names.QUEUE_DEPTH, "prefill", "Count", at) == [45.0]
    assert read_back(names.QUEUE_DEPTH, "frontend", "Count", at) == [0.0]
    assert read_back(names.QUEUE_DEPTH_TOTAL, "frontend", "Count", at) == [45.0]
    assert read_back(names.ROUTER_QUEUED_REQUESTS, "prefill", "Count", at) == [44.0]
    assert read_back(names.WORKER_QUEUE_DEPTH, "frontend", "Count", at) == [40.0]
    assert read_back(names.WORKER_QUEUE_DEPTH, "prefill", "Count", at) == [0.0]
    assert read_back(names.NATS_WORKER_SUBSCRIPTIONS, "prefill", "Count", at) == [0.0]
    assert read_back(names.NATS_WORKER_PENDING_BYTES, "frontend", "Bytes", at) == [0.0]
    # and the workers' system ports count as the services' scrape targets
    assert read_back(names.SCRAPE_TARGETS, "prefill", "Count", at) == [1.0]
    assert read_back(names.SCRAPE_ERRORS, "frontend", "Count", at) == [0.0]
