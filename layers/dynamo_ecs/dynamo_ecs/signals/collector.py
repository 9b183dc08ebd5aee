"""One collection: read every signal source, claim the round in the state table, publish.

A collection is ``signals.samples_per_invocation`` rounds spread evenly over the minute
(one round by default; six give 10-s high-resolution metrics). Each round:

1. reads the collector record (``signals#collector``: time of the last published round and
   each source's state, e.g. the frontends' last cumulative histograms);
2. skips the round as a duplicate if the last published round is younger than half a
   sampling interval (EventBridge and Lambda may deliver the schedule twice);
3. runs the sources concurrently (frontend scrapes, the workers' system ports, GPU utilization,
   and when configured JetStream, NATS core, the infra members' etcd health); a bad target is counted in
   ``ScrapeErrors`` and never fails the round; a source that raises is logged and
   contributes nothing;
4. writes the new record compare-and-set on the version it read. Only the invocation whose
   write succeeds publishes: of two overlapping invocations exactly one publishes a round,
   and the other's window is never double counted;
5. publishes with PutMetricData.

Dry run (``dry_run``): everything but steps 4 and 5; the summary lists what would be published.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from dynamo_ecs import metric_names as names
from dynamo_ecs.clock import now as clock_now
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.observability import logger
from dynamo_ecs.signals.base import Datum, RoundContext, SignalSource, SourceReading
from dynamo_ecs.signals.breach_events import send_breach_event
from dynamo_ecs.signals.publish import publish
from dynamo_ecs.state import StaleRecordError, StateStore

STATE_RECORD = "signals#collector"
MINUTE_S = 60.0
RoundStatus = Literal["published", "dry_run", "duplicate", "lost_race"]


@dataclass
class RoundSummary:
    at: float
    status: RoundStatus
    data: list[Datum] = field(default_factory=list)
    targets: dict[str, int] = field(default_factory=dict)
    scrape_errors: dict[str, int] = field(default_factory=dict)
    failed_sources: list[str] = field(default_factory=list)
    put_calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds"),
            "status": self.status,
            "metrics": len(self.data),
            "targets": self.targets,
            "scrape_errors": self.scrape_errors,
        }
        if self.failed_sources:
            out["failed_sources"] = self.failed_sources
        if self.status == "dry_run":
            out["would_publish"] = [f"{d.metric}[{d.service}]={d.value:g}" for d in self.data]
        return out


@dataclass
class CollectionSummary:
    rounds: list[RoundSummary]
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "published_metrics": sum(len(r.data) for r in self.rounds if r.status == "published"),
            "scrape_errors": sum(sum(r.scrape_errors.values()) for r in self.rounds),
            "dry_run": self.dry_run,
            "rounds": [r.as_dict() for r in self.rounds],
        }


def scrape_health(readings: Sequence[tuple[SignalSource, SourceReading]]) -> list[Datum]:
    """ScrapeTargets and ScrapeErrors per service, summed over the sources that scrape. Pure."""
    targets: dict[ServiceRole, int] = {}
    errors: dict[ServiceRole, int] = {}
    for source, reading in readings:
        role = source.scrape_service
        if role is None:
            continue
        targets[role] = targets.get(role, 0) + reading.targets
        errors[role] = errors.get(role, 0) + reading.errors
    out = []
    for role in SERVICE_ROLES:
        if role in targets:
            out.append(Datum(names.SCRAPE_TARGETS, role, float(targets[role])))
            out.append(Datum(names.SCRAPE_ERRORS, role, float(errors[role])))
    return out


class Collector:
    def __init__(
        self,
        config: DeploymentConfig,
        store: StateStore,
        sources: Sequence[SignalSource],
        cloudwatch: Any = None,
        events: Any = None,
        read_cluster: Callable[[], Any] | None = None,
        clock: Callable[[], float] = clock_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.store = store
        self.sources = list(sources)
        self._cloudwatch = cloudwatch
        self._events = events
        self._read_cluster = read_cluster
        self.clock = clock
        self.sleep = sleep
        self.samples = config.signals.samples_per_invocation
        self.interval_s = MINUTE_S / self.samples

    @property
    def cloudwatch(self) -> Any:
        if self._cloudwatch is None:
            from dynamo_ecs import aws

            self._cloudwatch = aws.client("cloudwatch")
        return self._cloudwatch

    @property
    def events(self) -> Any:
        if self._events is None:
            from dynamo_ecs import aws

            self._events = aws.client("events")
        return self._events

    def run(self) -> CollectionSummary:
        """All rounds of one invocation, ``interval_s`` apart."""
        started = self.clock()
        cluster = self.cluster_view()
        rounds = []
        for index in range(self.samples):
            delay = started + index * self.interval_s - self.clock()
            if delay > 0:
                self.sleep(delay)
            rounds.append(self.collect_round(cluster))
        return CollectionSummary(rounds, self.config.dry_run)

    def cluster_view(self) -> Any:
        if self._read_cluster is None:
            return None
        try:
            return self._read_cluster()
        except Exception:  # the sources that need it report it; the NATS depth still counts
            logger.exception("could not read the GPU cluster's tasks")
            return None

    def _read_source(self, source: SignalSource, context: RoundContext, state: Any) -> SourceReading:
        try:
            return source.read(context, state)
        except Exception as exc:
            logger.exception("signal source failed", extra={"source": source.name})
            reading = SourceReading(source.name, notes=[f"failed: {type(exc).__name__}: {exc}"])
            reading.errors = 1 if source.scrape_service else 0
            reading.targets = reading.errors
            reading.failed = True
            return reading

    def collect_round(self, cluster: Any) -> RoundSummary:
        now = self.clock()
        record = self.store.get_record(STATE_RECORD)
        last = record.data.get("at")
        if record.version and isinstance(last, (int, float)) and 0 <= now - last < self.interval_s / 2:
            logger.info("round skipped: another invocation published it", extra={"last_round_at": last})
            return RoundSummary(now, "duplicate")

        context = RoundContext(now=now, cluster=cluster)
        states: dict[str, Any] = record.data.get("sources", {})
        with ThreadPoolExecutor(max_workers=max(1, len(self.sources)), thread_name_prefix="source") as pool:
            # Each source runs in a copy of this invocation's context (what context variables
            # the caller set, such as the tests' record of which function is calling AWS).
            futures = [
                pool.submit(
                    contextvars.copy_context().run,
                    self._read_source,
                    source,
                    context,
                    states.get(source.name),
                )
                for source in self.sources
            ]
            readings = [(source, f.result()) for source, f in zip(self.sources, futures, strict=True)]

        summary = RoundSummary(now, "dry_run" if self.config.dry_run else "published")
        for source, reading in readings:
            summary.data.extend(reading.data)
            if reading.failed:
                summary.failed_sources.append(source.name)
            if source.scrape_service:  # several sources can scrape for one service
                role = source.scrape_service
                summary.targets[role] = summary.targets.get(role, 0) + reading.targets
                summary.scrape_errors[role] = summary.scrape_errors.get(role, 0) + reading.errors
            if reading.notes:
                logger.info("signal source notes", extra={"source": source.name, "notes": reading.notes[:20]})
        summary.data.extend(scrape_health(readings))

        if self.config.dry_run:
            logger.info("dry run: nothing published, state unchanged", extra=summary.as_dict())
            return summary
        next_state = {
            "at": now,
            "sources": {
                source.name: reading.state if reading.state is not None else states.get(source.name)
                for source, reading in readings
            },
        }
        try:
            self.store.put_record(STATE_RECORD, next_state, record.version)
        except StaleRecordError:
            logger.info("round skipped: an overlapping invocation claimed it first")
            summary.status = "lost_race"
            return summary
        summary.put_calls = publish(
            self.cloudwatch,
            self.config.signals.namespace,
            summary.data,
            self.config.deployment,
            now,
            high_resolution=self.samples > 1,
        )
        if self.config.signals.breach_events:
            self._hint_scaler(summary.data, now)
        resets = [note for _, r in readings for note in r.notes if note.startswith("counter reset")]
        if resets:
            self.store.append_decision(
                "signals",
                {"event": "counter_reset", "detail": resets},
                self.config.scaling.decision_log_ttl_days,
            )
        return summary

    def _hint_scaler(self, data: list[Datum], now: float) -> None:
        """Best effort: the datapoints are published; the alarms still catch what this misses."""
        try:
            if send_breach_event(self.events, self.config, data, now):
                logger.info("breach event sent to the scaler")
        except Exception:
            logger.exception("could not send the breach event; the scaling alarms remain")


def default_collector(config: DeploymentConfig) -> Collector:
    """The production wiring: sources, state store, AWS clients from `dynamo_ecs.aws`."""
    from dynamo_ecs import aws
    from dynamo_ecs.signals.discovery import read_cluster
    from dynamo_ecs.signals.gpu import GpuUtilizationSource
    from dynamo_ecs.signals.jetstream import JetStreamSource
    from dynamo_ecs.signals.nats_core import NatsCoreSource
    from dynamo_ecs.signals.prometheus_scrape import FrontendSource
    from dynamo_ecs.signals.workers import WorkerSource

    sources: list[SignalSource] = [FrontendSource(config), GpuUtilizationSource(config)]
    if config.signals.jetstream_streams:  # only the streams the user names count
        sources.append(JetStreamSource(config))
    if config.signals.nats_request_plane:
        sources.append(NatsCoreSource(config))
    # The workers' own queues, on the system ports the stack's GPU specs bind (and its security
    # group opens to the collector); a task whose definition binds none is skipped, not waited on.
    sources.extend(WorkerSource(config, role) for role in SERVICE_ROLES)
    if config.planes.operator_secret_arn is not None and config.infra.members:
        from dynamo_ecs.signals.etcd_health import EtcdHealthSource

        sources.append(EtcdHealthSource(config))
    return Collector(
        config,
        StateStore(config.state_table, config.deployment),
        sources,
        read_cluster=lambda: read_cluster(config, aws.client("ecs"), aws.client("ec2")),
    )
