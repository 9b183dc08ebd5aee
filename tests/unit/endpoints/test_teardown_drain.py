"""A Delete fits its time budget: the deregistration stops at its deadline, the wait leaves time to answer.

The wait itself, against moto with tasks STOPPING and instances in the launch hook:
``tests/integration/endpoints/test_teardown_states.py``.
"""

from __future__ import annotations

from typing import Any

from dynamo_ecs.endpoints.cfn_response import SAFETY_MARGIN_S, drain_budget_s
from dynamo_ecs.endpoints.teardown import Deadline, deregister_revisions


class Context:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_the_drain_budget_leaves_time_to_answer_cloudformation() -> None:
    assert drain_budget_s(Context(300_000)) == 300 - SAFETY_MARGIN_S - 15
    assert drain_budget_s(Context(1_000)) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class ManyRevisionsEcs:
    """``count`` ACTIVE revisions per family, 100 a page; each deregistration takes 1 s of ``clock``."""

    def __init__(self, families: list[str], count: int, clock: FakeClock) -> None:
        self.active = {
            f: [f"arn:aws:ecs:us-east-1:1:task-definition/{f}:{n}" for n in range(1, count + 1)]
            for f in families
        }
        self.active["dynamo-frontend-canary"] = [
            "arn:aws:ecs:us-east-1:1:task-definition/dynamo-frontend-canary:1"
        ]
        self.clock = clock
        self.deregistered: list[str] = []

    def get_paginator(self, name: str) -> Any:
        assert name == "list_task_definitions"
        ecs = self

        class Paginator:
            def paginate(self, familyPrefix: str, status: str) -> Any:  # noqa: N803 - boto3 names
                arns = [a for f, arns in ecs.active.items() if f.startswith(familyPrefix) for a in arns]
                for start in range(0, len(arns), 100):
                    yield {"taskDefinitionArns": arns[start : start + 100]}

        return Paginator()

    def deregister_task_definition(self, taskDefinition: str) -> None:  # noqa: N803 - boto3 names
        self.clock.t += 1.0
        self.deregistered.append(taskDefinition)


def test_deregistration_stops_at_its_deadline_however_many_revisions_there_are() -> None:
    # Given 5,000 revisions per family (1 s each) and 120 s to do it
    clock = FakeClock()
    families = ["dynamo-frontend", "dynamo-prefill"]
    ecs = ManyRevisionsEcs(families, 5_000, clock)
    # When the Delete deregisters them
    result = deregister_revisions(ecs, families, Deadline.after(120.0, clock))
    # Then it stops in time, says it did not finish, and never touched another family
    assert clock.t <= 120.0
    assert not result.complete and result.deregistered == len(ecs.deregistered) >= 100
    assert not any("canary" in arn for arn in ecs.deregistered)


def test_deregistration_finishes_when_there_is_time() -> None:
    clock = FakeClock()
    families = ["dynamo-frontend", "dynamo-prefill"]
    ecs = ManyRevisionsEcs(families, 30, clock)
    result = deregister_revisions(ecs, families, Deadline.after(120.0, clock))
    assert result.complete and result.deregistered == 60


def test_a_share_of_a_deadline_is_that_fraction_of_the_time_left() -> None:
    clock = FakeClock()
    deadline = Deadline.after(100.0, clock)
    clock.t = 20.0
    assert deadline.share(0.5).remaining() == 40.0
    assert Deadline.after(-5.0, clock).remaining() == 0.0
