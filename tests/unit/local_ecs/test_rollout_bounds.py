"""ECS's rolling-update bounds as the local runner applies them (`devtools.local_ecs.runner`)."""

from __future__ import annotations

import pytest

from devtools.local_ecs.runner import RolloutBounds, primary_deployment


@pytest.mark.parametrize(
    ("desired", "configuration", "minimum_healthy", "maximum"),
    [
        (1, {"minimumHealthyPercent": 100, "maximumPercent": 200}, 1, 2),  # the GPU services'
        (1, {}, 1, 2),  # ECS's defaults for a REPLICA service
        (4, {"minimumHealthyPercent": 50, "maximumPercent": 200}, 2, 8),  # ECS's documented example
        (2, {"minimumHealthyPercent": 75, "maximumPercent": 150}, 2, 3),  # minimum up, maximum down
        (1, {"minimumHealthyPercent": 0, "maximumPercent": 100}, 0, 1),  # the infra members'
        (0, {"minimumHealthyPercent": 100, "maximumPercent": 200}, 0, 0),
    ],
)
def test_bounds_round_the_minimum_up_and_the_maximum_down(
    desired: int, configuration: dict[str, int], minimum_healthy: int, maximum: int
) -> None:
    service = {"desiredCount": desired, "deploymentConfiguration": configuration}
    assert RolloutBounds.of(service) == RolloutBounds(minimum_healthy, maximum)


def test_the_primary_deployment_is_the_one_a_new_task_belongs_to() -> None:
    service = {
        "deployments": [
            {"id": "ecs-svc/2", "status": "PRIMARY"},
            {"id": "ecs-svc/1", "status": "ACTIVE"},
        ]
    }
    assert primary_deployment(service) == "ecs-svc/2"
    assert primary_deployment({}) == ""
