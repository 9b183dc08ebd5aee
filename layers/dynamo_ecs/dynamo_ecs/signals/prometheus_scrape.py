"""Dynamo frontend ``/metrics``: Prometheus text -> a per-target sample -> window figures.

Both steps are pure. Parsing uses prometheus_client's text parser (imported when first
needed, to keep it off the cold-start path). Samples are matched by their sample names
(``<name>_bucket`` / ``_count`` / ``_sum``, ``<name>_total``), so a body without ``# TYPE``
lines parses the same. Label sets (model, status, request type ...) are summed per target.

Gauges and counters, older and newer Dynamo names (FACTS.md §2, §3; measured on a real 1.6.1
frontend, tests/unit/signals/fixtures):

- queue depth as Dynamo defines it: ``dynamo_frontend_stage_requests{stage,phase}`` summed over
  `QUEUE_STAGES` (preprocess, route, dispatch). ``dispatch`` holds a request until the
  worker's first response, so it includes the engine's own queue and the prefill itself.
  ``phase="prefill"`` is the prefill side (published with Service=prefill); everything else
  (preprocess has ``phase=""``; decode, aggregated) is the frontend's side. Older releases
  without the stage gauge: ``dynamo_frontend_queued_requests`` (until the first token, not
  split by phase) is the frontend's side;
- the KV router's queue: ``dynamo_frontend_router_queue_pending_requests{worker_type}``, a
  part of the ``route`` stage (0 unless router queueing is on, ``--router-queue-threshold``);
- active: ``dynamo_frontend_active_requests`` (newer) else ``dynamo_frontend_inflight_requests``;
- request rate: ``dynamo_frontend_requests_started_total`` (arrivals), else (older)
  ``dynamo_frontend_requests_total`` (completions);
- refused for lack of a worker: ``dynamo_frontend_failures_total{class="Unavailable"}``. A
  disaggregated 1.6.1 frontend with no prefill worker answers 503 at once (``model_ready``
  0): such requests never reach a stage gauge, so this rate is what wakes prefill from zero.
  The series appears with the first failure: absent counts as zero;
- token rates: the increase of ``dynamo_frontend_input_sequence_tokens_sum`` and
  ``dynamo_frontend_output_sequence_tokens_sum`` (histograms of each request's prompt and
  output length, label ``model``) over the window. Measured on 1.6.1: a prompt is counted
  around the request's first response (8 of 48 started, mid-burst), an output when the request
  completes; so these are tokens/s served, not arriving. The histograms appear with the first
  request: a target that has never shown them gives no token rate (no data, not zero), one
  that shows them for the first time counts from zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.signals.base import Datum, RoundContext, SourceReading
from dynamo_ecs.signals.discovery import ScrapeTarget, service_targets
from dynamo_ecs.signals.histogram import Histogram, mean, merge, quantile, window_delta
from dynamo_ecs.signals.http_fetch import fetch_all

TTFT = "dynamo_frontend_time_to_first_token_seconds"
ITL = "dynamo_frontend_inter_token_latency_seconds"
REQUEST_DURATION = "dynamo_frontend_request_duration_seconds"
REQUESTS_TOTAL = "dynamo_frontend_requests_total"
REQUESTS_STARTED = "dynamo_frontend_requests_started_total"
FAILURES_TOTAL = "dynamo_frontend_failures_total"
UNAVAILABLE_CLASS = "Unavailable"
ACTIVE_NEW, ACTIVE_OLD = "dynamo_frontend_active_requests", "dynamo_frontend_inflight_requests"
STAGE_REQUESTS, QUEUED_OLD = "dynamo_frontend_stage_requests", "dynamo_frontend_queued_requests"
ROUTER_QUEUE_PENDING = "dynamo_frontend_router_queue_pending_requests"
INPUT_TOKENS = "dynamo_frontend_input_sequence_tokens"
OUTPUT_TOKENS = "dynamo_frontend_output_sequence_tokens"
# Sequence-length histogram -> the token-rate metric its _sum's increase gives.
TOKEN_METRICS: dict[str, str] = {INPUT_TOKENS: names.INPUT_TOKEN_RATE, OUTPUT_TOKENS: names.OUTPUT_TOKEN_RATE}
QUEUE_STAGES = frozenset({"preprocess", "route", "dispatch"})
PREFILL_PHASE = "prefill"
# The router's worker_type -> the service whose workers it is.
WORKER_TYPE_SERVICE: dict[str, ServiceRole] = {"decode": "frontend", "prefill": "prefill"}

# Histogram -> (p50, p90, p99, mean) metric names of the contract.
LATENCY_METRICS: dict[str, tuple[str, str, str, str]] = {
    TTFT: (names.TTFT_P50, names.TTFT_P90, names.TTFT_P99, names.TTFT_MEAN),
    ITL: (names.ITL_P50, names.ITL_P90, names.ITL_P99, names.ITL_MEAN),
    REQUEST_DURATION: (
        names.REQUEST_DURATION_P50,
        names.REQUEST_DURATION_P90,
        names.REQUEST_DURATION_P99,
        names.REQUEST_DURATION_MEAN,
    ),
}
QUANTILES = (0.5, 0.9, 0.99)


class NotPrometheusTextError(ValueError):
    """The body is not Prometheus text exposition format (or declares no metric at all)."""


@dataclass(frozen=True)
class QueueDepth:
    """Requests in the queue stages of one or more frontends, by the service they wait for."""

    frontend: float
    prefill: float | None  # None: no phase split (older Dynamo)

    @property
    def total(self) -> float:
        return self.frontend + (self.prefill or 0.0)


@dataclass(frozen=True)
class TargetSample:
    """What one scrape of one frontend says, label sets summed."""

    histograms: dict[str, Histogram]
    requests_total: float | None
    active: float | None
    queue: QueueDepth | None
    requests_started: float | None = None
    unavailable_total: float = 0.0
    router_queued: dict[ServiceRole, float] = field(default_factory=dict)
    # Per sequence-length histogram (`TOKEN_METRICS`), its _sum: tokens counted so far. A
    # histogram the body does not show is absent (no request yet, or a release without it).
    token_sums: dict[str, float] = field(default_factory=dict)

    @property
    def arrivals(self) -> float | None:
        """The counter the request rate comes from: starts (newer), else completions."""
        return self.requests_started if self.requests_started is not None else self.requests_total


def parse_metrics_text(text: str) -> TargetSample:
    """Parse a ``/metrics`` body; `NotPrometheusTextError` when it is not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, dict[float, float]] = {}
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    plain: dict[str, float] = {}
    queued_by_side = {"frontend": 0.0, "prefill": 0.0}
    saw_stage_gauge = False
    unavailable = 0.0
    router_queued: dict[ServiceRole, float] = {}
    token_sums: dict[str, float] = {}
    samples = families = 0
    try:
        for family in text_string_to_metric_families(text):
            families += 1
            for sample in family.samples:
                samples += 1
                name, labels, value = sample.name, sample.labels, float(sample.value)
                if math.isnan(value):
                    continue
                base, _, suffix = name.rpartition("_")
                if base in LATENCY_METRICS:
                    if suffix == "bucket" and "le" in labels:
                        bound = float(labels["le"])
                        per_bound = buckets.setdefault(base, {})
                        per_bound[bound] = per_bound.get(bound, 0.0) + value
                    elif suffix == "count":
                        counts[base] = counts.get(base, 0.0) + value
                    elif suffix == "sum":
                        sums[base] = sums.get(base, 0.0) + value
                elif base in TOKEN_METRICS:
                    if suffix == "sum":
                        token_sums[base] = token_sums.get(base, 0.0) + value
                elif name == STAGE_REQUESTS:
                    saw_stage_gauge = True
                    if labels.get("stage") in QUEUE_STAGES:
                        side = "prefill" if labels.get("phase") == PREFILL_PHASE else "frontend"
                        queued_by_side[side] += value
                elif name == ROUTER_QUEUE_PENDING:
                    role = WORKER_TYPE_SERVICE.get(labels.get("worker_type", ""))
                    if role is not None:
                        router_queued[role] = router_queued.get(role, 0.0) + value
                elif name == FAILURES_TOTAL:
                    if labels.get("class") == UNAVAILABLE_CLASS:
                        unavailable += value
                elif name in (REQUESTS_TOTAL, REQUESTS_STARTED, ACTIVE_NEW, ACTIVE_OLD, QUEUED_OLD):
                    plain[name] = plain.get(name, 0.0) + value
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise NotPrometheusTextError(f"not Prometheus text: {exc}") from exc
    if families == 0:
        # A frontend that has served nothing yet still declares its families (# TYPE lines).
        raise NotPrometheusTextError("no Prometheus metric in the body")

    histograms: dict[str, Histogram] = {}
    for base, per_bound in buckets.items():
        bounds = sorted(per_bound)
        if not bounds or not math.isinf(bounds[-1]):
            raise NotPrometheusTextError(f"{base}: histogram without a +Inf bucket")
        histograms[base] = Histogram(
            tuple(bounds),
            tuple(per_bound[b] for b in bounds),
            counts.get(base, per_bound[bounds[-1]]),
            sums.get(base, 0.0),
        )
    active = plain.get(ACTIVE_NEW, plain.get(ACTIVE_OLD))
    queue: QueueDepth | None = None
    if saw_stage_gauge:
        queue = QueueDepth(queued_by_side["frontend"], queued_by_side["prefill"])
    elif QUEUED_OLD in plain:
        queue = QueueDepth(plain[QUEUED_OLD], None)
    return TargetSample(
        histograms,
        plain.get(REQUESTS_TOTAL),
        active,
        queue,
        requests_started=plain.get(REQUESTS_STARTED),
        unavailable_total=unavailable,
        router_queued=router_queued,
        token_sums=token_sums,
    )


