"""NATS JetStream depth: ``/jsz?consumers=true`` documents -> lag, waiting, redelivered.

Lag counts what a consumer still has to finish, as KEDA's JetStream scaler does:
``num_pending`` (not yet delivered) + ``num_ack_pending`` (delivered, not yet acknowledged;
counting only ``num_pending`` would scale in with work still in flight). ``num_waiting``
(pull requests waiting for messages) and ``num_redelivered`` (pending messages delivered
more than once) are gauges too. All three are summed over the selected consumers.

In a NATS cluster every server that holds a replica of a consumer reports it, and only the
consumer leader's numbers are current (a follower showed ``num_pending`` 0 while its leader
showed 2 in our measurements). Each consumer is therefore counted once, from the leader's
view: the view whose ``cluster.leader`` is not among its own ``cluster.replicas`` (a server
lists its peers, never itself). A standalone server's consumers carry no ``cluster.leader``:
its view is the only one. When no reachable server leads a consumer, the freshest follower
view (highest delivered stream sequence) is used and the consumer is reported as such.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.signals.base import Datum, RoundContext, SourceReading
from dynamo_ecs.signals.http_fetch import fetch_all


class NotJszDocumentError(ValueError):
    """The monitor answered something that is not a ``/jsz`` document."""


@dataclass(frozen=True)
class StreamSelection:
    """Which consumers count: ``STREAM`` takes all its consumers, ``STREAM/CONSUMER`` one."""

    streams: frozenset[str] = frozenset()
    consumers: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def parse(cls, selectors: Sequence[str]) -> StreamSelection:
        streams, consumers = set(), set()
        for selector in selectors:
            stream, _, consumer = selector.partition("/")
            if not stream or "/" in consumer:
                raise ValueError(f"JetStream selector {selector!r}: use STREAM or STREAM/CONSUMER")
            if consumer:
                consumers.add((stream, consumer))
            else:
                streams.add(stream)
        return cls(frozenset(streams), frozenset(consumers))

    @property
    def everything(self) -> bool:
        return not self.streams and not self.consumers

    def selects(self, stream: str, consumer: str) -> bool:
        return self.everything or stream in self.streams or (stream, consumer) in self.consumers


@dataclass(frozen=True)
class ConsumerDepth:
    account: str
    stream: str
    consumer: str
    num_pending: int
    num_ack_pending: int
    num_waiting: int
    num_redelivered: int
    from_leader: bool

    @property
    def lag(self) -> int:
        return self.num_pending + self.num_ack_pending


@dataclass
class JetStreamDepth:
    consumers: list[ConsumerDepth] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(c.lag for c in self.consumers)

    @property
    def waiting(self) -> int:
        return sum(c.num_waiting for c in self.consumers)

    @property
    def redelivered(self) -> int:
        return sum(c.num_redelivered for c in self.consumers)

    @property
    def not_from_leader(self) -> list[str]:
        return [f"{c.stream}/{c.consumer}" for c in self.consumers if not c.from_leader]

    def data(self) -> list[Datum]:
        """The contract's JetStream metrics, published with Service=prefill."""
        return [
            Datum(names.JETSTREAM_LAG, "prefill", float(self.lag)),
            Datum(names.JETSTREAM_WAITING, "prefill", float(self.waiting)),
            Datum(names.JETSTREAM_REDELIVERED, "prefill", float(self.redelivered)),
        ]


