"""A Delete waits for the GPU services to drain, within the time it has left."""

from __future__ import annotations

from typing import Any

from dynamo_ecs.endpoints.cfn_response import SAFETY_MARGIN_S, drain_budget_s
from dynamo_ecs.endpoints.gpu_services import wait_until_inactive


class DrainingEcs:
    """Reports DRAINING for the first ``polls`` describes, INACTIVE after."""

    def __init__(self, polls: int) -> None:
        self.polls = polls
        self.calls = 0

    def describe_services(self, cluster: str, services: list[str]) -> dict[str, Any]:
        self.calls += 1
        status = "DRAINING" if self.calls <= self.polls else "INACTIVE"
        return {"services": [{"serviceName": s, "status": status} for s in services]}


def test_waits_until_every_service_is_inactive() -> None:
    ecs = DrainingEcs(polls=2)
    assert wait_until_inactive(ecs, "gpu", ["a", "b"], wait_s=5.0, poll_s=0.01)
    assert ecs.calls == 3


def test_gives_up_when_the_time_runs_out() -> None:
    ecs = DrainingEcs(polls=10_000)
    assert not wait_until_inactive(ecs, "gpu", ["a"], wait_s=0.05, poll_s=0.01)
    assert 1 <= ecs.calls < 10_000


class Context:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_the_drain_budget_leaves_time_to_answer_cloudformation() -> None:
    assert drain_budget_s(Context(300_000)) == 300 - SAFETY_MARGIN_S - 15
    assert drain_budget_s(Context(1_000)) == 0.0
