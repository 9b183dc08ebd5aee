"""AWS's input rules, applied to every value CloudFormation passes to AWS from template.yaml.

moto accepts what AWS refuses: a security group rule description with an apostrophe, a
target group name of 40 characters, gp3 throughput the volume's IOPS cannot carry. Here the
template as CloudFormation receives it (after the SAM transform) is resolved for a set of
parameter values, and every value a resource hands to an AWS API is checked against the
constraint AWS documents for it:

- from botocore's service models where the model says it (a shape's ``min``, ``max``,
  ``pattern``, ``enum``), read at run time, so a newer model moves the rule with it;
- from the model's documentation where it says it only in prose (EC2's description
  characters, ECS names, load balancer names, ...), parsed from that text where it is regular
  enough, otherwise written here with the sentence it comes from;
- from AWS's guides and API references where the model says nothing (gp3's throughput per
  IOPS, Lambda's 4 KB of environment variables, user data's 16 KB, launch template and table
  names), each cited where it is used.

`parameter_sets` gives the defaults and the extremes each parameter admits (its
``AllowedValues``, ``MinValue``/``MaxValue``, and for an ``AllowedPattern`` the shortest, the
longest and a value with every character the pattern admits, within ``MaxLength`` or
CloudFormation's 4,096 bytes): a parameter that admits a value AWS refuses is a defect too.
Combinations the template's ``Rules`` refuse are skipped (CloudFormation refuses them first).

tests/template/test_aws_input_rules.py runs every set; `devtools.moto_stack.deploy_on_moto`
checks the parameters it deploys with, so the demo's stack meets the same rules.
"""

from __future__ import annotations

import base64
import html
import importlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore.session

from devtools.cfn_resolve import REQUIRED_SAMPLES, Resolver

# CloudFormation quotas: "Parameter value: 4,096 bytes" (AWS CloudFormation User Guide,
# "Understand CloudFormation quotas"); the longest value a String parameter without
# MaxLength can take.
PARAMETER_VALUE_MAX = 4096


# ------------------------------------------------------------------------------------------
# botocore's models
# ------------------------------------------------------------------------------------------


@cache
def _model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


def shape(service: str, shape_name: str, *members: str) -> Any:
    """A member shape of a botocore model: ``shape("ec2", "IpRange", "Description")``."""
    found = _model(service).shape_for(shape_name)
    for member in members:
        if found.type_name == "list":
            found = found.member
        found = found.members[member]
    return found


def documentation(service: str, shape_name: str, *members: str) -> str:
    """The member's documentation as plain text (tags dropped, entities decoded)."""
    text = re.sub(r"<[^>]+>", " ", shape(service, shape_name, *members).documentation or "")
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def documented(pattern: str, service: str, shape_name: str, *members: str) -> re.Match[str]:
    """``pattern`` searched in the member's documentation; an error when the text changed."""
    text = documentation(service, shape_name, *members)
    found = re.search(pattern, text)
    if not found:
        raise LookupError(
            f"botocore's {service} {shape_name}.{'.'.join(members)} no longer says {pattern!r}: {text}"
        )
    return found


def number(text: str) -> int:
    return int(text.replace(",", ""))


# ------------------------------------------------------------------------------------------
# Checks: each returns the reason a value fails, or None
# ------------------------------------------------------------------------------------------

Check = Callable[[Any], "str | None"]


def java_pattern(pattern: str) -> str:
    """A model's pattern (Java syntax) in Python's: a range written as UTF-16 surrogate pairs
    (``\\uD800\\uDC00-\\uDBFF\\uDFFF``) becomes the code points it means; the Unicode
    classes the models use inside a character class, ``\\p{L}`` and ``\\p{N}`` (letters,
    numbers), become ``\\w`` (which adds ``_``, listed beside them wherever they appear) and
    ``\\p{Z}`` (separators) the space characters."""

    def code_point(high: str, low: str) -> str:
        value = 0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00)
        return f"\\U{value:08X}"

    pair = r"\\u(D[89AB][0-9A-F]{2})\\u(D[C-F][0-9A-F]{2})"
    converted = re.sub(
        pair + "-" + pair,
        lambda m: code_point(m.group(1), m.group(2)) + "-" + code_point(m.group(3), m.group(4)),
        pattern,
        flags=re.IGNORECASE,
    )
    spaces = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    return converted.replace(r"\p{L}", r"\w").replace(r"\p{N}", r"\w").replace(r"\p{Z}", spaces)


def model_check(service: str, shape_name: str, *members: str) -> Check:
    """The shape's own ``min``/``max`` (length or value), ``pattern`` and ``enum``."""
    target = shape(service, shape_name, *members)
    meta = target.metadata
    enum = list(getattr(target, "enum", []) or [])
    pattern = re.compile(java_pattern(meta["pattern"])) if "pattern" in meta else None
    where = f"botocore {service} {shape_name}.{'.'.join(members)}"

    def check(value: Any) -> str | None:
        if target.type_name in ("integer", "long", "double", "float"):
            try:
                amount = float(value)
            except (TypeError, ValueError):
                return f"{value!r} is not a number ({where})"
            if "min" in meta and amount < meta["min"]:
                return f"{value} is below {meta['min']} ({where})"
            if "max" in meta and amount > meta["max"]:
                return f"{value} is above {meta['max']} ({where})"
            return None
        text = str(value)
        if "min" in meta and len(text) < meta["min"]:
            return f"{len(text)} characters, fewer than {meta['min']} ({where})"
        if "max" in meta and len(text) > meta["max"]:
            return f"{len(text)} characters, more than {meta['max']} ({where})"
        if pattern is not None and not pattern.fullmatch(text):
            return f"does not match {meta['pattern']!r} ({where})"
        if enum and text not in enum:
            return f"{text!r} is not one of the {len(enum)} values {where} allows"
        return None

    return check


