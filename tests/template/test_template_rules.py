"""template.yaml's Rules refuse what the operator's config refuses, before anything is created.

The Rules are evaluated here as CloudFormation does (parameter values are strings; ``Fn::Equals``,
``Fn::Contains``, ``Fn::And``, ``Fn::Or``, ``Fn::Not``; a rule whose ``RuleCondition`` is false
does not apply), over every combination of minimums, maximums and budgets the checks depend
on, against `load_config` with the environment the same parameters give the functions.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from devtools.template import load_template
from devtools.template_rules import MAX_BUDGET_IN_RULES, MAX_MINIMUM, rules
from dynamo_ecs import capacity
from dynamo_ecs.config import load_config
from dynamo_ecs.errors import ConfigError
from tests.template.stack import transformed_template
from tests.template.test_template_structure import default_environment


def evaluate(condition: Any, parameters: dict[str, str]) -> Any:
    if isinstance(condition, str):
        return condition
    if isinstance(condition, list):
        return [evaluate(c, parameters) for c in condition]
    [(function, args)] = condition.items()
    if function == "Ref":
        return parameters[args]
    values = evaluate(args, parameters)
    if function == "Fn::Equals":
        return values[0] == values[1]
    if function == "Fn::Contains":
        return values[1] in values[0]
    if function == "Fn::And":
        return all(values)
    if function == "Fn::Or":
        return any(values)
    if function == "Fn::Not":
        return not values[0]
    raise AssertionError(f"{function} is not a Rules function")


def refusals(parameters: dict[str, str]) -> list[str]:
    """The AssertDescription of every failed assertion, as CloudFormation would report them."""
    failed = []
    for rule in load_template()["Rules"].values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], parameters):
            continue
        failed += [
            a["AssertDescription"] for a in rule["Assertions"] if not evaluate(a["Assert"], parameters)
        ]
    return failed


def config_refuses(parameters: dict[str, str]) -> bool:
    try:
        load_config(default_environment(**parameters))
    except ConfigError:
        return True
    return False


def with_defaults(**overrides: str) -> dict[str, str]:
    template = load_template()
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    return values | overrides


def test_the_rules_are_the_generated_ones_and_survive_the_transform() -> None:
    assert load_template()["Rules"] == rules()
    assert transformed_template()["Rules"] == rules()
    parameters = load_template()["Parameters"]
    assert parameters["FrontendMin"]["MaxValue"] == MAX_MINIMUM == parameters["PrefillMin"]["MaxValue"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"GpuBudget": "1"}, "GpuBudget must be at least FrontendMin + PrefillMin"),
        ({"FrontendMin": "3", "FrontendMax": "2"}, "FrontendMax must be at least FrontendMin"),
        ({"PrefillMin": "2", "PrefillMax": "1"}, "PrefillMax must be at least PrefillMin"),
        ({"GpuInstanceType": "g6e.12xlarge", "GpuBudget": "2"}, "GpuBudget must be at least 4 on a 4-GPU"),
        ({"GpuInstanceType": "p5.48xlarge", "GpuBudget": "7"}, "GpuBudget must be at least 8 on a 8-GPU"),
    ],
)
def test_a_bad_combination_is_refused_with_a_message_a_person_understands(
    overrides: dict[str, str], message: str
) -> None:
    parameters = with_defaults(**overrides)
    assert any(m.startswith(message) for m in refusals(parameters)), refusals(parameters)
    assert config_refuses(parameters)


def test_the_defaults_pass() -> None:
    assert refusals(with_defaults()) == []


def test_on_one_gpu_types_the_rules_refuse_exactly_what_the_config_refuses() -> None:
    # Every combination of minimums, of maximums just below and at them, and of budgets up to
    # where every pair of minimums fits
    checked = 0
    for f_min, p_min in itertools.product(range(1, MAX_MINIMUM + 1), range(MAX_MINIMUM + 1)):
        for f_max, p_max, budget in itertools.product(
            {f_min - 1, f_min} - {0},
            {p_min - 1, p_min} - {-1},
            range(1, MAX_BUDGET_IN_RULES + 2),
        ):
            parameters = with_defaults(
                FrontendMin=str(f_min),
                PrefillMin=str(p_min),
                FrontendMax=str(f_max),
                PrefillMax=str(p_max),
                GpuBudget=str(budget),
            )
            assert bool(refusals(parameters)) == config_refuses(parameters), parameters
            checked += 1
    assert checked > 4_000


@pytest.mark.parametrize("name", sorted(n for n, t in capacity.INSTANCE_TYPES.items() if t.gpus > 1))
def test_on_multi_gpu_types_whatever_the_rules_refuse_the_config_refuses(name: str) -> None:
    # The exact check (GPUs of the instances the minimums need) is the config's: the bootstrap
    # answers FAILED with it within seconds. The Rules refuse a subset: never a valid stack.
    for f_min, p_min, budget in itertools.product(
        range(1, 5), range(5), range(1, 3 * capacity.INSTANCE_TYPES[name].gpus)
    ):
        parameters = with_defaults(
            GpuInstanceType=name, FrontendMin=str(f_min), PrefillMin=str(p_min), GpuBudget=str(budget)
        )
        if refusals(parameters):
            assert config_refuses(parameters), parameters
