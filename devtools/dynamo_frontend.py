"""Stand-ins for Dynamo frontends' ``/metrics``: real HTTP servers serving real Prometheus text.

`FrontendMetrics` is a prometheus_client registry holding Dynamo's frontend metric names,
labels and default histogram buckets (log-spaced, two significant figures, a 0 bucket first;
TTFT 1 ms..480 s in 18, ITL 1 ms..2 s in 13, request duration 1 s..512 s in 10), in the
newer (``active_requests``, ``stage_requests{stage,phase}``) or older (``inflight_requests``,
``queued_requests``) naming. `MetricsServer` serves it on a free loopback port, or misbehaves
on purpose: HTTP 500, a body that is not Prometheus text, or an answer that never comes.
Used by the signals tests and the signals benchmark; nothing here ships in the layer.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from devtools.services import LOOPBACK

Behaviour = Literal["ok", "error500", "garbage", "hang"]
MODEL = "Qwen/Qwen3-0.6B"


def log_buckets(low: float, high: float, count: int) -> list[float]:
    """0, then ``count - 1`` log-spaced bounds from just above ``low`` up to ``high``, 2 sig. figs."""

    def two_figures(value: float) -> float:
        magnitude = math.floor(math.log10(abs(value)))
        return round(value, 1 - magnitude)

    bounds = [0.0]
    for i in range(1, count):
        value = math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (count - 1))
        bound = two_figures(value)
        if bound > bounds[-1]:
            bounds.append(bound)
    return bounds


TTFT_BUCKETS = log_buckets(0.001, 480.0, 18)
ITL_BUCKETS = log_buckets(0.001, 2.0, 13)
REQUEST_DURATION_BUCKETS = log_buckets(1.0, 512.0, 10)
# Sequence lengths in tokens, as a 1.6.1 frontend exposes them (captured fixtures).
INPUT_TOKENS_BUCKETS = [0.0, 100, 210, 430, 870, 1800, 3600, 7400, 15000, 31000, 63000, 130000]
OUTPUT_TOKENS_BUCKETS = [0.0, 100, 210, 430, 880, 1800, 3700, 7600, 16000, 32000]


class FrontendMetrics:
    """One frontend process' metrics. A new instance is a restarted process (counters at 0)."""

    def __init__(self, newer_names: bool = True) -> None:
        self.registry = CollectorRegistry()
        prefix = "dynamo_frontend"
        self.ttft = Histogram(
            f"{prefix}_time_to_first_token_seconds", "TTFT", ["model"],
            buckets=TTFT_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.itl = Histogram(
            f"{prefix}_inter_token_latency_seconds", "ITL", ["model"],
            buckets=ITL_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            f"{prefix}_request_duration_seconds", "duration", ["model"],
            buckets=REQUEST_DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.input_tokens = Histogram(
            f"{prefix}_input_sequence_tokens", "prompt length", ["model"],
            buckets=INPUT_TOKENS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.output_tokens = Histogram(
            f"{prefix}_output_sequence_tokens", "output length", ["model"],
            buckets=OUTPUT_TOKENS_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.requests = Counter(
            f"{prefix}_requests", "requests", ["model", "status", "request_type"], registry=self.registry
        )
        self.newer_names = newer_names
        if newer_names:
            self.active = Gauge(f"{prefix}_active_requests", "active", ["model"], registry=self.registry)
            self.stages = Gauge(
                f"{prefix}_stage_requests", "per stage", ["stage", "phase"], registry=self.registry
            )
        else:
            self.active = Gauge(f"{prefix}_inflight_requests", "inflight", ["model"], registry=self.registry)
            self.queued = Gauge(f"{prefix}_queued_requests", "queued", ["model"], registry=self.registry)

    def observe(
        self,
        ttft: Iterable[float] = (),
        itl: Iterable[float] = (),
        duration: Iterable[float] = (),
        requests: int = 0,
        model: str = MODEL,
        input_tokens: Iterable[int] = (),
        output_tokens: Iterable[int] = (),
    ) -> None:
        for value in ttft:
            self.ttft.labels(model).observe(value)
        for value in itl:
            self.itl.labels(model).observe(value)
        for value in duration:
            self.duration.labels(model).observe(value)
        for length in input_tokens:
            self.input_tokens.labels(model).observe(length)
        for length in output_tokens:
            self.output_tokens.labels(model).observe(length)
        if requests:
            self.requests.labels(model, "success", "stream").inc(requests)

    def set_load(self, active: float, queued_by_stage: dict[tuple[str, str], float] | None = None) -> None:
        """``queued_by_stage``: {(stage, phase): n} (newer names) or {("", ""): n} (older)."""
        self.active.labels(MODEL).set(active)
        for (stage, phase), value in (queued_by_stage or {}).items():
            if self.newer_names:
                self.stages.labels(stage, phase).set(value)
            else:
                self.queued.labels(MODEL).set(value)

    def text(self) -> bytes:
        return bytes(generate_latest(self.registry))


class MetricsServer:
    """An HTTP server on a free loopback port answering ``GET /metrics``."""

    def __init__(self, metrics: FrontendMetrics | None = None, behaviour: Behaviour = "ok") -> None:
        self.metrics = metrics or FrontendMetrics()
        self.behaviour: Behaviour = behaviour
        self.released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if server.behaviour == "hang":
                    server.released.wait(60)
                    return
                if server.behaviour == "error500":
                    self.send_error(500, "internal error")
                    return
                body = (
                    b"<html><body><h1>It works</h1></body></html>"
                    if server.behaviour == "garbage"
                    else server.metrics.text()
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def restart_process(self) -> None:
        """The frontend process restarted: every counter starts again from zero."""
        self.metrics = FrontendMetrics(self.metrics.newer_names)

    def stop(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@contextlib.contextmanager
def metrics_servers(behaviours: Iterable[Behaviour]) -> Iterator[list[MetricsServer]]:
    """Start one server per behaviour; stop them all at the end, whatever happens."""
    servers: list[MetricsServer] = []
    try:
        for behaviour in behaviours:
            servers.append(MetricsServer(behaviour=behaviour).start())
        yield servers
    finally:
        for server in servers:
            server.stop()
