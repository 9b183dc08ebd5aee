"""IAM's decision for one request against identity policies: explicit Deny, Allow, or implicit deny.

The rules are IAM's documented policy evaluation logic for identity-based policies in one
account (no resource policies, boundaries or SCPs in this stack's functions):

- a statement applies when its Action (or NotAction) matches the action, case-insensitively,
  its Resource (or NotResource) matches the resource, case-sensitively, and every condition
  holds; ``*`` matches any run of characters and ``?`` one character;
- any applying Deny decides; otherwise any applying Allow; otherwise the request is denied;
- a condition key the request does not carry fails its operator, except with ``...IfExists``
  (true) and ``Null`` (which tests for absence).

moto's own evaluator (``moto.iam.access_control``) turns an Allow statement whose condition
does not hold into an explicit Deny and ignores ``NotResource``; the stack's policies rely on
both (conditions on ``ecs:cluster``, ``cloudwatch:namespace``, ``iam:PassedToService``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from typing import Any

Statement = Mapping[str, Any]


class Decision(Enum):
    ALLOWED = "allowed"
    EXPLICIT_DENY = "explicitly denied"
    IMPLICIT_DENY = "not allowed"


@dataclass(frozen=True)
class AuthorizationRequest:
    """What IAM authorizes: one action on one resource, with the request's condition keys."""

    action: str
    resource: str = "*"
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


@cache
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    # IAM wildcards are * and ? only: escape everything else fnmatch would read ([...]).
    translated = fnmatch.translate(glob.replace("[", "\x00").replace("]", "\x01"))
    translated = translated.replace("\x00", r"\[").replace("\x01", r"\]")
    return re.compile(translated, re.IGNORECASE if ignore_case else 0)


def matches(glob: str, value: str, ignore_case: bool = False) -> bool:
    return _pattern(glob, ignore_case).match(value) is not None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _element_matches(
    statement: Statement, positive: str, negative: str, value: str, ignore_case: bool
) -> bool:
    if positive in statement:
        return any(matches(str(p), value, ignore_case) for p in _as_list(statement[positive]))
    if negative in statement:
        return not any(matches(str(p), value, ignore_case) for p in _as_list(statement[negative]))
    return False


def _compare(operator: str, expected: str, actual: str) -> bool:
    base = operator.removesuffix("IfExists")
    if base in ("StringEquals", "ArnEquals"):
        return actual == expected
    if base == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    if base in ("StringLike", "ArnLike"):
        return matches(expected, actual)
    if base == "Bool":
        return actual.lower() == expected.lower()
    if base.startswith("Numeric"):
        a, e = float(actual), float(expected)
        return {
            "NumericEquals": a == e,
            "NumericLessThan": a < e,
            "NumericLessThanEquals": a <= e,
            "NumericGreaterThan": a > e,
            "NumericGreaterThanEquals": a >= e,
        }[base]
    raise ValueError(
        f"condition operator {operator} is not modelled; add it to devtools/iam_check/evaluate.py"
    )


NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
}


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, Any]) -> bool:
    qualifier, _, bare = operator.rpartition(":")
    present = key in context
    if bare == "Null":
        wants_absent = str(_as_list(expected)[0]).lower() == "true"
        return wants_absent != present
    if not present:
        return bare.endswith("IfExists")
    actual = [str(v) for v in _as_list(context[key])]
    expected_values = [str(v) for v in _as_list(expected)]
    core = bare.removesuffix("IfExists")
    negated = core in NEGATED
    positive = NEGATED.get(core, core)

    def one(value: str) -> bool:
        hit = any(_compare(positive, e, value) for e in expected_values)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in actual)
    return any(one(v) for v in actual)


def _conditions_hold(statement: Statement, context: Mapping[str, Any]) -> bool:
    for operator, pairs in statement.get("Condition", {}).items():
        for key, expected in pairs.items():
            if not _condition_holds(operator, key, expected, context):
                return False
    return True


def statement_applies(statement: Statement, request: AuthorizationRequest) -> bool:
    return (
        _element_matches(statement, "Action", "NotAction", request.action, ignore_case=True)
        and _element_matches(statement, "Resource", "NotResource", request.resource, ignore_case=False)
        and _conditions_hold(statement, request.context)
    )


def statements_of(documents: Iterable[Mapping[str, Any]]) -> list[Statement]:
    found: list[Statement] = []
    for document in documents:
        found.extend(_as_list(document.get("Statement", [])))
    return found


def decide(documents: Iterable[Mapping[str, Any]], request: AuthorizationRequest) -> Decision:
    applying = [s for s in statements_of(documents) if statement_applies(s, request)]
    if any(s.get("Effect") == "Deny" for s in applying):
        return Decision.EXPLICIT_DENY
    if any(s.get("Effect") == "Allow" for s in applying):
        return Decision.ALLOWED
    return Decision.IMPLICIT_DENY
