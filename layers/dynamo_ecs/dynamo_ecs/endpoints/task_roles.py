"""The roles a GPU task definition names: the stack's two, the only ones the operator may pass. Pure.

RegisterTaskDefinition passes a task definition's ``executionRoleArn`` and ``taskRoleArn`` to
ECS, which needs ``iam:PassRole`` on each. The operator's PassRole (template.yaml,
``EndpointReconcilePolicy``) allows only the stack's ``GpuExecutionRole`` and ``GpuTaskRole``,
so any other role is AccessDenied on AWS (moto lets it through). Dynamo's example files, and
the default specs built from them, name the generic ``ecsTaskExecutionRole`` of ECS's setup
guide for both.

Two rules, one per kind of input:

- **What a user writes** (a redeploy's spec) is run as written or refused
  (`written_role_problems`): each role field names the stack's role for that field or is
  left out; anything else is refused with the field and the ARN to write, before anything
  is stored.
- **What the operator renders** (a stored spec, the default spec, the bootstrap's) always
  names the stack's roles (`with_stack_roles`): a role left out is filled, any other is
  replaced, and each replacement is a note in the result and the decision log. The automatic
  path must never refuse: a refusal there would leave the GPU services on a dead etcd/NATS
  address. `check_passable` is the last look before RegisterTaskDefinition.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.errors import InvalidInputError

ROLE_FIELDS = ("executionRoleArn", "taskRoleArn")


@dataclass(frozen=True)
class StackRoles:
    """The stack's GpuExecutionRole and GpuTaskRole ARNs."""

    execution: str
    task: str

    @classmethod
    def from_config(cls, config: DeploymentConfig) -> StackRoles | None:
        if config.gpu_execution_role_arn is None or config.gpu_task_role_arn is None:
            return None
        return cls(config.gpu_execution_role_arn, config.gpu_task_role_arn)

    def for_field(self, field: str) -> str:
        return self.execution if field == "executionRoleArn" else self.task


def written_role_problems(written: Mapping[str, Any], roles: StackRoles, account_id: str) -> Iterator[str]:
    """Each role a user wrote that is not the stack's role for its field, as ``$.field: problem; fix``.

    ``AWS_ID`` in a written ARN counts as the operator's account (the renderer fills it).
    """
    for field in ROLE_FIELDS:
        if field not in written:
            continue
        value, wanted = written[field], roles.for_field(field)
        if isinstance(value, str) and value.replace("AWS_ID", account_id) == wanted:
            continue
        yield (
            f"$.{field}: {str(value)[:300]!r} is not a role this stack may pass to ECS (the operator's "
            f"iam:PassRole allows only the stack's GPU roles); write {wanted!r} or leave {field} out "
            "(the stack's role is used)"
        )


def with_stack_roles(rendered: dict[str, Any], roles: StackRoles) -> tuple[dict[str, Any], list[str]]:
    """``rendered`` naming the stack's roles, and one note per role it named that was replaced.

    A role left out is filled without a note (the documented default).
    """
    fitted = dict(rendered)
    notes = []
    for field in ROLE_FIELDS:
        value, wanted = rendered.get(field), roles.for_field(field)
        if value == wanted:
            continue
        if value is not None:
            notes.append(
                f"{field}: the spec names {str(value)[:300]}, which the operator may not pass to ECS; "
                f"the stack's {wanted} is used"
            )
        fitted[field] = wanted
    return fitted, notes


def check_passable(rendered: Mapping[str, Any], roles: StackRoles | None) -> None:
    """Raise before RegisterTaskDefinition if ``rendered`` names a role outside the stack's two."""
    if roles is None:
        return
    for field in ROLE_FIELDS:
        value = rendered.get(field)
        if value is not None and value != roles.for_field(field):
            raise InvalidInputError(
                f"{rendered.get('family', '?')}: {field} {str(value)[:300]!r} is not the stack's "
                f"{roles.for_field(field)!r}; the operator may pass no other role, nothing was registered"
            )
