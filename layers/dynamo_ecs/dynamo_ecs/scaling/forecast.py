"""The predictive floor: replicas for the request rate a new task will meet when it serves. Pure.

A task asked for now serves ``scaling.startup_s`` later (instance, image, model: docs/replay.md
"Start-up"), so sizing on today's latency is sizing for the past. The floor looks ahead
instead: the frontend's ``RequestRate`` datapoints of the last ``scaling.trend_window_s``
give a rate and a least-squares trend; a rising trend is projected over the start-up time;
the projected rate, plus ``scaling.floor_headroom``, divided by what one replica serves
within the SLA (``<role>.capacity_rps``, measured by ``dynamo-ecs profile`` or on your
GPUs) is the fewest replicas the service may have. A scale-in stops where the projected rate plus
``floor_headroom + floor_hysteresis`` still needs the tasks it would remove, so a rate that
wanders around one replica's edge does not flap the count. A falling trend is not projected: the floor follows
the rate itself down, and the scale-down window still applies.

Demand in tokens: with ``<role>.capacity_tokens_per_s`` set and the token-rate datapoints
given (prefill: input tokens/s, the frontend's decode: output tokens/s), that role's floor is
the projected token rate against the tokens/s one replica serves within the SLA, so a burst of
long prompts sizes prefill by what it costs, not by its request count. Without them, the
request rate against ``capacity_rps``.

Scale-in under the floor: the floor holds the capacity the rate still needs (a burst's
decaying tail keeps it up), so a service with a floor scales in after
``scaling.floor_scale_down_s`` (60 s) instead of ``scale_down_stabilization_s``, unless its
traffic has lulls too short for a scale-in to pay (decide.py, `recent_short_lull`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole

if TYPE_CHECKING:  # decide imports this module
    from dynamo_ecs.scaling.decide import Observation

_EPSILON = 1e-9
# Fewer points than this give no trend (the rate alone sets the floor).
MIN_TREND_POINTS = 3


@dataclass(frozen=True)
class Forecast:
    """The request rate now and where its trend takes it over the start-up time."""

    rate: float  # requests/s, the newest datapoint
    slope: float  # requests/s per second, least squares over the window (0 without a trend)
    projected: float  # requests/s expected when a task asked for now starts serving
    headroom: float = 0.0  # spare fraction kept above the projected rate

    hysteresis: float = 0.0  # more headroom a scale-in must leave (no flapping at a replica's edge)
    unit: str = "requests/s"  # or "tokens/s": what rate and capacity are in
    peak: float = 0.0  # the highest datapoint of the window: what a scale-in must still serve

    def floor(self, capacity_rps: float, extra: float = 0.0) -> int:
        spare = 1.0 + self.headroom + extra
        return max(0, math.ceil(self.projected * spare / capacity_rps - _EPSILON))

    def hold(self, capacity_rps: float) -> int:
        """The count a scale-in may not go below: the window's peak (or the projection, if
        higher) with the headroom and the hysteresis added. A rate that dips between bursts
        does not take away the tasks its bursts of the last few minutes needed."""
        spare = 1.0 + self.headroom + self.hysteresis
        return max(0, math.ceil(max(self.projected, self.peak) * spare / capacity_rps - _EPSILON))

    def note(self, capacity_rps: float, horizon_s: float) -> str:
        what = "token rate" if self.unit == "tokens/s" else "rate"
        return (
            f"predictive floor: {what} {self.rate:.2f}/s, trend {self.slope * 60:+.2f}/s per min over "
            f"{horizon_s:.0f} s start-up -> {self.projected:.2f}/s x {1 + self.headroom:g} / "
            f"{capacity_rps:g} per replica = {self.floor(capacity_rps)}"
        )


def least_squares_slope(points: Sequence[Observation]) -> float:
    n = len(points)
    if n < MIN_TREND_POINTS:
        return 0.0
    mean_t = sum(p.at for p in points) / n
    mean_v = sum(p.value for p in points) / n
    spread = sum((p.at - mean_t) ** 2 for p in points)
    if spread <= _EPSILON:
        return 0.0
    return sum((p.at - mean_t) * (p.value - mean_v) for p in points) / spread


def forecast(
    config: DeploymentConfig, demand: Sequence[Observation], now: float, unit: str = "requests/s"
) -> Forecast | None:
    """The forecast from the request-rate datapoints, or None when the newest is missing or stale."""
    policy = config.scaling
    window = sorted(
        (p for p in demand if 0 <= now - p.at <= policy.trend_window_s and p.value >= 0),
        key=lambda p: p.at,
    )
    if not window or now - window[-1].at > policy.metric_max_age_s:
        return None
    rate = window[-1].value
    slope = least_squares_slope(window)
    projected = rate + max(slope, 0.0) * policy.startup_s
    # The peak a scale-in must still serve: the highest datapoint of the last start-up time (a
    # task released now could not be back sooner if the rate returned to it).
    recent = [p.value for p in window if now - p.at <= max(policy.startup_s, policy.metric_period_s)]
    peak = max(recent, default=rate)
    return Forecast(rate, slope, projected, policy.floor_headroom, policy.floor_hysteresis, unit, peak)


@dataclass(frozen=True)
class RoleForecast:
    """One service's forecast and the per-replica capacity (same unit) it is divided by."""

    forecast: Forecast
    capacity: float


def role_forecasts(
    config: DeploymentConfig,
    demand: Sequence[Observation],
    now: float,
    token_demand: Mapping[ServiceRole, Sequence[Observation]] | None = None,
) -> dict[ServiceRole, RoleForecast]:
    """Per service, its floor's forecast: tokens when it has ``capacity_tokens_per_s`` and fresh
    token-rate datapoints, else requests when it has ``capacity_rps``; none without either."""
    by_rate = forecast(config, demand, now) if demand else None
    result: dict[ServiceRole, RoleForecast] = {}
    for role in SERVICE_ROLES:
        service = config.service(role)
        tokens = (token_demand or {}).get(role)
        if service.capacity_tokens_per_s is not None and tokens:
            by_tokens = forecast(config, tokens, now, "tokens/s")
            if by_tokens is not None:
                result[role] = RoleForecast(by_tokens, service.capacity_tokens_per_s)
                continue
        if service.capacity_rps is not None and by_rate is not None:
            result[role] = RoleForecast(by_rate, service.capacity_rps)
    return result


def predictive_floor(
    config: DeploymentConfig, role: ServiceRole, forecasts: Mapping[ServiceRole, RoleForecast]
) -> tuple[int, int, str] | None:
    """The floor for ``role``, the count a scale-in stops at, and the reason; None when the
    floor is off or there is no forecast."""
    found = forecasts.get(role)
    if found is None:
        return None
    prediction, capacity = found.forecast, found.capacity
    return (
        prediction.floor(capacity),
        prediction.hold(capacity),
        prediction.note(capacity, config.scaling.startup_s),
    )
