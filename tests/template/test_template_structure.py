"""Structure of template.yaml: dead letters, retention, least privilege, network boundaries,
ownership of the GPU services, alarms, dashboard and the operator's event rules."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from devtools.moto_stack import CLOUDFORMATION_OWN_PROPERTIES
from devtools.services import MotoServer
from devtools.template import load_template, resource, resources_of_type
from dynamo_ecs import aws, metric_names
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig
from dynamo_ecs.cross_host import CROSS_HOST_PORTS, pinned_environment, ports_of
from dynamo_ecs.endpoints.gpu_services import GpuServicesProperties
from dynamo_ecs.scaling.triggers import parse_trigger
from dynamo_ecs.signals.breach_events import EVENT_DETAIL_TYPE, EVENT_SOURCE
from dynamo_ecs.specs import load_default_spec
from tests.template.stack import as_list, iam_statements, transformed_template

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
FUNCTIONS = (
    "InfraWatcherFunction",
    "RedeployFunction",
    "BootstrapFunction",
    "MetricsCollectorFunction",
    "ScalerFunction",
    "DiagnosticsFunction",
    "PlaneCredentialsFunction",
)
# Write actions allowed on Resource "*": AWS offers no resource-level permission for them
# (the template says so in a comment next to each).
WILDCARD_WRITE_ALLOWED = {
    "ecs:RegisterTaskDefinition",
    "ecs:DeregisterTaskDefinition",
    "cloudwatch:PutMetricData",  # and only with a cloudwatch:namespace condition
}
READ_PREFIXES = ("Describe", "List", "Get", "BatchGet")
# Scaling bounds: stack parameter -> the config variable it sets.
BOUND_VARIABLES = {
    "FrontendMin": "DYNAMO_ECS_FRONTEND__MIN",
    "FrontendMax": "DYNAMO_ECS_FRONTEND__MAX",
    "PrefillMin": "DYNAMO_ECS_PREFILL__MIN",
    "PrefillMax": "DYNAMO_ECS_PREFILL__MAX",
    "GpuBudget": "DYNAMO_ECS_GPU_BUDGET",
    "ScaleDownStabilizationSeconds": "DYNAMO_ECS_SCALING__SCALE_DOWN_STABILIZATION_S",
}
# Scaling targets: stack parameter -> (the config variable it sets, the condition "not off").
TARGET_VARIABLES = {
    "FrontendTtftMs": ("DYNAMO_ECS_FRONTEND__TARGETS__TTFT_MS", "FrontendTtftOn"),
    "FrontendItlMs": ("DYNAMO_ECS_FRONTEND__TARGETS__ITL_MS", "FrontendItlOn"),
    "FrontendQueueDepthPerReplica": (
        "DYNAMO_ECS_FRONTEND__TARGETS__QUEUE_DEPTH_PER_REPLICA",
        "FrontendQueueOn",
    ),
    "FrontendRouterQueuePerReplica": (
        "DYNAMO_ECS_FRONTEND__TARGETS__ROUTER_QUEUE_PER_REPLICA",
        "FrontendRouterOn",
    ),
    "FrontendGpuUtilizationPct": ("DYNAMO_ECS_FRONTEND__TARGETS__GPU_UTILIZATION_PCT", "FrontendGpuOn"),
    "PrefillQueueDepthPerReplica": ("DYNAMO_ECS_PREFILL__TARGETS__QUEUE_DEPTH_PER_REPLICA", "PrefillQueueOn"),
    "PrefillRouterQueuePerReplica": (
        "DYNAMO_ECS_PREFILL__TARGETS__ROUTER_QUEUE_PER_REPLICA",
        "PrefillRouterOn",
    ),
    "PrefillJetStreamLagPerReplica": (
        "DYNAMO_ECS_PREFILL__TARGETS__JETSTREAM_LAG_PER_REPLICA",
        "PrefillLagOn",
    ),
    "PrefillTtftMs": ("DYNAMO_ECS_PREFILL__TARGETS__TTFT_MS", "PrefillTtftOn"),
    "PrefillGpuUtilizationPct": ("DYNAMO_ECS_PREFILL__TARGETS__GPU_UTILIZATION_PCT", "PrefillGpuOn"),
}
# role-signal -> (metric with the default LatencyStatistic, Service dimension, threshold parameter)
ALARMS = {
    "frontend-ttft": (metric_names.TTFT_MEAN, "frontend", "FrontendTtftMs"),
    "frontend-itl": (metric_names.ITL_MEAN, "frontend", "FrontendItlMs"),
    "frontend-queue": (metric_names.QUEUE_DEPTH, "frontend", "FrontendQueueDepthPerReplica"),
    "frontend-router": (metric_names.ROUTER_QUEUED_REQUESTS, "frontend", "FrontendRouterQueuePerReplica"),
    "frontend-gpu": (metric_names.GPU_UTILIZATION, "frontend", "FrontendGpuUtilizationPct"),
    "prefill-queue": (metric_names.QUEUE_DEPTH, "prefill", "PrefillQueueDepthPerReplica"),
    "prefill-router": (metric_names.ROUTER_QUEUED_REQUESTS, "prefill", "PrefillRouterQueuePerReplica"),
    "prefill-lag": (metric_names.JETSTREAM_LAG, "prefill", "PrefillJetStreamLagPerReplica"),
    "prefill-ttft": (metric_names.TTFT_MEAN, "frontend", "PrefillTtftMs"),
    "prefill-gpu": (metric_names.GPU_UTILIZATION, "prefill", "PrefillGpuUtilizationPct"),
}
# Latency alarms read the metric of the LatencyStatistic parameter.
P90_OF = {metric_names.TTFT_MEAN: metric_names.TTFT_P90, metric_names.ITL_MEAN: metric_names.ITL_P90}
# The activation alarm that wakes prefill from zero: threshold 0, only with PrefillMin 0.
ACTIVATION_ALARM = (
    "prefill-refused",
    metric_names.UNAVAILABLE_REQUEST_RATE,
    "frontend",
    "PrefillScalesToZero",
)


def ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def default_environment(**overrides: str) -> dict[str, str]:
    """The functions' environment with every parameter at its default (or as overridden)."""
    template = load_template()
    parameters = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    parameters.update(overrides)

    def resolve(value: Any) -> str:
        if isinstance(value, str):
            return value
        if "Ref" in value:
            name = value["Ref"]
            return parameters.get(name, f"fake-{name}")
        if "Fn::Sub" in value:
            return re.sub(r"\$\{(\w+)\}", lambda m: resolve({"Ref": m.group(1)}), value["Fn::Sub"])
        if "Fn::If" in value:
            condition, when_true, when_false = value["Fn::If"]
            return resolve(when_true if holds(template["Conditions"][condition]) else when_false)
        if "Fn::Join" in value:
            separator, items = value["Fn::Join"]
            parts = pieces(items) if isinstance(items, dict) else [p for item in items for p in pieces(item)]
            return str(separator).join(parts)
        raise AssertionError(f"unexpected intrinsic in the environment: {value}")

    def pieces(value: Any) -> list[str]:
        if isinstance(value, dict) and "Fn::Split" in value:
            separator, text = value["Fn::Split"]
            return resolve(text).split(separator)
        return [resolve(value)]

    def holds(condition: dict[str, Any]) -> bool:
        if "Fn::Not" in condition:
            return not holds(condition["Fn::Not"][0])
        left, right = condition["Fn::Equals"]
        return resolve(left) == resolve(right)

    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    return {name: resolve(value) for name, value in variables.items()}


# --- Dead letters and retention ---------------------------------------------------------------


