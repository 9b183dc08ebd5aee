"""etcd's own health, read by the metrics collector with the operator's identity (Service=infra).

ECS knows that a member's task runs, not that its etcd serves: a member without a leader, or
a cluster made read-only by etcd's NOSPACE alarm, leaves every task RUNNING. With the planes
on (the three-member tier) the collector reads each member's ``/health`` and ``/metrics``
over mutual TLS as the ``operator`` (the planes' secret ``<deployment>/planes/operator``; its
etcd role has no key permission: docs/security-planes.md). Plain HTTPS and no gRPC client:
etcd's JSON gateway refuses every request that carries a client certificate (HTTP 400,
measured on 3.5), while ``/health`` and ``/metrics`` answer it.

Per round (`tier_data`, pure):

- ``EtcdMembersHealthy``: the members whose ``/health`` says ``true`` and whose
  ``etcd_server_has_leader`` is 1 (an alarm makes ``/health`` false: with NOSPACE raised,
  503 ``{"health":"false","reason":"ALARM NOSPACE"}``, measured on 3.5.1). A member that
  does not answer either document, refuses the identity, or answers something else is not
  healthy; the round goes on without it;
- ``EtcdDatabaseSize``: the largest ``etcd_mvcc_db_total_size_in_bytes`` of the members
  that answered ``/metrics``;
- ``EtcdDatabaseQuotaUsed``: the largest size over ``etcd_server_quota_backend_bytes`` of
  the same member, in percent (etcd 3.5 reports its default, 2 GiB: ``2.147483648e+09``,
  measured). At the quota etcd raises NOSPACE and takes only reads and deletes.

No member answering ``/metrics``: no database datum (missing, not zero).

The identity (`OperatorIdentity`): ``ssl.SSLContext.load_cert_chain`` takes paths, so the
certificate and key are written into a private temporary directory (0700, files 0600),
loaded, and deleted at once; the context, not the PEM text, is kept per container for
`SECRET_CACHE_S`. A TLS failure at any member (a rotation's ``retire`` makes an old client
certificate useless; a new CA makes the members' certificates unverifiable with an old
bundle) reads the secret again, once per round, and reads those members again. Nothing of
the secret reaches a log: only URLs and the TLS library's reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.signals.base import Datum, MetricService, RoundContext, SourceReading
from dynamo_ecs.signals.http_fetch import FetchResult, fetch_all

SECRET_CACHE_S = 300.0
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
HAS_LEADER = "etcd_server_has_leader"
IS_LEADER = "etcd_server_is_leader"
DB_SIZE = "etcd_mvcc_db_total_size_in_bytes"
QUOTA = "etcd_server_quota_backend_bytes"
_GAUGES = frozenset({HAS_LEADER, IS_LEADER, DB_SIZE, QUOTA})
SECRET_FIELDS = ("ca_bundle", "client_cert", "client_key")


class NotEtcdHealthError(ValueError):
    """An answer that is not etcd's ``/health`` document."""


def parse_health(body: bytes | str) -> tuple[bool, str]:
    """(health is true, etcd's reason) from a ``/health`` body. Pure."""
    try:
        document = json.loads(body)
    except ValueError:
        raise NotEtcdHealthError("not JSON") from None
    if not isinstance(document, dict) or "health" not in document:
        raise NotEtcdHealthError("no 'health' field")
    value = document["health"]
    return value is True or value == "true", str(document.get("reason") or "")