def parse_jsz(body: bytes | str) -> dict[str, Any]:
    """Decode a ``/jsz`` answer; `NotJszDocumentError` if it is not one."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotJszDocumentError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or "server_id" not in document:
        raise NotJszDocumentError("JSON without server_id: not a NATS /jsz document")
    return document


def _is_leader_view(consumer: dict[str, Any]) -> bool:
    cluster = consumer.get("cluster") or {}
    leader = cluster.get("leader")
    if not leader:
        return not cluster.get("replicas")  # standalone: the only view there is
    peers = {replica.get("name") for replica in cluster.get("replicas") or []}
    return leader not in peers


def _delivered_seq(consumer: dict[str, Any]) -> int:
    return int((consumer.get("delivered") or {}).get("stream_seq") or 0)


def jetstream_depth(documents: Iterable[dict[str, Any]], selection: StreamSelection) -> JetStreamDepth:
    """Lag, waiting and redelivered over the selected consumers, each counted once. Pure."""
    views: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for document in documents:
        for account in document.get("account_details") or []:
            account_name = str(account.get("name") or account.get("id") or "")
            for stream in account.get("stream_detail") or []:
                stream_name = str(stream.get("name", ""))
                for consumer in stream.get("consumer_detail") or []:
                    consumer_name = str(consumer.get("name", ""))
                    if selection.selects(stream_name, consumer_name):
                        views.setdefault((account_name, stream_name, consumer_name), []).append(consumer)
    depth = JetStreamDepth()
    for (account_name, stream_name, consumer_name), candidates in sorted(views.items()):
        leaders = [view for view in candidates if _is_leader_view(view)]
        chosen = leaders[0] if leaders else max(candidates, key=_delivered_seq)
        depth.consumers.append(
            ConsumerDepth(
                account=account_name,
                stream=stream_name,
                consumer=consumer_name,
                num_pending=int(chosen.get("num_pending") or 0),
                num_ack_pending=int(chosen.get("num_ack_pending") or 0),
                num_waiting=int(chosen.get("num_waiting") or 0),
                num_redelivered=int(chosen.get("num_redelivered") or 0),
                from_leader=bool(leaders),
            )
        )
    return depth


# -- the source --------------------------------------------------------------------------------


class JetStreamSource:
    """Reads the NATS monitor of the infra task (and of the other cluster servers, if set).

    ``monitor_urls`` overrides where the monitors are (tests, or a NATS outside the stack);
    by default the infra task is found with `dynamo_ecs.infra.find_infra_endpoint`.
    """

    name = "jetstream"
    scrape_service: ServiceRole | None = "prefill"

    def __init__(
        self, config: DeploymentConfig, ecs: Any = None, monitor_urls: Sequence[str] | None = None
    ) -> None:
        self.selection = StreamSelection.parse(config.signals.jetstream_streams)
        self.infra = config.infra
        self.extra_monitors = [u.rstrip("/") for u in config.signals.nats_cluster_monitors]
        self.timeout_s = config.signals.scrape_timeout_s
        self._ecs = ecs
        self._monitor_urls = list(monitor_urls) if monitor_urls is not None else None

    def monitors(self) -> tuple[list[str], str | None]:
        """Monitor base URLs to read, and why there are none when the infra task is missing."""
        if self._monitor_urls is not None:
            return self._monitor_urls, None
        from dynamo_ecs import aws
        from dynamo_ecs.infra import find_infra_endpoint

        selection = find_infra_endpoint(self.infra, self._ecs or aws.client("ecs"))
        urls = list(self.extra_monitors)
        if selection.endpoint is not None:
            urls.insert(0, selection.endpoint.nats_monitor_url)
            return urls, None
        return urls, f"no NATS monitor: {selection.reason}"

    def read(self, context: RoundContext, previous_state: dict[str, Any] | None) -> SourceReading:
        reading = SourceReading(self.name)
        urls, problem = self.monitors()
        if problem:  # the infra task's monitor is a target that could not be read
            reading.notes.append(problem)
            reading.targets, reading.errors = 1, 1
        if not urls:
            return reading
        reading.targets += len(urls)
        documents = []
        for result in fetch_all([f"{url}/jsz?consumers=true" for url in urls], self.timeout_s):
            if result.body is None:
                reading.errors += 1
                reading.notes.append(str(result.error))
                continue
            try:
                documents.append(parse_jsz(result.body))
            except NotJszDocumentError as exc:
                reading.errors += 1
                reading.notes.append(f"{result.url}: {exc}")
        if not documents:
            return reading  # no monitor answered: no depth, rather than a depth of zero
        depth = jetstream_depth(documents, self.selection)
        if depth.not_from_leader:
            reading.notes.append(f"no reachable leader for {', '.join(depth.not_from_leader)}")
        reading.data.extend(depth.data())
        return reading
