"""The decision-log reader against the state table on moto server."""

from __future__ import annotations

import json

import pytest

from dynamo_ecs.state import StateStore
from dynamo_ecs_cli.decision_log import main


def scaling_entry(action: str, before: int, after: int) -> dict[str, object]:
    service = {
        "action": action,
        "from": before,
        "to": after,
        "reason": f"{action} because of ttft",
        "metrics": [],
    }
    return {"trigger": {"kind": "schedule"}, "services": {"frontend": service}}


def test_prints_the_newest_first_and_can_skip_no_change(
    state_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
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

    assert main(["--table", state_table, "--json"]) == 0
    kinds = [json.loads(line)["kind"] for line in capsys.readouterr().out.splitlines()]
    assert kinds == ["endpoints", "scaling", "scaling"]

    assert main(["--table", state_table, "--kind", "scaling", "--changes-only", "--json"]) == 0
    [only] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert only["services"]["frontend"]["action"] == "scale_out"

    assert main(["--table", state_table, "--width", "250"]) == 0  # one table row per line
    table = capsys.readouterr().out
    assert "frontend 1 -> 3" in table and "rolled dynamo-frontend onto 10.0.1.5" in table


def test_a_bad_limit_is_refused(state_table: str) -> None:
    with pytest.raises(SystemExit):
        main(["--table", state_table, "--limit", "0"])