def test_every_function_has_a_dead_letter_queue_and_a_log_group_with_retention() -> None:
    functions = resources_of_type("AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    log_groups = resources_of_type("AWS::Logs::LogGroup")
    named = {json.dumps(g["Properties"]["LogGroupName"]) for g in log_groups.values()}
    for name, function in functions.items():
        assert function["Properties"]["DeadLetterQueue"]["Type"] == "SQS", name
        assert ref(function["Properties"]["DeadLetterQueue"]["TargetArn"]) is None  # GetAtt of our queue
        assert any(f'"{name}"' in n or f"${{{name}}}" in n for n in named), f"{name} has no log group"
    for name, group in log_groups.items():
        assert ref(group["Properties"]["RetentionInDays"]) == "LogRetentionDays", name


def test_every_event_source_has_a_dead_letter_target_and_bounded_retries() -> None:
    for name, function in resources_of_type("AWS::Serverless::Function").items():
        for event_name, event in function["Properties"].get("Events", {}).items():
            props = event["Properties"]
            assert props["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["OperatorDeadLetterQueue", "Arn"]}, (
                event_name
            )
            assert "MaximumRetryAttempts" in props["RetryPolicy"], event_name
        if function["Properties"].get("Events"):
            # invoked asynchronously by EventBridge: a retry budget of its own
            assert "EventInvokeConfig" in function["Properties"], name


def test_transformed_template_wires_every_rule_target_to_the_dead_letter_queue() -> None:
    rules = {k: v for k, v in transformed_template()["Resources"].items() if v["Type"] == "AWS::Events::Rule"}
    # infra task changes, breach events, alarm state changes, two schedules, and the diagnostics'
    # four (GPU service actions, GPU deployments, stopped GPU tasks, GPU instance launches)
    assert len(rules) == 9
    for name, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["OperatorDeadLetterQueue", "Arn"]}, (
                name
            )


# --- IAM ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["template.yaml", "transformed"])
def test_no_wildcard_actions_and_no_wildcard_resource_on_writes(source: str) -> None:
    template = load_template() if source == "template.yaml" else transformed_template()
    found = iam_statements(template)
    assert len(found) > 20
    for owner, statement in found:
        actions = as_list(statement["Action"])
        assert "*" not in actions and not any(a.endswith(":*") for a in actions), (owner, statement)
        if statement.get("Resource") != "*":
            continue
        writes = {a for a in actions if not a.split(":")[1].startswith(READ_PREFIXES)}
        assert writes <= WILDCARD_WRITE_ALLOWED, (owner, statement)
        if "cloudwatch:PutMetricData" in writes:
            assert statement["Condition"]["StringEquals"]["cloudwatch:namespace"] == "DynamoEcs"
        if "ecs:ListTasks" in actions:
            assert "ecs:cluster" in statement["Condition"]["ArnEquals"], "ListTasks only on our clusters"


def test_pass_role_only_for_the_stacks_gpu_task_roles_to_ecs_tasks() -> None:
    passes = [s for _, s in iam_statements(load_template()) if "iam:PassRole" in as_list(s["Action"])]
    assert len(passes) == 1
    [statement] = passes
    assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["GpuExecutionRole", "Arn"]},
        {"Fn::GetAtt": ["GpuTaskRole", "Arn"]},
    ]
    assert "GpuTaskRoleArns" not in load_template()["Parameters"]


def test_gpu_services_are_updated_only_by_arn_and_only_the_two_of_them() -> None:
    for owner, statement in iam_statements(load_template()):
        actions = as_list(statement["Action"])
        if {"ecs:UpdateService", "ecs:CreateService", "ecs:DeleteService"} & set(actions):
            services = [r["Fn::Sub"] for r in as_list(statement["Resource"])]
            assert [s.rsplit("/", 1)[1] for s in services] == [
                "${DeploymentName}-frontend",
                "${DeploymentName}-prefill",
            ], owner


def test_the_gpu_execution_role_reads_only_the_ngc_secret_and_with_the_planes_dynamos() -> None:
    role = resource("GpuExecutionRole")["Properties"]
    assert "ManagedPolicyArns" not in role
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    # the Dynamo plane secret's read exists only with the planes on (the three-member tier)
    conditional = [s["Fn::If"] for s in statements if "Fn::If" in s]
    assert conditional == [
        [
            "InfraThreeMembers",
            {
                "Sid": "OnlyTheDynamoPlaneSecret",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": {"Fn::GetAtt": ["PlaneCredentials", "DynamoSecretArn"]},
            },
            {"Ref": "AWS::NoValue"},
        ]
    ]
    secret_reads = [
        s
        for s in statements
        if "Fn::If" not in s and any(a.startswith("secretsmanager:") for a in as_list(s["Action"]))
    ]
    assert secret_reads == [
        {
            "Sid": "OnlyTheNgcSecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Ref": "NgcSecretArn"},
        }
    ]
    assert "Policies" not in resource("GpuTaskRole")["Properties"]  # Dynamo calls no AWS API


def test_scaler_permissions_are_what_it_needs() -> None:
    [document] = resource("ScalerFunction")["Properties"]["Policies"]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert set(as_list(by_sid["ScaleTheGpuServices"]["Action"])) == {
        "ecs:DescribeServices",
        "ecs:UpdateService",
    }
    assert by_sid["ReadSignals"] == {
        "Sid": "ReadSignals",
        "Effect": "Allow",
        "Action": "cloudwatch:GetMetricData",
        "Resource": "*",
    }
    assert set(by_sid["LeaseHistoryDecisions"]["Action"]) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
    }
    assert by_sid["Alerts"]["Resource"] == {"Ref": "AlertTopic"}
    assert "ReservedConcurrentExecutions" not in resource("ScalerFunction")["Properties"]


# --- Network ----------------------------------------------------------------------------------


def ingress_rules(group: str) -> list[dict[str, Any]]:
    """Inline and separate ingress rules of a security group."""
    rules = list(resource(group)["Properties"].get("SecurityGroupIngress", []))
    for rule in resources_of_type("AWS::EC2::SecurityGroupIngress").values():
        if ref(rule["Properties"]["GroupId"]) == group:
            rules.append(rule["Properties"])
    return rules


def egress_rules(group: str) -> list[dict[str, Any]]:
    rules = list(resource(group)["Properties"].get("SecurityGroupEgress", []))
    for rule in resources_of_type("AWS::EC2::SecurityGroupEgress").values():
        if ref(rule["Properties"]["GroupId"]) == group:
            rules.append(rule["Properties"])
    return rules


def test_infra_security_group_admits_only_the_two_named_sources() -> None:
    rules = ingress_rules("InfraSecurityGroup")
    assert all("CidrIp" not in r and "CidrIpv6" not in r and "Description" in r for r in rules)
    admitted = {(ref(r["SourceSecurityGroupId"]), r["FromPort"], r["ToPort"]) for r in rules}
    assert admitted == {
        ("GpuInstanceSecurityGroup", 2379, 2379),  # etcd
        ("GpuInstanceSecurityGroup", 4222, 4222),  # NATS
        ("MetricsCollectorSecurityGroup", 8222, 8222),  # NATS monitor
        ("MetricsCollectorSecurityGroup", 2379, 2379),  # etcd /health, /metrics (operator identity)
        ("InfraSecurityGroup", 2379, 2380),  # the other members: etcd clients (a join) and peers
        ("InfraSecurityGroup", 6222, 6222),  # the other members: NATS routes
    }


def test_infra_members_reach_each_other_on_etcd_and_nats_routes_only() -> None:
    # Given the infra group's egress: HTTPS out (images, logs) and the members' own traffic
    sent = {
        (ref(r.get("DestinationSecurityGroupId")) or r.get("CidrIp"), r["FromPort"], r["ToPort"])
        for r in egress_rules("InfraSecurityGroup")
    }
    assert sent == {
        ("0.0.0.0/0", 443, 443),
        ("InfraSecurityGroup", 2379, 2380),
        ("InfraSecurityGroup", 6222, 6222),
    }
    # and the member rules exist only with the three-member tier
    member_rules = [
        r
        for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")
        for name, r in resources_of_type(kind).items()
        if name.startswith("InfraMembers")
    ]
    assert len(member_rules) == 4 and all(r["Condition"] == "InfraThreeMembers" for r in member_rules)