# -- state kept between scrapes (JSON in the state table) ------------------------------------


def sample_to_state(sample: TargetSample, at: float) -> dict[str, Any]:
    return {
        "at": at,
        "h": {name: h.to_json() for name, h in sample.histograms.items()},
        "r": sample.requests_total,
        "s": sample.requests_started,
        "u": sample.unavailable_total,
        # Always written, empty included: a record without "t" predates token rates.
        "t": dict(sample.token_sums),
    }


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class PreviousScrape:
    at: float
    histograms: dict[str, Histogram]
    requests_total: float | None
    requests_started: float | None = None
    unavailable_total: float | None = None
    token_sums: dict[str, float] | None = None  # None: a record written before they were kept

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> PreviousScrape:
        return cls(
            float(data["at"]),
            {name: Histogram.from_json(h) for name, h in data.get("h", {}).items()},
            _optional_float(data.get("r")),
            _optional_float(data.get("s")),
            _optional_float(data.get("u")),  # absent in records written before it was kept
            {name: float(v) for name, v in data["t"].items()} if isinstance(data.get("t"), dict) else None,
        )

    def earlier_arrivals(self, sample: TargetSample) -> tuple[bool, float | None]:
        """The previous value of the counter ``sample`` counts arrivals with.

        Returns (usable, value); value None means the counter did not exist yet (Dynamo
        creates a series with its first increment: it counts from zero). Not usable: a
        record written before starts were kept, holding completions only.
        """
        if sample.requests_started is None:
            return True, self.requests_total
        if self.requests_started is None and self.requests_total is not None:
            return False, None
        return True, self.requests_started


