"""The demo's steps as end-to-end tests: real handlers on moto, real etcd, nats-server and Dynamo.

Two runs, as `make demo` has them, each shared by its tests: the main part on template.yaml's
default layout (three etcd + NATS members, TLS and authentication on; a few minutes of real
time), and the single-task part on ``InfraMembers`` 1 (the infra task replaced, with and
without the operator). Each test asserts what its step measured on the real processes, and
the decision log. Each run's stack is stopped before its tests read the results, so that the
other run starts where nothing of it listens any more (both use the same local addresses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.demo.chart import write_chart
from devtools.demo.scenario import DemoResult, Scenario
from devtools.demo.stack import LocalStack
from dynamo_ecs.planes.gpu_credentials import DYNAMO_SECRETS
from dynamo_ecs.state import StateStore

pytestmark = pytest.mark.xdist_group("real_dynamo")

Run = tuple[DemoResult, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The main part, on the three-member tier with the planes on."""
    with LocalStack.start(tmp_path_factory.mktemp("demo")) as stack:
        result = Scenario(stack).run_main()
        decisions = StateStore(stack.config.state_table, stack.config.deployment).decisions(limit=1000)
    return result, decisions


@pytest.fixture(scope="module")
def single_task(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The single-task part, on InfraMembers 1 (the development layout)."""
    with LocalStack.start(tmp_path_factory.mktemp("single"), {"InfraMembers": "1"}) as stack:
        result = Scenario(stack).run_single_task()
        decisions = StateStore(stack.config.state_table, stack.config.deployment).decisions(limit=1000)
    return result, decisions


# -- the main part: template.yaml's default layout ---------------------------------------------


def test_first_deploy_serves_a_real_chat_completion_on_the_secured_members(demo: Run) -> None:
    result, _ = demo
    step = result.steps["first_deploy"]
    assert step["status"] == "SUCCESS"
    assert step["serving_s"] is not None
    assert step["revisions"] == {"frontend": 1, "prefill": 1}
    # The GPU task definitions name the three members over TLS and take every credential as an
    # ECS secret of the Dynamo holder's secret, none as a plain value.
    urls = step["etcd_endpoints"].split(",")
    assert len(urls) == 3 and all(u.startswith("https://infra-") for u in urls), urls
    assert step["nats_server"].startswith("tls://infra-0."), step["nats_server"]
    assert step["secrets"] == sorted(DYNAMO_SECRETS)
    assert len(step["secret_sources"]) == 1 and "/planes/dynamo" in step["secret_sources"][0]
    assert step["plain_credentials"] == []


def test_the_running_tier_refuses_a_client_without_credentials(demo: Run) -> None:
    result, _ = demo
    step = result.steps["planes"]
    # etcd: a write over TLS without a client certificate is refused and changes nothing
    assert not step["etcd_write_accepted"], step
    assert step["etcd_value_kept"], step
    # NATS: a TLS connection without user and password is refused
    assert not step["nats_connect_accepted"], step
    assert "Authorization Violation" in step["nats_connect"], step


def test_a_member_replaced_under_load_rolls_nothing_and_fails_no_request(demo: Run) -> None:
    result, decisions = demo
    step = result.steps["replace_member"]
    assert step["requests"] >= 30, step
    assert step["failed"] == 0, step
    assert step["dynamo_exits"] == 0 and step["gpu_tasks_started"] == 0, step
    assert step["rejoin_s"] is not None, step
    # infra_watcher got the old task's STOPPED and the new task's RUNNING: the members keep their
    # names, so the GPU task definitions are already right and nothing rolls
    assert step["statuses"] == ["unchanged", "unchanged"], step
    assert step["after"] == step["before"] == {"frontend": 1, "prefill": 1}
    member_events = [
        d
        for d in decisions
        if d["kind"] == "endpoints" and d["trigger"].get("event_id", "").startswith("member-")
    ]
    assert member_events == []  # no rollout was logged for them


def scaling_since(decisions: list[dict[str, Any]], began: str, role: str) -> str:
    """The scaler's decisions for ``role`` since ``began``, oldest first: what a failure shows."""
    lines = [
        f"{d['at']} {d['services'][role]['action']}: {d['services'][role]['reason']} "
        f"{d['services'][role].get('metrics')}"
        for d in reversed(decisions)
        if d["kind"] == "scaling" and d["at"] >= began and role in d.get("services", {})
    ]
    return "\n".join(lines) or "no scaling decision"


def test_rising_load_scales_out_on_the_real_ttft(demo: Run) -> None:
    result, decisions = demo
    step = result.steps["load_rises"]
    assert step["before"] == {"frontend": 1, "prefill": 1}
    assert step["after"]["frontend"] > 1
    assert max(step["ttft_ms"]) > 500  # the real frontends' TTFT breached its target
    assert result.reaction_s is not None
    # The collector's breach event, routed by the stack's own EventBridge rule, reached the
    # scaler; the first scale-out came from it or from the scaler's schedule, whichever looked
    # first at the breaching datapoint, never from the alarm (the backstop, a round later: each
    # tick drains the round's breach event before it evaluates the previous round's datapoints).
    by_breach = [
        d
        for d in decisions
        if d["kind"] == "scaling" and d["at"] >= step["began"] and d["trigger"]["kind"] == "breach"
    ]
    assert by_breach, scaling_since(decisions, step["began"], "frontend")
    assert result.first_scale_out_trigger in ("breach", "schedule"), scaling_since(
        decisions, step["began"], "frontend"
    )


def test_every_tick_of_the_load_phases_followed_a_collector_round(demo: Run) -> None:
    result, _ = demo
    assert result.samples
    assert result.ticks_without_round == 0


def test_falling_load_scales_in_and_ttft_is_back_under_its_target(demo: Run) -> None:
    result, decisions = demo
    falls, rises = result.steps["load_falls"], result.steps["load_rises"]
    assert falls["after"]["frontend"] < rises["after"]["frontend"], scaling_since(
        decisions, falls["began"], "frontend"
    )
    assert result.steps["load_falls"]["ttft_ms"][-1] < 500
    reasons = [
        d["services"]["frontend"]["reason"]
        for d in decisions
        if d["kind"] == "scaling" and d["services"]["frontend"]["action"] == "scale_in"
    ]
    assert reasons and all("scale in" in r for r in reasons)


def test_a_storm_of_duplicate_and_out_of_order_events_changes_nothing(demo: Run) -> None:
    result, _ = demo
    step = result.steps["storm"]
    assert step["events"] >= 4  # the member's two state changes twice, and the alarms' changes
    assert step["before"] == step["after"]
    assert "applied" not in step["statuses"]


def test_a_redeploy_dry_run_writes_nothing_and_the_real_one_serves_the_new_model(demo: Run) -> None:
    result, _ = demo
    step = result.steps["redeploy"]
    assert step["dry_run_status"] == "dry_run" and step["after_dry_run"] == step["before"]
    assert step["status"] == "applied"
    assert step["after"] == {r: n + 1 for r, n in step["before"].items()}
    assert step["serving_s"] is not None  # the restarted processes serve the new model name


def test_every_scaling_decision_is_logged_with_its_reasons(demo: Run) -> None:
    result, decisions = demo
    scaling = [d for d in decisions if d["kind"] == "scaling"]
    assert len(scaling) >= len(result.samples)  # at least one per tick (the schedule)
    for entry in scaling:
        for service in entry["services"].values():
            assert service["reason"] and service["metrics"]


def test_the_chart_is_written(demo: Run, tmp_path: Path) -> None:
    result, _ = demo
    path = write_chart(result, tmp_path / "timeline.png", 500.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000


# -- the single-task part: InfraMembers 1 -------------------------------------------------------


def test_the_single_task_layout_serves_unauthenticated_on_the_task_address(single_task: Run) -> None:
    result, _ = single_task
    step = result.steps["first_deploy"]
    assert step["status"] == "SUCCESS"
    assert step["serving_s"] is not None
    assert step["revisions"] == {"frontend": 1, "prefill": 1}
    # the development layout: plain URLs at the task's 10.x address, no plane credentials
    assert step["etcd_endpoints"].startswith("http://10."), step["etcd_endpoints"]
    assert step["nats_server"].startswith("nats://10."), step["nats_server"]
    assert step["secrets"] == []


def test_replacing_the_infra_task_rolls_once_and_serves_again(single_task: Run) -> None:
    result, decisions = single_task
    step = result.steps["replace_infra"]
    assert step["statuses"] == ["applied", "unchanged"]  # RUNNING of the new task, then STOPPED of the old
    assert step["after"] == {"frontend": 2, "prefill": 2}
    assert step["outage_s"] is not None
    rollouts = [
        d
        for d in decisions
        if d["kind"] == "endpoints" and d["trigger"].get("event_id") == "infra-new-running"
    ]
    assert len(rollouts) == 1


def test_without_the_operator_the_tasks_stop_and_come_back_on_the_old_address(single_task: Run) -> None:
    result, _ = single_task
    step = result.steps["replace_infra_without_operator"]
    assert step["without_operator_outage_s"] is None  # nothing served on the new address
    assert any("Essential container in task exited" in r for r in step["stopped_reasons"])
    assert step["tasks_started"] >= 1
    # and once the events reach the operator, it rolls and the deployment serves again
    assert step["recovered_after_events_s"] is not None
    assert step["after"] == {r: n + 1 for r, n in step["before"].items()}
