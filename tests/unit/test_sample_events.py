"""The sample events in events/ are valid for the functions they are meant for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamo_ecs.config import DeploymentConfig, InfraConfig
from dynamo_ecs.endpoints.events import parse_infra_event
from dynamo_ecs.endpoints.redeploy import parse_payload

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.mark.parametrize("name", ["infra_task_running.json", "infra_task_stopped.json"])
def test_infra_samples_parse_as_ours(name: str) -> None:
    event = parse_infra_event(json.loads((EVENTS / name).read_text()), InfraConfig())
    assert event.detail.group == "service:dynamo-infra"


@pytest.mark.parametrize("path", sorted(EVENTS.glob("redeploy_*.json")), ids=lambda p: p.name)
def test_redeploy_samples_are_valid_payloads(path: Path) -> None:
    payload = parse_payload(json.loads(path.read_text()))
    assert payload.roles


@pytest.mark.parametrize("path", sorted(EVENTS.glob("scaler_*.json")), ids=lambda p: p.name)
def test_scaler_samples_are_triggers_of_the_default_deployment(path: Path) -> None:
    from dynamo_ecs.scaling.triggers import parse_trigger

    trigger = parse_trigger(json.loads(path.read_text()), DeploymentConfig())
    assert trigger.kind in {"alarm", "schedule", "breach", "manual"}