# -- the window ----------------------------------------------------------------------------------


@dataclass
class FrontendWindow:
    """Frontend figures over the window since each target's previous scrape."""

    latency: dict[str, Histogram] = field(default_factory=dict)
    request_rate: float | None = None
    unavailable_rate: float | None = None
    active: float | None = None
    queue_frontend: float | None = None
    queue_prefill: float | None = None
    router_queued: dict[ServiceRole, float] = field(default_factory=dict)
    # Per token-rate metric, tokens/s summed over the targets that had the histogram.
    token_rates: dict[str, float] = field(default_factory=dict)
    windowed_targets: int = 0
    baseline_targets: list[str] = field(default_factory=list)
    reset_targets: list[str] = field(default_factory=list)

    def data(self) -> list[Datum]:
        """The contract's metrics; latencies in milliseconds."""
        out: list[Datum] = []
        for base, metrics in LATENCY_METRICS.items():
            histogram = self.latency.get(base)
            if histogram is None or histogram.count <= 0:
                continue  # no request finished in the window: no latency, not zero latency
            values = [quantile(q, histogram) for q in QUANTILES] + [mean(histogram)]
            for metric, value in zip(metrics, values, strict=True):
                if value is not None:
                    out.append(Datum(metric, "frontend", round(value * 1000.0, 3)))
        if self.request_rate is not None:
            out.append(Datum(names.REQUEST_RATE, "frontend", round(self.request_rate, 6)))
        if self.unavailable_rate is not None:
            out.append(Datum(names.UNAVAILABLE_REQUEST_RATE, "frontend", round(self.unavailable_rate, 6)))
        for metric, value in sorted(self.token_rates.items()):
            out.append(Datum(metric, "frontend", round(value, 3)))
        if self.queue_frontend is not None:
            out.append(Datum(names.QUEUE_DEPTH, "frontend", self.queue_frontend))
            out.append(
                Datum(names.QUEUE_DEPTH_TOTAL, "frontend", self.queue_frontend + (self.queue_prefill or 0.0))
            )
        if self.queue_prefill is not None:
            out.append(Datum(names.QUEUE_DEPTH, "prefill", self.queue_prefill))
        for role, value in sorted(self.router_queued.items()):
            out.append(Datum(names.ROUTER_QUEUED_REQUESTS, role, value))
        if self.active is not None:
            out.append(Datum(names.ACTIVE_REQUESTS, "frontend", self.active))
        return out