def parse_metrics(body: bytes | str) -> dict[str, float]:
    """etcd's leader and database gauges from a ``/metrics`` body (Prometheus text). Pure.

    Only the unlabelled gauges `_GAUGES`; a line that does not parse is skipped (the body
    is 170 kB of other families, measured on 3.5.1).
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("etcd_"):
            continue
        words = line.split()
        if len(words) >= 2 and words[0] in _GAUGES:
            try:
                found[words[0]] = float(words[1])
            except ValueError:
                continue
    return found


@dataclass(frozen=True)
class MemberHealth:
    """One member as one round saw it; ``problem`` says why it does not count as healthy."""

    name: str
    health: bool = False
    reason: str = ""
    has_leader: bool | None = None
    is_leader: bool | None = None
    db_size_bytes: float | None = None
    quota_bytes: float | None = None
    problem: str | None = None

    @property
    def healthy(self) -> bool:
        return self.problem is None

    @property
    def quota_used_pct(self) -> float | None:
        if self.db_size_bytes is None or not self.quota_bytes:
            return None
        return 100.0 * self.db_size_bytes / self.quota_bytes


def member_health(
    name: str, health_body: bytes | None, metrics_body: bytes | None, errors: Sequence[str] = ()
) -> MemberHealth:
    """A member from its two answers (None: not answered, with ``errors`` saying why). Pure."""
    problems = list(errors)
    health, reason = False, ""
    if health_body is not None:
        try:
            health, reason = parse_health(health_body)
        except NotEtcdHealthError as exc:
            problems.append(f"/health: {exc}")
        else:
            if not health:
                problems.append(f"/health false{': ' + reason if reason else ''}")
    gauges = parse_metrics(metrics_body) if metrics_body is not None else {}
    has_leader = gauges[HAS_LEADER] == 1 if HAS_LEADER in gauges else None
    if metrics_body is not None and has_leader is None:
        problems.append(f"/metrics: no {HAS_LEADER}")
    elif has_leader is False:
        problems.append("no leader")
    if not problems and not (health and has_leader):
        problems.append("not answered")
    return MemberHealth(
        name=name,
        health=health,
        reason=reason,
        has_leader=has_leader,
        is_leader=gauges[IS_LEADER] == 1 if IS_LEADER in gauges else None,
        db_size_bytes=gauges.get(DB_SIZE),
        quota_bytes=gauges.get(QUOTA),
        problem="; ".join(problems) or None,
    )


def tier_data(members: Sequence[MemberHealth]) -> list[Datum]:
    """The round's datums for the infra tier. Pure."""
    infra: MetricService = names.SERVICE_INFRA
    data = [Datum(names.ETCD_MEMBERS_HEALTHY, infra, float(sum(m.healthy for m in members)))]
    sized = [m for m in members if m.db_size_bytes is not None]
    if sized:
        largest = max(sized, key=lambda m: m.db_size_bytes or 0.0)
        data.append(Datum(names.ETCD_DATABASE_SIZE, infra, float(largest.db_size_bytes or 0.0)))
        used = [pct for m in sized if (pct := m.quota_used_pct) is not None]
        if used:
            data.append(Datum(names.ETCD_DATABASE_QUOTA_USED, infra, max(used)))
    return data


# --- the operator's identity --------------------------------------------------------------------


