"""Dynamo frontend ``/metrics``: Prometheus text -> a per-target sample -> window figures.

Both steps are pure. Parsing uses prometheus_client's text parser (imported when first
needed, to keep it off the cold-start path). Samples are matched by their sample names
(``<name>_bucket`` / ``_count`` / ``_sum``, ``<name>_total``), so a body without ``# TYPE``
lines parses the same. Label sets (model, status, request type ...) are summed per target.

Gauges, older and newer Dynamo names (FACTS.md §2):

- active: ``dynamo_frontend_active_requests`` (newer) else ``dynamo_frontend_inflight_requests``;
- queued: ``dynamo_frontend_stage_requests`` (newer) with ``stage`` in `QUEUED_STAGES`, any
  ``phase``, else ``dynamo_frontend_queued_requests``. A request in ``preprocess``
  (tokenizing, templating) or ``route`` (waiting for the router to pick a worker, where the
  KV router holds requests when every worker is busy) has not reached a GPU yet: it is
  queued. ``dispatch`` means a worker has it: it is work in progress, counted by the active
  gauge, not queued. ``phase`` (prefill / decode / aggregated) does not change that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.signals.base import Datum, RoundContext, SourceReading
from dynamo_ecs.signals.discovery import ScrapeTarget, scrape_target
from dynamo_ecs.signals.histogram import Histogram, mean, merge, quantile, window_delta
from dynamo_ecs.signals.http_fetch import fetch_all

TTFT = "dynamo_frontend_time_to_first_token_seconds"
ITL = "dynamo_frontend_inter_token_latency_seconds"
REQUEST_DURATION = "dynamo_frontend_request_duration_seconds"
REQUESTS_TOTAL = "dynamo_frontend_requests_total"
ACTIVE_NEW, ACTIVE_OLD = "dynamo_frontend_active_requests", "dynamo_frontend_inflight_requests"
STAGE_REQUESTS, QUEUED_OLD = "dynamo_frontend_stage_requests", "dynamo_frontend_queued_requests"
QUEUED_STAGES = frozenset({"preprocess", "route"})

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
class TargetSample:
    """What one scrape of one frontend says, label sets summed."""

    histograms: dict[str, Histogram]
    requests_total: float | None
    active: float | None
    queued: float | None


def parse_metrics_text(text: str) -> TargetSample:
    """Parse a ``/metrics`` body; `NotPrometheusTextError` when it is not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[str, dict[float, float]] = {}
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    plain: dict[str, float] = {}
    queued_by_stage = 0.0
    saw_stage_gauge = False
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
                elif name == STAGE_REQUESTS:
                    saw_stage_gauge = True
                    if labels.get("stage") in QUEUED_STAGES:
                        queued_by_stage += value
                elif name in (REQUESTS_TOTAL, ACTIVE_NEW, ACTIVE_OLD, QUEUED_OLD):
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
    queued = queued_by_stage if saw_stage_gauge else plain.get(QUEUED_OLD)
    return TargetSample(histograms, plain.get(REQUESTS_TOTAL), active, queued)


# -- state kept between scrapes (JSON in the state table) ------------------------------------


def sample_to_state(sample: TargetSample, at: float) -> dict[str, Any]:
    return {
        "at": at,
        "h": {name: h.to_json() for name, h in sample.histograms.items()},
        "r": sample.requests_total,
    }


@dataclass(frozen=True)
class PreviousScrape:
    at: float
    histograms: dict[str, Histogram]
    requests_total: float | None

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> PreviousScrape:
        return cls(
            float(data["at"]),
            {name: Histogram.from_json(h) for name, h in data.get("h", {}).items()},
            None if data.get("r") is None else float(data["r"]),
        )


# -- the window ----------------------------------------------------------------------------------


@dataclass
class FrontendWindow:
    """Frontend figures over the window since each target's previous scrape."""

    latency: dict[str, Histogram] = field(default_factory=dict)
    request_rate: float | None = None
    active: float | None = None
    queued: float | None = None
    windowed_targets: int = 0
    baseline_targets: list[str] = field(default_factory=list)
    reset_targets: list[str] = field(default_factory=list)

    def data(self) -> list[Datum]:
        """The contract's metrics (Service=frontend); latencies in milliseconds."""
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
        if self.queued is not None:
            out.append(Datum(names.QUEUED_REQUESTS, "frontend", self.queued))
        if self.active is not None:
            out.append(Datum(names.ACTIVE_REQUESTS, "frontend", self.active))
        return out


def compute_window(
    samples: dict[str, TargetSample],
    previous: dict[str, PreviousScrape],
    now: float,
    max_window_s: float,
) -> FrontendWindow:
    """Combine this round's samples (by target key) with each target's previous scrape.

    A target without a usable previous scrape (new, or older than ``max_window_s``) is a
    baseline: its gauges count now, its counters from the next round on. The request rate
    is the sum of each target's own rate over its own window.
    """
    window = FrontendWindow()
    deltas: dict[str, list[Histogram]] = {base: [] for base in LATENCY_METRICS}
    rate = 0.0
    for key in sorted(samples):
        sample = samples[key]
        if sample.active is not None:
            window.active = (window.active or 0.0) + sample.active
        if sample.queued is not None:
            window.queued = (window.queued or 0.0) + sample.queued
        before = previous.get(key)
        if before is None or not 0 < now - before.at <= max_window_s:
            window.baseline_targets.append(key)
            continue
        window.windowed_targets += 1
        reset = False
        for base, current in sample.histograms.items():
            earlier = before.histograms.get(base)
            delta = window_delta(earlier, current)
            reset = reset or (earlier is not None and delta is current)
            deltas[base].append(delta)
        if sample.requests_total is not None:
            earlier_total = before.requests_total
            if earlier_total is None or sample.requests_total < earlier_total:
                reset = reset or earlier_total is not None
                increase = sample.requests_total
            else:
                increase = sample.requests_total - earlier_total
            rate += increase / (now - before.at)
        if reset:
            window.reset_targets.append(key)
    if window.windowed_targets:
        window.request_rate = rate
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
        if context.cluster is None:
            return [], ["GPU cluster not read: no frontend target"]
        found: list[ScrapeTarget] = []
        problems: list[str] = []
        for task in context.cluster.tasks.get("frontend", []):
            target, problem = scrape_target(task, self.metrics_port)
            if target is not None:
                found.append(target)
            elif problem:
                problems.append(problem)
        return found, problems

    def read(self, context: RoundContext, previous_state: dict[str, Any] | None) -> SourceReading:
        reading = SourceReading(self.name)
        targets, problems = self.targets(context)
        reading.targets = len(targets) + len(problems)
        reading.errors = len(problems)
        reading.notes.extend(problems)

        bodies: list[tuple[str, str]] = []
        for target, result in zip(targets, fetch_all([t.url for t in targets], self.timeout_s), strict=True):
            if result.body is None:
                reading.errors += 1
                reading.notes.append(str(result.error))
                continue
            bodies.append((target.key, result.body.decode("utf-8", errors="replace")))
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