def test_gpu_instances_admit_only_the_load_balancer_each_other_and_the_collector() -> None:
    rules = ingress_rules("GpuInstanceSecurityGroup")
    assert all("CidrIp" not in r and "CidrIpv6" not in r for r in rules)
    assert all(r["IpProtocol"] == "tcp" and r.get("Description") for r in rules)  # no all-protocol rule
    admitted = {(ref(r["SourceSecurityGroupId"]), r["FromPort"], r["ToPort"]) for r in rules}
    assert admitted == {
        ("LoadBalancerSecurityGroup", 8000, 8000),
        ("MetricsCollectorSecurityGroup", 8000, 8000),
        ("MetricsCollectorSecurityGroup", 9091, 9091),  # decode worker's system port (/metrics)
        ("MetricsCollectorSecurityGroup", 9090, 9090),  # prefill worker's system port
        ("GpuInstanceSecurityGroup", 8101, 8101),  # frontend's response stream
        ("GpuInstanceSecurityGroup", 8102, 8102),  # decode worker's request plane
        ("GpuInstanceSecurityGroup", 8103, 8103),  # prefill worker's request plane
        ("GpuInstanceSecurityGroup", 5600, 5600),  # decode worker's NIXL side channel
        ("GpuInstanceSecurityGroup", 5601, 5601),  # prefill worker's NIXL side channel
        ("GpuInstanceSecurityGroup", 47000, 47063),  # UCX's TCP transport
    }


def test_the_gpu_to_gpu_rules_are_the_ports_the_default_specs_pin() -> None:
    """One rule per pinned port, named after the variable that pins it; nothing else between GPU hosts."""
    rules = [
        r
        for r in ingress_rules("GpuInstanceSecurityGroup")
        if ref(r["SourceSecurityGroupId"]) == "GpuInstanceSecurityGroup"
    ]
    opened = {(r["FromPort"], r["ToPort"]): r["Description"] for r in rules}
    assert len(opened) == len(rules)
    pinned = {(p.first, p.last): p.variable for p in CROSS_HOST_PORTS}
    assert set(opened) == set(pinned)
    for ports, variable in pinned.items():
        assert variable in opened[ports]
    for role in SERVICE_ROLES:
        container = load_default_spec(role)["containerDefinitions"][0]
        environment = {v["name"]: v["value"] for v in container["environment"]}
        assert pinned_environment(role).items() <= environment.items()
        mapped = {(m["containerPort"], m["hostPort"]) for m in container["portMappings"]}
        for port in ports_of(role):
            if port.first == port.last:  # single ports are reserved for placement; UCX's range is not
                assert (port.first, port.first) in mapped


def test_load_balancer_admits_only_the_allowed_cidr_and_reaches_only_the_frontends() -> None:
    [rule] = ingress_rules("LoadBalancerSecurityGroup")
    assert ref(rule["CidrIp"]) == "ApiAllowedCidr"
    [egress] = egress_rules("LoadBalancerSecurityGroup")
    assert (ref(egress["DestinationSecurityGroupId"]), egress["FromPort"]) == (
        "GpuInstanceSecurityGroup",
        8000,
    )


def test_metrics_collector_reaches_the_nats_monitor_the_frontends_the_workers_and_https_only() -> None:
    egress = {
        (ref(r.get("DestinationSecurityGroupId")) or r.get("CidrIp"), r["FromPort"])
        for r in egress_rules("MetricsCollectorSecurityGroup")
    }
    assert egress == {
        ("InfraSecurityGroup", 8222),
        ("InfraSecurityGroup", 2379),  # etcd's /health and /metrics, the planes on
        ("GpuInstanceSecurityGroup", 8000),
        ("GpuInstanceSecurityGroup", 9091),  # the workers' system ports (/metrics)
        ("GpuInstanceSecurityGroup", 9090),
        ("0.0.0.0/0", 443),
    }
    # the etcd rules both ways exist only with the three-member tier (the planes on)
    etcd = [
        r
        for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")
        for r in resources_of_type(kind).values()
        if r["Properties"]["FromPort"] == 2379
        and "MetricsCollectorSecurityGroup"
        in {ref(r["Properties"]["GroupId"]), ref(r["Properties"].get("SourceSecurityGroupId"))}
    ]
    assert len(etcd) == 2 and all(r["Condition"] == "InfraThreeMembers" for r in etcd)
    assert ingress_rules("MetricsCollectorSecurityGroup") == []
    vpc = resource("MetricsCollectorFunction")["Properties"]["VpcConfig"]
    assert vpc["SecurityGroupIds"] == [{"Ref": "MetricsCollectorSecurityGroup"}]


def test_infra_service_is_fargate_in_private_subnets_without_public_ip() -> None:
    service = resource("InfraService")["Properties"]
    assert (service["LaunchType"], service["DesiredCount"]) == ("FARGATE", 1)
    vpc = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert vpc == {
        "AssignPublicIp": "DISABLED",
        "Subnets": {"Ref": "TaskSubnetIds"},
        "SecurityGroups": [{"Ref": "InfraSecurityGroup"}],
    }
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True,
        "Rollback": True,
    }
    task = resource("InfraTaskDefinition")["Properties"]
    assert (task["NetworkMode"], task["Cpu"], task["Memory"]) == ("awsvpc", "1024", "3072")


def test_each_infra_member_is_one_fargate_task_in_its_own_subnet_under_its_own_name() -> None:
    subnets = []
    for k in range(3):
        service = resource(f"InfraMember{k}Service")
        props = service["Properties"]
        assert service["Condition"] == "InfraThreeMembers"
        assert (props["LaunchType"], props["DesiredCount"]) == ("FARGATE", 1)
        assert props["ServiceName"] == {"Fn::Sub": f"${{DeploymentName}}-infra-{k}"}
        # never two tasks of one member (one name, one etcd identity): the old stops first
        deployment = props["DeploymentConfiguration"]
        assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (0, 100)
        assert props["ServiceRegistries"] == [
            {"RegistryArn": {"Fn::GetAtt": [f"InfraMember{k}Discovery", "Arn"]}}
        ]
        discovery = resource(f"InfraMember{k}Discovery")["Properties"]
        assert discovery["Name"] == f"infra-{k}"
        assert discovery["DnsConfig"]["DnsRecords"] == [{"Type": "A", "TTL": 10}]
        vpc = props["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert vpc["AssignPublicIp"] == "DISABLED" and vpc["SecurityGroups"] == [
            {"Ref": "InfraSecurityGroup"}
        ]
        [subnet] = vpc["Subnets"]
        subnets.append(subnet)
        task = resource(f"InfraMember{k}TaskDefinition")["Properties"]
        assert (task["NetworkMode"], task["RequiresCompatibilities"]) == ("awsvpc", ["FARGATE"])
    # member k in the k-th subnet; with two subnets the third member goes to the first
    assert subnets[0] == {"Fn::Select": [0, {"Ref": "TaskSubnetIds"}]}
    assert subnets[1] == {"Fn::Select": [1, {"Ref": "TaskSubnetIds"}]}
    [index, split] = subnets[2]["Fn::Select"]
    joined = split["Fn::Split"][1]["Fn::Join"][1]
    assert index == 2 and joined == [
        {"Fn::Join": [",", {"Ref": "TaskSubnetIds"}]},
        {"Fn::Select": [0, {"Ref": "TaskSubnetIds"}]},
    ]
    namespace = resource("InfraNamespace")["Properties"]
    assert namespace["Name"] == {"Fn::Sub": "${DeploymentName}-infra.internal"}
    assert namespace["Vpc"] == {"Ref": "VpcId"}


