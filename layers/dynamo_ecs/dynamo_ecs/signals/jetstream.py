"""NATS JetStream depth: ``/jsz?consumers=true&config=true`` documents -> lag, waiting, redelivered.

Only the streams the user names count (``signals.jetstream_streams``: their own pipelines,
or a Dynamo release that still used JetStream for work; docs/signals.md says per release
line what this signal means). With none named the source is not built: a 1.6.1 deployment
has 0 streams (measured), and counting every stream would count other people's backlogs.

Only live consumers count. A consumer is live while a client is waiting on it (pull
requests outstanding, ``num_waiting`` > 0, or a bound push subscriber) or while its last
activity (delivery or acknowledgement; creation) is within its inactive threshold (its own
``config.inactive_threshold``, else ``signals.jetstream_inactive_after_s``). A consumer past
it whose backlog is not empty is reported (``JetStreamInactiveConsumers``, and by name in
the notes), not counted: the durable KV-event consumers of a router that went away keep
pending messages for as long as the server keeps them, and would scale prefill out for
nothing.

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
from datetime import datetime
from typing import Any

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, InfraConfig, ServiceRole
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
    def empty(self) -> bool:
        return not self.streams and not self.consumers

    def selects(self, stream: str, consumer: str) -> bool:
        return stream in self.streams or (stream, consumer) in self.consumers


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
    idle_s: float | None = None  # since its last activity; None: the document does not say
    live: bool = True

    @property
    def lag(self) -> int:
        return self.num_pending + self.num_ack_pending

    @property
    def label(self) -> str:
        return f"{self.stream}/{self.consumer}"


@dataclass
class JetStreamDepth:
    consumers: list[ConsumerDepth] = field(default_factory=list)

    @property
    def counted(self) -> list[ConsumerDepth]:
        return [c for c in self.consumers if c.live]

    @property
    def lag(self) -> int:
        return sum(c.lag for c in self.counted)

    @property
    def waiting(self) -> int:
        return sum(c.num_waiting for c in self.counted)

    @property
    def redelivered(self) -> int:
        return sum(c.num_redelivered for c in self.counted)

    @property
    def inactive(self) -> list[ConsumerDepth]:
        """Consumers past their inactive threshold that still hold a backlog: reported only."""
        return [c for c in self.consumers if not c.live and c.lag > 0]

    @property
    def not_from_leader(self) -> list[str]:
        return [c.label for c in self.consumers if not c.from_leader]

    def data(self) -> list[Datum]:
        """The contract's JetStream metrics, published with Service=prefill."""
        return [
            Datum(names.JETSTREAM_LAG, "prefill", float(self.lag)),
            Datum(names.JETSTREAM_WAITING, "prefill", float(self.waiting)),
            Datum(names.JETSTREAM_REDELIVERED, "prefill", float(self.redelivered)),
            Datum(names.JETSTREAM_INACTIVE_CONSUMERS, "prefill", float(len(self.inactive))),
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


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or value.startswith("0001-"):  # Go's zero time: never
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def consumer_idle_s(consumer: dict[str, Any], document_now: Any = None) -> float | None:
    """Seconds since the consumer's last delivery, acknowledgement or creation, at the view's time."""
    now = _time(consumer.get("ts")) or _time(document_now)
    moments = [
        _time((consumer.get("delivered") or {}).get("last_active")),
        _time((consumer.get("ack_floor") or {}).get("last_active")),
        _time(consumer.get("created")),
    ]
    latest = max((m for m in moments if m is not None), default=None)
    if now is None or latest is None:
        return None
    return max((now - latest).total_seconds(), 0.0)


def consumer_is_live(consumer: dict[str, Any], idle_s: float | None, inactive_after_s: float) -> bool:
    """A client waits on it, or its last activity is within its inactive threshold."""
    if int(consumer.get("num_waiting") or 0) > 0 or consumer.get("push_bound"):
        return True
    if idle_s is None:
        return True  # nothing says it is gone: count it
    own_ns = (consumer.get("config") or {}).get("inactive_threshold")
    threshold = own_ns / 1e9 if isinstance(own_ns, (int, float)) and own_ns > 0 else inactive_after_s
    return idle_s <= threshold


def jetstream_depth(
    documents: Iterable[dict[str, Any]], selection: StreamSelection, inactive_after_s: float = 300.0
) -> JetStreamDepth:
    """Lag, waiting and redelivered over the selected live consumers, each counted once. Pure."""
    views: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for document in documents:
        for account in document.get("account_details") or []:
            account_name = str(account.get("name") or account.get("id") or "")
            for stream in account.get("stream_detail") or []:
                stream_name = str(stream.get("name", ""))
                for consumer in stream.get("consumer_detail") or []:
                    consumer_name = str(consumer.get("name", ""))
                    if selection.selects(stream_name, consumer_name):
                        view = {**consumer, "_document_now": document.get("now")}
                        views.setdefault((account_name, stream_name, consumer_name), []).append(view)
    depth = JetStreamDepth()
    for (account_name, stream_name, consumer_name), candidates in sorted(views.items()):
        leaders = [view for view in candidates if _is_leader_view(view)]
        chosen = leaders[0] if leaders else max(candidates, key=_delivered_seq)
        idle_s = consumer_idle_s(chosen, chosen.get("_document_now"))
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
                idle_s=idle_s,
                live=consumer_is_live(chosen, idle_s, inactive_after_s),
            )
        )
    return depth


# -- the source --------------------------------------------------------------------------------


def nats_monitors(infra: InfraConfig, extra: Sequence[str], ecs: Any = None) -> tuple[list[str], str | None]:
    """The infra task's NATS monitor, then the other cluster servers', and why the first is missing.

    The three-member tier: every member's monitor under its name (a sum over the cluster's
    servers needs each of them), then any others configured.
    """
    from dynamo_ecs import aws
    from dynamo_ecs.infra import find_infra_endpoint

    if infra.members:
        members = [f"http://{name}:{infra.nats_monitor_port}" for name in infra.members]
        return [*members, *(u for u in extra if u not in members)], None
    selection = find_infra_endpoint(infra, ecs or aws.client("ecs"))
    urls = list(extra)
    if selection.endpoint is not None:
        urls.insert(0, selection.endpoint.nats_monitor_url)
        return urls, None
    return urls, f"no NATS monitor: {selection.reason}"


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
        self.inactive_after_s = float(config.signals.jetstream_inactive_after_s)
        self.infra = config.infra
        self.extra_monitors = [u.rstrip("/") for u in config.signals.nats_cluster_monitors]
        self.timeout_s = config.signals.scrape_timeout_s
        self._ecs = ecs
        self._monitor_urls = list(monitor_urls) if monitor_urls is not None else None

    def monitors(self) -> tuple[list[str], str | None]:
        """Monitor base URLs to read, and why there are none when the infra task is missing."""
        if self._monitor_urls is not None:
            return self._monitor_urls, None
        return nats_monitors(self.infra, self.extra_monitors, self._ecs)

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
        for result in fetch_all([f"{url}/jsz?consumers=true&config=true" for url in urls], self.timeout_s):
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
        depth = jetstream_depth(documents, self.selection, self.inactive_after_s)
        if depth.not_from_leader:
            reading.notes.append(f"no reachable leader for {', '.join(depth.not_from_leader)}")
        for consumer in depth.inactive:
            reading.notes.append(
                f"inactive consumer {consumer.label}: {consumer.lag} messages not counted, "
                f"no activity for {consumer.idle_s or 0:.0f} s"
            )
        reading.data.extend(depth.data())
        return reading
