"""IAM's evaluation rules as the tests' IAM check applies them (devtools/iam_check/evaluate.py)."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.iam_check.evaluate import AuthorizationRequest, Decision, decide

SERVICE = "arn:aws:ecs:us-east-1:123456789012:service/dynamo-gpu/dynamo-frontend"
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/dynamo-gpu"


def policy(*statements: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"Version": "2012-10-17", "Statement": list(statements)}]


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_nothing_allowed_is_denied() -> None:
    assert decide(policy(), AuthorizationRequest("ecs:UpdateService", SERVICE)) is Decision.IMPLICIT_DENY


def test_action_matches_case_insensitively_and_with_wildcards() -> None:
    documents = policy(allow("ECS:update*", SERVICE))
    assert decide(documents, AuthorizationRequest("ecs:UpdateService", SERVICE)) is Decision.ALLOWED
    assert decide(documents, AuthorizationRequest("ecs:DeleteService", SERVICE)) is Decision.IMPLICIT_DENY


def test_resource_matches_case_sensitively() -> None:
    documents = policy(allow("ecs:UpdateService", SERVICE.upper()))
    assert decide(documents, AuthorizationRequest("ecs:UpdateService", SERVICE)) is Decision.IMPLICIT_DENY


def test_question_mark_is_one_character_and_brackets_are_literal() -> None:
    documents = policy(allow("ecs:UpdateService", "arn:aws:ecs:*:*:service/dynamo-gpu/dynamo-?rontend"))
    assert decide(documents, AuthorizationRequest("ecs:UpdateService", SERVICE)) is Decision.ALLOWED
    literal = policy(allow("sns:Publish", "arn:aws:sns:us-east-1:1:[ab]"))
    assert (
        decide(literal, AuthorizationRequest("sns:Publish", "arn:aws:sns:us-east-1:1:a"))
        is Decision.IMPLICIT_DENY
    )


def test_explicit_deny_wins_over_any_allow() -> None:
    documents = policy(allow("ecs:*"), {"Effect": "Deny", "Action": "ecs:UpdateService", "Resource": SERVICE})
    assert decide(documents, AuthorizationRequest("ecs:UpdateService", SERVICE)) is Decision.EXPLICIT_DENY
    assert decide(documents, AuthorizationRequest("ecs:DescribeServices", SERVICE)) is Decision.ALLOWED


def test_not_action_and_not_resource() -> None:
    documents = policy({"Effect": "Allow", "NotAction": "iam:*", "NotResource": SERVICE})
    assert decide(documents, AuthorizationRequest("ecs:UpdateService", CLUSTER)) is Decision.ALLOWED
    assert decide(documents, AuthorizationRequest("ecs:UpdateService", SERVICE)) is Decision.IMPLICIT_DENY
    assert decide(documents, AuthorizationRequest("iam:PassRole", CLUSTER)) is Decision.IMPLICIT_DENY


def test_an_allow_whose_condition_fails_does_not_apply_it_does_not_deny() -> None:
    # moto's own evaluator turns this into an explicit deny, which would hide the second statement.
    documents = policy(
        allow(
            "ecs:ListTasks", Condition={"ArnEquals": {"ecs:cluster": "arn:aws:ecs:us-east-1:1:cluster/other"}}
        ),
        allow("ecs:ListTasks", Condition={"ArnEquals": {"ecs:cluster": CLUSTER}}),
    )
    assert (
        decide(documents, AuthorizationRequest("ecs:ListTasks", "*", {"ecs:cluster": CLUSTER}))
        is Decision.ALLOWED
    )


@pytest.mark.parametrize(
    ("operator", "expected", "context", "decision"),
    [
        ("StringEquals", "DynamoEcs", {"cloudwatch:namespace": "DynamoEcs"}, Decision.ALLOWED),
        ("StringEquals", "DynamoEcs", {"cloudwatch:namespace": "Other"}, Decision.IMPLICIT_DENY),
        ("StringEquals", "DynamoEcs", {}, Decision.IMPLICIT_DENY),  # a missing key fails
        ("StringEqualsIfExists", "DynamoEcs", {}, Decision.ALLOWED),
        ("StringLike", "Dynamo*", {"cloudwatch:namespace": "DynamoEcs"}, Decision.ALLOWED),
        ("StringNotEquals", "Other", {"cloudwatch:namespace": "DynamoEcs"}, Decision.ALLOWED),
        ("StringNotEquals", "DynamoEcs", {"cloudwatch:namespace": "DynamoEcs"}, Decision.IMPLICIT_DENY),
        ("ArnLike", "arn:aws:ecs:*:*:cluster/dynamo-*", {"cloudwatch:namespace": CLUSTER}, Decision.ALLOWED),
        ("Null", "true", {}, Decision.ALLOWED),
        ("Null", "true", {"cloudwatch:namespace": "x"}, Decision.IMPLICIT_DENY),
    ],
)
def test_condition_operators(
    operator: str, expected: str, context: dict[str, str], decision: Decision
) -> None:
    documents = policy(
        allow("cloudwatch:PutMetricData", Condition={operator: {"cloudwatch:namespace": expected}})
    )
    assert decide(documents, AuthorizationRequest("cloudwatch:PutMetricData", "*", context)) is decision


def test_a_list_of_expected_values_is_any_of_them() -> None:
    documents = policy(allow("ecs:ListTasks", Condition={"ArnEquals": {"ecs:cluster": ["x", CLUSTER]}}))
    assert (
        decide(documents, AuthorizationRequest("ecs:ListTasks", "*", {"ecs:cluster": CLUSTER}))
        is Decision.ALLOWED
    )


def test_an_operator_not_modelled_is_an_error_not_a_silent_decision() -> None:
    documents = policy(
        allow("ec2:DescribeInstances", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})
    )
    with pytest.raises(ValueError, match="IpAddress"):
        decide(documents, AuthorizationRequest("ec2:DescribeInstances", "*", {"aws:SourceIp": "10.1.1.1"}))
