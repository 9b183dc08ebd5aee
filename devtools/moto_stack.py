"""template.yaml deployed on moto server: the SAM transform done locally, then CloudFormation.

moto's CloudFormation ignores ``Transform: AWS::Serverless-2016-10-31``, so the template is
translated here with samtranslator (as ``sam deploy`` has CloudFormation do), with the local
``CodeUri``/``ContentUri`` paths replaced by one S3 object, as ``sam package`` would. What
moto's CloudFormation cannot create is listed (`MOTO_CANNOT_CREATE`) and, where the operator
needs it, made through the service APIs from the template's own properties
(`add_capacity_provider`, `start_infra_task`). The template tests and the local demo share it.
"""

from __future__ import annotations

import copy
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from devtools.aws_input_rules import require_valid
from devtools.local_ecs import addresses
from devtools.template import load_template
from dynamo_ecs.infra import eni_private_ip
from dynamo_ecs.planes.secrets_store import ensure_plane_secrets

ARTIFACT_BUCKET = "dynamo-ecs-artifacts"
ARTIFACT_KEY = "code.zip"

# Resource types of template.yaml that moto's CloudFormation (5.2) does not create, and why
# the stack is still sound without them on moto.
MOTO_CANNOT_CREATE = {
    "AWS::CloudWatch::Alarm": "skipped by moto CloudFormation; test_template_structure.py checks them",
    "AWS::ECS::CapacityProvider": "no CloudFormation model in moto (the ECS API has one)",
    "AWS::ECS::ClusterCapacityProviderAssociations": "no CloudFormation model in moto",
    "AWS::Lambda::EventInvokeConfig": "no CloudFormation model in moto",
    "AWS::SNS::Subscription": "no CloudFormation model in moto (a Topic's inline Subscription only)",
    "AWS::SNS::TopicPolicy": "no CloudFormation model in moto",
    "AWS::SQS::QueuePolicy": "no CloudFormation model in moto",
    "AWS::AutoScaling::WarmPool": "no CloudFormation model in moto; test_template_capacity.py checks it",
    "AWS::ServiceDiscovery::PrivateDnsNamespace": "no CloudFormation model in moto (Cloud Map API: yes)",
    "AWS::ServiceDiscovery::Service": "no CloudFormation model in moto (Cloud Map API: yes)",
    "AWS::CloudFormation::WaitConditionHandle": "moto's CloudFormation ignores it (creates nothing)",
    "AWS::EC2::SecurityGroupEgress": "no CloudFormation model in moto; test_template_structure.py checks it",
}
# Not a moto gap: creating it invokes the bootstrap function, and moto runs Lambda in Docker.
# The function's logic is tested against moto in tests/integration (the properties are
# checked below against the parser the function uses).
INVOKES_LAMBDA = {"Custom::DynamoGpuServices", "Custom::DynamoPlaneCredentials"}
# Properties moto's CloudFormation accepts but does not apply (checked on the template itself in
# test_template_structure.py): security groups' inline egress rules, the table's TTL, the ECS
# service's LaunchType and NetworkConfiguration, the task definition's Cpu, Memory and NetworkMode, the
# functions' Layers; and it hands Number parameters to Lambda
# environments and conditions as numbers (so `PrefillMin = "0"` would not be equal to "0").

CUSTOM_RESOURCE_ID = "GpuServices"
PLANES_RESOURCE_ID = "PlaneCredentials"
# Properties of a custom resource that are CloudFormation's, not the function's.
CLOUDFORMATION_OWN_PROPERTIES = {"ServiceToken", "ServiceTimeout"}


def packaged_template() -> dict[str, Any]:
    """The SAM template with every local code path pointing at the artifact in S3."""
    template = copy.deepcopy(load_template())
    uri = f"s3://{ARTIFACT_BUCKET}/{ARTIFACT_KEY}"
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = uri
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = uri
    return template


