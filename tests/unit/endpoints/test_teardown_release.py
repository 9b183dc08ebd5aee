"""One pass of the Delete over the GPU group: what it sends for each lifecycle state.

The states and refusals against moto (with `devtools.aws_state_rules`) are in
``tests/template/test_teardown_states_on_moto.py``; here, the pass's choices, with an Auto
Scaling stand-in that answers as told and records what it was sent.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from dynamo_ecs.endpoints.teardown import release_instances


def refusal(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "refused"}}, operation)


class Group:
    """An Auto Scaling group of ``instances`` (id -> lifecycle state, all protected)."""

    def __init__(self, instances: dict[str, str], size: int = 3) -> None:
        self.instances = instances
        self.size = size
        self.sent: list[tuple[str, Any]] = []
        self.refuse: dict[str, ClientError] = {}

    def describe_auto_scaling_groups(self, AutoScalingGroupNames: list[str]) -> dict[str, Any]:  # noqa: N803
        instances = [
            {"InstanceId": i, "LifecycleState": state, "ProtectedFromScaleIn": True}
            for i, state in self.instances.items()
        ]
        group = {"MinSize": 0, "MaxSize": self.size, "DesiredCapacity": self.size, "Instances": instances}
        return {"AutoScalingGroups": [group]}

    def _call(self, operation: str, detail: Any) -> None:
        if operation in self.refuse:
            raise self.refuse.pop(operation)
        self.sent.append((operation, detail))

    def update_auto_scaling_group(self, **kwargs: Any) -> None:
        self._call("UpdateAutoScalingGroup", kwargs["DesiredCapacity"])
        self.size = 0

    def complete_lifecycle_action(self, **kwargs: Any) -> None:
        self._call("CompleteLifecycleAction", (kwargs["InstanceId"], kwargs["LifecycleActionResult"]))

    def set_instance_protection(self, **kwargs: Any) -> None:
        self._call("SetInstanceProtection", kwargs["InstanceIds"])


def test_each_state_gets_what_aws_allows_in_it() -> None:
    # Given one instance per state a launch shortly before the Delete leaves
    group = Group(
        {
            "i-in-service": "InService",
            "i-standby": "Standby",
            "i-in-hook": "Pending:Wait",
            "i-pending": "Pending",
            "i-proceeding": "Pending:Proceed",
            "i-leaving": "Terminating:Wait",
        }
    )
    # When a pass runs
    result = release_instances(group, "dynamo-gpu", "dynamo-warm-up")
    # Then the group is sized to zero, the launch in the hook abandoned, only InService and
    # Standby unprotected, and the two still on their way to InService left for the next pass
    assert group.sent == [
        ("UpdateAutoScalingGroup", 0),
        ("CompleteLifecycleAction", ("i-in-hook", "ABANDON")),
        ("SetInstanceProtection", ["i-in-service", "i-standby"]),
    ]
    assert (result.abandoned, result.unprotected) == (1, 2)
    assert result.launching == ["i-pending", "i-proceeding"] and not result.settled


def test_while_tasks_stop_nothing_is_unprotected_and_launches_are_still_abandoned() -> None:
    group = Group({"i-in-service": "InService", "i-in-hook": "Pending:Wait"})
    result = release_instances(group, "dynamo-gpu", "dynamo-warm-up", unprotect=False)
    assert [op for op, _ in group.sent] == ["UpdateAutoScalingGroup", "CompleteLifecycleAction"]
    assert result.protected == ["i-in-service"] and not result.settled


def test_refusals_that_may_pass_later_are_retried_on_the_next_pass() -> None:
    # Given Auto Scaling refuses each call once: the resize (a scaling activity), the hook (its
    # user data completed it meanwhile), the protection (the instance left InService meanwhile)
    group = Group({"i-in-service": "InService", "i-in-hook": "Pending:Wait"})
    group.refuse = {
        "UpdateAutoScalingGroup": refusal("ScalingActivityInProgress", "UpdateAutoScalingGroup"),
        "CompleteLifecycleAction": refusal("ValidationError", "CompleteLifecycleAction"),
        "SetInstanceProtection": refusal("ValidationError", "SetInstanceProtection"),
    }
    # When a pass runs, then nothing fails and nothing is settled
    first = release_instances(group, "dynamo-gpu", "dynamo-warm-up")
    assert not first.sized_to_zero and not first.settled
    assert (first.abandoned, first.unprotected) == (0, 0)
    # When the next pass runs, then it does what the first could not
    second = release_instances(group, "dynamo-gpu", "dynamo-warm-up")
    assert second.sized_to_zero and (second.abandoned, second.unprotected) == (1, 1)


def test_other_errors_are_not_swallowed() -> None:
    group = Group({"i-in-service": "InService"})
    group.refuse = {"SetInstanceProtection": refusal("AccessDenied", "SetInstanceProtection")}
    with pytest.raises(ClientError, match="AccessDenied"):
        release_instances(group, "dynamo-gpu", "dynamo-warm-up")


def test_a_group_that_is_gone_has_nothing_to_release() -> None:
    class Gone(Group):
        def describe_auto_scaling_groups(self, AutoScalingGroupNames: list[str]) -> dict[str, Any]:  # noqa: N803
            return {"AutoScalingGroups": []}

    gone = Gone({})
    result = release_instances(gone, "dynamo-gpu", "dynamo-warm-up")
    assert not result.found and result.settled and gone.sent == []
