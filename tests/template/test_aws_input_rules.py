"""Every value CloudFormation passes to AWS meets AWS's documented input rules.

moto accepts a security group rule description with an apostrophe and a gp3 volume at 1000
MiB/s on 3000 IOPS; AWS refuses both (the first fails the stack, the second every instance
launch). `devtools.aws_input_rules` resolves the transformed template for the defaults and for
every extreme each parameter admits, and checks each value against the rule AWS documents
for it (botocore's models first, AWS's guides where the model says it only in prose).
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import pytest

from devtools import aws_input_rules as air
from tests.template.stack import transformed_template
from tests.template.test_template_rules import refusals


@cache
def template() -> dict[str, Any]:
    return transformed_template()


@cache
def parameter_sets() -> list[air.ParameterSet]:
    return air.parameter_sets(template(), lambda values: bool(refusals(values)))


def violations_by_set(sets: list[air.ParameterSet]) -> list[str]:
    """Each value AWS would refuse, once, with the parameter sets that give it."""
    found: dict[str, list[str]] = {}
    for each in sets:
        for violation in air.check_template(template(), each.values):
            found.setdefault(str(violation), []).append(each.label)
    return [
        f"{violation}\n    with {len(labels)} set(s): {', '.join(labels[:3])}"
        + (" ..." if len(labels) > 3 else "")
        for violation, labels in found.items()
    ]


def test_the_defaults_meet_every_rule() -> None:
    [defaults] = [s for s in parameter_sets() if s.label == "defaults"]
    assert violations_by_set([defaults]) == []


def test_every_extreme_a_parameter_admits_meets_every_rule() -> None:
    """Each parameter's AllowedValues, Min/MaxValue, and its shortest, longest and most varied
    value (one parameter at a time, the rest at their defaults), then every pattern parameter at
    its longest at once; sets the template's Rules refuse are left out (CloudFormation refuses them first)."""
    sets = parameter_sets()
    assert len(sets) > 100, "the extremes were not generated"
    found = violations_by_set(sets)
    assert found == [], f"{len(found)} value(s) AWS refuses:\n" + "\n".join(found)


def test_each_parameter_extreme_is_a_value_the_parameter_admits() -> None:
    specs = template()["Parameters"]
    by_label = {s.label: s for s in parameter_sets()}
    # Given DeploymentName's pattern and the longest value it admits
    longest = by_label["DeploymentName long (20 chars)"].values["DeploymentName"]
    assert len(longest) == 20
    for each in parameter_sets():
        for name, value in each.values.items():
            assert air.parameter_refuses(specs[name], value) is None, (each.label, name)
    # ... and a throughput at the parameter's own maximum is tried
    throughput_max = specs["GpuRootVolumeThroughput"]["MaxValue"]
    assert f"GpuRootVolumeThroughput={throughput_max} (MaxValue)" in by_label


@pytest.mark.parametrize(
    ("description", "refused"),
    [
        ("the metrics collector scrapes the frontends' /metrics", True),
        ("to the frontends' port 8000 only", True),
        ("API clients in the allowed CIDR (HTTPS: 443) #1 [a+b=c]; {x}! $*", False),
        ("x" * 255, False),
        ("x" * 256, True),
    ],
)
def test_a_security_group_rule_description_is_checked_as_ec2_does(description: str, refused: bool) -> None:
    resources = {
        "Rule": {
            "Type": "AWS::EC2::SecurityGroupIngress",
            "Properties": {"Description": description, "SourceSecurityGroupId": "sg-1", "IpProtocol": "tcp"},
        },
        "Group": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "g",
                "SecurityGroupEgress": [
                    {"Description": description, "CidrIp": "0.0.0.0/0", "IpProtocol": "-1"}
                ],
            },
        },
    }
    found = air.check_resources(resources)
    assert (len(found) == 2) is refused, found


@pytest.mark.parametrize(
    ("ebs", "refused"),
    [
        ({"VolumeType": "gp3", "Throughput": 1000}, True),  # 3,000 IOPS by default carry 750 MiB/s
        ({"VolumeType": "gp3", "Throughput": 750}, False),
        ({"VolumeType": "gp3", "Throughput": 1000, "Iops": 4000}, False),
        ({"VolumeType": "gp3", "Throughput": 124}, True),
        ({"VolumeType": "gp3", "Iops": 2999}, True),
    ],
)
def test_gp3_throughput_is_checked_against_its_iops(ebs: dict[str, Any], refused: bool) -> None:
    assert (air.gp3_volume({"VolumeSize": 200, **ebs}) is not None) is refused


