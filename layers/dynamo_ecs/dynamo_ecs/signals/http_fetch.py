"""Bounded HTTP GETs for scrapes: a hard per-target deadline, a size cap, no redirects.

``http.client`` rather than urllib: no proxy variables, no redirect following, and the
socket timeout can be re-armed with what is left of the deadline before every read, so a
server that trickles bytes cannot hold a scrape longer than the deadline.

``https://`` URLs are read only with a TLS context (`ssl_context`, e.g. a client identity for
etcd's mutual TLS); a failed handshake or certificate check is the failure kind ``tls``.
"""

from __future__ import annotations

import http.client
import ssl
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

MAX_BODY_BYTES = 8 * 1024 * 1024
_CHUNK = 64 * 1024
FailureKind = Literal["timeout", "refused", "http_status", "too_large", "bad_url", "tls", "error"]


class FetchError(Exception):
    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class FetchResult:
    url: str
    body: bytes | None
    error: FetchError | None
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


def http_get(
    url: str,
    timeout_s: float,
    max_bytes: int = MAX_BODY_BYTES,
    ssl_context: ssl.SSLContext | None = None,
    ok_statuses: tuple[int, ...] = (200,),
) -> bytes:
    """The body of a 200 answer (or another of ``ok_statuses``) to GET ``url`` within
    ``timeout_s`` in all, or `FetchError`."""
    parts = urlsplit(url)
    wanted = "https" if ssl_context is not None else "http"
    if parts.scheme != wanted or not parts.hostname:
        raise FetchError("bad_url", f"{url}: only {wanted}://host:port/path URLs are read here")
    deadline = time.monotonic() + timeout_s

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError("timeout", f"{url}: no complete answer within {timeout_s:g} s")
        return left

    connection: http.client.HTTPConnection
    if ssl_context is not None:
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, timeout=remaining(), context=ssl_context
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=remaining())
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        connection.request("GET", path, headers={"Accept": "text/plain, application/json"})
        if connection.sock is not None:
            connection.sock.settimeout(remaining())
        response = connection.getresponse()
        if response.status not in ok_statuses:
            raise FetchError("http_status", f"{url}: HTTP {response.status}")
        chunks: list[bytes] = []
        size = 0
        while True:
            if connection.sock is not None:
                connection.sock.settimeout(remaining())
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise FetchError("too_large", f"{url}: body larger than {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except FetchError:
        raise
    except ConnectionRefusedError as exc:
        raise FetchError("refused", f"{url}: connection refused") from exc
    except TimeoutError as exc:
        raise FetchError("timeout", f"{url}: no complete answer within {timeout_s:g} s") from exc
    except ssl.SSLError as exc:  # handshake refused, certificate not trusted or not for this name
        raise FetchError("tls", f"{url}: TLS: {exc.reason or exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError("error", f"{url}: {type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()


def _timed_get(
    url: str, timeout_s: float, ssl_context: ssl.SSLContext | None, ok_statuses: tuple[int, ...]
) -> FetchResult:
    started = time.monotonic()
    try:
        body = http_get(url, timeout_s, ssl_context=ssl_context, ok_statuses=ok_statuses)
    except FetchError as exc:
        return FetchResult(url, None, exc, time.monotonic() - started)
    return FetchResult(url, body, None, time.monotonic() - started)


def fetch_all(
    urls: list[str],
    timeout_s: float,
    max_workers: int = 64,
    ssl_context: ssl.SSLContext | None = None,
    ok_statuses: tuple[int, ...] = (200,),
) -> list[FetchResult]:
    """GET every URL concurrently; one result per URL, in order. Never raises for a target.

    Each GET has its own deadline. With more URLs than workers the last ones start late, so
    the whole call is also bounded: anything unfinished after ``waves x timeout + 1 s``
    counts as a timeout (its thread ends on its own deadline soon after).
    """
    if not urls:
        return []
    workers = max(1, min(max_workers, len(urls)))
    waves = -(-len(urls) // workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrape")
    try:
        futures = [pool.submit(_timed_get, url, timeout_s, ssl_context, ok_statuses) for url in urls]
        wait(futures, timeout=waves * timeout_s + 1.0)
        results = []
        for url, future in zip(urls, futures, strict=True):
            if future.done():
                results.append(future.result())
            else:
                future.cancel()
                error = FetchError("timeout", f"{url}: no complete answer within {timeout_s:g} s")
                results.append(FetchResult(url, None, error, waves * timeout_s))
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