def _increase(current: float, earlier: float | None) -> tuple[float, bool]:
    """A counter's increase since ``earlier`` and whether it was reset (went down)."""
    if earlier is None:
        return current, False
    if current < earlier:
        return current, True
    return current - earlier, False


def _token_rates(
    sample: TargetSample, before: PreviousScrape, elapsed: float, reset: bool
) -> tuple[dict[str, float], bool]:
    """Tokens/s of each sequence-length histogram one target shows, over its window.

    A histogram seen for the first time counts from zero (Dynamo creates it with its first
    request); one never seen gives nothing. A target whose other counters went down restarted:
    its sums count from zero too, even if they already grew past the old values. Returns the
    rates and whether a sum went down (a restart).
    """
    if before.token_sums is None:  # the previous record predates token sums: a baseline for them
        return {}, False
    rates: dict[str, float] = {}
    went_down = False
    for base in TOKEN_METRICS:
        current = sample.token_sums.get(base)
        earlier = before.token_sums.get(base)
        if current is None:
            continue  # never seen, or gone after a restart: its next window counts from zero
        increase, lower = _increase(current, None if reset else earlier)
        went_down = went_down or lower
        rates[base] = increase / elapsed
    return rates, went_down


def compute_window(
    samples: dict[str, TargetSample],
    previous: dict[str, PreviousScrape],
    now: float,
    max_window_s: float,
) -> FrontendWindow:
    """Combine this round's samples (by target key) with each target's previous scrape.

    A target without a usable previous scrape (new, or older than ``max_window_s``) is a
    baseline: its gauges count now, its counters from the next round on. Rates are the sum
    of each target's own rate over its own window.
    """
    window = FrontendWindow()
    deltas: dict[str, list[Histogram]] = {base: [] for base in LATENCY_METRICS}
    rate = unavailable_rate = 0.0
    for key in sorted(samples):
        sample = samples[key]
        if sample.active is not None:
            window.active = (window.active or 0.0) + sample.active
        if sample.queue is not None:
            window.queue_frontend = (window.queue_frontend or 0.0) + sample.queue.frontend
            if sample.queue.prefill is not None:
                window.queue_prefill = (window.queue_prefill or 0.0) + sample.queue.prefill
        for role, value in sample.router_queued.items():
            window.router_queued[role] = window.router_queued.get(role, 0.0) + value
        before = previous.get(key)
        if before is None or not 0 < now - before.at <= max_window_s:
            window.baseline_targets.append(key)
            continue
        window.windowed_targets += 1
        elapsed = now - before.at
        reset = False
        for base, current in sample.histograms.items():
            earlier = before.histograms.get(base)
            delta = window_delta(earlier, current)
            reset = reset or (earlier is not None and delta is current)
            deltas[base].append(delta)
        usable, earlier_arrivals = before.earlier_arrivals(sample)
        if sample.arrivals is not None and usable:
            increase, went_down = _increase(sample.arrivals, earlier_arrivals)
            rate += increase / elapsed
            reset = reset or went_down
        if before.unavailable_total is not None:
            increase, went_down = _increase(sample.unavailable_total, before.unavailable_total)
            unavailable_rate += increase / elapsed
            reset = reset or went_down
        token_rates, tokens_went_down = _token_rates(sample, before, elapsed, reset)
        for base, tokens_per_s in token_rates.items():
            metric = TOKEN_METRICS[base]
            window.token_rates[metric] = window.token_rates.get(metric, 0.0) + tokens_per_s
        reset = reset or tokens_went_down
        if reset:
            window.reset_targets.append(key)
    if window.windowed_targets:
        window.request_rate = rate
        window.unavailable_rate = unavailable_rate
    for base, items in deltas.items():
        merged = merge(items)
        if merged is not None:
            window.latency[base] = merged
    return window