def transformed_template(region: str = "us-east-1") -> dict[str, Any]:
    """Plain CloudFormation: what the Serverless transform turns template.yaml into."""
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=region))
    result: dict[str, Any] = translator.translate(packaged_template(), {}, get_managed_policy_map=dict)
    return result


def artifact_zip() -> bytes:
    """A tiny deployment package: moto stores it, never runs it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return None\n")
    return buffer.getvalue()


def network() -> dict[str, str]:
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock=addresses.vpc_cidr())["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=addresses.subnet_cidr(i), AvailabilityZone=f"us-east-1{az}")[
            "Subnet"
        ]["SubnetId"]
        for i, az in enumerate("ab")
    ]
    return {
        "VpcId": vpc,
        "TaskSubnetIds": ",".join(subnets),
        "LoadBalancerSubnetIds": ",".join(subnets),
    }


def without(template: dict[str, Any], types: set[str]) -> dict[str, Any]:
    trimmed = copy.deepcopy(template)
    trimmed["Resources"] = {k: v for k, v in trimmed["Resources"].items() if v["Type"] not in types}
    for resource in trimmed["Resources"].values():
        if "DependsOn" in resource:
            depends = (
                resource["DependsOn"] if isinstance(resource["DependsOn"], list) else [resource["DependsOn"]]
            )
            resource["DependsOn"] = [d for d in depends if d in trimmed["Resources"]]
    return stand_in_references(trimmed, set(template["Resources"]) - set(trimmed["Resources"]))


def stand_in_references(template: dict[str, Any], missing: set[str]) -> dict[str, Any]:
    """Every ``Ref`` or ``Fn::GetAtt`` of a ``missing`` resource, outside those resources,
    becomes a marked literal (moto's CloudFormation refuses a reference it cannot resolve)."""
    changed = copy.deepcopy(template)
    for section in ("Resources", "Outputs"):
        for name, value in list(changed.get(section, {}).items()):
            if section == "Outputs" or name not in missing:
                changed[section][name] = _stand_in(value, missing)
    return changed


def _stand_in(value: Any, missing: set[str]) -> Any:
    if isinstance(value, dict):
        ref, attribute = value.get("Ref"), value.get("Fn::GetAtt")
        if isinstance(ref, str) and ref in missing:
            return f"not-on-moto:{ref}"
        if isinstance(attribute, list) and attribute and attribute[0] in missing:
            return f"not-on-moto:{'.'.join(map(str, attribute))}"
        sub = value.get("Fn::Sub")
        if isinstance(sub, str):
            for name in missing:
                sub = re.sub(r"\$\{" + re.escape(name) + r"(\.[^}]*)?\}", f"not-on-moto:{name}", sub)
            return {"Fn::Sub": sub}
        return {k: _stand_in(v, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_stand_in(v, missing) for v in value]
    return value


def stand_in_for_missing(value: Any, template: dict[str, Any]) -> Any:
    """A ``Ref`` to a resource moto cannot create becomes a marked literal."""
    if isinstance(value, dict):
        ref = value.get("Ref")
        known = set(template["Resources"]) | set(template.get("Parameters", {}))
        if isinstance(ref, str) and not ref.startswith("AWS::") and ref not in known:
            return f"not-on-moto:{ref}"
        return {k: stand_in_for_missing(v, template) for k, v in value.items()}
    if isinstance(value, list):
        return [stand_in_for_missing(v, template) for v in value]
    return value


def with_property_outputs(template: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """Outputs that echo a resource's properties, so moto resolves their intrinsics for us."""
    echoed = copy.deepcopy(template)
    for name, value in properties.items():
        if name not in CLOUDFORMATION_OWN_PROPERTIES:
            echoed["Outputs"][f"Prop{name}"] = {"Value": stand_in_for_missing(value, template)}
    return echoed


def _resolve(value: Any, template: dict[str, Any], parameters: dict[str, str]) -> Any:
    """The few intrinsics the plane credentials' properties use: Ref to a parameter, Fn::Sub of
    parameters, Fn::If on a condition that is an Fn::Equals of a parameter and a literal."""
    defaults = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    given = defaults | parameters

    def resolve(item: Any) -> Any:
        if isinstance(item, list):
            return [resolve(i) for i in item]
        if not isinstance(item, dict):
            return item
        if "Ref" in item:
            return given[item["Ref"]]
        if "Fn::Sub" in item:
            text = item["Fn::Sub"]
            for name, value in given.items():
                text = text.replace("${" + name + "}", value)
            return text
        if "Fn::If" in item:
            condition, yes, no = item["Fn::If"]
            left, right = template["Conditions"][condition]["Fn::Equals"]
            return resolve(yes if resolve(left) == resolve(right) else no)
        raise ValueError(f"{item}: an intrinsic the plane credentials' stand-in does not resolve")

    return resolve(value)


def make_plane_credentials(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, str]:
    """What ``Custom::DynamoPlaneCredentials`` makes, made by its own code on moto's Secrets
    Manager (moto's CloudFormation would run the function in Docker); its attributes by name.

    The member certificate also names the loopback address standing for each member name
    (`addresses.name_address`): locally every URL's member name becomes that address, so the
    certificate must vouch for it as it vouches for the name on AWS.
    """
    props = template["Resources"][PLANES_RESOURCE_ID]["Properties"]
    names = list(_resolve(props["ServerNames"], template, parameters))
    stand_ins = [addresses.name_address(k) for k in range(len(names))]
    made = ensure_plane_secrets(str(_resolve(props["Deployment"], template, parameters)), names + stand_ins)
    return {f"{holder.capitalize()}SecretArn": arn for holder, arn in made.arns.items() if holder != "ca"}


def with_attributes(value: Any, logical_id: str, attributes: dict[str, str]) -> Any:
    """Each ``Fn::GetAtt`` of ``logical_id``, and ``${logical_id.X}`` in an ``Fn::Sub``: its value."""
    if isinstance(value, list):
        return [with_attributes(v, logical_id, attributes) for v in value]
    if not isinstance(value, dict):
        return value
    attribute = value.get("Fn::GetAtt")
    if isinstance(attribute, list) and len(attribute) == 2 and attribute[0] == logical_id:
        return attributes[attribute[1]]
    sub = value.get("Fn::Sub")
    if isinstance(sub, str) and "${" + logical_id + "." in sub:
        for name, given in attributes.items():
            sub = sub.replace("${" + f"{logical_id}.{name}" + "}", given)
        return {"Fn::Sub": sub}
    return {k: with_attributes(v, logical_id, attributes) for k, v in value.items()}


def with_plane_credentials(
    full: dict[str, Any], parameters: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``full`` with the plane credentials made (`make_plane_credentials`) and their attributes
    in place of every reference to them; and the attributes."""
    planes = make_plane_credentials(full, parameters)
    resources = {
        k: with_attributes(v, PLANES_RESOURCE_ID, planes) if k != PLANES_RESOURCE_ID else v
        for k, v in full["Resources"].items()
    }
    return {**full, "Resources": resources}, planes


def create_stack(cfn: Any, name: str, template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return stack


def upload_artifact(s3: Any) -> None:
    """The deployment package every function and the layer point at."""
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=ARTIFACT_KEY, Body=artifact_zip())


def add_capacity_provider(template: dict[str, Any], cluster: str) -> str:
    """What moto's CloudFormation skips, created through ECS from the template's properties."""
    props = template["Resources"]["GpuCapacityProvider"]["Properties"]["AutoScalingGroupProvider"]
    [group] = boto3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    ecs = boto3.client("ecs")
    provider = ecs.create_capacity_provider(
        name="dynamo-gpu-capacity",
        autoScalingGroupProvider={
            "autoScalingGroupArn": group["AutoScalingGroupARN"],
            "managedScaling": {
                "status": props["ManagedScaling"]["Status"],
                "targetCapacity": props["ManagedScaling"]["TargetCapacity"],
            },
            "managedTerminationProtection": props["ManagedTerminationProtection"],
        },
    )["capacityProvider"]
    name = str(provider["name"])
    ecs.put_cluster_capacity_providers(
        cluster=cluster,
        capacityProviders=[name],
        defaultCapacityProviderStrategy=[{"capacityProvider": name, "weight": 1}],
    )
    return name


def infra_service_name(outputs: dict[str, str], member: int | None = None) -> str:
    """The single infra task's service, or member ``member``'s of the three-member tier."""
    if member is None:
        return outputs["InfraServiceName"]
    return outputs["InfraMemberServiceNames"].split(",")[member]


def placeable_infra_definition(
    template: dict[str, Any], outputs: dict[str, str], member: int | None = None
) -> str:
    """The infra service's (or member ``member``'s) task definition as moto can run it; returns
    the new revision's ARN.

    moto's CloudFormation drops the task definition's NetworkMode, Cpu and Memory, and moto's
    RunTask needs a container-level memory: the same containers are registered again with
    those put back from the template's own properties.
    """
    ecs: Any = boto3.client("ecs")
    service = ecs.describe_services(
        cluster=outputs["InfraClusterName"], services=[infra_service_name(outputs, member)]
    )["services"][0]
    logical_id = "InfraTaskDefinition" if member is None else f"InfraMember{member}TaskDefinition"
    return placeable_task_definition(template, logical_id, service["taskDefinition"])


def revision_with_environment(
    task_definition: str, container: str, environment: dict[str, str], ecs: Any = None
) -> str:
    """A new revision of ``task_definition``'s family, the same but for ``environment`` in
    ``container``'s variables (only names it already has: a test changes a value the template
    sets, never adds one); its ARN."""
    ecs = ecs or boto3.client("ecs")
    stored = ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
    containers = copy.deepcopy(stored["containerDefinitions"])
    [chosen] = [c for c in containers if c["name"] == container]
    names = {e["name"] for e in chosen.get("environment") or []}
    assert set(environment) <= names, f"{container} has no {sorted(set(environment) - names)}"
    chosen["environment"] = [
        {"name": e["name"], "value": environment.get(e["name"], e["value"])} for e in chosen["environment"]
    ]
    registered = ecs.register_task_definition(
        family=stored["family"],
        networkMode=stored["networkMode"],
        requiresCompatibilities=stored["requiresCompatibilities"],
        cpu=stored["cpu"],
        memory=stored["memory"],
        containerDefinitions=containers,
        volumes=stored.get("volumes") or [],
    )
    return str(registered["taskDefinition"]["taskDefinitionArn"])


def placeable_task_definition(template: dict[str, Any], logical_id: str, task_definition: str) -> str:
    """`placeable_infra_definition` for any of the template's task definitions (``logical_id``),
    registered by the stack as ``task_definition`` (an ARN or family): a new revision of the same
    family and containers, as moto can run it; its ARN."""
    ecs: Any = boto3.client("ecs")
    stored = ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
    props = template["Resources"][logical_id]["Properties"]
    containers = [
        {**c, "memory": int(props["Memory"]) // len(stored["containerDefinitions"])}
        for c in stored["containerDefinitions"]
    ]
    registered = ecs.register_task_definition(
        family=stored["family"],
        networkMode=props["NetworkMode"],
        requiresCompatibilities=props["RequiresCompatibilities"],
        cpu=props["Cpu"],
        memory=props["Memory"],
        containerDefinitions=containers,
        volumes=stored.get("volumes") or [],
    )["taskDefinition"]
    return str(registered["taskDefinitionArn"])


def start_infra_task(
    template: dict[str, Any], outputs: dict[str, str], physical: dict[str, str], subnets: str
) -> str:
    """The infra service's task, as its scheduler would start it (moto services start none); its IP."""
    ecs: Any = boto3.client("ecs")
    task = ecs.run_task(
        cluster=outputs["InfraClusterName"],
        taskDefinition=placeable_infra_definition(template, outputs),
        launchType="FARGATE",
        group=f"service:{outputs['InfraServiceName']}",
        startedBy=f"ecs-svc/{outputs['InfraServiceName']}",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": subnets.split(","),
                "securityGroups": [physical["InfraSecurityGroup"]],
                "assignPublicIp": "DISABLED",
            }
        },
    )["tasks"][0]
    described = ecs.describe_tasks(cluster=outputs["InfraClusterName"], tasks=[task["taskArn"]])["tasks"][0]
    ip = eni_private_ip(described)
    if not ip:
        raise RuntimeError("moto gave the infra task no address")
    return ip