# --- Ownership of the GPU services ------------------------------------------------------------


def test_cloudformation_owns_no_gpu_service_and_no_gpu_task_definition() -> None:
    members = [f"InfraMember{k}" for k in range(3)]
    assert set(resources_of_type("AWS::ECS::Service")) == {"InfraService", *(f"{m}Service" for m in members)}
    assert set(resources_of_type("AWS::ECS::TaskDefinition")) == {
        "InfraTaskDefinition",
        *(f"{m}TaskDefinition" for m in members),
        "EtcdMaintenanceTaskDefinition",  # the infra tier's one-off maintenance task (no service)
    }
    [custom] = resources_of_type("Custom::DynamoGpuServices").values()
    assert custom["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["BootstrapFunction", "Arn"]}


def test_custom_resource_properties_are_the_ones_the_bootstrap_function_reads() -> None:
    properties = set(resource("GpuServices")["Properties"]) - CLOUDFORMATION_OWN_PROPERTIES
    aliases = {f.alias for f in GpuServicesProperties.model_fields.values()}
    assert properties == aliases
    # Desired counts only at creation: a second deploy must not reset what the scaler set.
    assert {p for p in properties if "Count" in p} == {"FrontendInitialCount", "PrefillInitialCount"}
    # A new image or model parameter reaches the operator as an Update of this resource.
    props = resource("GpuServices")["Properties"]
    assert (props["Image"], props["Model"]) == ({"Ref": "DynamoImage"}, {"Ref": "ModelId"})


def test_the_custom_resource_gives_up_in_minutes_and_is_never_replayed() -> None:
    # CloudFormation waits ServiceTimeout for an answer (default 3600 s); the function answers
    # within its own timeout, so the wait is bounded a little above that.
    timeout = resource("BootstrapFunction")["Properties"]["Timeout"]
    assert timeout < resource("GpuServices")["Properties"]["ServiceTimeout"] <= 2 * timeout
    # No Lambda retries of CloudFormation's asynchronous invoke (a replayed Create or Delete),
    # in the SAM template and in what the transform makes of it.
    invoke = resource("BootstrapFunction")["Properties"]["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 0
    [config] = [
        r["Properties"]
        for r in transformed_template()["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"]["FunctionName"] == {"Ref": "BootstrapFunction"}
    ]
    assert config["MaximumRetryAttempts"] == 0


def test_the_bootstrap_may_release_only_the_stacks_gpu_instances() -> None:
    [group_ref] = [resource("GpuServices")["Properties"]["AutoScalingGroup"]]
    assert group_ref == {"Ref": "GpuAutoScalingGroup"}
    name = resource("GpuAutoScalingGroup")["Properties"]["AutoScalingGroupName"]["Fn::Sub"]
    releasing = ("autoscaling:SetInstanceProtection", "autoscaling:UpdateAutoScalingGroup")
    statements = [
        (o, s) for o, s in iam_statements(load_template()) if set(releasing) & set(as_list(s["Action"]))
    ]
    [(owner, statement)] = statements
    assert owner == "BootstrapFunction"
    assert sorted(as_list(statement["Action"])) == [
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:SetInstanceProtection",
        "autoscaling:UpdateAutoScalingGroup",
    ]
    assert statement["Resource"]["Fn::Sub"].endswith(f":autoScalingGroup:*:autoScalingGroupName/{name}")


def test_the_bootstrap_reads_only_the_gpu_clusters_tasks() -> None:
    statements = [s for o, s in iam_statements(load_template()) if o == "BootstrapFunction"]
    [listing] = [s for s in statements if as_list(s["Action"]) == ["ecs:ListTasks"]]
    assert listing["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["GpuCluster", "Arn"]}}}
    [describing] = [s for s in statements if as_list(s["Action"]) == ["ecs:DescribeTasks"]]
    assert describing["Resource"]["Fn::Sub"].endswith(":task/${GpuCluster}/*")


def test_custom_resource_is_created_after_and_deleted_before_what_it_needs() -> None:
    depends = set(resource("GpuServices")["DependsOn"])
    assert {"InfraReady", "GpuClusterCapacityProviders", "ApiListener", "BootstrapLogGroup"} <= depends
    # InfraReady stands for whichever infra layout the stack has: the single task, or the last
    # member (which waits for the two before it)
    assert resource("InfraReady")["Metadata"]["InfraService"] == {
        "Fn::If": ["InfraOneTask", {"Ref": "InfraService"}, {"Ref": "InfraMember2Service"}]
    }
    assert resource("InfraMember2Service")["DependsOn"] == "InfraMember1Service"
    assert resource("InfraMember1Service")["DependsOn"] == "InfraMember0Service"


# --- Configuration --------------------------------------------------------------------------------


def test_every_scaling_target_and_bound_is_a_parameter_wired_to_its_variable() -> None:
    template = load_template()
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for parameter, variable in BOUND_VARIABLES.items():
        assert parameter in template["Parameters"], parameter
        assert variables[variable] == {"Ref": parameter}, variable
    for parameter, (variable, condition) in TARGET_VARIABLES.items():
        # "off" switches the signal off: the variable becomes null, the alarm is not created
        assert variables[variable] == {"Fn::If": [condition, {"Ref": parameter}, "null"]}, variable
        assert template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, "off"]}]}
    assert variables["DYNAMO_ECS_SCALING__PREFILL_SCALE_TO_ZERO"] == {
        "Fn::If": ["PrefillScalesToZero", "true", "false"]
    }
    assert template["Conditions"]["PrefillScalesToZero"] == {"Fn::Equals": [{"Ref": "PrefillMin"}, "0"]}


def test_the_defaults_make_a_valid_config_with_the_config_defaults() -> None:
    # Given the environment a deploy with every default hands the functions
    env = default_environment()
    assert all(
        name.startswith("DYNAMO_ECS_")
        for name in env
        if name not in {"LOG_LEVEL"} and "POWERTOOLS" not in name
    )
    # When the operator loads it, Then it is valid and the stack's defaults are the code's defaults
    from dynamo_ecs.config import load_config

    config = load_config(env)
    code = DeploymentConfig()
    assert config.frontend.targets == code.frontend.targets
    assert config.prefill.targets == code.prefill.targets
    # except the 10-s metrics, which the stack turns on in both places at once
    # (MetricPeriodSeconds: the collector's six rounds a minute and the scaler's period)
    assert config.scaling.model_copy(update={"metric_period_s": 60}) == code.scaling
    assert (config.scaling.metric_period_s, config.signals.samples_per_invocation) == (10, 6)
    assert config.gpu_budget == code.gpu_budget


def test_a_target_set_to_off_switches_its_signal_off() -> None:
    from dynamo_ecs.config import load_config

    config = load_config(
        default_environment(FrontendGpuUtilizationPct="off", PrefillQueueDepthPerReplica="off")
    )
    assert config.frontend.targets.gpu_utilization_pct is None
    assert config.prefill.targets.queue_depth_per_replica is None
    assert config.frontend.targets.ttft_ms == 500
    alarms = resources_of_type("AWS::CloudWatch::Alarm")
    assert alarms["ScaleFrontendGpuAlarm"]["Condition"] == "FrontendGpuOn"
    assert alarms["ScalePrefillLagAlarm"]["Condition"] == "PrefillLagOn"


