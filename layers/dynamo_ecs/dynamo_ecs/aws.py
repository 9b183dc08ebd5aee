"""The one place AWS clients are made.

Retries are configured once here (standard mode, bounded attempts, short timeouts) so every
call in the operator behaves alike. boto3 honours ``AWS_ENDPOINT_URL`` (and per-service
``AWS_ENDPOINT_URL_<SERVICE>``), so the same code talks to moto server locally and to AWS in
production. Clients are cached per process and reused across warm invocations; boto3
clients are thread-safe, sessions are not, hence the lock around creation.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.config import Config

_LOCK = threading.Lock()
DEFAULT_MAX_ATTEMPTS = 4  # total attempts, first try included (AWS_MAX_ATTEMPTS overrides)


def retry_config(max_attempts: int | None = None) -> Config:
    from botocore.config import Config

    attempts = max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS))
    return Config(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=3,
        read_timeout=10,
        max_pool_connections=20,
    )


@cache
def _session() -> Any:
    import boto3

    return boto3.session.Session()


@cache
def _client(service: str, region: str | None, endpoint: str | None, max_attempts: int | None) -> Any:
    with _LOCK:
        return _session().client(service, region_name=region, config=retry_config(max_attempts))


def client(service: str, max_attempts: int | None = None) -> Any:
    """A cached client for ``service`` in the current region and endpoint.

    ``max_attempts=1``: no automatic retries, for calls that are not idempotent
    (RegisterTaskDefinition), whose caller checks what happened before it tries again.
    """
    return _client(service, os.environ.get("AWS_REGION"), os.environ.get("AWS_ENDPOINT_URL"), max_attempts)


def events() -> Any:
    """The session's event emitter: hooks registered here reach every client made afterwards.

    For recording and fault-injection layers (tests, benchmarks); call `reset_clients` first.
    """
    return _session().events


def reset_clients() -> None:
    """Forget cached clients and session (tests that change endpoint or credentials)."""
    _client.cache_clear()
    _session.cache_clear()