@dataclass
class DeployedStack:
    """A stack created on moto from template.yaml, and what the operator needs from it."""

    name: str
    full: dict[str, Any]  # the whole transformed template (what AWS would create)
    outputs: dict[str, str]
    physical: dict[str, str]
    parameters: dict[str, str]
    planes: dict[str, str] = field(default_factory=dict)  # the plane credentials' attributes (ARNs)

    @property
    def custom_resource_properties(self) -> dict[str, str]:
        """``Custom::DynamoGpuServices``' properties as CloudFormation resolved them."""
        return {k.removeprefix("Prop"): v for k, v in self.outputs.items() if k.startswith("Prop")}

    @property
    def function_ids(self) -> list[str]:
        """Logical ids of the stack's Lambda functions."""
        return sorted(k for k, v in self.full["Resources"].items() if v["Type"] == "AWS::Lambda::Function")

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment CloudFormation gave a function (as strings, as Lambda hands them over)."""
        name = self.physical[logical_id]
        config = boto3.client("lambda").get_function_configuration(FunctionName=name)
        return {k: str(v) for k, v in config["Environment"]["Variables"].items()}


def deploy_on_moto(name: str, parameters: dict[str, str]) -> DeployedStack:
    """Create template.yaml as a stack on the moto server the environment points at.

    The parameters and the values they give are first checked against AWS's input rules
    (`devtools.aws_input_rules`), which moto does not apply. Everything moto's CloudFormation
    can create comes from the template; the custom resource
    (it would invoke the bootstrap function) and `MOTO_CANNOT_CREATE` are left out, and the
    custom resource's properties are echoed as ``Prop*`` outputs so moto resolves them.
    """
    upload_artifact(boto3.client("s3"))
    full = transformed_template()
    # moto accepts values AWS refuses (docs/testing.md): refuse them here first.
    require_valid(full, parameters)
    with_planes, planes = with_plane_credentials(full, parameters)
    template = with_property_outputs(
        without(with_planes, set(MOTO_CANNOT_CREATE) | INVOKES_LAMBDA),
        full["Resources"][CUSTOM_RESOURCE_ID]["Properties"],
    )
    cfn = boto3.client("cloudformation")
    stack = create_stack(cfn, name, template, parameters)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"stack {name} on moto: {stack['StackStatus']}: {stack.get('StackStatusReason')}")
    summaries = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return DeployedStack(
        name=name,
        full=full,
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        physical={s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries},
        parameters=parameters,
        planes=planes,
    )


def declare_member_networks(deployed: DeployedStack) -> list[dict[str, Any]]:
    """Give each infra member service the NetworkConfiguration template.yaml declares for it
    (moto's CloudFormation drops it: see above): member k's subnet is the k-th of
    ``TaskSubnetIds`` (the third member the first when there are two), the infra security group,
    no public IP. Returns the configurations, member by member."""
    ecs: Any = boto3.client("ecs")
    subnets = deployed.parameters["TaskSubnetIds"].split(",")
    services = deployed.outputs["InfraMemberServiceNames"].split(",")
    declared = []
    for k, service in enumerate(services):
        config = {
            "awsvpcConfiguration": {
                "subnets": [[*subnets, subnets[0]][k]],
                "securityGroups": [deployed.physical["InfraSecurityGroup"]],
                "assignPublicIp": "DISABLED",
            }
        }
        ecs.update_service(
            cluster=deployed.outputs["InfraClusterName"], service=service, networkConfiguration=config
        )
        declared.append(config)
    return declared
