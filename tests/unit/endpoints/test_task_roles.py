"""The role rules of GPU task definitions (endpoints/task_roles.py): pure."""

from __future__ import annotations

import pytest

from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.endpoints.task_roles import (
    StackRoles,
    check_passable,
    with_stack_roles,
    written_role_problems,
)
from dynamo_ecs.errors import ConfigError, InvalidInputError

ROLES = StackRoles(
    execution="arn:aws:iam::111122223333:role/dynamo-GpuExecutionRole-1",
    task="arn:aws:iam::111122223333:role/dynamo-GpuTaskRole-2",
)
GENERIC = "arn:aws:iam::AWS_ID:role/ecsTaskExecutionRole"


def test_written_roles_are_the_stacks_own_or_left_out() -> None:
    assert list(written_role_problems({}, ROLES, "111122223333")) == []
    placeholder = {
        "executionRoleArn": ROLES.execution.replace("111122223333", "AWS_ID"),
        "taskRoleArn": ROLES.task,
    }
    assert list(written_role_problems(placeholder, ROLES, "111122223333")) == []
    swapped = {"executionRoleArn": ROLES.task, "taskRoleArn": 7}
    problems = list(written_role_problems(swapped, ROLES, "111122223333"))
    assert [p.split(":", 1)[0] for p in problems] == ["$.executionRoleArn", "$.taskRoleArn"]
    assert f"write {ROLES.execution!r}" in problems[0] and f"write {ROLES.task!r}" in problems[1]


def test_a_rendering_gets_the_stacks_roles_with_a_note_per_replaced_role() -> None:
    fitted, notes = with_stack_roles({"family": "f", "executionRoleArn": GENERIC}, ROLES)
    assert (fitted["executionRoleArn"], fitted["taskRoleArn"]) == (ROLES.execution, ROLES.task)
    assert len(notes) == 1 and notes[0].startswith(f"executionRoleArn: the spec names {GENERIC}")
    assert with_stack_roles(fitted, ROLES) == (fitted, [])


def test_the_last_look_passes_only_the_stacks_roles() -> None:
    check_passable({"executionRoleArn": ROLES.execution}, ROLES)
    check_passable({"taskRoleArn": GENERIC}, None)  # unconfigured: passed as they are
    with pytest.raises(InvalidInputError, match="taskRoleArn"):
        check_passable({"family": "f", "taskRoleArn": GENERIC}, ROLES)


def test_the_config_takes_both_roles_or_neither() -> None:
    from dynamo_ecs.config import load_config

    with pytest.raises(ConfigError, match="DYNAMO_ECS_GPU_TASK_ROLE_ARN"):
        load_config({"DYNAMO_ECS_GPU_EXECUTION_ROLE_ARN": ROLES.execution})
    with pytest.raises(ConfigError, match="gpu_task_role_arn"):
        load_config(
            {"DYNAMO_ECS_GPU_EXECUTION_ROLE_ARN": ROLES.execution, "DYNAMO_ECS_GPU_TASK_ROLE_ARN": "x"}
        )
    config = DeploymentConfig(gpu_execution_role_arn=ROLES.execution, gpu_task_role_arn=ROLES.task)
    assert StackRoles.from_config(config) == ROLES
    assert StackRoles.from_config(DeploymentConfig()) is None
