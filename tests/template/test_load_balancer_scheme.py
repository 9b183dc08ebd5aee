"""Changing LoadBalancerScheme on a deployed stack.

The scheme cannot change in place: CloudFormation replaces the load balancer (and with it the
listener), creating the new ones before it deletes the old. A target group serves one load
balancer, so a new listener forwarding to the old group fails ("TargetGroupAssociationLimitError")
and the update rolls back. The template names the group after the scheme, so the group is
replaced too; the custom resource's Update then moves the frontend service to the new group.

moto's CloudFormation neither refuses the second load balancer on a group nor shows the order
of its steps, so the first test reads the plan from the template itself, as CloudFormation
does: which resources a scheme change replaces (the properties whose change means
replacement, per CloudFormation's resource reference), and whether every group a replaced
listener forwards to is replaced with it. The second runs the update on moto's CloudFormation
with the bootstrap handler answering the custom resource's Update.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from devtools import aws_input_rules as air
from devtools.cloudformation_stub import CloudFormationStub
from devtools.services import MotoServer
from tests.template.stack import stack_for_bootstrap, transformed_template
from tests.template.test_template_gpu_services_on_moto import LambdaContext, gpu_services, request

pytestmark = pytest.mark.xdist_group("moto-stack")

# Properties whose change replaces the resource ("Update requires: Replacement" in the AWS
# CloudFormation resource reference of each type; a reference to a replaced resource changes
# too, so replacement spreads along Ref/GetAtt).
REPLACED_BY = {
    "AWS::ElasticLoadBalancingV2::LoadBalancer": {"Name", "Scheme", "Type"},
    "AWS::ElasticLoadBalancingV2::Listener": {"LoadBalancerArn"},
    "AWS::ElasticLoadBalancingV2::TargetGroup": {
        "Name",
        "Port",
        "Protocol",
        "ProtocolVersion",
        "TargetType",
        "VpcId",
        "IpAddressType",
    },
}


def replaced_resources(template: dict[str, Any], before: dict[str, str], after: dict[str, str]) -> set[str]:
    """The load-balancing resources CloudFormation replaces when the parameters go from
    ``before`` to ``after``: those whose replacing properties change, then, until nothing more
    changes, those whose replacing properties refer to a replaced one (it gets a new id)."""
    old = air.Resolver(template, before).resources()
    replaced: frozenset[str] = frozenset()
    while True:
        new = air.Resolver(template, after, replaced=replaced).resources()
        found = frozenset(
            logical_id
            for logical_id, resource in new.items()
            if any(
                old[logical_id]["Properties"].get(p) != resource["Properties"].get(p)
                for p in REPLACED_BY.get(resource["Type"], set())
            )
        )
        if found == replaced:
            return set(replaced)
        replaced = found


def target_groups_of_listeners(template: dict[str, Any]) -> dict[str, set[str]]:
    """Listener logical id -> the target group logical ids its actions forward to."""
    found: dict[str, set[str]] = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::ElasticLoadBalancingV2::Listener":
            actions = resource["Properties"]["DefaultActions"]
            found[logical_id] = {a["TargetGroupArn"]["Ref"] for a in actions if "TargetGroupArn" in a}
    return found


@pytest.mark.parametrize(
    ("before", "after"), [("internal", "internet-facing"), ("internet-facing", "internal")]
)
def test_a_scheme_change_replaces_the_target_group_with_the_load_balancer(before: str, after: str) -> None:
    template = transformed_template()
    replaced = replaced_resources(template, {"LoadBalancerScheme": before}, {"LoadBalancerScheme": after})
    # Given the load balancer is replaced (its scheme cannot change in place)
    assert "ApiLoadBalancer" in replaced
    # Then every listener on it is new, and so is every target group it forwards to
    for listener, groups in target_groups_of_listeners(template).items():
        assert listener in replaced
        assert groups <= replaced, f"{listener} would forward to {groups - replaced} on two load balancers"


def test_a_new_image_replaces_no_load_balancing_resource() -> None:
    template = transformed_template()
    replaced = replaced_resources(
        template, {}, {"DynamoImage": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0", "FrontendMax": "5"}
    )
    assert replaced == set()


class TargetGroupAssociationLimitError(AssertionError):
    """What ELB answers when a listener of a second load balancer forwards to a target group."""


def apply_replacements(
    template: dict[str, Any], replaced: set[str], after: dict[str, str], physical: dict[str, str]
) -> dict[str, str]:
    """CloudFormation's update of the load-balancing resources, through the ELB API: the
    replacements created first (target group, load balancer, listener, in dependency order),
    the old ones deleted later (`delete_replaced`). moto's own CloudFormation loses a replaced
    load balancer on update, and moto's ELB does not refuse a target group on a second load
    balancer: this refuses it as ELB does. Returns the replacements' ARNs by logical id."""
    elbv2: Any = boto3.client("elbv2")
    new = air.Resolver(template, after, replaced=frozenset(replaced)).resources()
    created: dict[str, str] = {}

    def current(logical_id: str) -> str:
        return created.get(logical_id, physical[logical_id])

    if "FrontendTargetGroup" in replaced:
        props = new["FrontendTargetGroup"]["Properties"]
        [old] = elbv2.describe_target_groups(TargetGroupArns=[physical["FrontendTargetGroup"]])[
            "TargetGroups"
        ]
        created["FrontendTargetGroup"] = elbv2.create_target_group(
            Name=props["Name"],
            Protocol=props["Protocol"],
            Port=int(props["Port"]),
            VpcId=old["VpcId"],
            TargetType=props["TargetType"],
            HealthCheckPath=props["HealthCheckPath"],
        )["TargetGroups"][0]["TargetGroupArn"]
    if "ApiLoadBalancer" in replaced:
        props = new["ApiLoadBalancer"]["Properties"]
        [old_balancer] = elbv2.describe_load_balancers(LoadBalancerArns=[physical["ApiLoadBalancer"]])[
            "LoadBalancers"
        ]
        created["ApiLoadBalancer"] = elbv2.create_load_balancer(
            Name="dynamo-ApiLoadBalan-replacement",
            Type=props["Type"],
            Scheme=props["Scheme"],
            Subnets=[az["SubnetId"] for az in old_balancer["AvailabilityZones"]],
            SecurityGroups=old_balancer["SecurityGroups"],
        )["LoadBalancers"][0]["LoadBalancerArn"]
    if "ApiListener" in replaced:
        props = new["ApiListener"]["Properties"]
        group = current("FrontendTargetGroup")
        [described] = elbv2.describe_target_groups(TargetGroupArns=[group])["TargetGroups"]
        others = set(described.get("LoadBalancerArns", [])) - {current("ApiLoadBalancer")}
        if others:
            raise TargetGroupAssociationLimitError(
                f"ELB: target group {group} is already associated with {others}; "
                "CloudFormation's update fails here and rolls back"
            )
        created["ApiListener"] = elbv2.create_listener(
            LoadBalancerArn=current("ApiLoadBalancer"),
            Port=int(props["Port"]),
            Protocol=props["Protocol"],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
        )["Listeners"][0]["ListenerArn"]
    return created


