"""The IAM check bites: a permission taken out of the template fails the call that needs it.

Every test runs its handlers under their roles (tests/conftest.py); these tests show the
check is not vacuous. They run the product's core path (the infra watcher rolling the GPU
services after an infra replacement) under the stack's roles, then under a template with one
permission removed, and read back what the check recorded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devtools.ecs_world import build_world, task_private_ip, task_state_change_event
from devtools.handlers import load_handler_module
from devtools.iam_check import enforce as iam_check
from devtools.iam_check.roles import transformed_template
from dynamo_ecs.config import DeploymentConfig

CONFIG = DeploymentConfig()


@dataclass
class LambdaContext:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:dynamo-infra-watcher"


def without_action(template: dict[str, Any], policy: str, action: str) -> dict[str, Any]:
    """``template`` with ``action`` taken out of every statement of resource ``policy``."""
    changed = copy.deepcopy(template)
    document = changed["Resources"][policy]["Properties"]["PolicyDocument"]
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        statement["Action"] = [a for a in actions if a != action] or ["none:Nothing"]
    return changed


@pytest.fixture
def replaced_infra_event(state_table: str) -> dict[str, Any]:
    world = build_world(CONFIG, region="us-east-1")
    first = world.run_infra_task()
    world.create_gpu_services(pasted_ip=task_private_ip(first))
    second = world.replace_infra_task(first["taskArn"])
    return task_state_change_event(second, version=2, region="us-east-1", event_id="e-iam")


def test_the_core_path_is_within_the_infra_watchers_role(replaced_infra_event: dict[str, Any]) -> None:
    watcher = load_handler_module("infra_watcher")
    assert watcher.lambda_handler(replaced_infra_event, LambdaContext())["status"] == "applied"
    assert iam_check.take_violations() == []


@pytest.mark.parametrize(
    "action", ["ecs:ListTaskDefinitions", "ecs:RegisterTaskDefinition", "ecs:UpdateService", "iam:PassRole"]
)
def test_a_permission_taken_out_of_the_template_denies_the_call(
    replaced_infra_event: dict[str, Any], action: str
) -> None:
    # Given the stack's template without one permission of the endpoint reconciler's policy
    template = without_action(transformed_template(), "EndpointReconcilePolicy", action)
    watcher = load_handler_module("infra_watcher")
    # When the infra watcher handles the replacement under that role
    with iam_check.roles_from(template), pytest.raises(ClientError) as denied:
        watcher.lambda_handler(replaced_infra_event, LambdaContext())
    # Then the call that needs it is answered as AWS would, and the check names what was missing
    assert denied.value.response["Error"]["Code"] in ("AccessDeniedException", "AccessDenied")
    violations = iam_check.take_violations()
    assert violations, "the check recorded nothing"
    assert {v.function for v in violations} == {"infra_watcher"}
    assert any(v.request is not None and v.request.action == action for v in violations)
