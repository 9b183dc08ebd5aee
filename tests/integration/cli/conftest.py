"""The command line against moto server: a stack's outputs, a deployment, a network, the CLI's process.

The stack is a stand-in on moto's CloudFormation with template.yaml's output and parameter
names (`test_cli_on_moto.py` checks the names against the template) pointing at a deployment
built by `devtools.ecs_world`; the CLI then finds everything through ``--stack`` as it does on AWS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.ecs_world import EcsWorld, build_world
from devtools.services import MotoServer
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
CONFIG = DeploymentConfig()
REDEPLOY_FUNCTION = "dynamo-RedeployFunction-Ab12Cd34"


def stand_in_stack(name: str, outputs: dict[str, str], parameters: dict[str, str]) -> None:
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {key: {"Type": "String"} for key in parameters},
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    aws.client("cloudformation").create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )


@dataclass
class Network:
    vpc: str
    subnets: list[str]


def private_network(zones: str = "ab", nat: bool = True) -> Network:
    """A VPC with one private subnet per zone, routed out through a NAT gateway (or not at all)."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate(zones)
    ]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    for subnet in subnets:
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    if nat:
        public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.100.0/24", AvailabilityZone=f"{REGION}a")[
            "Subnet"
        ]
        allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
        gateway = ec2.create_nat_gateway(SubnetId=public["SubnetId"], AllocationId=allocation)["NatGateway"]
        ec2.create_route(
            RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=gateway["NatGatewayId"]
        )
    return Network(vpc, subnets)


@dataclass
class Deployed:
    world: EcsWorld
    stack: str


@pytest.fixture
def deployed(state_table: str) -> Deployed:
    """A running deployment (infra task, both GPU services at 1) and its stack's outputs."""
    world = build_world(CONFIG, region=REGION)
    world.run_infra_task()
    world.create_settled_gpu_services(desired=1)
    outputs = {
        "InfraClusterName": CONFIG.infra.cluster,
        "InfraServiceName": CONFIG.infra.service,
        "GpuClusterName": CONFIG.gpu_cluster,
        "FrontendServiceName": CONFIG.frontend.service,
        "PrefillServiceName": CONFIG.prefill.service,
        "StateTableName": state_table,
        "RedeployFunctionName": REDEPLOY_FUNCTION,
    }
    stand_in_stack("dynamo", outputs, {"DeploymentName": CONFIG.deployment})
    return Deployed(world, "dynamo")


def run_cli(
    args: list[str], env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``dynamo-ecs ARGS`` in its own process (``python -m dynamo_ecs_cli``, the console script's code)."""
    pythonpath = os.pathsep.join(str(ROOT / p) for p in ("layers/dynamo_ecs", "cli"))
    return subprocess.run(
        [sys.executable, "-m", "dynamo_ecs_cli", *args],
        env={**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "200", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def moto_env(moto: MotoServer) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": moto.url}


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)
