"""A simulated Dynamo frontend: an HTTP server on loopback that serves Dynamo's metric names.

It exposes ``/metrics`` (Prometheus text from a real ``prometheus_client`` registry),
``/live`` and ``/health`` like the real frontend. A load model feeds it: each `observe`
call records requests with their time to first token and inter-token latency, and sets the
queued and active gauges, so the metrics collector scrapes exactly what it would scrape
from a real frontend.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from devtools.services import LOOPBACK

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.075, 0.1, 0.15, 0.2, 0.5, 1.0)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


class FrontendMetrics:
    """Dynamo's frontend metric family names (FACTS.md §2), newer gauge names."""

    def __init__(self, model: str = "Qwen/Qwen3-0.6B") -> None:
        self.registry = CollectorRegistry()
        self.model = model
        labels = ["model"]
        self.requests = Counter(
            "dynamo_frontend_requests",
            "Requests served",
            ["model", "status", "request_type"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "dynamo_frontend_time_to_first_token_seconds",
            "Time to first token",
            labels,
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.itl = Histogram(
            "dynamo_frontend_inter_token_latency_seconds",
            "Inter-token latency",
            labels,
            buckets=ITL_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "dynamo_frontend_request_duration_seconds",
            "Request duration",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.active = Gauge("dynamo_frontend_active_requests", "Active requests", labels, registry=self.registry)
        self.queued = Gauge("dynamo_frontend_queued_requests", "Queued requests", labels, registry=self.registry)

    def observe(self, requests: int, ttft_s: float, itl_s: float, output_tokens: int, queued: float) -> None:
        for _ in range(requests):
            self.requests.labels(self.model, "success", "stream").inc()
            self.ttft.labels(self.model).observe(ttft_s)
            self.itl.labels(self.model).observe(itl_s)
            self.duration.labels(self.model).observe(ttft_s + itl_s * output_tokens)
        self.queued.labels(self.model).set(queued)
        self.active.labels(self.model).set(requests)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


class SimulatedFrontend:
    """One frontend task: its metrics and an HTTP server on a free loopback port."""

    def __init__(self, model: str = "Qwen/Qwen3-0.6B") -> None:
        self.metrics = FrontendMetrics(model)
        metrics = self.metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, status, kind = metrics.exposition(), 200, "text/plain; version=0.0.4"
                elif self.path in ("/live", "/health"):
                    body, status, kind = b'{"status":"healthy"}', 200, "application/json"
                else:
                    body, status, kind = b"not found", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
