"""``dynamo-ecs decisions`` against the state table on moto server, found through the stack or named."""

from __future__ import annotations

import json

from dynamo_ecs.state import StateStore
from tests.integration.cli.conftest import Deployed, run_cli


def scaling_entry(action: str, before: int, after: int) -> dict[str, object]:
    service = {
        "action": action,
        "from": before,
        "to": after,
        "reason": f"{action} because of ttft",
        "metrics": [],
    }
    return {"trigger": {"kind": "schedule"}, "services": {"frontend": service}}


def test_prints_the_newest_first_and_can_skip_no_change(deployed: Deployed, state_table: str) -> None:
    store = StateStore(state_table, "dynamo")
    store.append_decision("scaling", scaling_entry("scale_out", 1, 3))
    store.append_decision("scaling", scaling_entry("none", 3, 3))
    store.append_decision(
        "endpoints",
        {
            "trigger": {"event_id": "e1"},
            "endpoint": {"ip": "10.0.1.5"},
            "changes": [{"service": "dynamo-frontend"}],
        },
    )
    store.append_decision(
        "diagnosis",
        {
            "trigger": {"event_id": "e2"},
            "status": "open",
            "signature": "no_gpu_capacity/frontend/placement-gpu",
            "summary": "frontend: a task cannot be placed (RESOURCE:GPU)",
            "fix": "raise GpuBudget",
        },
    )
    # Through the stack's StateTableName output
    done = run_cli(["decisions", "--stack", deployed.stack, "--json"])
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["kind"] for line in done.stdout.splitlines()] == [
        "diagnosis",
        "endpoints",
        "scaling",
        "scaling",
    ]
    # Or the table named, filtered
    done = run_cli(["decisions", "--table", state_table, "--kind", "scaling", "--changes-only", "--json"])
    [only] = [json.loads(line) for line in done.stdout.splitlines()]
    assert only["services"]["frontend"]["action"] == "scale_out"
    # As a table, one row per line
    table = run_cli(["decisions", "--width", "250"]).stdout
    assert "frontend 1 -> 3" in table and "rolled dynamo-frontend onto 10.0.1.5" in table
    assert "open no_gpu_capacity/frontend/placement-gpu" in table


def test_a_bad_limit_is_a_usage_error_and_a_missing_stack_an_aws_one(state_table: str) -> None:
    bad = run_cli(["decisions", "--table", state_table, "--limit", "0"])
    assert bad.returncode == 2 and "--limit" in bad.stderr
    missing = run_cli(["decisions", "--stack", "nope"])
    assert missing.returncode == 3 and "stack 'nope' does not exist in us-east-1" in missing.stderr
