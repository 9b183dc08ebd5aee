"""template.yaml's ``Rules``: parameter combinations CloudFormation refuses before it creates anything.

A Rule can compare a parameter only with literals (``Fn::Equals``, ``Fn::Contains``), never
with another parameter or a sum, so "FrontendMax >= FrontendMin" becomes one assertion per
possible minimum, and "GpuBudget >= FrontendMin + PrefillMin" one per possible sum. The
minimums are capped (`MAX_MINIMUM`) so that every combination is covered in a few lines.
The same checks live in `dynamo_ecs.config` (they also guard every function at start);
tests/template/test_template_rules.py evaluates these Rules against it on every parameter set.

``python -m devtools.template_rules`` prints the block to paste into template.yaml.
"""

from __future__ import annotations

import json
from typing import Any

from dynamo_ecs import capacity

MAX_MINIMUM = 8  # FrontendMin and PrefillMin MaxValue in template.yaml
MAX_BUDGET_IN_RULES = 2 * MAX_MINIMUM  # above it every pair of minimums fits


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def numbers(low: int, high: int) -> list[str]:
    """``low`` .. ``high`` inclusive, as the strings CloudFormation compares Number parameters as."""
    return [str(n) for n in range(low, high + 1)]


def below(name: str, limit: int, low: int) -> dict[str, Any]:
    """Parameter ``name`` (never less than ``low``) is below ``limit``."""
    return {"Fn::Contains": [numbers(low, limit - 1), ref(name)]}


def at_least(name: str, limit: int, low: int) -> dict[str, Any]:
    return {"Fn::Not": [below(name, limit, low)]}


def any_of(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return conditions[0] if len(conditions) == 1 else {"Fn::Or": conditions}


def minimums_sum_at_least(total: int) -> dict[str, Any]:
    """FrontendMin (1..MAX_MINIMUM) + PrefillMin (0..MAX_MINIMUM) >= ``total``."""
    clauses: list[dict[str, Any]] = []
    if total <= MAX_MINIMUM:
        clauses.append(at_least("FrontendMin", total, 1))
    for frontend in range(1, min(total - 1, MAX_MINIMUM) + 1):
        needed = total - frontend
        if needed <= MAX_MINIMUM:
            clauses.append(
                {
                    "Fn::And": [
                        {"Fn::Equals": [ref("FrontendMin"), str(frontend)]},
                        at_least("PrefillMin", needed, 0),
                    ]
                }
            )
    return any_of(clauses)


def max_at_least_min(role: str, lowest_min: int, lowest_max: int) -> dict[str, Any]:
    assertions = [
        {
            "Assert": {"Fn::Or": [below(f"{role}Min", m, lowest_min), at_least(f"{role}Max", m, lowest_max)]},
            "AssertDescription": f"{role}Max must be at least {role}Min ({role}Min is {m} or more here)",
        }
        for m in range(max(lowest_min, lowest_max) + 1, MAX_MINIMUM + 1)
    ]
    return {"Assertions": assertions}


def budget_covers_minimums() -> dict[str, Any]:
    return {
        "Assertions": [
            {
                "Assert": {
                    "Fn::Or": [{"Fn::Not": [minimums_sum_at_least(total)]}, at_least("GpuBudget", total, 1)]
                },
                "AssertDescription": (
                    "GpuBudget must be at least FrontendMin + PrefillMin (one GPU per task), "
                    f"here {total} or more"
                ),
            }
            for total in range(2, MAX_BUDGET_IN_RULES + 1)
        ]
    }


def budget_holds_one_instance(gpus: int) -> dict[str, Any]:
    types = sorted(name for name, t in capacity.INSTANCE_TYPES.items() if t.gpus == gpus)
    return {
        "RuleCondition": {"Fn::Contains": [types, ref("GpuInstanceType")]},
        "Assertions": [
            {
                "Assert": at_least("GpuBudget", gpus, 1),
                "AssertDescription": (
                    f"GpuBudget must be at least {gpus} on a {gpus}-GPU instance type: the budget counts "
                    "the GPUs of whole instances (one frontend task per instance)"
                ),
            }
        ],
    }


def rules() -> dict[str, Any]:
    multi_gpu = sorted({t.gpus for t in capacity.INSTANCE_TYPES.values() if t.gpus > 1})
    return {
        "FrontendMaxAtLeastMin": max_at_least_min("Frontend", 1, 1),
        "PrefillMaxAtLeastMin": max_at_least_min("Prefill", 0, 0),
        "GpuBudgetCoversTheMinimums": budget_covers_minimums(),
        **{f"GpuBudgetHoldsOne{gpus}GpuInstance": budget_holds_one_instance(gpus) for gpus in multi_gpu},
    }


def as_yaml(block: dict[str, Any]) -> str:
    """The Rules section, one assertion per line (JSON flow style, which YAML reads as is)."""
    lines = ["Rules:"]
    for name, rule in block.items():
        lines.append(f"  {name}:")
        if "RuleCondition" in rule:
            lines.append(f"    RuleCondition: {json.dumps(rule['RuleCondition'])}")
        lines.append("    Assertions:")
        for assertion in rule["Assertions"]:
            lines.append(f"      - Assert: {json.dumps(assertion['Assert'])}")
            lines.append(f"        AssertDescription: {json.dumps(assertion['AssertDescription'])}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(as_yaml(rules()), end="")
