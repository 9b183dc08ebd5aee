"""NATS core, when Dynamo's request plane is NATS: ``/connz?subs=detail`` -> the workers' view.

With ``--request-plane nats`` each worker subscribes to its own request subject
(``<namespace>_<component>.<endpoint>-<instance id>``, queue group ``q``; measured on 1.6.1:
``dynamo_backend.generate-<id>`` for decode, ``dynamo_prefill.generate-<id>`` for prefill)
and the frontend sends each request there with request/reply. NATS core keeps no queue: a
request is handed to the subscriber at once, or dropped when nobody listens. What the server
holds for a worker is only its connection's outbound buffer, ``pending_bytes`` (a slow
consumer's backlog, 0 in every measurement), so this source publishes per service:

- ``NatsWorkerPendingBytes``: Σ ``pending_bytes`` of the connections holding the service's
  request subscriptions (each connection once);
- ``NatsWorkerSubscriptions``: how many such subscriptions exist (the workers NATS can
  reach; 0 while the frontend still has the model registered is a broken request plane).

Work waits in the worker once delivered (its engine queue: `dynamo_ecs.signals.workers`).
In a NATS cluster each server lists only its own client connections, so views are summed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.signals.base import Datum, RoundContext, SourceReading
from dynamo_ecs.signals.http_fetch import fetch_all
from dynamo_ecs.signals.jetstream import nats_monitors

CONNZ_PATH = "/connz?subs=detail&limit=4096"


class NotConnzDocumentError(ValueError):
    """The monitor answered something that is not a ``/connz`` document."""


@dataclass
class WorkerSubscriptions:
    pending_bytes: dict[ServiceRole, float] = field(default_factory=dict)
    subscriptions: dict[ServiceRole, int] = field(default_factory=dict)

    def data(self) -> list[Datum]:
        out = []
        for role in SERVICE_ROLES:
            if role in self.subscriptions:
                out.append(Datum(names.NATS_WORKER_PENDING_BYTES, role, self.pending_bytes.get(role, 0.0)))
                out.append(Datum(names.NATS_WORKER_SUBSCRIPTIONS, role, float(self.subscriptions[role])))
        return out


def parse_connz(body: bytes | str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotConnzDocumentError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or "server_id" not in document or "connections" not in document:
        raise NotConnzDocumentError("JSON without server_id and connections: not a NATS /connz document")
    return document


def _subjects(connection: Mapping[str, Any]) -> list[str]:
    detail = connection.get("subscriptions_list_detail")
    if detail:
        return [str(sub.get("subject", "")) for sub in detail]
    return [str(subject) for subject in connection.get("subscriptions_list") or []]


def worker_subscriptions(
    documents: Iterable[Mapping[str, Any]], prefixes: Mapping[ServiceRole, str]
) -> WorkerSubscriptions:
    """Pending bytes and request subscriptions per service, over every server's connections. Pure.

    Every configured service gets a value, 0 included: an empty count is the finding.
    """
    out = WorkerSubscriptions({role: 0.0 for role in prefixes}, {role: 0 for role in prefixes})
    for document in documents:
        for connection in document.get("connections") or []:
            subjects = _subjects(connection)
            for role, prefix in prefixes.items():
                matching = sum(1 for subject in subjects if subject.startswith(prefix))
                if matching:
                    out.subscriptions[role] += matching
                    out.pending_bytes[role] += float(connection.get("pending_bytes") or 0)
    return out


class NatsCoreSource:
    """Reads ``/connz`` of the infra task's NATS (and the other cluster servers, if set)."""

    name = "nats_core"
    scrape_service: ServiceRole | None = None  # the JetStream source counts the monitors

    def __init__(
        self, config: DeploymentConfig, ecs: Any = None, monitor_urls: Sequence[str] | None = None
    ) -> None:
        self.prefixes = dict(config.signals.nats_request_subjects)
        self.infra = config.infra
        self.extra_monitors = [u.rstrip("/") for u in config.signals.nats_cluster_monitors]
        self.timeout_s = config.signals.scrape_timeout_s
        self._ecs = ecs
        self._monitor_urls = list(monitor_urls) if monitor_urls is not None else None

    def read(self, context: RoundContext, previous_state: dict[str, Any] | None) -> SourceReading:
        reading = SourceReading(self.name)
        if self._monitor_urls is not None:
            urls, problem = self._monitor_urls, None
        else:
            urls, problem = nats_monitors(self.infra, self.extra_monitors, self._ecs)
        if problem:
            reading.notes.append(problem)
            return reading  # no view of NATS: nothing rather than zero subscriptions
        documents = []
        for result in fetch_all([f"{url}{CONNZ_PATH}" for url in urls], self.timeout_s):
            if result.body is None:
                reading.notes.append(str(result.error))
                continue
            try:
                documents.append(parse_connz(result.body))
            except NotConnzDocumentError as exc:
                reading.notes.append(f"{result.url}: {exc}")
        if len(documents) < len(urls):
            # A server missing from a sum of per-server views would read as fewer workers.
            return reading
        reading.data.extend(worker_subscriptions(documents, self.prefixes).data())
        return reading