def text_check(
    max_len: int, allowed: str | None = None, *, extra: Check | None = None, min_len: int = 1
) -> Check:
    """At most ``max_len`` characters, each in the character class ``allowed``."""
    allowed_re = re.compile(f"[{allowed}]*") if allowed is not None else None

    def check(value: Any) -> str | None:
        text = str(value)
        if len(text) > max_len:
            return f"{len(text)} characters, more than {max_len}"
        if len(text) < min_len:
            return f"{len(text)} characters, fewer than {min_len}"
        if allowed_re is not None and not allowed_re.fullmatch(text):
            bad = sorted({c for c in text if not allowed_re.fullmatch(c)})
            return f"characters {''.join(bad)!r} are not allowed (only {allowed})"
        return extra(value) if extra else None

    return check


def range_check(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        try:
            amount = float(value)
        except (TypeError, ValueError):
            return f"{value!r} is not a number"
        return None if low <= amount <= high else f"{value} is outside {low:g}..{high:g}"

    return check


def one_of(values: list[str]) -> Check:
    def check(value: Any) -> str | None:
        return None if str(value) in values else f"{value!r} is not one of {values}"

    return check


def ec2_description(shape_name: str) -> Check:
    """EC2's description rule as its model's documentation states it (``IpRange``,
    ``UserIdGroupPair``, ``CreateSecurityGroupRequest``): length and the allowed characters."""
    member = "Description"
    found = documented(
        r"Up to (\d+) characters in length\.? (?:Allowed|Valid) characters(?: are|:) "
        r"a-z, A-Z, 0-9, spaces, and (\S+)",
        "ec2",
        shape_name,
        member,
    )
    return text_check(int(found.group(1)), "a-zA-Z0-9 " + re.escape(found.group(2)), min_len=0)


def ecs_name(shape_name: str, member: str) -> Check:
    """ "Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed." """
    found = documented(
        r"Up to (\d+) letters \(uppercase and lowercase\), numbers, underscores, and hyphens are allowed",
        "ecs",
        shape_name,
        member,
    )
    return text_check(int(found.group(1)), "A-Za-z0-9_-")


def ecs_image() -> Check:
    """Tag form: "up to 255 characters total ... letters (uppercase and lowercase), numbers,
    hyphens, underscores, colons, periods, forward slashes, and number signs (#)"; digest form:
    the limit applies to the repository and name only (botocore ecs ContainerDefinition.image)."""
    found = documented(r"up to (\d+) characters total are allowed", "ecs", "ContainerDefinition", "image")
    limit = int(found.group(1))
    tag_form = text_check(limit, r"A-Za-z0-9\-_:./#")

    def check(value: Any) -> str | None:
        text = str(value)
        if "@" in text:
            name, _, digest = text.partition("@")
            if not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
                return f"digest {digest!r} is not sha256:<64 hex>"
            return tag_form(name)
        return tag_form(text)

    return check


def elb_name(*, load_balancer: bool) -> Check:
    """ "can have a maximum of 32 characters, must contain only alphanumeric characters or
    hyphens, and must not begin or end with a hyphen" (+ "must not begin with internal-" for
    load balancers): botocore elbv2 CreateTargetGroup/CreateLoadBalancer Name."""
    shape_name = "CreateLoadBalancerInput" if load_balancer else "CreateTargetGroupInput"
    found = documented(r"maximum of (\d+) characters", "elbv2", shape_name, "Name")
    limit = int(found.group(1))

    def extra(value: Any) -> str | None:
        text = str(value)
        if text.startswith("-") or text.endswith("-"):
            return "begins or ends with a hyphen"
        if load_balancer and text.startswith("internal-"):
            return "begins with internal-"
        return None

    return text_check(limit, "A-Za-z0-9-", extra=extra)


def ec2_tag(part: str) -> Check:
    """EC2 tags: keys "a maximum of 127 Unicode characters. May not begin with aws:", values
    "a maximum of 256" (botocore ec2 Tag.Key/Value)."""
    found = documented(r"maximum of (\d+) Unicode characters", "ec2", "Tag", part)

    def extra(value: Any) -> str | None:
        return "begins with aws:" if part == "Key" and str(value).lower().startswith("aws:") else None

    return text_check(int(found.group(1)), None, extra=extra, min_len=1 if part == "Key" else 0)


def doc_range(service: str, shape_name: str, member: str, pattern: str) -> Check:
    found = documented(pattern, service, shape_name, member)
    return range_check(number(found.group(1)), number(found.group(2)))


def doc_values(service: str, shape_name: str, member: str, pattern: str) -> Check:
    found = documented(pattern, service, shape_name, member)
    return one_of(re.findall(r"\d+", found.group(1)))


def alarm_period(value: Any) -> str | None:
    """ "Valid values are 10, 20, 30, and any multiple of 60" (botocore cloudwatch PutMetricAlarm Period)."""
    documented(
        r"Valid values are 10, 20, 30, and any multiple of 60", "cloudwatch", "PutMetricAlarmInput", "Period"
    )
    period = int(value)
    return None if period in (10, 20, 30) or (period > 0 and period % 60 == 0) else f"period {period}"


def dashboard_name() -> Check:
    found = documented(
        r"maximum length is (\d+), and valid characters are A-Z, a-z, 0-9, \"-\", and \"_\"",
        "cloudwatch",
        "PutDashboardInput",
        "DashboardName",
    )
    return text_check(int(found.group(1)), "A-Za-z0-9_-")


def asg_name() -> Check:
    """Model: 1-255 characters; its documentation: "You cannot use a colon (:) in the name"."""
    model = model_check("autoscaling", "CreateAutoScalingGroupType", "AutoScalingGroupName")
    documented(
        r"cannot use a colon \(:\) in the name",
        "autoscaling",
        "CreateAutoScalingGroupType",
        "AutoScalingGroupName",
    )

    def check(value: Any) -> str | None:
        return model(value) or ("contains a colon" if ":" in str(value) else None)

    return check


def lambda_environment(variables: Any) -> str | None:
    """Lambda quotas: "Function environment variables: 4 KB, for all environment variables
    associated with the function, combined" (AWS Lambda Developer Guide, "Lambda quotas").
    Lambda counts the variables as the JSON map it stores."""
    if not isinstance(variables, dict):
        return None
    size = len(json.dumps(variables, separators=(",", ":")).encode())
    return None if size <= 4096 else f"{size} bytes of environment variables, more than 4 KB"


def gp3_volume(ebs: Any) -> str | None:
    """gp3: throughput and IOPS within the ranges botocore's ec2 model documents, and "the
    maximum ratio of provisioned throughput to provisioned IOPS is .25 MiB/s per IOPS" (Amazon
    EBS User Guide, "General Purpose SSD volumes", gp3); IOPS default to 3,000 (botocore ec2
    EbsBlockDevice.Iops: "The default for gp3 volumes is 3,000 IOPS")."""
    if not isinstance(ebs, dict) or ebs.get("VolumeType") != "gp3":
        return None
    iops_doc = documented(
        r"gp3\s*:\s*([\d,]+)\s*-\s*([\d,]+) IOPS", "ec2", "LaunchTemplateEbsBlockDeviceRequest", "Iops"
    )
    default_iops = number(
        documented(r"default for gp3 volumes is ([\d,]+) IOPS", "ec2", "EbsBlockDevice", "Iops").group(1)
    )
    throughput_doc = documented(
        r"Minimum value of ([\d,]+)\. Maximum value of ([\d,]+)",
        "ec2",
        "LaunchTemplateEbsBlockDeviceRequest",
        "Throughput",
    )
    iops = int(ebs.get("Iops", default_iops))
    throughput = int(ebs.get("Throughput", number(throughput_doc.group(1))))
    if not number(iops_doc.group(1)) <= iops <= number(iops_doc.group(2)):
        return f"gp3 IOPS {iops} outside {iops_doc.group(1)}..{iops_doc.group(2)}"
    if not number(throughput_doc.group(1)) <= throughput <= number(throughput_doc.group(2)):
        return (
            f"gp3 throughput {throughput} outside {throughput_doc.group(1)}..{throughput_doc.group(2)} MiB/s"
        )
    if throughput > 0.25 * iops:
        needed = throughput * 4
        return f"gp3 throughput {throughput} MiB/s needs {needed} IOPS (0.25 MiB/s per IOPS), has {iops}"
    return None


def health_check_path(value: Any) -> str | None:
    model = model_check("elbv2", "CreateTargetGroupInput", "HealthCheckPath")(value)
    return model or (None if str(value).startswith("/") else "does not begin with /")


# ------------------------------------------------------------------------------------------
# The rules: where each check applies
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """``check`` applies to every value at ``path`` (``*`` = each list item, ``**`` = the
    property as a whole) in resources of ``resource_type``; ``when`` narrows it to the items
    it describes (for example rules that reference a security group)."""

    resource_type: str
    path: tuple[str, ...]
    check: Check
    what: str
    when: Callable[[dict[str, Any]], bool] | None = None


def rule(resource_type: str, path: str, check: Check, what: str, when: Any = None) -> Rule:
    return Rule(resource_type, tuple(path.split(".")) if path else (), check, what, when)


def _references_group(item: dict[str, Any]) -> bool:
    return any(
        k in item for k in ("SourceSecurityGroupId", "DestinationSecurityGroupId", "SourceSecurityGroupName")
    )


def _cidr(item: dict[str, Any]) -> bool:
    return "CidrIp" in item


@cache
def rules() -> list[Rule]:
    sg_rule_to_group = ec2_description("UserIdGroupPair")
    sg_rule_to_cidr = ec2_description("IpRange")
    log_group_name = model_check("logs", "CreateLogGroupRequest", "logGroupName")
    retention = doc_values(
        "logs", "PutRetentionPolicyRequest", "retentionInDays", r"Possible values are: ([\d, and]+)\."
    )
    found: list[Rule] = [
        # EC2
        rule(
            "AWS::EC2::SecurityGroup",
            "GroupDescription",
            ec2_description("CreateSecurityGroupRequest"),
            "security group description",
        ),
        rule(
            "AWS::EC2::SecurityGroup",
            "SecurityGroupIngress.*",
            sg_rule_to_group,
            "ingress rule description",
            _references_group,
        ),
        rule(
            "AWS::EC2::SecurityGroup",
            "SecurityGroupIngress.*",
            sg_rule_to_cidr,
            "ingress rule description",
            _cidr,
        ),
        rule(
            "AWS::EC2::SecurityGroup",
            "SecurityGroupEgress.*",
            sg_rule_to_group,
            "egress rule description",
            _references_group,
        ),
        rule(
            "AWS::EC2::SecurityGroup",
            "SecurityGroupEgress.*",
            sg_rule_to_cidr,
            "egress rule description",
            _cidr,
        ),
        rule(
            "AWS::EC2::SecurityGroupIngress",
            "",
            sg_rule_to_group,
            "ingress rule description",
            _references_group,
        ),
        rule("AWS::EC2::SecurityGroupIngress", "", sg_rule_to_cidr, "ingress rule description", _cidr),
        rule(
            "AWS::EC2::SecurityGroupEgress",
            "",
            sg_rule_to_group,
            "egress rule description",
            _references_group,
        ),
        rule("AWS::EC2::SecurityGroupEgress", "", sg_rule_to_cidr, "egress rule description", _cidr),
        rule("AWS::EC2::SecurityGroup", "Tags.*.Key", ec2_tag("Key"), "EC2 tag key"),
        rule("AWS::EC2::SecurityGroup", "Tags.*.Value", ec2_tag("Value"), "EC2 tag value"),
        rule(
            "AWS::EC2::LaunchTemplate",
            "LaunchTemplateData.TagSpecifications.*.Tags.*.Key",
            ec2_tag("Key"),
            "EC2 tag key",
        ),
        rule(
            "AWS::EC2::LaunchTemplate",
            "LaunchTemplateData.TagSpecifications.*.Tags.*.Value",
            ec2_tag("Value"),
            "EC2 tag value",
        ),
        rule(
            "AWS::EC2::LaunchTemplate",
            "LaunchTemplateData.InstanceType",
            model_check("ec2", "RequestLaunchTemplateData", "InstanceType"),
            "instance type",
        ),
        # "LaunchTemplateName ... Length Constraints: Minimum length of 3. Maximum length of 128.
        # Pattern: [a-zA-Z0-9\(\)\.\-/_]+" (Amazon EC2 API Reference, CreateLaunchTemplate; the
        # botocore model has no constraint on it).
        rule(
            "AWS::EC2::LaunchTemplate",
            "LaunchTemplateName",
            text_check(128, r"a-zA-Z0-9().\-/_", min_len=3),
            "launch template name",
        ),
        rule(
            "AWS::EC2::LaunchTemplate",
            "LaunchTemplateData.BlockDeviceMappings.*.Ebs",
            gp3_volume,
            "gp3 volume",
        ),
        rule(
            "AWS::EC2::LaunchTemplate",
            "LaunchTemplateData.BlockDeviceMappings.*.Ebs.VolumeSize",
            doc_range(
                "ec2",
                "LaunchTemplateEbsBlockDeviceRequest",
                "VolumeSize",
                r"gp3\s*:\s*([\d,]+)\s*-\s*([\d,]+) GiB",
            ),
            "gp3 volume size",
        ),
        rule(
            "AWS::EC2::LaunchTemplate",
            "LaunchTemplateData.UserData",
            lambda v: None if len(base64.b64decode(str(v))) <= 16384 else "user data above 16 KB",
            # "User data is limited to 16 KB, in raw form, before it is base64-encoded"
            # (Amazon EC2 User Guide, "Run commands when you launch an EC2 instance with user data input").
            "user data",
        ),
        # ECS
        rule(
            "AWS::ECS::Cluster",
            "ClusterName",
            ecs_name("CreateClusterRequest", "clusterName"),
            "ECS cluster name",
        ),
        rule(
            "AWS::ECS::Service",
            "ServiceName",
            ecs_name("CreateServiceRequest", "serviceName"),
            "ECS service name",
        ),
        rule(
            "AWS::ECS::TaskDefinition",
            "Family",
            ecs_name("RegisterTaskDefinitionRequest", "family"),
            "task family",
        ),
        rule(
            "AWS::ECS::TaskDefinition",
            "ContainerDefinitions.*.Name",
            ecs_name("ContainerDefinition", "name"),
            "container name",
        ),
        rule("AWS::ECS::TaskDefinition", "ContainerDefinitions.*.Image", ecs_image(), "container image"),
        rule(
            "Custom::DynamoGpuServices", "Image", ecs_image(), "GPU tasks' image (the operator registers it)"
        ),
        rule(
            "AWS::ECS::CapacityProvider",
            "AutoScalingGroupProvider.ManagedScaling.TargetCapacity",
            model_check("ecs", "ManagedScaling", "targetCapacity"),
            "managed scaling target",
        ),
        rule(
            "AWS::ECS::CapacityProvider",
            "AutoScalingGroupProvider.ManagedScaling.MaximumScalingStepSize",
            model_check("ecs", "ManagedScaling", "maximumScalingStepSize"),
            "managed scaling step",
        ),
        rule(
            "AWS::ECS::CapacityProvider",
            "AutoScalingGroupProvider.ManagedScaling.MinimumScalingStepSize",
            model_check("ecs", "ManagedScaling", "minimumScalingStepSize"),
            "managed scaling step",
        ),
        rule(
            "AWS::ECS::CapacityProvider",
            "AutoScalingGroupProvider.ManagedScaling.InstanceWarmupPeriod",
            model_check("ecs", "ManagedScaling", "instanceWarmupPeriod"),
            "instance warm-up",
        ),
        # The names the operator gives the GPU services and their task families (function environment).
        *[
            rule(
                "AWS::Lambda::Function",
                f"Environment.Variables.DYNAMO_ECS_{role}__{field}",
                ecs_name(shape_name, member),
                f"{role.lower()} {field.lower()} name the operator uses",
            )
            for role in ("FRONTEND", "PREFILL")
            for field, shape_name, member in (
                ("SERVICE", "CreateServiceRequest", "serviceName"),
                ("FAMILY", "RegisterTaskDefinitionRequest", "family"),
            )
        ],
        # Elastic Load Balancing
        rule(
            "AWS::ElasticLoadBalancingV2::TargetGroup",
            "Name",
            elb_name(load_balancer=False),
            "target group name",
        ),
        rule(
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "Name",
            elb_name(load_balancer=True),
            "load balancer name",
        ),
        rule(
            "AWS::ElasticLoadBalancingV2::TargetGroup",
            "HealthCheckPath",
            health_check_path,
            "health check path",
        ),
        *[
            rule(
                "AWS::ElasticLoadBalancingV2::TargetGroup",
                prop,
                model_check("elbv2", "CreateTargetGroupInput", prop),
                "target group health check",
            )
            for prop in (
                "HealthCheckIntervalSeconds",
                "HealthCheckTimeoutSeconds",
                "HealthyThresholdCount",
                "UnhealthyThresholdCount",
            )
        ],
        rule(
            "AWS::ElasticLoadBalancingV2::TargetGroup",
            "TargetGroupAttributes.*",
            # "deregistration_delay.timeout_seconds ... The range is 0-3600 seconds"
            # (botocore elbv2 TargetGroupAttribute.Key).
            lambda a: (
                doc_range(
                    "elbv2",
                    "TargetGroupAttribute",
                    "Key",
                    r"deregistration_delay\.timeout_seconds - .*?range is (\d+)-(\d+) seconds",
                )(a["Value"])
                if a.get("Key") == "deregistration_delay.timeout_seconds"
                else None
            ),
            "target group attribute",
        ),
        rule(
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "LoadBalancerAttributes.*",
            # "idle_timeout.timeout_seconds - The idle timeout value, in seconds. The valid
            # range is 1-4000 seconds" (botocore elbv2 LoadBalancerAttribute.Key).
            lambda a: (
                doc_range(
                    "elbv2",
                    "LoadBalancerAttribute",
                    "Key",
                    r"idle_timeout\.timeout_seconds - .*?range is (\d+)-(\d+) seconds",
                )(a["Value"])
                if a.get("Key") == "idle_timeout.timeout_seconds"
                else None
            ),
            "load balancer attribute",
        ),
        # CloudWatch Logs
        rule("AWS::Logs::LogGroup", "LogGroupName", log_group_name, "log group name"),
        rule("AWS::Logs::LogGroup", "RetentionInDays", retention, "log retention"),
        rule("Custom::DynamoGpuServices", "FrontendLogGroup", log_group_name, "log group name"),
        rule("Custom::DynamoGpuServices", "PrefillLogGroup", log_group_name, "log group name"),
        # IAM
        rule("AWS::IAM::Role", "RoleName", model_check("iam", "CreateRoleRequest", "RoleName"), "role name"),
        rule(
            "AWS::IAM::Role",
            "Description",
            model_check("iam", "CreateRoleRequest", "Description"),
            "role description",
        ),
        rule(
            "AWS::IAM::Role",
            "Policies.*.PolicyName",
            model_check("iam", "PutRolePolicyRequest", "PolicyName"),
            "inline policy name",
        ),
        rule("AWS::IAM::Role", "Tags.*.Key", model_check("iam", "Tag", "Key"), "IAM tag key"),
        rule("AWS::IAM::Role", "Tags.*.Value", model_check("iam", "Tag", "Value"), "IAM tag value"),
        rule(
            "AWS::IAM::ManagedPolicy",
            "ManagedPolicyName",
            model_check("iam", "CreatePolicyRequest", "PolicyName"),
            "policy name",
        ),
        rule(
            "AWS::IAM::ManagedPolicy",
            "Description",
            model_check("iam", "CreatePolicyRequest", "Description"),
            "policy description",
        ),
        # Lambda
        # "If you specify only the function name, it is limited to 64 characters in length"
        # (botocore lambda CreateFunction FunctionName; the model's pattern gives the characters).
        rule(
            "AWS::Lambda::Function",
            "FunctionName",
            text_check(
                number(
                    documented(
                        r"limited to (\d+) characters", "lambda", "CreateFunctionRequest", "FunctionName"
                    ).group(1)
                ),
                "A-Za-z0-9_-",
            ),
            "function name",
        ),
        rule(
            "AWS::Lambda::Function",
            "Description",
            model_check("lambda", "CreateFunctionRequest", "Description"),
            "function description",
        ),
        rule(
            "AWS::Lambda::Function",
            "MemorySize",
            model_check("lambda", "CreateFunctionRequest", "MemorySize"),
            "function memory",
        ),
        rule(
            "AWS::Lambda::Function",
            "Timeout",
            # The model's minimum (1); its maximum (5,400) is for Lambda Managed Instances, the
            # documentation's "the maximum allowed value is 900 seconds" for the rest.
            range_check(
                shape("lambda", "CreateFunctionRequest", "Timeout").metadata["min"],
                number(
                    documented(
                        r"maximum allowed value is (\d+) seconds",
                        "lambda",
                        "CreateFunctionRequest",
                        "Timeout",
                    ).group(1)
                ),
            ),
            "function timeout",
        ),
        rule("AWS::Lambda::Function", "Environment.Variables", lambda_environment, "function environment"),
        # "Tag keys ... up to 128 characters; values up to 256" (AWS Lambda Developer Guide,
        # "Using tags on Lambda functions"); the model's Tags is a plain map.
        rule("AWS::Lambda::Function", "Tags.*.Key", text_check(128, None), "Lambda tag key"),
        rule("AWS::Lambda::Function", "Tags.*.Value", text_check(256, None, min_len=0), "Lambda tag value"),
        rule(
            "AWS::Lambda::LayerVersion",
            "LayerName",
            model_check("lambda", "PublishLayerVersionRequest", "LayerName"),
            "layer name",
        ),
        rule(
            "AWS::Lambda::LayerVersion",
            "Description",
            model_check("lambda", "PublishLayerVersionRequest", "Description"),
            "layer description",
        ),
        # CloudWatch
        rule(
            "AWS::CloudWatch::Alarm",
            "AlarmName",
            model_check("cloudwatch", "PutMetricAlarmInput", "AlarmName"),
            "alarm name",
        ),
        rule(
            "AWS::CloudWatch::Alarm",
            "AlarmDescription",
            model_check("cloudwatch", "PutMetricAlarmInput", "AlarmDescription"),
            "alarm description",
        ),
        rule(
            "AWS::CloudWatch::Alarm",
            "MetricName",
            model_check("cloudwatch", "PutMetricAlarmInput", "MetricName"),
            "metric name",
        ),
        rule(
            "AWS::CloudWatch::Alarm",
            "Namespace",
            model_check("cloudwatch", "PutMetricAlarmInput", "Namespace"),
            "metric namespace",
        ),
        rule(
            "AWS::CloudWatch::Alarm",
            "Dimensions.*.Name",
            model_check("cloudwatch", "Dimension", "Name"),
            "dimension name",
        ),
        rule(
            "AWS::CloudWatch::Alarm",
            "Dimensions.*.Value",
            model_check("cloudwatch", "Dimension", "Value"),
            "dimension value",
        ),
        rule("AWS::CloudWatch::Alarm", "Period", alarm_period, "alarm period"),
        rule(
            "AWS::CloudWatch::Alarm",
            "EvaluationPeriods",
            model_check("cloudwatch", "PutMetricAlarmInput", "EvaluationPeriods"),
            "evaluation periods",
        ),
        rule("AWS::CloudWatch::Dashboard", "DashboardName", dashboard_name(), "dashboard name"),
        # EC2 Auto Scaling
        rule(
            "AWS::AutoScaling::AutoScalingGroup",
            "AutoScalingGroupName",
            asg_name(),
            "Auto Scaling group name",
        ),
        rule(
            "AWS::AutoScaling::AutoScalingGroup",
            "LifecycleHookSpecificationList.*.LifecycleHookName",
            model_check("autoscaling", "LifecycleHookSpecification", "LifecycleHookName"),
            "lifecycle hook name",
        ),
        rule(
            "AWS::AutoScaling::AutoScalingGroup",
            "LifecycleHookSpecificationList.*.HeartbeatTimeout",
            doc_range(
                "autoscaling",
                "LifecycleHookSpecification",
                "HeartbeatTimeout",
                r"range is from (\d+) to (\d+) seconds",
            ),
            "lifecycle hook heartbeat",
        ),
        rule(
            "AWS::AutoScaling::AutoScalingGroup",
            "Tags.*.Key",
            model_check("autoscaling", "Tag", "Key"),
            "Auto Scaling tag key",
        ),
        rule(
            "AWS::AutoScaling::AutoScalingGroup",
            "Tags.*.Value",
            model_check("autoscaling", "Tag", "Value"),
            "Auto Scaling tag value",
        ),
        # EventBridge
        rule("AWS::Events::Rule", "Name", model_check("events", "PutRuleRequest", "Name"), "rule name"),
        rule(
            "AWS::Events::Rule",
            "Description",
            model_check("events", "PutRuleRequest", "Description"),
            "rule description",
        ),
        rule(
            "AWS::Events::Rule",
            "ScheduleExpression",
            model_check("events", "PutRuleRequest", "ScheduleExpression"),
            "schedule",
        ),
        rule("AWS::Events::Rule", "Targets.*.Id", model_check("events", "Target", "Id"), "target id"),
        rule(
            "AWS::Events::Rule",
            "Targets.*.RetryPolicy.MaximumRetryAttempts",
            model_check("events", "RetryPolicy", "MaximumRetryAttempts"),
            "target retries",
        ),
        rule(
            "AWS::Events::Rule",
            "Targets.*.RetryPolicy.MaximumEventAgeInSeconds",
            model_check("events", "RetryPolicy", "MaximumEventAgeInSeconds"),
            "target event age",
        ),
        # SQS, SNS, DynamoDB, KMS
        rule(
            "AWS::SQS::Queue",
            "QueueName",
            text_check(
                number(
                    documented(r"up to (\d+) characters", "sqs", "CreateQueueRequest", "QueueName").group(1)
                ),
                "A-Za-z0-9_-",
            ),
            "queue name",
        ),
        rule(
            "AWS::SQS::Queue",
            "MessageRetentionPeriod",
            doc_range(
                "sqs",
                "CreateQueueRequest",
                "Attributes",
                r"MessageRetentionPeriod – .*?An integer from ([\d,]+) seconds .*? to ([\d,]+) seconds",
            ),
            "queue retention",
        ),
        rule(
            "AWS::SNS::Topic",
            "TopicName",
            text_check(
                number(
                    documented(
                        r"between 1 and (\d+) characters long", "sns", "CreateTopicInput", "Name"
                    ).group(1)
                ),
                "A-Za-z0-9_-",
            ),
            "topic name",
        ),
        # A topic's display name: up to 100 characters (Amazon SNS Developer Guide, "Creating an
        # Amazon SNS topic"; the model's attribute map says nothing of it).
        rule("AWS::SNS::Topic", "DisplayName", text_check(100, None), "topic display name"),
        # Table names: 3-255 characters of a-z, A-Z, 0-9, _, -, . (Amazon DynamoDB Developer
        # Guide, "Supported data types and naming rules"); the model's TableName also takes an ARN.
        rule("AWS::DynamoDB::Table", "TableName", text_check(255, "a-zA-Z0-9_.-", min_len=3), "table name"),
        rule(
            "AWS::DynamoDB::Table",
            "AttributeDefinitions.*.AttributeName",
            model_check("dynamodb", "AttributeDefinition", "AttributeName"),
            "attribute name",
        ),
        rule(
            "AWS::KMS::Key",
            "Description",
            model_check("kms", "CreateKeyRequest", "Description"),
            "key description",
        ),
    ]
    return found


# ------------------------------------------------------------------------------------------
# Applying the rules
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    logical_id: str
    path: str
    what: str
    value: Any
    reason: str

    def __str__(self) -> str:
        shown = str(self.value)
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        return f"{self.logical_id}.{self.path} ({self.what}): {self.reason}; value {shown!r}"


def at_path(node: Any, path: tuple[str, ...], where: str = "") -> Iterator[tuple[str, Any]]:
    if not path:
        yield where, node
        return
    head, rest = path[0], path[1:]
    if head == "*":
        if isinstance(node, list):
            for i, item in enumerate(node):
                yield from at_path(item, rest, f"{where}[{i}]")
        return
    if isinstance(node, dict) and head in node:
        yield from at_path(node[head], rest, f"{where}.{head}" if where else head)


def check_resources(resources: dict[str, dict[str, Any]]) -> list[Violation]:
    found = []
    for logical_id, resource in resources.items():
        for each in rules():
            if each.resource_type != resource["Type"]:
                continue
            for where, value in at_path(resource["Properties"], each.path):
                if each.when is not None and not (isinstance(value, dict) and each.when(value)):
                    continue
                target = value
                if each.when is not None:  # a rule item: its description
                    if "Description" not in value:
                        continue
                    target = value["Description"]
                    where = f"{where}.Description" if where else "Description"
                reason = each.check(target)
                if reason:
                    found.append(Violation(logical_id, where, each.what, target, reason))
    return found


# ------------------------------------------------------------------------------------------
# Whole requests, validated offline by botocore
# ------------------------------------------------------------------------------------------

FAKE_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/stand-in/0123456789abcdef"


def api_requests(resource: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(service, operation, parameters) of the API calls CloudFormation makes for a resource
    whose properties are the API's own names (those types only)."""
    props = dict(resource["Properties"])
    kind = resource["Type"]
    if kind == "AWS::CloudWatch::Alarm":
        return [("cloudwatch", "PutMetricAlarm", props)]
    if kind == "AWS::ElasticLoadBalancingV2::TargetGroup":
        attributes = props.pop("TargetGroupAttributes", [])
        props.pop("Tags", None)
        props.setdefault("Name", "stand-in")
        return [
            ("elbv2", "CreateTargetGroup", props),
            ("elbv2", "ModifyTargetGroupAttributes", {"TargetGroupArn": FAKE_ARN, "Attributes": attributes}),
        ]
    if kind == "AWS::ElasticLoadBalancingV2::LoadBalancer":
        attributes = props.get("LoadBalancerAttributes", [])
        return [
            ("elbv2", "ModifyLoadBalancerAttributes", {"LoadBalancerArn": FAKE_ARN, "Attributes": attributes})
        ]
    if kind == "AWS::Logs::LogGroup" and "LogGroupName" in props:
        calls = [("logs", "CreateLogGroup", {"logGroupName": props["LogGroupName"]})]
        if "RetentionInDays" in props:
            retention = {"logGroupName": props["LogGroupName"], "retentionInDays": props["RetentionInDays"]}
            calls.append(("logs", "PutRetentionPolicy", retention))
        return calls
    return []


def coerced(value: Any, target: Any) -> Any:
    """``value`` in the type of botocore shape ``target``, as CloudFormation converts a
    template's text ("600", "true") to the API's types before it calls."""
    kind = target.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: coerced(v, target.members[k]) if k in target.members else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [coerced(v, target.member) for v in value]
    try:
        if kind in ("integer", "long"):
            return int(str(value))
        if kind in ("double", "float"):
            return float(str(value))
    except ValueError:
        return value
    if kind == "boolean" and str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def request_violations(logical_id: str, resource: dict[str, Any]) -> list[Violation]:
    """botocore's offline validation (``botocore.validate``: required members, types, minimum
    lengths and values) of each whole request CloudFormation makes for the resource."""
    import botocore.validate

    found = []
    for service, operation, params in api_requests(resource):
        input_shape = _model(service).operation_model(operation).input_shape
        report = botocore.validate.ParamValidator().validate(coerced(params, input_shape), input_shape)
        if report.has_errors():
            found.append(
                Violation(
                    logical_id, operation, f"{service} {operation} request", params, report.generate_report()
                )
            )
    return found


def check_template(template: dict[str, Any], parameters: dict[str, str]) -> list[Violation]:
    """Every rule broken by ``template`` (transformed) deployed with ``parameters``, and every
    whole request botocore's offline validation refuses."""
    resources = Resolver(template, parameters).resources()
    found = check_resources(resources)
    for logical_id, resource in resources.items():
        found += request_violations(logical_id, resource)
    return found


# ------------------------------------------------------------------------------------------
# The parameter values to try: defaults and each parameter's extremes
# ------------------------------------------------------------------------------------------


def _sre() -> tuple[Any, Any]:
    """Python's own regular expression parser (``re._constants``, ``re._parser``)."""
    return importlib.import_module("re._constants"), importlib.import_module("re._parser")


def _class_chars(items: list[tuple[Any, Any]]) -> list[str]:
    """The printable ASCII characters a parsed character class admits."""
    c, _ = _sre()

    return _chars_of(_unparse([(c.IN, items)]))


@cache
def _chars_of(char_class: str) -> list[str]:
    compiled = re.compile(char_class)
    return [ch for ch in map(chr, range(32, 127)) if compiled.fullmatch(ch)]


def _unparse(nodes: list[tuple[Any, Any]]) -> str:
    """A regular expression for one parsed character class (enough for `_class_chars`)."""
    c, _ = _sre()

    [(op, av)] = nodes
    if op is c.IN:
        parts = []
        negate = ""
        for kind, value in av:
            if kind is c.NEGATE:
                negate = "^"
            elif kind is c.LITERAL:
                parts.append(re.escape(chr(value)))
            elif kind is c.RANGE:
                parts.append(f"{re.escape(chr(value[0]))}-{re.escape(chr(value[1]))}")
            elif kind is c.CATEGORY:
                parts.append(CATEGORIES[value])
        return f"[{negate}{''.join(parts)}]"
    raise NotImplementedError(op)


def _categories() -> dict[Any, str]:
    c, _ = _sre()

    return {
        c.CATEGORY_DIGIT: r"\d",
        c.CATEGORY_NOT_DIGIT: r"\D",
        c.CATEGORY_SPACE: r"\s",
        c.CATEGORY_NOT_SPACE: r"\S",
        c.CATEGORY_WORD: r"\w",
        c.CATEGORY_NOT_WORD: r"\W",
    }


CATEGORIES = _categories()


def _ordered(chars: list[str]) -> list[str]:
    """Punctuation first: the characters most likely to break a rule come early in a value."""
    return sorted(chars, key=lambda ch: (ch.isalnum(), ch))


def sample(pattern: str, mode: str, budget: int) -> str:
    """A value ``pattern`` admits: ``short`` (every repeat at its minimum), ``long`` (every
    repeat as long as ``budget`` characters allow) or ``rich`` (long, cycling through every
    character each class admits, punctuation first)."""
    c, sre_parse = _sre()

    parsed = sre_parse.parse(pattern)
    counter = [0]

    def pick(chars: list[str]) -> str:
        if mode != "rich":
            alnum = [ch for ch in chars if ch.isalnum()]
            return (alnum or chars)[0]
        ch = _ordered(chars)[counter[0] % len(chars)]
        counter[0] += 1
        return ch

    def gen(nodes: Any, room: int) -> str:
        out = ""
        for op, av in nodes:
            if op is c.LITERAL:
                out += chr(av)
            elif op is c.NOT_LITERAL or op is c.ANY:
                out += pick([ch for ch in map(chr, range(33, 127)) if op is c.ANY or ch != chr(av)])
            elif op is c.IN:
                out += pick(_class_chars(av))
            elif op is c.AT:
                continue
            elif op is c.SUBPATTERN:
                out += gen(av[-1], room - len(out))
            elif op is c.BRANCH:
                options = sorted((gen(branch, room - len(out)) for branch in av[1]), key=len)
                fitting = [o for o in options if len(o) <= room - len(out)] or options[:1]
                out += fitting[0] if mode == "short" else fitting[-1]
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
                low, high, body = av
                one = max(len(gen(body, room)), 1)
                if mode == "short":
                    times = low
                else:
                    left = room - len(out) - _tail_min(nodes, (op, av))
                    times = max(low, min(high if high != c.MAXREPEAT else 10**9, left // one))
                for _ in range(times):
                    out += gen(body, room - len(out))
            else:
                raise NotImplementedError(f"{op} in {pattern!r}")
        return out

    def _tail_min(nodes: Any, current: Any) -> int:
        index = list(nodes).index(current)
        return len(sample_min(list(nodes)[index + 1 :]))

    def sample_min(nodes: Any) -> str:
        nonlocal mode
        saved, mode = mode, "short"
        try:
            return gen(nodes, budget)
        finally:
            mode = saved

    return gen(parsed, budget)


@dataclass(frozen=True)
class ParameterSet:
    label: str
    values: dict[str, str]


def parameter_extremes(name: str, spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) for every extreme of one parameter, each checked against its own constraints."""
    found: list[tuple[str, str]] = []
    if "AllowedValues" in spec:
        found += [(f"{name}={v}", str(v)) for v in spec["AllowedValues"]]
    if "MinValue" in spec:
        found.append((f"{name}={spec['MinValue']} (MinValue)", str(spec["MinValue"])))
    if "MaxValue" in spec:
        found.append((f"{name}={spec['MaxValue']} (MaxValue)", str(spec["MaxValue"])))
    if "AllowedPattern" in spec and spec["Type"] == "String":
        budget = int(spec.get("MaxLength", PARAMETER_VALUE_MAX))
        for mode in ("short", "long", "rich"):
            value = sample(spec["AllowedPattern"], mode, budget)
            found.append((f"{name} {mode} ({len(value)} chars)", value))
    for label, value in found:
        problem = parameter_refuses(spec, value)
        if problem:
            raise AssertionError(f"{label}: the generated value is one the parameter refuses: {problem}")
    return found


def parameter_refuses(spec: dict[str, Any], value: str) -> str | None:
    """Why CloudFormation would refuse ``value`` for a parameter (its own constraints), or None."""
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        return "not an AllowedValues entry"
    if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
        return "does not match AllowedPattern"
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        return "longer than MaxLength"
    if len(value.encode()) > PARAMETER_VALUE_MAX:
        return "longer than CloudFormation's 4,096 bytes"
    if "MinValue" in spec and float(value) < float(spec["MinValue"]):
        return "below MinValue"
    if "MaxValue" in spec and float(value) > float(spec["MaxValue"]):
        return "above MaxValue"
    return None


def parameter_sets(template: dict[str, Any], refused: Callable[[dict[str, str]], bool]) -> list[ParameterSet]:
    """The defaults; each parameter's extremes one at a time; every parameter at its longest
    at once. ``refused(values)``: the template's Rules refuse the set (then it is left out)."""
    specs = template["Parameters"]
    defaults = {
        name: str(spec["Default"]) if "Default" in spec else REQUIRED_SAMPLES[name]
        for name, spec in specs.items()
    }
    sets = [ParameterSet("defaults", defaults)]
    longest = dict(defaults)
    for name, spec in specs.items():
        for label, value in parameter_extremes(name, spec):
            sets.append(ParameterSet(label, {**defaults, name: value}))
            if " long " in f" {label} ":
                longest[name] = value
    sets.append(ParameterSet("every pattern parameter at its longest", longest))
    return [s for s in sets if not refused(s.values)]


class InputRulesError(ValueError):
    """The stack, with these parameters, holds a value AWS would refuse."""


def require_valid(template: dict[str, Any], parameters: dict[str, str]) -> None:
    """Raise `InputRulesError` naming each parameter CloudFormation would refuse and each value
    AWS would refuse, for ``template`` (transformed) created with ``parameters``."""
    specs = template.get("Parameters", {})
    problems = [
        f"parameter {name}={value!r}: {reason}"
        for name, value in parameters.items()
        if name in specs and (reason := parameter_refuses(specs[name], str(value)))
    ]
    if not problems:
        problems = [str(v) for v in check_template(template, parameters)]
    if problems:
        raise InputRulesError("AWS would refuse this stack:\n" + "\n".join(problems))
