"""Read the latest datapoint of every scaling signal in one GetMetricData call.

One query per distinct (metric, Service dimension): the frontend's TTFT serves both the
frontend's and the prefill's TTFT signal. A datapoint's time is the end of its period (when
it was complete), so a fresh datapoint has an age close to zero and an old one shows its age.
With the predictive floor on (a service has ``capacity_rps``), the same call also returns
the frontend's ``RequestRate`` over ``scaling.trend_window_s`` (`read_signals`); for a service
with ``capacity_tokens_per_s``, its token rate over the same window (prefill: the frontend's
``InputTokenRate``, the frontend: its ``OutputTokenRate``), the floor in tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.metric_names import (
    INPUT_TOKEN_RATE,
    OUTPUT_TOKEN_RATE,
    REQUEST_RATE,
)
from dynamo_ecs.scaling.decide import Observation
from dynamo_ecs.scaling.signals import SignalSpec, activation_specs, signal_specs
from dynamo_ecs.signals.publish import metric_stat


def all_signal_specs(config: DeploymentConfig) -> list[SignalSpec]:
    """Every scaling signal of both services, then the activation-only inputs."""
    return [spec for role in SERVICE_ROLES for spec in signal_specs(config, role)] + activation_specs(config)


def metric_queries(
    config: DeploymentConfig, specs: Iterable[SignalSpec]
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The GetMetricData queries, and for each query id the signal keys it answers. Pure."""
    queries: list[dict[str, Any]] = []
    answers: dict[str, list[str]] = {}
    ids: dict[tuple[str, str], str] = {}
    for spec in specs:
        source = (spec.metric, spec.source_service)
        if source not in ids:
            query_id = f"m{len(ids)}"
            ids[source] = query_id
            queries.append(
                {
                    "Id": query_id,
                    "MetricStat": metric_stat(
                        config.signals.namespace,
                        config.deployment,
                        spec.source_service,
                        spec.metric,
                        config.scaling.metric_period_s,
                        "Average",
                    ),
                    "ReturnData": True,
                }
            )
        answers.setdefault(ids[source], []).append(spec.key)
    return queries, answers


def latest_observations(
    results: Iterable[dict[str, Any]], answers: dict[str, list[str]], period_s: int, now: float
) -> dict[str, Observation]:
    """The newest datapoint of each query, keyed by signal key. Pure."""
    out: dict[str, Observation] = {}
    for result in results:
        points = list(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
        if not points:
            continue
        stamp, value = max(points, key=lambda p: p[0])
        at = min(stamp.timestamp() + period_s, now)
        for key in answers.get(result["Id"], []):
            out[key] = Observation(float(value), at)
    return out


DEMAND_QUERY_ID = "demand"
# The token rate each service's floor in tokens reads (measured at the frontend), and its query id.
TOKEN_DEMAND: dict[ServiceRole, tuple[str, str]] = {
    "prefill": (INPUT_TOKEN_RATE, "tokens_in"),
    "frontend": (OUTPUT_TOKEN_RATE, "tokens_out"),
}


def predictive_floor_on(config: DeploymentConfig) -> bool:
    return any(config.service(role).capacity_rps is not None for role in SERVICE_ROLES)


def token_floor_roles(config: DeploymentConfig) -> list[ServiceRole]:
    """The services whose floor is in tokens (``capacity_tokens_per_s`` set)."""
    return [role for role in SERVICE_ROLES if config.service(role).capacity_tokens_per_s is not None]


def request_rate_stat(config: DeploymentConfig, period_s: int, metric: str = REQUEST_RATE) -> dict[str, Any]:
    """GetMetricData's MetricStat of a rate the collector publishes for the frontend (average per period)."""
    return metric_stat(config.signals.namespace, config.deployment, "frontend", metric, period_s, "Average")


def demand_query(config: DeploymentConfig) -> dict[str, Any]:
    """The frontend's request rate, every datapoint of the window (the predictive floor's trend)."""
    return {
        "Id": DEMAND_QUERY_ID,
        "MetricStat": request_rate_stat(config, config.scaling.metric_period_s),
        "ReturnData": True,
    }


def token_demand_queries(config: DeploymentConfig) -> list[dict[str, Any]]:
    """The token-rate series of the services whose floor is in tokens, every datapoint of the window."""
    return [
        {
            "Id": TOKEN_DEMAND[role][1],
            "MetricStat": request_rate_stat(config, config.scaling.metric_period_s, TOKEN_DEMAND[role][0]),
            "ReturnData": True,
        }
        for role in token_floor_roles(config)
    ]


def demand_series(result: dict[str, Any], period_s: int, now: float) -> list[Observation]:
    """Every datapoint of the demand query, oldest first, stamped at its period's end. Pure."""
    points = zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
    return sorted(
        (Observation(float(v), min(t.timestamp() + period_s, now)) for t, v in points), key=lambda o: o.at
    )


def read_observations(cloudwatch: Any, config: DeploymentConfig, now: float) -> dict[str, Observation]:
    """Every enabled signal's newest datapoint younger than ``metric_max_age_s`` (one API call per page)."""
    return read_signals(cloudwatch, config, now)[0]


def read_signals(
    cloudwatch: Any, config: DeploymentConfig, now: float
) -> tuple[dict[str, Observation], list[Observation], dict[ServiceRole, list[Observation]]]:
    """The signals' newest datapoints, the request-rate series (with the predictive floor on) and
    per service with a floor in tokens its token-rate series: one GetMetricData call per page."""
    queries, answers = metric_queries(config, all_signal_specs(config))
    rate_floor_on = predictive_floor_on(config)
    if rate_floor_on:
        queries.append(demand_query(config))
    token_queries = token_demand_queries(config)
    queries.extend(token_queries)
    floor_on = rate_floor_on or bool(token_queries)
    if not queries:
        return {}, [], {}
    period = config.scaling.metric_period_s
    lookback = max(config.scaling.metric_max_age_s, config.scaling.trend_window_s if floor_on else 0)
    request: dict[str, Any] = {
        "MetricDataQueries": queries,
        "StartTime": datetime.fromtimestamp(now - lookback - period, UTC),
        "EndTime": datetime.fromtimestamp(now + period, UTC),
        "ScanBy": "TimestampDescending",
    }
    results: list[dict[str, Any]] = []
    while True:
        page = cloudwatch.get_metric_data(**request)
        results.extend(page.get("MetricDataResults", []))
        token = page.get("NextToken")
        if not token:
            break
        request["NextToken"] = token
    merged: dict[str, dict[str, Any]] = {}
    for result in results:
        entry = merged.setdefault(result["Id"], {"Id": result["Id"], "Timestamps": [], "Values": []})
        entry["Timestamps"].extend(result.get("Timestamps", []))
        entry["Values"].extend(result.get("Values", []))
    demand = merged.pop(DEMAND_QUERY_ID, None)
    series = demand_series(demand, period, now) if demand else []
    tokens: dict[ServiceRole, list[Observation]] = {}
    for role in token_floor_roles(config):
        found = merged.pop(TOKEN_DEMAND[role][1], None)
        tokens[role] = demand_series(found, period, now) if found else []
    return latest_observations(merged.values(), answers, period, now), series, tokens
