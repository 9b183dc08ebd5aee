"""Every function that may register a GPU task definition knows the only roles it may pass."""

from __future__ import annotations

from typing import Any

from tests.template.stack import as_list, iam_statements, transformed_template


def pass_role_resources(template: dict[str, Any], policy: str) -> list[Any]:
    """The roles the managed policy ``policy`` lets its holders pass."""
    return [
        resource
        for owner, statement in iam_statements(template)
        if owner == policy and "iam:PassRole" in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]


def test_the_role_variables_are_the_roles_the_policy_lets_the_function_pass() -> None:
    # Given the deployed shape: each function with its role's managed policies, after the transform
    template = transformed_template()
    resources = template["Resources"]
    registering = []
    for name, function in resources.items():
        if function["Type"] != "AWS::Lambda::Function":
            continue
        role = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]
        policies = [p["Ref"] for p in role["Properties"].get("ManagedPolicyArns", []) if isinstance(p, dict)]
        passable = [r for policy in policies for r in pass_role_resources(template, policy)]
        if not passable:
            continue
        registering.append(name)
        # Then its configuration names exactly those roles: what it registers is what it may pass
        variables = function["Properties"]["Environment"]["Variables"]
        assert [
            variables["DYNAMO_ECS_GPU_EXECUTION_ROLE_ARN"],
            variables["DYNAMO_ECS_GPU_TASK_ROLE_ARN"],
        ] == [
            {"Fn::GetAtt": ["GpuExecutionRole", "Arn"]},
            {"Fn::GetAtt": ["GpuTaskRole", "Arn"]},
        ], name
        assert sorted(map(str, passable)) == sorted(
            map(
                str,
                [variables["DYNAMO_ECS_GPU_EXECUTION_ROLE_ARN"], variables["DYNAMO_ECS_GPU_TASK_ROLE_ARN"]],
            )
        ), name
    assert sorted(registering) == ["BootstrapFunction", "InfraWatcherFunction", "RedeployFunction"]