@pytest.mark.parametrize(
    ("resource_type", "prop", "value", "refused"),
    [
        ("AWS::ElasticLoadBalancingV2::TargetGroup", "Name", "a" * 32, False),
        ("AWS::ElasticLoadBalancingV2::TargetGroup", "Name", "a" * 33, True),
        ("AWS::ElasticLoadBalancingV2::TargetGroup", "Name", "dynamo-", True),
        ("AWS::ElasticLoadBalancingV2::LoadBalancer", "Name", "internal-api", True),
        ("AWS::ECS::Cluster", "ClusterName", "dynamo.gpu", True),
        ("AWS::Logs::LogGroup", "LogGroupName", "/ecs/dynamo frontend", True),
        ("AWS::Logs::LogGroup", "RetentionInDays", 30, False),
        ("AWS::Logs::LogGroup", "RetentionInDays", 31, True),
        ("AWS::CloudWatch::Alarm", "Period", 10, False),
        ("AWS::CloudWatch::Alarm", "Period", 45, True),
        ("AWS::Lambda::Function", "Description", "d" * 257, True),
        ("AWS::EC2::LaunchTemplate", "LaunchTemplateData", {"InstanceType": "g6e.3xlarge"}, True),
        ("AWS::EC2::LaunchTemplate", "LaunchTemplateData", {"InstanceType": "g6e.2xlarge"}, False),
        ("AWS::AutoScaling::AutoScalingGroup", "AutoScalingGroupName", "dynamo:gpu", True),
        ("AWS::EC2::LaunchTemplate", "LaunchTemplateName", "dynamo gpu", True),
        ("AWS::EC2::LaunchTemplate", "LaunchTemplateName", "dynamo-gpu_(1.0)", False),
        ("AWS::Lambda::Function", "Environment", {"Variables": {"A": "x" * 4090}}, True),
        ("AWS::Lambda::Function", "Environment", {"Variables": {"A": "x" * 4000}}, False),
        ("AWS::ECS::TaskDefinition", "ContainerDefinitions", [{"Image": "nats:2.11"}], False),
        ("AWS::ECS::TaskDefinition", "ContainerDefinitions", [{"Image": "nats:'2.11'"}], True),
    ],
)
def test_each_kind_of_rule_refuses_what_aws_refuses(
    resource_type: str, prop: str, value: Any, refused: bool
) -> None:
    found = air.check_resources({"R": {"Type": resource_type, "Properties": {prop: value}}})
    assert bool(found) is refused, found


def test_the_rules_read_botocore_s_models() -> None:
    """The constraints come from the installed botocore, so a model update moves them."""
    # EC2's description characters, as its model documents them
    check = air.ec2_description("IpRange")
    assert check("a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*") is None
    assert check("'") is not None
    # a shape's own maximum
    assert air.shape("logs", "CreateLogGroupRequest", "logGroupName").metadata["max"] == 512
    assert air.model_check("logs", "CreateLogGroupRequest", "logGroupName")("/a" * 257) is not None
    # a pattern written in Java's syntax (surrogate pairs) reads as the code points it means
    assert air.model_check("autoscaling", "Tag", "Value")("dynamo \U0001f600") is None


def test_the_deployment_on_moto_applies_the_rules() -> None:
    """The demo's and the template tests' moto stack refuses what AWS would refuse."""
    full = copy.deepcopy(template())
    air.require_valid(full, {})
    with pytest.raises(air.InputRulesError, match="GpuRootVolumeThroughput"):
        air.require_valid(full, {"GpuRootVolumeThroughput": "2000"})
    full["Resources"]["GpuFromLoadBalancer"]["Properties"]["Description"] = "the load balancer's traffic"
    with pytest.raises(air.InputRulesError, match=r"GpuFromLoadBalancer\.Description"):
        air.require_valid(full, {})


# Rules for values the template leaves to CloudFormation today (it generates those names) or
# for rule kinds it does not use: kept so that a template that starts setting them is checked.
NOT_SET_TODAY = {
    ("AWS::EC2::SecurityGroup", "SecurityGroupIngress.*", "_references_group"),
    ("AWS::EC2::SecurityGroupIngress", "", "_cidr"),
    ("AWS::EC2::SecurityGroupEgress", "", "_cidr"),
    ("AWS::ElasticLoadBalancingV2::LoadBalancer", "Name", None),
    ("AWS::EC2::LaunchTemplate", "LaunchTemplateName", None),
    ("AWS::IAM::Role", "RoleName", None),
    ("AWS::IAM::ManagedPolicy", "ManagedPolicyName", None),
    ("AWS::Lambda::Function", "FunctionName", None),
    ("AWS::Events::Rule", "Name", None),
    ("AWS::SQS::Queue", "QueueName", None),
    ("AWS::SNS::Topic", "TopicName", None),
    ("AWS::DynamoDB::Table", "TableName", None),
}


def test_every_rule_reaches_a_value_of_the_template_or_is_listed_as_not_set() -> None:
    """A rule whose path matches nothing checks nothing: a misspelt path would pass everything."""
    # the defaults, and the other scheme (the target group is named only when internet-facing)
    resources = {
        f"{scheme}:{logical_id}": resource
        for scheme in ("internal", "internet-facing")
        for logical_id, resource in air.Resolver(template(), {"LoadBalancerScheme": scheme})
        .resources()
        .items()
    }
    unused = set()
    for each in air.rules():
        reached = [
            value
            for resource in resources.values()
            if resource["Type"] == each.resource_type
            for _, value in air.at_path(resource["Properties"], each.path)
            if each.when is None or (isinstance(value, dict) and each.when(value) and "Description" in value)
        ]
        if not reached:
            unused.add((each.resource_type, ".".join(each.path), each.when.__name__ if each.when else None))
    assert unused == NOT_SET_TODAY


def test_whole_requests_are_validated_offline_by_botocore() -> None:
    """An alarm evaluated over 0 periods, a target group port that is not a number: the request
    botocore would build is refused before it is sent."""
    resources = air.Resolver(template(), {}).resources()
    alarm = next(r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm")
    group = resources["FrontendTargetGroup"]
    assert air.request_violations("Alarm", alarm) == []
    assert air.request_violations("FrontendTargetGroup", group) == []
    broken_alarm = {**alarm, "Properties": {**alarm["Properties"], "EvaluationPeriods": 0}}
    [violation] = air.request_violations("Alarm", broken_alarm)
    assert "EvaluationPeriods" in violation.reason
    broken_group = {**group, "Properties": {**group["Properties"], "Port": "eighty"}}
    [violation] = air.request_violations("FrontendTargetGroup", broken_group)
    assert "Port" in violation.reason