def test_latency_statistic_and_jetstream_streams_reach_the_config() -> None:
    from dynamo_ecs.config import load_config

    # The default: Dynamo planner's targets are means
    default = load_config(default_environment())
    assert (default.frontend.targets.ttft_statistic, default.prefill.targets.ttft_statistic) == (
        "mean",
        "mean",
    )
    assert default.signals.jetstream_streams == []
    # p90 and named streams with a lag target
    config = load_config(
        default_environment(
            LatencyStatistic="p90",
            JetStreamStreams="work,events/listener",
            PrefillJetStreamLagPerReplica="10",
        )
    )
    assert (config.frontend.targets.ttft_statistic, config.frontend.targets.itl_statistic) == ("p90", "p90")
    assert config.signals.jetstream_streams == ["work", "events/listener"]
    assert config.prefill.targets.jetstream_lag_per_replica == 10
    pattern = load_template()["Parameters"]["JetStreamStreams"]["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, "a,b/c") and not re.fullmatch(pattern, "a b")


@pytest.mark.parametrize(
    ("value", "valid"),
    [("500", True), ("0.5", True), ("off", True), ("0", False), ("-1", False), ("", False), ("null", False)],
)
def test_target_parameters_accept_positive_numbers_and_off(value: str, valid: bool) -> None:
    pattern = load_template()["Parameters"]["FrontendTtftMs"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is valid
    percent = load_template()["Parameters"]["FrontendGpuUtilizationPct"]["AllowedPattern"]
    assert re.fullmatch(percent, "100") and re.fullmatch(percent, "off") and not re.fullmatch(percent, "101")


def test_parameters_are_guided_friendly_and_only_network_and_secret_are_required() -> None:
    parameters = load_template()["Parameters"]
    for name, spec in parameters.items():
        assert spec.get("Description"), name
        constrained = {"AllowedValues", "AllowedPattern", "MinValue"} & set(spec)
        assert constrained or spec["Type"].startswith(("AWS::", "List<AWS::")), name
    required = {name for name, spec in parameters.items() if "Default" not in spec}
    assert required == {"VpcId", "TaskSubnetIds", "LoadBalancerSubnetIds", "NgcSecretArn"}
    assert parameters["GpuInstanceType"]["Default"] == "g6e.2xlarge"
    assert (
        parameters["GpuAmiId"]["Default"]
        == "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
    )


def test_samconfig_has_a_default_and_a_prod_environment() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert {"default", "prod"} <= set(config)
    for env in ("default", "prod"):
        deploy = config[env]["deploy"]["parameters"]
        assert "CAPABILITY_IAM" in deploy["capabilities"]
        assert config[env]["global"]["parameters"]["stack_name"]
    prod = config["prod"]["deploy"]["parameters"]
    assert "DeploymentName" in prod.get("parameter_overrides", "")


# --- Launch template, capacity, load balancer -------------------------------------------------------


def test_gpu_launch_template_uses_the_gpu_ami_a_200_gb_root_and_the_gpu_metrics_agent() -> None:
    data = resource("GpuLaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["ImageId"] == {"Ref": "GpuAmiId"} and data["InstanceType"] == {"Ref": "GpuInstanceType"}
    [root] = data["BlockDeviceMappings"]
    assert root["Ebs"]["VolumeSize"] == 200 and root["Ebs"]["Encrypted"] is True
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    user_data = data["UserData"]["Fn::Base64"]["Fn::Sub"]
    assert "ECS_CLUSTER=${GpuCluster}" in user_data
    agent = json.loads(user_data.split("<<'EOF'\n")[2].split("\nEOF")[0].replace("${!", "${"))
    assert agent["metrics"]["aggregation_dimensions"] == [["InstanceId"]]
    assert "utilization_gpu" in agent["metrics"]["metrics_collected"]["nvidia_gpu"]["measurement"]


def test_capacity_provider_has_managed_scaling_and_termination_protection() -> None:
    provider = resource("GpuCapacityProvider")["Properties"]["AutoScalingGroupProvider"]
    assert provider["ManagedScaling"]["Status"] == "ENABLED"
    assert provider["ManagedTerminationProtection"] == "ENABLED"
    group = resource("GpuAutoScalingGroup")["Properties"]
    assert group["NewInstancesProtectedFromScaleIn"] is True
    assert group["MaxSize"] == {"Ref": "GpuBudget"}


def test_load_balancer_forwards_to_the_frontend_port_with_health_check() -> None:
    target_group = resource("FrontendTargetGroup")["Properties"]
    assert target_group["Port"] == 8000 and target_group["HealthCheckPort"] == "traffic-port"
    # Readiness: Dynamo's route for the served model (200 ready, 503 prefill missing, 404 none);
    # not /health, which is 200 with no worker (tests/integration/real_dynamo/test_readiness.py)
    assert target_group["HealthCheckPath"] == {"Fn::Sub": "/v1/models/${ModelId}"}
    assert target_group["Matcher"] == {"HttpCode": "200"}
    checks = (target_group["HealthCheckIntervalSeconds"], target_group["HealthCheckTimeoutSeconds"])
    assert checks == (10, 5)
    assert (target_group["HealthyThresholdCount"], target_group["UnhealthyThresholdCount"]) == (2, 2)
    # The model id is part of that path: only characters a health check path may hold
    assert load_template()["Parameters"]["ModelId"]["AllowedPattern"] == "^[A-Za-z0-9._/-]+$"
    listener = resource("ApiListener")["Properties"]
    assert listener["DefaultActions"] == [
        {"Type": "forward", "TargetGroupArn": {"Ref": "FrontendTargetGroup"}}
    ]
    assert listener["Protocol"] == {"Fn::If": ["HasCertificate", "HTTPS", "HTTP"]}


# --- Alarms and dashboard ---------------------------------------------------------------------


def test_every_alert_publisher_may_use_the_topic_key_through_sns_only() -> None:
    publishers = 0
    for owner, statement in iam_statements(load_template()):
        if statement["Action"] != "sns:Publish":
            continue
        publishers += 1
        siblings = [
            s for o, s in iam_statements(load_template()) if o == owner and s.get("Sid") == "AlertTopicKey"
        ]
        assert siblings, f"{owner} publishes alerts but cannot use the topic's key"
        [key] = siblings
        assert key["Resource"] == {"Fn::GetAtt": ["AlertTopicKey", "Arn"]}
        assert key["Condition"]["StringEquals"]["kms:ViaService"] == {
            "Fn::Sub": "sns.${AWS::Region}.amazonaws.com"
        }
    assert publishers == 3  # the endpoint reconcile policy, the scaler and the diagnostics


def test_the_dead_letter_alarm_can_publish_to_the_encrypted_alert_topic() -> None:
    # CloudWatch cannot use the AWS managed alias/aws/sns key: the topic has a key of its own
    assert resource("AlertTopic")["Properties"]["KmsMasterKeyId"] == {"Ref": "AlertTopicKey"}
    key = resource("AlertTopicKey")["Properties"]
    assert key["EnableKeyRotation"] is True
    grants = {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}
    assert grants["CloudWatchAlarms"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(grants["CloudWatchAlarms"]["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}
    assert resource("DeadLetterAlarm")["Properties"]["AlarmActions"] == [{"Ref": "AlertTopic"}]
    [statement] = resource("AlertTopicPolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}


def test_scale_out_alarms_follow_the_naming_and_metric_contract() -> None:
    scale_alarms = [
        a
        for a in resources_of_type("AWS::CloudWatch::Alarm").values()
        if "-scale-" in json.dumps(a["Properties"])
    ]
    alarms = {
        a["Properties"]["AlarmName"]["Fn::Sub"].removeprefix("${DeploymentName}-scale-"): a
        for a in scale_alarms
    }
    name, metric, service, condition = ACTIVATION_ALARM
    wake = alarms.pop(name)
    assert wake["Condition"] == condition and wake["Properties"]["Threshold"] == 0
    assert (wake["Properties"]["MetricName"], wake["Properties"]["Dimensions"][1]["Value"]) == (
        metric,
        service,
    )
    conditions = {a["Properties"]["Threshold"]["Ref"]: a["Condition"] for a in alarms.values()}
    assert conditions == {parameter: condition for parameter, (_, condition) in TARGET_VARIABLES.items()}
    assert set(alarms) == set(ALARMS)
    for name, (metric, service, threshold) in ALARMS.items():
        alarm = alarms[name]["Properties"]
        if metric in P90_OF:
            assert alarm["MetricName"] == {"Fn::If": ["LatencyOnMean", metric, P90_OF[metric]]}, name
        else:
            assert alarm["MetricName"] == metric, name
        assert alarm["Namespace"] == "DynamoEcs", name
        assert alarm["Dimensions"] == [
            {"Name": metric_names.DIMENSION_DEPLOYMENT, "Value": {"Ref": "DeploymentName"}},
            {"Name": metric_names.DIMENSION_SERVICE, "Value": service},
        ], name
        assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (60, 1, 1), name
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert alarm["Threshold"] == {"Ref": threshold}, name
        assert not {"AlarmActions", "OKActions", "InsufficientDataActions"} & set(alarm), name


def test_there_is_one_alarm_per_scaling_signal_of_the_scaler() -> None:
    # The scaler's own list of signals, every target the stack can set switched on, is the
    # source of truth (the workers' queue needs their system port, which the stack does not set).
    from dynamo_ecs.config import SERVICE_ROLES
    from dynamo_ecs.scaling.signals import activation_specs, alarm_name, signal_specs

    on = {"router_queue_per_replica": 4}
    config = DeploymentConfig.model_validate(
        {
            "frontend": {"targets": on},
            "prefill": {"min": 0, "targets": {**on, "jetstream_lag_per_replica": 10}},
            "scaling": {"prefill_scale_to_zero": True},
            "signals": {"jetstream_streams": ["work"]},
        }
    )
    specs = [spec for role in SERVICE_ROLES for spec in signal_specs(config, role)]
    expected = {
        alarm_name("D", spec.role, spec.name).removeprefix("D-scale-"): (spec.metric, spec.source_service)
        for spec in specs
    }
    assert expected == {name: (metric, service) for name, (metric, service, _) in ALARMS.items()}
    [wake] = activation_specs(config)
    assert (f"{wake.role}-{wake.name}", wake.metric, wake.source_service) == ACTIVATION_ALARM[:3]


def test_the_scaler_reads_each_alarm_name_as_its_role_and_signal() -> None:
    # Given the sample alarm event with each of the stack's alarm names (default deployment)
    deployment = load_template()["Parameters"]["DeploymentName"]["Default"]
    sample = json.loads((EVENTS / "scaler_alarm.json").read_text())
    # (with every signal on, as the stack is with each alarm's parameter set)
    every_signal_on = DeploymentConfig.model_validate(
        {
            "deployment": deployment,
            "frontend": {"targets": {"router_queue_per_replica": 8}},
            "prefill": {
                "min": 0,
                "targets": {"router_queue_per_replica": 8, "jetstream_lag_per_replica": 10},
            },
            "signals": {"jetstream_streams": ["work"]},
            "scaling": {"prefill_scale_to_zero": True},
        }
    )
    for name in [*ALARMS, ACTIVATION_ALARM[0]]:
        sample["detail"]["alarmName"] = f"{deployment}-scale-{name}"
        # When the scaler parses it, Then it names the alarm's service and signal
        trigger = parse_trigger(sample, every_signal_on)
        assert (trigger.kind, f"{trigger.role}-{trigger.signal}") == ("alarm", name)


def test_dashboard_shows_counts_gpu_latency_queues_and_scale_decisions() -> None:
    body, variables = resource("Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
    assert set(variables) == {"Frontend", "Prefill", "Scaler", "GpuTarget", "TtftTarget", "ItlTarget"}
    # Every ${...} is a parameter, a resource, a pseudo parameter or one of the variables.
    template = load_template()
    known = set(template["Parameters"]) | set(template["Resources"]) | set(variables) | {"AWS::Region"}
    assert set(re.findall(r"\$\{([\w:]+)\}", body)) <= known
    # Target lines exist only for targets that are on ("off" is not a number)
    for name in ("GpuTarget", "TtftTarget", "ItlTarget"):
        condition, line, off = variables[name]["Fn::If"]
        assert condition in {c for _, c in TARGET_VARIABLES.values()} and off == ""
        assert json.loads(re.sub(r"\$\{\w+\}", "1", line["Fn::Sub"]))["value"] == 1
    for target in ('{"label": "t", "value": 1}', ""):
        filled = re.sub(r"\$\{\w*Target\}", target, body)
        json.loads(re.sub(r"\$\{([\w:]+)\}", "1", filled))
    dashboard = json.loads(re.sub(r"\$\{([\w:]+)\}", "1", re.sub(r"\$\{\w*Target\}", "", body)))
    text = json.dumps(dashboard)
    for needed in (
        "DesiredTaskCount",
        "RunningTaskCount",
        metric_names.GPU_UTILIZATION,
        metric_names.TTFT_MEAN,
        metric_names.TTFT_P90,
        metric_names.ITL_MEAN,
        metric_names.ITL_P90,
        metric_names.QUEUE_DEPTH,
        metric_names.QUEUE_DEPTH_TOTAL,
        metric_names.ROUTER_QUEUED_REQUESTS,
        metric_names.WORKER_QUEUE_DEPTH,
        metric_names.REQUEST_RATE,
        metric_names.UNAVAILABLE_REQUEST_RATE,
        metric_names.JETSTREAM_LAG,
        metric_names.JETSTREAM_INACTIVE_CONSUMERS,
        metric_names.NATS_WORKER_PENDING_BYTES,
        "ScaleActions",
    ):
        assert needed in text, needed
    [logs] = [w for w in dashboard["widgets"] if w["type"] == "log"]
    assert "filter message = 'scale decision'" in logs["properties"]["query"]


# --- Event rules, proven on moto EventBridge ---------------------------------------------------


def _route(events: Any, sqs: Any, name: str, pattern: dict[str, Any]) -> str:
    queue = sqs.create_queue(QueueName=f"{name}-target")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": queue_arn}])
    return str(queue)


def _put(events: Any, source: str, detail_type: str, detail: dict[str, Any]) -> None:
    events.put_events(Entries=[{"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}])


def test_infra_watcher_rule_matches_what_aws_sends_and_nothing_else(aws_env: MotoServer) -> None:
    # Given the rule's pattern from the template, with the stack's values filled in, targeting SQS
    pattern = resource("InfraWatcherFunction")["Properties"]["Events"]["InfraTaskStateChange"]["Properties"][
        "Pattern"
    ]
    assert pattern["detail"]["clusterArn"] == [{"Fn::GetAtt": ["InfraCluster", "Arn"]}]
    assert pattern["detail"]["group"] == [
        {"Fn::Sub": "service:${DeploymentName}-infra"},
        {"prefix": {"Fn::Sub": "service:${DeploymentName}-infra-"}},  # the members' services
    ]
    ours = json.loads((EVENTS / "infra_task_running.json").read_text())
    # (the sample event is what a stack deployed with the defaults receives)
    deployment = load_template()["Parameters"]["DeploymentName"]["Default"]
    assert ours["detail"]["group"] == f"service:{deployment}-infra"
    assert ours["detail"]["clusterArn"].endswith(f":cluster/{deployment}-fargate")
    pattern = json.loads(json.dumps(pattern))
    pattern["detail"]["clusterArn"] = [ours["detail"]["clusterArn"]]
    pattern["detail"]["group"] = [ours["detail"]["group"], {"prefix": f"{ours['detail']['group']}-"}]
    events, sqs = aws.client("events"), aws.client("sqs")
    queue = _route(events, sqs, "infra-watcher", pattern)
    # When our sample event, a member's (the three-member tier) and one of another service are put
    member, other = json.loads(json.dumps(ours)), json.loads(json.dumps(ours))
    member["detail"]["group"] = f"service:{deployment}-infra-1"
    other["detail"]["group"] = "service:dynamo-frontend"
    for event in (ours, member, other):
        _put(events, event["source"], event["detail-type"], event["detail"])
    # Then only ours and the member's reach the target
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert sorted(json.loads(m["Body"])["detail"]["group"] for m in received) == [
        ours["detail"]["group"],
        member["detail"]["group"],
    ]


def test_scaler_alarm_rule_matches_only_our_scale_alarms_going_to_alarm(aws_env: MotoServer) -> None:
    # Given the scaler's alarm rule from the template, for deployment "dynamo"
    pattern = resource("ScalerFunction")["Properties"]["Events"]["ScaleOutAlarm"]["Properties"]["Pattern"]
    pattern = json.loads(
        json.dumps(pattern).replace('{"Fn::Sub": "${DeploymentName}-scale-"}', '"dynamo-scale-"')
    )
    assert pattern["detail"]["alarmName"] == [{"prefix": "dynamo-scale-"}]
    events, sqs = aws.client("events"), aws.client("sqs")
    queue = _route(events, sqs, "scale-out", pattern)

    def alarm_change(name: str, state: str) -> dict[str, Any]:
        return {
            "alarmName": name,
            "state": {"value": state, "reason": "test"},
            "previousState": {"value": "OK"},
        }

    # When our alarm goes to ALARM, our alarm goes back to OK, and another deployment's and
    # another alarm of ours (dead letters) go to ALARM
    for name, state in (
        ("dynamo-scale-frontend-ttft", "ALARM"),
        ("dynamo-scale-frontend-ttft", "OK"),
        ("staging-scale-frontend-ttft", "ALARM"),
        ("dynamo-operator-dead-letters", "ALARM"),
    ):
        _put(events, "aws.cloudwatch", "CloudWatch Alarm State Change", alarm_change(name, state))
    # Then only the first reaches the scaler
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    bodies = [json.loads(m["Body"])["detail"] for m in received]
    assert [(b["alarmName"], b["state"]["value"]) for b in bodies] == [
        ("dynamo-scale-frontend-ttft", "ALARM")
    ]


def test_scaler_breach_rule_matches_the_collectors_event_for_this_deployment_only(
    aws_env: MotoServer,
) -> None:
    # Given the scaler's breach rule from the template, for the default deployment
    pattern = resource("ScalerFunction")["Properties"]["Events"]["SignalsBreached"]["Properties"]["Pattern"]
    assert pattern["detail"]["deployment"] == [{"Ref": "DeploymentName"}]
    assert (pattern["source"], pattern["detail-type"]) == ([EVENT_SOURCE], [EVENT_DETAIL_TYPE])
    deployment = load_template()["Parameters"]["DeploymentName"]["Default"]
    pattern = {**pattern, "detail": {"deployment": [deployment]}}
    events, sqs = aws.client("events"), aws.client("sqs")
    queue = _route(events, sqs, "breach", pattern)
    # When the sample breach event and the same event of another deployment are put on the bus
    ours = json.loads((EVENTS / "scaler_breach.json").read_text())
    theirs = {**ours["detail"], "deployment": "staging"}
    _put(events, ours["source"], ours["detail-type"], ours["detail"])
    _put(events, ours["source"], ours["detail-type"], theirs)
    # Then only ours reaches the scaler
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["detail"]["deployment"] for m in received] == [deployment]


def test_collector_may_put_only_its_own_events_on_the_default_bus() -> None:
    [document] = resource("MetricsCollectorFunction")["Properties"]["Policies"]
    [statement] = [s for s in document["Statement"] if s.get("Action") == "events:PutEvents"]
    assert statement["Resource"]["Fn::Sub"].endswith(":event-bus/default")
    assert statement["Condition"]["StringEquals"]["events:source"] == "dynamo-ecs.collector"


def test_the_collector_reads_only_the_operator_plane_secret_and_only_with_the_planes() -> None:
    import fnmatch

    [document] = resource("MetricsCollectorFunction")["Properties"]["Policies"]
    secret_reads = [s for s in document["Statement"] if "secretsmanager" in json.dumps(s)]
    [(condition, statement, otherwise)] = [s["Fn::If"] for s in secret_reads]
    assert (condition, otherwise) == ("InfraThreeMembers", {"Ref": "AWS::NoValue"})
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    pattern = statement["Resource"]["Fn::Sub"].replace("${AWS::Partition}", "aws")
    pattern = pattern.replace("${AWS::Region}", "us-east-1").replace("${AWS::AccountId}", "123456789012")
    pattern = pattern.replace("${DeploymentName}", "dynamo")

    def arn(name: str) -> str:  # Secrets Manager appends a hyphen and six characters
        return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf"

    assert fnmatch.fnmatchcase(arn("dynamo/planes/operator"), pattern)
    for other in ("dynamo/planes/dynamo", "dynamo/planes/infra", "dynamo/planes/ca", "other/planes/operator"):
        assert not fnmatch.fnmatchcase(arn(other), pattern), other
    assert not fnmatch.fnmatchcase(arn("dynamo/planes/operator-abcdef"), pattern)
    # and the collector is given the secret (the same condition) and the members' names
    variables = resource("MetricsCollectorFunction")["Properties"]["Environment"]["Variables"]
    assert variables["DYNAMO_ECS_PLANES__OPERATOR_SECRET_ARN"] == {
        "Fn::If": ["InfraThreeMembers", {"Fn::GetAtt": ["PlaneCredentials", "OperatorSecretArn"]}, "null"]
    }
    members = load_template()["Globals"]["Function"]["Environment"]["Variables"]["DYNAMO_ECS_INFRA__MEMBERS"]
    assert members["Fn::If"][0] == "InfraThreeMembers"


def test_the_etcd_health_alarm_alerts_below_two_healthy_members_with_the_three_member_tier() -> None:
    alarm = resource("EtcdMembersHealthyAlarm")
    props = alarm["Properties"]
    assert alarm["Condition"] == "InfraThreeMembers"
    assert (props["Namespace"], props["MetricName"]) == ("DynamoEcs", metric_names.ETCD_MEMBERS_HEALTHY)
    assert props["Dimensions"] == [
        {"Name": metric_names.DIMENSION_DEPLOYMENT, "Value": {"Ref": "DeploymentName"}},
        {"Name": metric_names.DIMENSION_SERVICE, "Value": metric_names.SERVICE_INFRA},
    ]
    assert (props["ComparisonOperator"], props["Threshold"]) == ("LessThanThreshold", 2)
    assert props["TreatMissingData"] == "ignore"  # 0 is published when no member answers
    assert props["AlarmActions"] == [{"Ref": "AlertTopic"}] == props["OKActions"]


def test_schedules_run_the_collector_and_the_scaler_every_minute() -> None:
    for name in ("MetricsCollectorFunction", "ScalerFunction"):
        schedule = resource(name)["Properties"]["Events"]["EveryMinute"]
        assert schedule["Type"] == "Schedule"
        assert schedule["Properties"]["Schedule"] == "rate(1 minute)"


def test_no_infra_image_is_pulled_anonymously_from_docker_hub() -> None:
    # Tasks behind one NAT share Docker Hub's anonymous pull limit: a few infra task restarts
    # and the task cannot start. Every infra image names a registry host of its own.
    parameters = load_template()["Parameters"]
    containers = [
        container
        for name in ("InfraTaskDefinition", *(f"InfraMember{k}TaskDefinition" for k in range(3)))
        for container in resource(name)["Properties"]["ContainerDefinitions"]
    ]
    for container in containers:
        image = container["Image"]
        default = parameters[image["Ref"]]["Default"] if isinstance(image, dict) else image
        registry = default.split("/", 1)[0]
        assert "." in registry and registry not in ("docker.io", "registry-1.docker.io"), default


# The first release of each line with the fix for GHSA-x35m-3gp4-4fh5 (CVE-2026-44283): before
# it, an authenticated client reads around its role through PrevKv and attaches leases in a
# transaction's Put, which the planes' roles (Dynamo to v1/, the operator to nothing) rely on.
FIRST_PATCHED_ETCD = {(3, 4): 44, (3, 5): 30, (3, 6): 11}


def etcd_release(image: str) -> tuple[int, int, int]:
    match = re.fullmatch(r".*/etcd:v(\d+)\.(\d+)\.(\d+)", image)
    assert match, f"{image}: the etcd image names no vX.Y.Z release"
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def test_the_default_etcd_image_has_the_role_bypass_fixes() -> None:
    template_default = load_template()["Parameters"]["EtcdImage"]["Default"]
    [spec_etcd] = [c for c in load_default_spec("infra")["containerDefinitions"] if c["name"] == "etcd"]
    assert spec_etcd["image"] == template_default
    major, minor, patch = etcd_release(template_default)
    first = FIRST_PATCHED_ETCD.get((major, minor))
    assert first is not None or (major, minor) > (3, 6), template_default
    assert first is None or patch >= first, f"{template_default}: take v{major}.{minor}.{first} or later"


def test_the_nats_container_reads_dynamos_settings_from_a_config_file_written_before_it() -> None:
    containers = {c["Name"]: c for c in resource("InfraTaskDefinition")["Properties"]["ContainerDefinitions"]}
    nats, writer = containers["nats"], containers["nats-config"]
    assert "--max_payload" not in json.dumps(nats)  # no such flag: the server exits
    assert nats["DependsOn"] == [{"ContainerName": "nats-config", "Condition": "SUCCESS"}]
    script = writer["Command"][0]
    for setting in ("max_payload: 15728640", "http_port: 8222", "jetstream {}"):
        assert setting in script


def _member_join_environment(member: int) -> dict[str, str]:
    """Member ``member``'s etcd-join environment as a deployment named ``dynamo`` gets it."""
    containers = {
        c["Name"]: c
        for c in resource(f"InfraMember{member}TaskDefinition")["Properties"]["ContainerDefinitions"]
    }
    environment = {}
    for variable in containers["etcd-join"]["Environment"]:
        value = variable["Value"]
        if isinstance(value, dict):
            value = value["Fn::Sub"].replace("${DeploymentName}", "dynamo")
        environment[variable["Name"]] = str(value)
    return environment


def _written_member_config(member: int, tmp_path: Path, **overrides: str) -> tuple[int, str, dict[str, Any]]:
    """Run member ``member``'s own etcd-join script with no other member answering (the tier's
    creation): its exit code, its output and the etcd config file it wrote (empty if none)."""
    import os
    import subprocess

    from samtranslator.yaml_helper import yaml_parse

    containers = {
        c["Name"]: c
        for c in resource(f"InfraMember{member}TaskDefinition")["Properties"]["ContainerDefinitions"]
    }
    conf = tmp_path / f"etcd-{member}.yml"
    script = containers["etcd-join"]["Command"][0]
    assert "conf=/etc/etcd/etcd.yml" in script
    script = script.replace("conf=/etc/etcd/etcd.yml", f"conf={conf}")
    environment = {**_member_join_environment(member), "JOIN_VIA": "", **overrides}
    done = subprocess.run(
        ["sh", "-c", script],
        env={"PATH": os.environ["PATH"], **environment},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    written: dict[str, Any] = yaml_parse(conf.read_text()) if conf.exists() else {}
    return done.returncode, done.stdout + done.stderr, written


def test_every_etcd_config_compacts_its_history_and_states_its_quota(tmp_path: Path) -> None:
    from dynamo_ecs.planes.infra_settings import ETCD_HISTORY_SETTINGS

    # The single task's etcd reads its environment (no config file)
    [etcd] = [
        c
        for c in resource("InfraTaskDefinition")["Properties"]["ContainerDefinitions"]
        if c["Name"] == "etcd"
    ]
    assert etcd["Command"] == ["/usr/local/bin/etcd"]
    environment = {v["Name"]: v["Value"] for v in etcd["Environment"]}
    assert {k: environment.get(k) for k in ETCD_HISTORY_SETTINGS} == ETCD_HISTORY_SETTINGS
    # and so does the spec the local worlds run (it must stay the template's task)
    [spec_etcd] = [c for c in load_default_spec("infra")["containerDefinitions"] if c["name"] == "etcd"]
    spec_environment = {v["name"]: v["value"] for v in spec_etcd["environment"]}
    assert {k: spec_environment.get(k) for k in ETCD_HISTORY_SETTINGS} == ETCD_HISTORY_SETTINGS
    # A member's etcd reads only its config file (--config-file ignores the environment): the
    # file its own etcd-join script writes holds the settings, as the types etcd reads
    for member in range(3):
        containers = {
            c["Name"]: c
            for c in resource(f"InfraMember{member}TaskDefinition")["Properties"]["ContainerDefinitions"]
        }
        assert containers["etcd"]["Command"] == ["/usr/local/bin/etcd", "--config-file", "/etc/etcd/etcd.yml"]
        code, output, written = _written_member_config(member, tmp_path)
        assert code == 0, output
        assert written["auto-compaction-mode"] == ETCD_HISTORY_SETTINGS["ETCD_AUTO_COMPACTION_MODE"]
        assert written["auto-compaction-retention"] == ETCD_HISTORY_SETTINGS["ETCD_AUTO_COMPACTION_RETENTION"]
        assert written["quota-backend-bytes"] == int(ETCD_HISTORY_SETTINGS["ETCD_QUOTA_BACKEND_BYTES"])
        assert (written["name"], written["initial-cluster-state"]) == (f"infra-{member}", "new")


def test_a_quota_that_is_not_a_number_stops_etcd_join_before_it_writes_anything(tmp_path: Path) -> None:
    code, output, written = _written_member_config(0, tmp_path, ETCD_QUOTA_BACKEND_BYTES="2GiB")
    assert code == 1
    assert "ETCD_QUOTA_BACKEND_BYTES must be a whole number of bytes, not '2GiB'" in output
    assert written == {}


def test_the_etcd_quota_alarm_alerts_at_80_percent_of_the_quota_with_the_three_member_tier() -> None:
    alarm = resource("EtcdQuotaAlarm")
    props = alarm["Properties"]
    assert alarm["Condition"] == "InfraThreeMembers"  # the collector reads etcd only there
    assert props["AlarmName"] == {"Fn::Sub": "${DeploymentName}-etcd-quota"}
    assert (props["Namespace"], props["MetricName"]) == ("DynamoEcs", metric_names.ETCD_DATABASE_QUOTA_USED)
    assert props["Dimensions"] == [
        {"Name": metric_names.DIMENSION_DEPLOYMENT, "Value": {"Ref": "DeploymentName"}},
        {"Name": metric_names.DIMENSION_SERVICE, "Value": metric_names.SERVICE_INFRA},
    ]
    # before NOSPACE (100 %), with room for the way out: the largest member's share, per minute
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanOrEqualToThreshold", 80)
    assert (props["Statistic"], props["Period"]) == ("Maximum", 60)
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (3, 2)
    # no member answering /metrics publishes nothing: a collector outage keeps the state
    assert props["TreatMissingData"] == "ignore"
    assert props["AlarmActions"] == [{"Ref": "AlertTopic"}] == props["OKActions"]
