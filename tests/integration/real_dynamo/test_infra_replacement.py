"""Infra replaced under real Dynamo: without the operator it never recovers; with it, it does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.handlers import load_handler_module
from devtools.local_ecs.client import first_success
from devtools.local_ecs.deployment import MODEL, local_deployment
from devtools.local_ecs.outage import replace_infra_and_measure
from devtools.services import MotoServer

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time

# Long enough for the workers to lose their lease (~10 s TTL) and exit, ECS to start
# replacements, and those to fail too; short enough for the suite.
WITHOUT_OPERATOR_BOUND_S = 60.0
WITH_OPERATOR_BOUND_S = 60.0


class Context:
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:dynamo-infra-watcher"


def test_without_the_operator_the_workers_exit_and_come_back_on_the_old_address(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    with local_deployment(tmp_path) as deployment:
        assert first_success(deployment.frontend_url(), MODEL, 60, on_wait=deployment.runner.tick)
        revisions = {t.task_definition for t in deployment.runner.tasks}
        # When Fargate replaces the infra task and nobody updates the GPU task definitions
        result = replace_infra_and_measure(deployment, None, WITHOUT_OPERATOR_BOUND_S)
        # Then no completion succeeds within the bound
        assert result.outage_s is None
        # and the tasks ran their course: stopped (an essential container exited), replaced by
        # ECS from the same task definitions, which still name the old address
        assert any("Essential container in task exited" in r for r in result.stopped_reasons), result
        assert result.tasks_started >= 1
        assert {t.task_definition for t in deployment.runner.tasks} <= revisions


def test_with_the_operator_the_services_roll_onto_the_new_address_and_serve(
    state_table: str, tmp_path: Path
) -> None:
    watcher = load_handler_module("infra_watcher", fresh=True)

    def infra_watcher(event: dict[str, Any]) -> dict[str, Any]:
        return dict(watcher.lambda_handler(event, Context()))

    with local_deployment(tmp_path) as deployment:
        assert first_success(deployment.frontend_url(), MODEL, 60, on_wait=deployment.runner.tick)
        before = {t.task_definition for t in deployment.runner.tasks}
        # When the infra task is replaced and its state changes reach infra_watcher
        result = replace_infra_and_measure(deployment, infra_watcher, WITH_OPERATOR_BOUND_S)
        # Then one rollout, and completions succeed again on the new revisions
        assert result.watcher_statuses == ["applied", "unchanged"], result
        assert result.outage_s is not None, result
        after = {t.task_definition for t in deployment.runner.tasks}
        assert after and not (after & before)
        new_address = deployment.infra.address
        for task in deployment.runner.tasks:
            container = next(iter(task.local.containers.values()))
            assert container.plan.env["ETCD_ENDPOINTS"] == f"http://{new_address}:2379"
