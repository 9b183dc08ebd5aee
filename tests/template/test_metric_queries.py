"""What the code emits is what the dashboard and the alarms ask for.

A CloudWatch metric is found only by its namespace, name and *every* dimension: a query
that leaves one out (or adds one) shows nothing and an alarm on it never leaves
INSUFFICIENT_DATA. The emitted side is read from the code itself: the scaler's EMF line
(Powertools' blob, printed to stdout) and the collector's PutMetricData entries.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devtools.template import load_template, resource, resources_of_type
from dynamo_ecs import metric_names
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig
from dynamo_ecs.scaling.decide import ServiceDecision
from dynamo_ecs.scaling.reconcile import SCALE_ACTIONS_METRIC, _emit_scale_action
from dynamo_ecs.signals.base import Datum
from dynamo_ecs.signals.etcd_health import MemberHealth, tier_data
from dynamo_ecs.signals.publish import metric_data

NAMESPACE = "DynamoEcs"
DEPLOYMENT = "dynamo-test"  # the DeploymentName parameter (the functions get it as DYNAMO_ECS_DEPLOYMENT)
Query = tuple[str, frozenset[tuple[str, str]]]  # metric name, {(dimension, value)}


def emf_blobs(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def emitted_scale_actions(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> set[Query]:
    """The dimensions of the scaler's ScaleActions EMF line, with the stack's Powertools environment."""
    for name, value in load_template()["Globals"]["Function"]["Environment"]["Variables"].items():
        if name.startswith("POWERTOOLS_"):
            monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    config = DeploymentConfig(deployment=DEPLOYMENT)
    capsys.readouterr()
    for role in SERVICE_ROLES:
        change = ServiceDecision(role=role, current=1, running=1, desired=2, recommendation=2, reason="test")
        _emit_scale_action(config, change)
    found: set[Query] = set()
    for blob in emf_blobs(capsys.readouterr().out):
        [directive] = blob["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        [dimension_names] = directive["Dimensions"]
        for metric in directive["Metrics"]:
            found.add((metric["Name"], frozenset((d, str(blob[d])) for d in dimension_names)))
    assert {name for name, _ in found} == {SCALE_ACTIONS_METRIC}
    return found


def emitted_by_the_collector() -> set[Query]:
    """Every contract metric as the collector's PutMetricData entries carry it: the GPU services'
    for both services, the infra tier's as its etcd health source makes them."""
    infra = tier_data(
        [MemberHealth("infra-0", health=True, has_leader=True, db_size_bytes=1.0, quota_bytes=2.0)]
    )
    infra_metrics = {datum.metric for datum in infra}
    data = [
        Datum(metric, role, 1.0)
        for metric in metric_names.METRIC_UNITS
        if metric not in infra_metrics
        for role in SERVICE_ROLES
    ] + infra
    return {
        (entry["MetricName"], frozenset((d["Name"], d["Value"]) for d in entry["Dimensions"]))
        for entry in metric_data(data, DEPLOYMENT, 0.0, high_resolution=False)
    }


def expand_widget_metrics(rows: list[list[Any]]) -> list[list[str]]:
    """CloudWatch's shorthand spelled out: ``"."`` repeats the value above, ``"..."`` the row above."""
    expanded: list[list[str]] = []
    for row in rows:
        items = [item for item in row if not isinstance(item, dict)]
        if items and items[0] == "...":
            previous = expanded[-1]
            items = previous[: len(previous) - len(items) + 1] + items[1:]
        else:
            items = [expanded[-1][i] if item == "." else item for i, item in enumerate(items)]
        expanded.append(items)
    return expanded


def dashboard_queries() -> set[Query]:
    body, _ = resource("Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
    body = re.sub(r"\$\{\w*Target\}", "", body)
    body = body.replace("${DeploymentName}", DEPLOYMENT)
    dashboard = json.loads(re.sub(r"\$\{([\w:]+)\}", r"\1", body))
    queries: set[Query] = set()
    for widget in dashboard["widgets"]:
        for row in expand_widget_metrics(widget.get("properties", {}).get("metrics", [])):
            namespace, name, *pairs = row
            if namespace != NAMESPACE:
                continue
            dims = dict(zip(pairs[::2], pairs[1::2], strict=True))
            queries.add((name, frozenset(dims.items())))
    return queries


def either_branch(value: Any) -> list[str]:
    """Every value an ``Fn::If`` can take (a parameter chooses the metric), or the value itself."""
    if isinstance(value, dict) and "Fn::If" in value:
        _, when_true, when_false = value["Fn::If"]
        return either_branch(when_true) + either_branch(when_false)
    return [value]


def alarm_queries() -> dict[str, Query]:
    queries: dict[str, Query] = {}
    for logical_id, alarm in resources_of_type("AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        if props.get("Namespace") != NAMESPACE:
            continue
        dims = {
            d["Name"]: (DEPLOYMENT if d["Value"] == {"Ref": "DeploymentName"} else d["Value"])
            for d in props["Dimensions"]
        }
        for name in either_branch(props["MetricName"]):
            queries[f"{logical_id} ({name})"] = (name, frozenset(dims.items()))
    return queries


def test_every_dashboard_query_is_a_metric_the_code_emits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given everything the scaler and the collector emit, with the stack's environment
    emitted = emitted_scale_actions(capsys, monkeypatch) | emitted_by_the_collector()
    # When the dashboard's widgets are read (shorthand expanded)
    queries = dashboard_queries()
    # Then each of its DynamoEcs queries names exactly the dimensions of something emitted
    assert {name for name, _ in queries} >= {SCALE_ACTIONS_METRIC, metric_names.GPU_UTILIZATION}
    for query in queries:
        assert query in emitted, f"the dashboard asks for {query}, which nothing emits"


def test_every_alarm_watches_a_metric_the_code_emits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emitted = emitted_scale_actions(capsys, monkeypatch) | emitted_by_the_collector()
    alarms = alarm_queries()
    assert len(alarms) >= 7
    for logical_id, query in alarms.items():
        assert query in emitted, f"{logical_id} watches {query}, which nothing emits"


def test_the_scale_action_metric_has_only_the_contract_dimensions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Powertools adds ``service`` from POWERTOOLS_SERVICE_NAME unless told otherwise.
    for _, dims in emitted_scale_actions(capsys, monkeypatch):
        assert {d for d, _ in dims} == {metric_names.DIMENSION_DEPLOYMENT, metric_names.DIMENSION_SERVICE}