@contextlib.contextmanager
def private_files(contents: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """``contents`` as files (0600) in a new directory only this process's user can open
    (0700); the directory and its files are deleted on the way out, whatever happens."""
    directory = tempfile.mkdtemp(prefix="planes-")
    try:
        paths = {}
        for name, text in contents.items():
            path = str(Path(directory) / name)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
            paths[name] = path
        yield paths
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def client_context(payload: Mapping[str, Any], secret: str) -> ssl.SSLContext:
    """A TLS client context that trusts the payload's CA bundle and presents its certificate."""
    missing = [key for key in SECRET_FIELDS if not isinstance(payload.get(key), str) or not payload[key]]
    if missing:
        raise InvalidInputError(
            f"secret {secret} lacks {', '.join(missing)}: it is not the operator's plane secret "
            "(docs/security-planes.md); delete it and deploy again to make it"
        )
    try:
        context = ssl.create_default_context(cadata=payload["ca_bundle"])
        with private_files(
            {"client.pem": payload["client_cert"], "client-key.pem": payload["client_key"]}
        ) as paths:
            context.load_cert_chain(paths["client.pem"], paths["client-key.pem"])
    except ssl.SSLError as exc:
        raise InvalidInputError(
            f"secret {secret}: its certificates do not load ({exc.reason or type(exc).__name__}); "
            "delete it and deploy again to make it"
        ) from None
    return context


@dataclass
class _Cached:
    context: ssl.SSLContext
    read_at: float


_CACHE: dict[str, _Cached] = {}
_CACHE_LOCK = threading.Lock()


def forget_cached_identities() -> None:
    """A cold start: every cached identity is read again (tests)."""
    with _CACHE_LOCK:
        _CACHE.clear()


class OperatorIdentity:
    """The operator's client context from its secret, cached per container for ``ttl_s``."""

    def __init__(
        self,
        secret_arn: str,
        secrets: Any = None,
        ttl_s: float = SECRET_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secret_arn = secret_arn
        self._secrets = secrets
        self.ttl_s = ttl_s
        self.clock = clock

    @property
    def secrets(self) -> Any:
        if self._secrets is None:
            from dynamo_ecs import aws

            self._secrets = aws.client("secretsmanager")
        return self._secrets

    def context(self, fresh: bool = False) -> tuple[ssl.SSLContext, bool]:
        """(the context, whether the secret was read for it now rather than taken from the cache)."""
        now = self.clock()
        with _CACHE_LOCK:
            cached = _CACHE.get(self.secret_arn)
            if not fresh and cached is not None and 0 <= now - cached.read_at < self.ttl_s:
                return cached.context, False
        answer = self.secrets.get_secret_value(SecretId=self.secret_arn)
        try:
            payload = json.loads(answer["SecretString"])
        except (KeyError, TypeError, ValueError):
            payload = None
        if not isinstance(payload, dict):
            raise InvalidInputError(
                f"secret {self.secret_arn} is not JSON: it is not the operator's plane secret; "
                "delete it and deploy again to make it"
            )
        context = client_context(payload, self.secret_arn)
        with _CACHE_LOCK:
            _CACHE[self.secret_arn] = _Cached(context, now)
        return context, True


# --- the source ---------------------------------------------------------------------------------


def _answers(
    results: Sequence[FetchResult], name: str, port: int
) -> tuple[bytes | None, bytes | None, list[str]]:
    by_url = {r.url: r for r in results}
    health = by_url[f"https://{name}:{port}{HEALTH_PATH}"]
    metrics = by_url[f"https://{name}:{port}{METRICS_PATH}"]
    errors = [str(r.error) for r in (health, metrics) if r.error is not None]
    return health.body, metrics.body, errors


def _tls_refused(results: Sequence[FetchResult]) -> bool:
    return any(r.error is not None and r.error.kind == "tls" for r in results)


class EtcdHealthSource:
    """Each infra member's etcd ``/health`` and ``/metrics``, as the operator (mutual TLS)."""

    name = "etcd_health"
    scrape_service: ServiceRole | None = None  # the tier's own metric says how many answered

    def __init__(self, config: DeploymentConfig, identity: OperatorIdentity | None = None) -> None:
        if not config.infra.members or config.planes.operator_secret_arn is None:
            raise InvalidInputError(
                "etcd health needs the members' names and the operator's plane secret: set "
                "DYNAMO_ECS_INFRA__MEMBERS and DYNAMO_ECS_PLANES__OPERATOR_SECRET_ARN"
            )
        self.members = list(config.infra.members)
        self.port = config.infra.etcd_port
        self.timeout_s = config.signals.scrape_timeout_s
        self.identity = identity or OperatorIdentity(config.planes.operator_secret_arn)

    def _fetch(self, tls: ssl.SSLContext, members: Sequence[str]) -> dict[str, list[FetchResult]]:
        urls = [f"https://{m}:{self.port}{path}" for m in members for path in (HEALTH_PATH, METRICS_PATH)]
        # etcd answers an unhealthy /health with 503 and the reason in its body (measured:
        # {"health":"false","reason":"ALARM NOSPACE"}): read it. A 503 /metrics is no
        # Prometheus text and counts as not healthy as well.
        results = fetch_all(urls, self.timeout_s, ssl_context=tls, ok_statuses=(200, 503))
        return {m: results[2 * k : 2 * k + 2] for k, m in enumerate(members)}

    def read(self, context: RoundContext, previous_state: dict[str, Any] | None) -> SourceReading:
        notes: list[str] = []
        tls, fresh = self.identity.context()
        results = self._fetch(tls, self.members)
        refused = [m for m in self.members if _tls_refused(results[m])]
        if refused and not fresh:
            # A rotation may have replaced what the cached identity holds: read it once more.
            notes.append(f"TLS failed with the cached identity at {', '.join(refused)}: secret read again")
            tls, _ = self.identity.context(fresh=True)
            results.update(self._fetch(tls, refused))
        members = [member_health(m, *_answers(results[m], m, self.port)) for m in self.members]
        for member in members:
            if member.problem:
                notes.append(f"{member.name}: not healthy: {member.problem}")
        answered = sum(1 for m in self.members if all(r.ok for r in results[m]))
        return SourceReading(
            self.name,
            data=tier_data(members),
            targets=len(self.members),
            errors=len(self.members) - answered,
            notes=notes,
        )