def parse_many(bodies: Iterable[tuple[str, str]]) -> tuple[dict[str, TargetSample], dict[str, str]]:
    """Parse (key, body) pairs; returns the samples and, per key, why a body was refused."""
    samples: dict[str, TargetSample] = {}
    refused: dict[str, str] = {}
    for key, body in bodies:
        try:
            samples[key] = parse_metrics_text(body)
        except NotPrometheusTextError as exc:
            refused[key] = str(exc)
    return samples, refused


# -- the source --------------------------------------------------------------------------------


def scrape_bodies(
    reading: SourceReading, targets: list[ScrapeTarget], problems: list[str], timeout_s: float
) -> list[tuple[str, str]]:
    """GET every target's ``/metrics``; (key, text) of those that answered.

    Counts into ``reading`` the targets (found, and those without an address: ``problems``)
    and the errors (no address, timeout, refused, non-200), with a note for each.
    """
    reading.targets += len(targets) + len(problems)
    reading.errors += len(problems)
    reading.notes.extend(problems)
    bodies: list[tuple[str, str]] = []
    for target, result in zip(targets, fetch_all([t.url for t in targets], timeout_s), strict=True):
        if result.body is None:
            reading.errors += 1
            reading.notes.append(str(result.error))
            continue
        bodies.append((target.key, result.body.decode("utf-8", errors="replace")))
    return bodies


class FrontendSource:
    """Scrapes every RUNNING frontend task concurrently and computes the window's figures.

    ``targets`` overrides discovery (tests and the benchmark scrape local servers).
    State kept between rounds: ``{"targets": {task ARN: last successful scrape}}``.
    """

    name = "frontend"
    scrape_service: ServiceRole | None = "frontend"

    def __init__(self, config: DeploymentConfig, targets: list[ScrapeTarget] | None = None) -> None:
        self.metrics_port = config.frontend.metrics_port
        self.timeout_s = config.signals.scrape_timeout_s
        self.max_window_s = float(config.signals.max_window_s)
        self._targets = targets

    def targets(self, context: RoundContext) -> tuple[list[ScrapeTarget], list[str]]:
        if self._targets is not None:
            return list(self._targets), []
        return service_targets(context.cluster, "frontend", self.metrics_port, "frontend")

    def read(self, context: RoundContext, previous_state: dict[str, Any] | None) -> SourceReading:
        reading = SourceReading(self.name)
        targets, problems = self.targets(context)
        bodies = scrape_bodies(reading, targets, problems, self.timeout_s)
        samples, refused = parse_many(bodies)
        for key, why in refused.items():
            reading.errors += 1
            reading.notes.append(f"{key}: {why}")

        stored: dict[str, Any] = (previous_state or {}).get("targets", {})
        previous = {key: PreviousScrape.from_state(data) for key, data in stored.items()}
        window = compute_window(samples, previous, context.now, self.max_window_s)
        if window.reset_targets:
            reading.notes.append(f"counter reset (restart) on {', '.join(window.reset_targets)}")
        reading.data.extend(window.data())

        # Keep a failed target's last good scrape (its next window then spans the gap, or
        # becomes a baseline past max_window_s); forget targets that are gone.
        next_targets = {t.key: stored[t.key] for t in targets if t.key in stored and t.key not in samples}
        next_targets.update({key: sample_to_state(sample, context.now) for key, sample in samples.items()})
        reading.state = {"targets": next_targets}
        return reading
