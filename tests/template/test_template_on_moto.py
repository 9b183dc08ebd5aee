"""The transformed template, created as a stack on moto server's CloudFormation.

Every resource type moto's CloudFormation can create is created from the template's own
properties and then read back through the services' APIs; the types it cannot create are
listed with the reason in `stack.py` (MOTO_CANNOT_CREATE), and a second stack proves the list is
still true.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from devtools.services import MotoServer
from dynamo_ecs import metric_names
from dynamo_ecs.config import SERVICE_ROLES, load_config
from dynamo_ecs.endpoints.gpu_services import parse_properties, spec_from_properties
from dynamo_ecs.planes.infra_settings import WRITER_SECRETS, etcd_auth_script, join_script, writer_script
from dynamo_ecs.signals.collector import default_collector
from dynamo_ecs.signals.prometheus_scrape import FrontendSource
from dynamo_ecs.signals.workers import WorkerSource
from tests.template.stack import (
    INVOKES_LAMBDA,
    MOTO_CANNOT_CREATE,
    NGC_SECRET,
    create_stack,
    fresh_account,
    moto_stack_template,
    stand_in_references,
    transformed_template,
    without,
)


@dataclass
class CreatedStack:
    """Everything the tests read back, captured right after creation (moto is shared state)."""

    status: str
    reason: str | None
    template: dict[str, Any]
    physical: dict[str, str]
    types: dict[str, str]
    outputs: dict[str, str]
    functions: dict[str, Any] = field(default_factory=dict)
    security_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def created(moto: MotoServer) -> Iterator[CreatedStack]:
    with fresh_account(moto) as parameters:
        full = transformed_template()
        template = moto_stack_template(full, parameters)
        cfn = boto3.client("cloudformation")
        stack = create_stack(cfn, "dynamo", template, parameters)
        summaries = cfn.list_stack_resources(StackName="dynamo")["StackResourceSummaries"]
        result = CreatedStack(
            status=stack["StackStatus"],
            reason=stack.get("StackStatusReason"),
            template=template,
            physical={s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries},
            types={s["LogicalResourceId"]: s["ResourceType"] for s in summaries},
            outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        )
        lam = boto3.client("lambda")
        for logical_id, kind in result.types.items():
            if kind == "AWS::Lambda::Function":
                result.functions[logical_id] = lam.get_function_configuration(
                    FunctionName=result.physical[logical_id]
                )
        ec2 = boto3.client("ec2")
        for logical_id, kind in result.types.items():
            if kind == "AWS::EC2::SecurityGroup":
                [group] = ec2.describe_security_groups(GroupIds=[result.physical[logical_id]])[
                    "SecurityGroups"
                ]
                result.security_groups[logical_id] = group
        events = boto3.client("events")
        for rule in events.list_rules()["Rules"]:
            result.rules[rule["Name"]] = rule
        ecs = boto3.client("ecs")
        infra = ecs.describe_services(
            cluster=result.outputs["InfraClusterName"],
            services=result.outputs["InfraMemberServiceNames"].split(","),
        )["services"]
        result.extra["infra_services"] = infra
        result.extra["infra_task_definitions"] = [
            ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
            for service in infra
        ]
        result.extra["clusters"] = ecs.describe_clusters(
            clusters=[result.outputs["InfraClusterName"], result.outputs["GpuClusterName"]]
        )["clusters"]
        table = boto3.client("dynamodb").describe_table(TableName=result.outputs["StateTableName"])["Table"]
        result.extra["table"] = table
        result.extra["log_groups"] = {
            g["logGroupName"]: g for g in boto3.client("logs").describe_log_groups()["logGroups"]
        }
        result.extra["target_groups"] = boto3.client("elbv2").describe_target_groups()["TargetGroups"]
        result.extra["launch_templates"] = [
            ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])[
                "LaunchTemplateVersions"
            ][0]["LaunchTemplateData"]
            for lt in ec2.describe_launch_templates()["LaunchTemplates"]
        ]
        result.extra["asgs"] = boto3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        result.extra["full"] = full
        result.extra["parameters"] = parameters
        yield result


pytestmark = pytest.mark.xdist_group("moto-stack")


def test_every_resource_moto_supports_is_created(created: CreatedStack) -> None:
    assert created.status == "CREATE_COMPLETE", created.reason
    # (the single infra task's resources are InfraMembers 1's: test_single_infra_task_layout)
    single = {k for k, v in created.template["Resources"].items() if v.get("Condition") == "InfraOneTask"}
    assert single == {"InfraService", "InfraTaskDefinition"}
    wanted = set(created.template["Resources"]) - single
    assert wanted - set(created.physical) == set(), "created by CloudFormation on moto"
    # (moto leaves the physical id of ingress rules, permissions and layer versions empty;
    # the rules are read back below through EC2's own API)
    # The stack is the whole deployment, not a fragment: each part is there.
    kinds = set(created.types.values())
    for kind in (
        "AWS::ECS::Cluster",
        "AWS::ECS::Service",
        "AWS::ECS::TaskDefinition",
        "AWS::EC2::LaunchTemplate",
        "AWS::AutoScaling::AutoScalingGroup",
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "AWS::ElasticLoadBalancingV2::Listener",
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        "AWS::Lambda::Function",
        "AWS::Lambda::LayerVersion",
        "AWS::Events::Rule",
        "AWS::DynamoDB::Table",
        "AWS::SNS::Topic",
        "AWS::SQS::Queue",
        "AWS::Logs::LogGroup",
        "AWS::CloudWatch::Dashboard",
        "AWS::IAM::Role",
        "AWS::IAM::ManagedPolicy",
    ):
        assert kind in kinds, kind


def test_moto_still_cannot_create_the_listed_types(moto: MotoServer, created: CreatedStack) -> None:
    # (runs after `created` captured its stack: this test resets the moto account)
    # Given the whole transformed template, the listed types included
    full: dict[str, Any] = created.extra["full"]
    listed = {k for k, v in full["Resources"].items() if v["Type"] in MOTO_CANNOT_CREATE}
    assert {full["Resources"][k]["Type"] for k in listed} == set(MOTO_CANNOT_CREATE), (
        "each listed type is used"
    )
    # (an attribute of a type moto has no model for cannot be resolved: a marked literal)
    template = stand_in_references(without(full, INVOKES_LAMBDA), listed)
    template.pop("Outputs", None)
    with fresh_account(moto) as parameters:
        cfn = boto3.client("cloudformation")
        # When moto creates the whole transformed template
        stack = create_stack(cfn, "probe", template, parameters)
        made = {
            s["LogicalResourceId"]
            for s in cfn.list_stack_resources(StackName="probe")["StackResourceSummaries"]
        }
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    single = {k for k, v in template["Resources"].items() if v.get("Condition") == "InfraOneTask"}
    assert set(template["Resources"]) - listed - single <= made, "everything else was created"
    # Then none of the listed resources exists: if one does, moto learned it; shorten the list
    assert listed & made == set()


def test_outputs_name_everything_a_user_needs(created: CreatedStack) -> None:
    outputs = created.outputs
    assert outputs["ApiUrl"].startswith("http://") and outputs["ApiUrl"].endswith(".elb.amazonaws.com")
    assert "#dashboards:name=dynamo-dynamo-ecs" in outputs["DashboardUrl"]
    assert outputs["InfraClusterName"] == "dynamo-fargate"
    assert outputs["GpuClusterName"] == "dynamo-gpu"
    assert outputs["InfraServiceName"] == "dynamo-infra-0,dynamo-infra-1,dynamo-infra-2"  # (status reads it)
    assert outputs["InfraMemberServiceNames"] == "dynamo-infra-0,dynamo-infra-1,dynamo-infra-2"
    assert outputs["InfraMemberNames"] == ",".join(f"infra-{k}.dynamo-infra.internal" for k in range(3))
    assert outputs["FrontendServiceName"] == "dynamo-frontend"
    assert outputs["PrefillServiceName"] == "dynamo-prefill"
    for name in ("InfraWatcher", "Redeploy", "Bootstrap", "MetricsCollector", "Scaler"):
        assert outputs[f"{name}FunctionName"] == created.physical[f"{name}Function"]


def test_every_function_gets_a_valid_config_with_the_stack_parameters(created: CreatedStack) -> None:
    # Given the environment CloudFormation resolved for each function
    assert set(created.functions) == {
        "InfraWatcherFunction",
        "RedeployFunction",
        "BootstrapFunction",
        "MetricsCollectorFunction",
        "ScalerFunction",
        "DiagnosticsFunction",
        "PlaneCredentialsFunction",
    }
    for logical_id, function in created.functions.items():
        env = {k: str(v) for k, v in function["Environment"]["Variables"].items()}  # AWS sends strings
        # When the operator's config is loaded from it (as at cold start)
        config = load_config(env)
        # Then it carries this stack's names and the parameters as given
        assert config.deployment == "dynamo", logical_id
        assert config.state_table == created.outputs["StateTableName"]
        assert config.alert_topic_arn == created.outputs["AlertTopicArn"]
        assert config.infra.cluster == "dynamo-fargate"
        assert config.infra.service == "dynamo-infra"
        assert config.infra.members == created.outputs["InfraMemberNames"].split(",")
        assert config.gpu_cluster == "dynamo-gpu"
        assert (config.frontend.service, config.prefill.service) == ("dynamo-frontend", "dynamo-prefill")
        assert (config.frontend.family, config.prefill.family) == ("dynamo-frontend", "dynamo-prefill")
        assert (config.frontend.min, config.frontend.max) == (1, 6)
        assert (config.prefill.min, config.prefill.max) == (2, 4)
        assert config.scaling.prefill_scale_to_zero is False  # follows PrefillMin
        assert (config.frontend.targets.ttft_ms, config.frontend.targets.ttft_statistic) == (400, "mean")
        assert config.prefill.targets.jetstream_lag_per_replica == 12
        assert config.signals.jetstream_streams == ["work", "events/listener"]
        assert config.frontend.targets.gpu_utilization_pct is None  # "off"
        assert config.prefill.targets.gpu_utilization_pct == 80
        assert config.gpu_budget == 8
        assert function["Runtime"] == "python3.12"
        assert function["Handler"] == "app.lambda_handler"


def test_only_the_metrics_collector_runs_in_the_vpc(created: CreatedStack) -> None:
    in_vpc = {k for k, f in created.functions.items() if f.get("VpcConfig", {}).get("SubnetIds")}
    assert in_vpc == {"MetricsCollectorFunction"}
    config = created.functions["MetricsCollectorFunction"]["VpcConfig"]
    assert config["SecurityGroupIds"] == [created.physical["MetricsCollectorSecurityGroup"]]


def test_the_gpu_services_properties_are_what_the_bootstrap_function_accepts(created: CreatedStack) -> None:
    # Given the custom resource's properties as CloudFormation resolves them
    properties = {
        key.removeprefix("Prop"): value for key, value in created.outputs.items() if key.startswith("Prop")
    }
    # When the bootstrap function's own parser reads them
    parsed = parse_properties(properties)
    # Then they name the stack's roles, secret, log groups, capacity provider and target group
    assert parsed.execution_role_arn.endswith(created.physical["GpuExecutionRole"])
    assert parsed.task_role_arn.endswith(created.physical["GpuTaskRole"])
    assert parsed.ngc_secret_arn == NGC_SECRET
    assert parsed.frontend_log_group == "/ecs/dynamo-frontend"
    assert parsed.prefill_log_group == "/ecs/dynamo-prefill"
    assert parsed.image.startswith("nvcr.io/nvidia/ai-dynamo/vllm-runtime:")
    assert parsed.model == "Qwen/Qwen3-0.6B"
    assert parsed.frontend_target_group_arn == created.physical["FrontendTargetGroup"]
    assert (parsed.frontend_initial_count, parsed.prefill_initial_count) == (1, 2)
    assert parsed.capacity_provider == "not-on-moto:GpuCapacityProvider"  # its name, on AWS


def test_infra_security_group_admits_only_gpu_instances_and_the_collector(created: CreatedStack) -> None:
    group = created.security_groups["InfraSecurityGroup"]
    gpu = created.physical["GpuInstanceSecurityGroup"]
    collector = created.physical["MetricsCollectorSecurityGroup"]
    admitted = set()
    for permission in group["IpPermissions"]:
        assert permission.get("IpRanges", []) == [] and permission.get("Ipv6Ranges", []) == []
        for pair in permission["UserIdGroupPairs"]:
            admitted.add((pair["GroupId"], permission["FromPort"], permission["ToPort"]))
    infra = created.physical["InfraSecurityGroup"]
    assert admitted == {
        (gpu, 2379, 2379),
        (gpu, 4222, 4222),
        (collector, 8222, 8222),
        (collector, 2379, 2379),  # etcd /health and /metrics as the operator (three-member tier)
        # the members: etcd clients and peers, NATS routes
        (infra, 2379, 2380),
        (infra, 6222, 6222),
    }
    # (the members' egress to each other: AWS::EC2::SecurityGroupEgress, which moto's
    # CloudFormation cannot create; test_template_structure.py checks those rules)


def test_load_balancer_admits_only_the_allowed_cidr(created: CreatedStack) -> None:
    group = created.security_groups["LoadBalancerSecurityGroup"]
    [ingress] = group["IpPermissions"]
    assert (ingress["FromPort"], ingress["ToPort"]) == (80, 80)
    assert [r["CidrIp"] for r in ingress["IpRanges"]] == ["10.0.0.0/8"]
    assert ingress["UserIdGroupPairs"] == []


def test_gpu_instances_admit_the_load_balancer_each_other_and_the_collector(created: CreatedStack) -> None:
    group = created.security_groups["GpuInstanceSecurityGroup"]
    sources = set()
    for permission in group["IpPermissions"]:
        assert permission.get("IpRanges", []) == []
        for pair in permission["UserIdGroupPairs"]:
            sources.add((pair["GroupId"], permission.get("FromPort"), permission["IpProtocol"]))
    physical = created.physical
    gpu = physical["GpuInstanceSecurityGroup"]
    assert sources == {
        (physical["LoadBalancerSecurityGroup"], 8000, "tcp"),
        *((physical["MetricsCollectorSecurityGroup"], port, "tcp") for port in (8000, 9091, 9090)),
        *((gpu, port, "tcp") for port in (8101, 8102, 8103, 5600, 5601, 47000)),
    }


def opened_from(group: dict[str, Any], peer: str) -> set[tuple[int, int]]:
    """The TCP port ranges a created security group admits from the group ``peer``."""
    return {
        (permission["FromPort"], permission["ToPort"])
        for permission in group["IpPermissions"]
        if permission["IpProtocol"] == "tcp"
        for pair in permission.get("UserIdGroupPairs", [])
        if pair["GroupId"] == peer
    }


def template_egress(template: dict[str, Any], group: str, peer: str) -> set[tuple[int, int]]:
    """The TCP port ranges ``group`` may always send to ``peer`` in a template (logical ids):
    its inline egress and the unconditional ``AWS::EC2::SecurityGroupEgress`` resources."""
    resources = template["Resources"]
    rules = list(resources[group]["Properties"].get("SecurityGroupEgress", []))
    rules += [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupEgress"
        and "Condition" not in r
        and r["Properties"]["GroupId"] == {"Ref": group}
    ]
    return {
        (int(r["FromPort"]), int(r["ToPort"]))
        for r in rules
        if r["IpProtocol"] == "tcp" and r.get("DestinationSecurityGroupId") == {"Ref": peer}
    }


def test_every_port_the_collector_reads_on_the_gpu_instances_is_opened_to_it_both_ways(
    created: CreatedStack,
) -> None:
    # Given the collector's and the bootstrap function's configurations as CloudFormation set
    # their environments, and the GPU specs the bootstrap builds from the stack's properties
    def config_of(function: str) -> Any:
        variables = created.functions[function]["Environment"]["Variables"]
        return load_config({k: str(v) for k, v in variables.items()})

    properties = {
        key.removeprefix("Prop"): value for key, value in created.outputs.items() if key.startswith("Prop")
    }
    bootstrap = config_of("BootstrapFunction")
    specs = {
        role: spec_from_properties(role, parse_properties(properties), bootstrap) for role in SERVICE_ROLES
    }
    bound = {
        role: int(variable["value"])
        for role, spec in specs.items()
        for container in spec["containerDefinitions"]
        for variable in container.get("environment", [])
        if variable["name"] == "DYN_SYSTEM_PORT"
    }
    assert set(bound) == set(SERVICE_ROLES)  # every worker serves its system port (its container check)
    # When the collector is built as its handler builds it
    sources = default_collector(config_of("MetricsCollectorFunction")).sources
    workers = {s.role: s.port for s in sources if isinstance(s, WorkerSource)}
    read = {s.metrics_port for s in sources if isinstance(s, FrontendSource)} | set(workers.values())
    # Then it reads each worker's /metrics on the port that worker's spec binds
    assert workers == bound
    # and the GPU instances admit every port it reads from its group, which may send to them,
    # and nothing more (AWS drops the rest: a scrape there waits out its whole deadline)
    # (moto's CloudFormation creates ingress rules but ignores egress ones, leaving its default
    # all-traffic rule: the egress is read from the transformed template)
    admitted = opened_from(
        created.security_groups["GpuInstanceSecurityGroup"], created.physical["MetricsCollectorSecurityGroup"]
    )
    sent = template_egress(created.extra["full"], "MetricsCollectorSecurityGroup", "GpuInstanceSecurityGroup")
    for ranges in (admitted, sent):
        assert {port for first, last in ranges for port in range(first, last + 1)} == read, ranges


def test_three_infra_members_run_etcd_and_nats_with_jetstream_and_its_monitor(created: CreatedStack) -> None:
    services = created.extra["infra_services"]
    assert [s["serviceName"] for s in services] == [f"dynamo-infra-{k}" for k in range(3)]
    assert all(s["desiredCount"] == 1 for s in services)
    names = [f"infra-{k}.dynamo-infra.internal" for k in range(3)]
    for k, task in enumerate(created.extra["infra_task_definitions"]):
        assert task["family"] == f"dynamo-infra-{k}"
        containers = {c["name"]: c for c in task["containerDefinitions"]}
        assert set(containers) == {"planes-writer", "etcd-join", "etcd", "etcd-auth", "nats"}
        # etcd reads the config file etcd-join writes, with this member's name and DNS name, over TLS
        assert containers["etcd"]["command"] == ["/usr/local/bin/etcd", "--config-file", "/etc/etcd/etcd.yml"]
        env = {e["name"]: e["value"] for e in containers["etcd-join"]["environment"]}
        assert env["ETCD_NAME"] == f"infra-{k}"
        assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"https://{names[k]}:2380"
        assert env["ETCD_INITIAL_CLUSTER"] == ",".join(f"infra-{j}=https://{names[j]}:2380" for j in range(3))
        assert env["JOIN_VIA"].split() == [f"https://{names[j]}:2379" for j in range(3) if j != k]
        # the scripts are infra_settings.py's; the etcd image's containers run the copied busybox
        assert containers["etcd-join"]["command"] == [join_script()]
        assert containers["etcd-join"]["entryPoint"] == ["/planes-tools/busybox", "sh", "-c"]
        assert containers["etcd-auth"]["entryPoint"] == ["/planes-tools/busybox", "sh", "-c"]
        assert containers["etcd-auth"]["command"] == [
            etcd_auth_script(etcdctl="/usr/local/bin/etcdctl", endpoint="$AUTH_ENDPOINT", wait_s=600)
        ]
        assert containers["planes-writer"]["command"] == [
            writer_script(
                tools_dir="/planes-tools",
                cluster_name="$CLUSTER_NAME",
                server_name="$MEMBER_NAME",
                routes=["$ROUTE_0", "$ROUTE_1", "$ROUTE_2"],
                cluster_host="$NATS_CLUSTER_HOST",
            )
        ]
        # the writer gets the infra secret's fields as ECS secrets, nothing as a plain value
        secrets = {s["name"]: s["valueFrom"] for s in containers["planes-writer"]["secrets"]}
        assert set(secrets) == set(WRITER_SECRETS)
        assert all(v.endswith(f":{WRITER_SECRETS[n]}::") for n, v in secrets.items())
        writer_env = {e["name"]: e["value"] for e in containers["planes-writer"]["environment"]}
        assert [writer_env[f"ROUTE_{j}"] for j in range(3)] == [f"{name}:6222" for name in names]
        # nats-server reads the written config (TLS, users, JetStream, routes with their password)
        assert containers["nats"]["command"] == ["--config", "/planes/nats-server.conf"]
        assert "jetstream {}" in containers["planes-writer"]["command"][0]
        assert {p["containerPort"] for p in containers["nats"]["portMappings"]} >= {4222, 6222, 8222}
        assert {p["containerPort"] for p in containers["etcd"]["portMappings"]} >= {2379, 2380}


def test_gpu_capacity_launch_template_and_load_balancer_health_check(created: CreatedStack) -> None:
    [launch] = created.extra["launch_templates"]
    assert launch["InstanceType"] == "g6e.2xlarge"
    [volume] = launch["BlockDeviceMappings"]
    assert volume["Ebs"]["VolumeSize"] == 200 and volume["Ebs"]["Encrypted"] is True
    assert launch["MetadataOptions"]["HttpTokens"] == "required"
    [asg] = created.extra["asgs"]
    assert (asg["MinSize"], asg["MaxSize"]) == (0, 8)
    assert asg["NewInstancesProtectedFromScaleIn"] is True
    [target_group] = created.extra["target_groups"]
    assert (target_group["Port"], target_group["HealthCheckPath"]) == (8000, "/v1/models/Qwen/Qwen3-0.6B")
    assert target_group["TargetType"] == "instance"
    clusters = {c["clusterName"]: c for c in created.extra["clusters"]}
    assert set(clusters) == {"dynamo-fargate", "dynamo-gpu"}


def test_state_table_and_log_groups(created: CreatedStack) -> None:
    table = created.extra["table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    groups = created.extra["log_groups"]
    for function in created.functions.values():
        assert groups[f"/aws/lambda/{function['FunctionName']}"]["retentionInDays"] == 30
    for name in ("/ecs/dynamo-infra", "/ecs/dynamo-frontend", "/ecs/dynamo-prefill"):
        assert groups[name]["retentionInDays"] == 30


def test_event_rules_trigger_the_operator(created: CreatedStack) -> None:
    rules = list(created.rules.values())
    schedules = [r for r in rules if r.get("ScheduleExpression")]
    assert sorted(r["ScheduleExpression"] for r in schedules) == ["rate(1 minute)", "rate(1 minute)"]
    patterns = [json.loads(r["EventPattern"]) for r in rules if r.get("EventPattern")]
    sources = sorted(p["source"][0] for p in patterns)
    assert sources == [
        "aws.autoscaling",
        "aws.cloudwatch",
        "aws.ecs",
        "aws.ecs",
        "aws.ecs",
        "aws.ecs",
        "dynamo-ecs.collector",
    ]
    [alarm_pattern] = [p for p in patterns if p["source"] == ["aws.cloudwatch"]]
    assert alarm_pattern["detail"]["alarmName"] == [{"prefix": "dynamo-scale-"}]
    assert metric_names.TTFT_P90  # the alarms' metric names come from the contract module


def test_single_infra_task_layout(moto: MotoServer, created: CreatedStack) -> None:
    # (runs after `created` captured its stack: this test resets the moto account)
    # Given InfraMembers 1 (development: today's single etcd + NATS task)
    with fresh_account(moto) as parameters:
        single = {**parameters, "InfraMembers": "1"}
        template = moto_stack_template(created.extra["full"], single)
        cfn = boto3.client("cloudformation")
        # When the stack is created
        stack = create_stack(cfn, "single", template, single)
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        ecs = boto3.client("ecs")
        services = ecs.list_services(cluster=outputs["InfraClusterName"])["serviceArns"]
        [service] = ecs.describe_services(cluster=outputs["InfraClusterName"], services=services)["services"]
        task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        env = {
            k: str(v)
            for k, v in boto3.client("lambda")
            .get_function_configuration(FunctionName=outputs["InfraWatcherFunctionName"])["Environment"][
                "Variables"
            ]
            .items()
        }
    # Then one service of one task runs etcd and NATS, and the operator names no members
    assert outputs["InfraServiceName"] == service["serviceName"] == "dynamo-infra"
    assert "InfraMemberServiceNames" not in outputs and "InfraMemberNames" not in outputs
    assert {c["name"] for c in task["containerDefinitions"]} == {"etcd", "nats", "nats-config"}
    assert load_config(env).infra.members == []