def delete_replaced(physical: dict[str, str], created: dict[str, str]) -> None:
    """CloudFormation's clean-up phase: the replaced resources, dependents first."""
    elbv2: Any = boto3.client("elbv2")
    if "ApiListener" in created:
        elbv2.delete_listener(ListenerArn=physical["ApiListener"])
    if "ApiLoadBalancer" in created:
        elbv2.delete_load_balancer(LoadBalancerArn=physical["ApiLoadBalancer"])
    if "FrontendTargetGroup" in created:
        elbv2.delete_target_group(TargetGroupArn=physical["FrontendTargetGroup"])


def listeners_by_target_group() -> dict[str, set[str]]:
    elbv2: Any = boto3.client("elbv2")
    found: dict[str, set[str]] = {}
    for balancer in elbv2.describe_load_balancers()["LoadBalancers"]:
        for listener in elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]:
            for action in listener["DefaultActions"]:
                found.setdefault(action["TargetGroupArn"], set()).add(balancer["LoadBalancerArn"])
    return found


def test_changing_the_scheme_moves_the_frontend_to_the_new_target_group(moto: MotoServer) -> None:
    cloudformation = CloudFormationStub()
    # Given the stack deployed internal, with its GPU services created by the bootstrap
    with stack_for_bootstrap(moto) as deployed:
        full, physical, properties = deployed.full, deployed.physical, deployed.properties
        cluster, bootstrap = deployed.gpu_cluster, deployed.bootstrap
        context = LambdaContext(deployed.function_arn)
        try:
            bootstrap.lambda_handler(request("Create", cloudformation.url, properties), context)
            assert cloudformation.answers[-1]["Status"] == "SUCCESS", cloudformation.answers[-1]
            old_group = physical["FrontendTargetGroup"]
            frontend = gpu_services(cluster)["dynamo-frontend"]
            assert [lb["targetGroupArn"] for lb in frontend["loadBalancers"]] == [old_group]

            # When a deploy changes the scheme: CloudFormation creates the replacements
            before: dict[str, str] = {}
            after = {"LoadBalancerScheme": "internet-facing"}
            replaced = replaced_resources(full, before, after)
            created = apply_replacements(full, replaced, after, physical)
            # Then ELB takes them: the new listener forwards to a new target group
            assert set(created) == {"FrontendTargetGroup", "ApiLoadBalancer", "ApiListener"}
            assert all(len(balancers) == 1 for balancers in listeners_by_target_group().values())
            elbv2: Any = boto3.client("elbv2")
            [balancer] = elbv2.describe_load_balancers(LoadBalancerArns=[created["ApiLoadBalancer"]])[
                "LoadBalancers"
            ]
            assert balancer["Scheme"] == "internet-facing"
            # and CloudFormation's Update of the custom resource (its FrontendTargetGroupArn is a
            # Ref of the replaced group) moves the frontend service there
            new_properties = {**properties, "FrontendTargetGroupArn": created["FrontendTargetGroup"]}
            bootstrap.lambda_handler(
                request("Update", cloudformation.url, new_properties, old=properties), context
            )
            answer = cloudformation.answers[-1]
            assert answer["Status"] == "SUCCESS", answer
            frontend = gpu_services(cluster)["dynamo-frontend"]
            assert [lb["targetGroupArn"] for lb in frontend["loadBalancers"]] == [
                created["FrontendTargetGroup"]
            ]
            assert answer["Data"]["FrontendTargetGroupMoved"] == "true"
            # and the same Update again (a retry) changes nothing
            bootstrap.lambda_handler(
                request("Update", cloudformation.url, new_properties, old=properties), context
            )
            assert cloudformation.answers[-1]["Data"]["FrontendTargetGroupMoved"] == "false"
            # and CloudFormation's clean-up deletes the old listener, load balancer and group
            delete_replaced(physical, created)
            groups = [g["TargetGroupArn"] for g in elbv2.describe_target_groups()["TargetGroups"]]
            assert groups == [created["FrontendTargetGroup"]]
        finally:
            cloudformation.close()
