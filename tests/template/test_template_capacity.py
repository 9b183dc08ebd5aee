"""Capacity that arrives sooner: the warm pool, the image pulled while warming, the root
volume's throughput, scale-ahead's permission, and the 10-s metrics switch."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.template import load_template, resource
from dynamo_ecs.config import load_config
from tests.template.stack import as_list
from tests.template.test_template_structure import default_environment

GROUP_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:"
    "autoScalingGroupName/${DeploymentName}-gpu"
}


def statements(resource_id: str) -> dict[str, dict[str, Any]]:
    props = resource(resource_id)["Properties"]
    found: dict[str, dict[str, Any]] = {}
    for policy in props["Policies"]:
        document = policy.get("PolicyDocument", policy)
        for statement in document["Statement"]:
            # A conditional statement (!If [Condition, statement, AWS::NoValue]): its statement
            statement = statement["Fn::If"][1] if "Fn::If" in statement else statement
            found[statement["Sid"]] = statement
    return found


def test_the_warm_pool_keeps_stopped_instances_of_the_gpu_group_and_never_reuses_on_scale_in() -> None:
    pool = resource("GpuInstanceWarmPool")
    assert pool["Type"] == "AWS::AutoScaling::WarmPool"
    assert pool["Condition"] == "WarmPoolOn"
    props = pool["Properties"]
    assert props["AutoScalingGroupName"] == {"Ref": "GpuAutoScalingGroup"}
    assert props["PoolState"] == "Stopped"  # only the volumes are billed while it waits
    # ECS refuses ReuseOnScaleIn; no MaxGroupPreparedCapacity: the pool covers the group's max
    assert "InstanceReusePolicy" not in props and "MaxGroupPreparedCapacity" not in props
    parameter = load_template()["Parameters"]["GpuWarmPool"]
    assert parameter["Default"] == "on" and parameter["AllowedValues"] == ["on", "off"]
    assert load_template()["Conditions"]["WarmPoolOn"] == {"Fn::Equals": [{"Ref": "GpuWarmPool"}, "on"]}


def test_the_user_data_turns_on_the_agents_warm_pool_check_and_cached_image_starts() -> None:
    user_data = resource("GpuLaunchTemplate")["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]
    script = user_data["Fn::Sub"]
    assert "ECS_WARM_POOLS_CHECK=true" in script
    assert "ECS_IMAGE_PULL_BEHAVIOR=prefer-cached" in script
    assert 'docker pull "$image"' in script and "image='${DynamoImage}'" in script


def test_the_root_volume_throughput_is_a_parameter_above_the_gp3_baseline() -> None:
    [root] = resource("GpuLaunchTemplate")["Properties"]["LaunchTemplateData"]["BlockDeviceMappings"]
    assert root["Ebs"]["VolumeType"] == "gp3"
    assert root["Ebs"]["Throughput"] == {"Ref": "GpuRootVolumeThroughput"}
    parameter = load_template()["Parameters"]["GpuRootVolumeThroughput"]
    # at most what gp3's included 3,000 IOPS carry at 0.25 MiB/s each (the volume sets no Iops)
    assert "Iops" not in root["Ebs"]
    assert (parameter["MinValue"], parameter["Default"], parameter["MaxValue"]) == (125, 250, 750)


def test_the_instances_may_read_only_the_ngc_secret_and_complete_only_their_groups_hook() -> None:
    by_sid = statements("GpuInstanceRole")
    assert by_sid["PullTheDynamoImage"]["Action"] == "secretsmanager:GetSecretValue"
    assert by_sid["PullTheDynamoImage"]["Resource"] == {"Ref": "NgcSecretArn"}
    assert by_sid["CompleteTheLaunchHook"]["Action"] == "autoscaling:CompleteLifecycleAction"
    assert by_sid["CompleteTheLaunchHook"]["Resource"] == GROUP_ARN


def test_the_scaler_may_raise_only_the_stacks_gpu_group_and_is_told_its_name() -> None:
    by_sid = statements("ScalerFunction")
    assert as_list(by_sid["ScaleTheGpuGroupAhead"]["Action"]) == ["autoscaling:SetDesiredCapacity"]
    assert by_sid["ScaleTheGpuGroupAhead"]["Resource"] == GROUP_ARN
    # Describe has no resource-level permission: read-only on "*"
    assert by_sid["ReadTheGpuGroup"] == {
        "Sid": "ReadTheGpuGroup",
        "Effect": "Allow",
        "Action": "autoscaling:DescribeAutoScalingGroups",
        "Resource": "*",
    }
    group_name = resource("GpuAutoScalingGroup")["Properties"]["AutoScalingGroupName"]
    assert group_name == {"Fn::Sub": "${DeploymentName}-gpu"}
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DYNAMO_ECS_GPU_AUTOSCALING_GROUP"] == group_name
    assert load_config(default_environment()).gpu_autoscaling_group == "dynamo-gpu"


def test_the_launch_hook_waits_for_the_pull_but_never_for_ever() -> None:
    [hook] = resource("GpuAutoScalingGroup")["Properties"]["LifecycleHookSpecificationList"]
    assert hook["DefaultResult"] == "CONTINUE"  # a lost completion only delays, never abandons
    # 15 minutes for the image pull; 30 when the model weights are copied too (ModelWeightsS3Uri)
    assert hook["HeartbeatTimeout"] == {"Fn::If": ["HasModelWeights", 1800, 900]}


@pytest.mark.parametrize(
    ("period", "samples", "startup_warm_pool", "startup"),
    [("10", 6, "on", 120), ("60", 1, "on", 120), ("10", 6, "off", 600)],
)
def test_the_metric_period_and_the_warm_pool_reach_the_scaler_and_the_collector(
    period: str, samples: int, startup_warm_pool: str, startup: int
) -> None:
    config = load_config(default_environment(MetricPeriodSeconds=period, GpuWarmPool=startup_warm_pool))
    assert config.scaling.metric_period_s == int(period)
    assert config.signals.samples_per_invocation == samples
    # The predictive floor looks one start-up ahead: warm, or cold without the pool
    assert config.scaling.startup_s == startup


def test_capacity_parameters_turn_the_predictive_floor_on_per_service() -> None:
    assert load_config(default_environment()).frontend.capacity_rps is None
    config = load_config(default_environment(FrontendCapacityRps="6.5", PrefillCapacityRps="6"))
    assert (config.frontend.capacity_rps, config.prefill.capacity_rps) == (6.5, 6.0)


def test_token_capacity_parameters_turn_the_floor_in_tokens_on_per_service() -> None:
    # Off by default: the floor, if any, stays on requests
    default = load_config(default_environment())
    assert (default.frontend.capacity_tokens_per_s, default.prefill.capacity_tokens_per_s) == (None, None)
    # Set, each reaches its own service's config
    config = load_config(
        default_environment(FrontendCapacityTokensPerS="1600", PrefillCapacityTokensPerS="8000.5")
    )
    assert (config.frontend.capacity_tokens_per_s, config.prefill.capacity_tokens_per_s) == (1600.0, 8000.5)
    assert config.frontend.capacity_rps is None
