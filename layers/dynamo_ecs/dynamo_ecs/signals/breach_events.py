"""Tell the scaler at once when a freshly published signal is above its scaling target.

A CloudWatch alarm on a 60-s metric is evaluated on its own clock, up to a period after the
datapoint lands; the collector knows the value the moment it publishes it. When any value
it just published is above a scale-out threshold, it sends one EventBridge event
(source ``dynamo-ecs.collector``, detail-type ``Dynamo Signals Breached``) that the scaler's
rule matches, so a scale-out starts within seconds of the datapoint. The event is a hint like
any other trigger: the scaler re-reads CloudWatch and decides from that. Alarms stay as the
backstop (docs/scaling.md, "How fast").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig
from dynamo_ecs.scaling.signals import activation_specs, signal_specs
from dynamo_ecs.signals.base import Datum

EVENT_SOURCE = "dynamo-ecs.collector"
EVENT_DETAIL_TYPE = "Dynamo Signals Breached"


def breaches(config: DeploymentConfig, data: Sequence[Datum]) -> list[dict[str, Any]]:
    """Signals whose published value is above its target, as its alarm tests it. Pure.

    The same rule as the stack's alarms (GreaterThanThreshold, the target), so that the hint
    never comes later than its alarm; the scaler's tolerance still decides whether to act.
    Backlog signals compare the total with one replica's share: the collector does not know
    the replica count; an early hint only costs the scaler one look.
    """
    values = {(d.metric, d.service): d.value for d in data}
    out = []
    for role in SERVICE_ROLES:
        for spec in signal_specs(config, role):
            value = values.get((spec.metric, spec.source_service))
            if value is not None and value > spec.target:
                out.append({"role": role, "signal": spec.name, "value": value, "target": spec.target})
    for spec in activation_specs(config):  # wake prefill from zero at once
        value = values.get((spec.metric, spec.source_service))
        if value is not None and value > spec.target:
            out.append({"role": spec.role, "signal": spec.name, "value": value, "target": spec.target})
    return out


def breach_event(config: DeploymentConfig, found: list[dict[str, Any]], at: float) -> dict[str, Any]:
    return {
        "Source": EVENT_SOURCE,
        "DetailType": EVENT_DETAIL_TYPE,
        "Detail": json.dumps({"deployment": config.deployment, "at": at, "breaches": found}),
    }


def send_breach_event(events: Any, config: DeploymentConfig, data: Sequence[Datum], at: float) -> bool:
    """PutEvents when something breaches; returns whether an event was sent."""
    found = breaches(config, data)
    if not found:
        return False
    events.put_events(Entries=[breach_event(config, found, at)])
    return True
