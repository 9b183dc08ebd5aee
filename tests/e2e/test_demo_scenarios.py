"""The demo's six steps as end-to-end tests: real handlers, moto server, nats-server, etcd.

One run of the whole scenario (about 20 s) is shared by the tests; each asserts the final
state and the decision log of its step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.demo.chart import write_chart
from devtools.demo.scenario import DemoResult, Scenario
from devtools.demo.stack import LocalStack
from dynamo_ecs.state import StateStore

pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Scenario, DemoResult, list[dict[str, Any]]]]:
    with LocalStack.start(tmp_path_factory.mktemp("demo")) as stack:
        scenario = Scenario(stack)
        result = scenario.run_all()
        decisions = StateStore(stack.config.state_table, stack.config.deployment).decisions(limit=1000)
        yield scenario, result, decisions


def test_first_deploy_gives_the_gpu_services_the_infra_address(demo: Any) -> None:
    _, result, _ = demo
    step = result.steps["first_deploy"]
    assert step["status"] == "SUCCESS"
    assert step["etcd"] == {r: f"http://{step['infra_ip']}:2379" for r in ("frontend", "prefill")}
    assert step["revisions"] == {"frontend": 1, "prefill": 1}


def test_replacing_the_infra_task_rolls_one_revision_per_family_onto_the_new_address(demo: Any) -> None:
    _, result, decisions = demo
    step = result.steps["replace_infra"]
    assert step["statuses"] == ["applied", "unchanged"]  # RUNNING of the new task, then STOPPED of the old
    assert step["after"] == {"frontend": 2, "prefill": 2}
    assert step["etcd"]["frontend"] == f"http://{step['new_ip']}:2379"
    rollouts = [
        d
        for d in decisions
        if d["kind"] == "endpoints" and d["trigger"].get("event_id") == "infra-new-running"
    ]
    assert len(rollouts) == 1


def test_rising_load_scales_out_within_a_metric_period_plus_one_invocation(demo: Any) -> None:
    _, result, _ = demo
    step = result.steps["load_rises"]
    assert step["before"] == {"frontend": 1, "prefill": 1}
    assert step["after"]["frontend"] > 1 and step["after"]["prefill"] > 1
    assert result.reaction_s is not None and result.reaction_s <= 70
    # the collector's breach event, routed by the stack's own EventBridge rule, came first
    assert result.first_scale_out_trigger == "breach"


def test_falling_load_scales_in_only_after_the_stabilization_window(demo: Any) -> None:
    _, result, decisions = demo
    assert result.steps["load_falls"]["after"]["frontend"] < result.steps["load_rises"]["after"]["frontend"]
    fell_at = next(minute for minute, label in result.marks if label == "4. load falls")
    scale_ins = [s.minute for s in result.samples if s.minute > fell_at and s.desired["frontend"] < 4]
    assert scale_ins and scale_ins[0] - fell_at >= 5  # 300 s of the higher recommendation first
    reasons = [
        d["services"]["frontend"]["reason"]
        for d in decisions
        if d["kind"] == "scaling" and d["services"]["frontend"]["action"] == "scale_in"
    ]
    assert reasons and all("scale in" in r for r in reasons)


def test_a_storm_of_duplicate_and_out_of_order_events_changes_nothing(demo: Any) -> None:
    _, result, _ = demo
    step = result.steps["storm"]
    assert step["events"] >= 10
    assert step["before"] == step["after"]
    assert "applied" not in step["statuses"]


def test_a_redeploy_dry_run_writes_nothing_and_the_real_one_rolls_the_image(demo: Any) -> None:
    _, result, _ = demo
    step = result.steps["redeploy"]
    assert step["dry_run_status"] == "dry_run" and step["after_dry_run"] == step["before"]
    assert step["status"] == "applied"
    assert step["after"] == {r: n + 1 for r, n in step["before"].items()}


def test_every_scaling_decision_is_logged_with_its_reasons(demo: Any) -> None:
    _, result, decisions = demo
    scaling = [d for d in decisions if d["kind"] == "scaling"]
    assert len(scaling) >= len(result.samples)  # at least one per simulated minute (the schedule)
    for entry in scaling:
        for service in entry["services"].values():
            assert service["reason"] and service["metrics"]


def test_the_chart_is_written(demo: Any, tmp_path: Path) -> None:
    _, result, _ = demo
    path = write_chart(result, tmp_path / "timeline.png", 500.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000
