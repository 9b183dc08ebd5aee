"""``dynamo-ecs doctor`` against moto: each check passing, warning and failing, with its fix.

Service Quotas comes from a loopback stand-in (devtools/aws_stand_ins.py): moto answers only
the ``vpc`` service's quotas, so the EC2 GPU vCPU quota cannot be read from it (the last test
shows what the check says against moto alone).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from devtools.aws_stand_ins import service_quotas, stand_in
from dynamo_ecs import aws
from dynamo_ecs_cli import doctor
from dynamo_ecs_cli.stack import Aws
from tests.integration.cli.conftest import ROOT, Network, as_json, private_network, run_cli

SECRET_VALUE = "nvapi-Zx81TopSecretKeyValue0042"
AL2023 = doctor.AL2023_GPU_AMI
TOOLS_PATH = {"PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture
def quotas(aws_env: object) -> Iterator[dict[tuple[str, str], float]]:
    """The account's quotas as the stand-in answers them (set per test); its endpoint in the environment."""
    values: dict[tuple[str, str], float] = {}
    with stand_in(service_quotas(values)) as url:
        os.environ["AWS_ENDPOINT_URL_SERVICE_QUOTAS"] = url
        try:
            yield values
        finally:
            del os.environ["AWS_ENDPOINT_URL_SERVICE_QUOTAS"]


def registry_login(**login: str) -> str:
    return str(
        aws.client("secretsmanager").create_secret(Name="ngc-login", SecretString=json.dumps(login))["ARN"]
    )


def ecs_service_linked_role() -> None:
    """The role as AWS names it for ecs.amazonaws.com. moto's CreateServiceLinkedRole names it
    ``AWSServiceRoleForecs`` (its own conversion), so it is made here as AWS documents it."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    aws.client("iam").create_role(
        RoleName=doctor.ECS_SERVICE_LINKED_ROLE,
        Path="/aws-service-role/ecs.amazonaws.com/",
        AssumeRolePolicyDocument=json.dumps(trust),
    )


def overrides(network: Network, secret: str, **more: str) -> list[str]:
    values = {"TaskSubnetIds": ",".join(network.subnets), "NgcSecretArn": secret, **more}
    return ["--parameter-overrides", " ".join(f"{k}={v}" for k, v in values.items())]


def lines_of(text: str) -> dict[str, str]:
    """check name -> its line (and its fix line), from the table output."""
    found: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[0] in ("pass", "warn", "fail"):
            last = parts[1]
            found[last] = line
        elif last and line.strip().startswith("fix:"):
            found[last] += "\n" + line
    return found


def test_before_deploy_a_short_quota_and_a_missing_secret_fail_with_their_fixes(
    quotas: dict[tuple[str, str], float],
) -> None:
    # Given an account with 16 G vCPUs, a private network behind a NAT, and no NGC secret yet
    quotas[("ec2", "L-DB2E81BA")] = 16
    network = private_network()
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ngc-login-AbCdEf"
    # When doctor runs before the first deploy, through the command's own entry point
    done = run_cli(["doctor", "--stack", "not-yet", *overrides(network, missing)], env=TOOLS_PATH)
    # Then it fails, and says why and how to fix each
    assert done.returncode == 1, done.stderr
    checks = lines_of(done.stdout)
    assert checks["gpu-quota"].startswith("fail")
    assert "16 vCPUs; the maximum needs 64 (8 x g6e.2xlarge at 8 vCPUs)" in checks["gpu-quota"]
    assert "--quota-code L-DB2E81BA --desired-value 64" in checks["gpu-quota"]
    assert checks["ngc-secret"].startswith("fail") and "no such secret" in checks["ngc-secret"]
    assert "aws secretsmanager create-secret --name ngc-login" in checks["ngc-secret"]
    # And the other checks pass (the default AMI is the AL2023 GPU AMI, whose driver runs Dynamo 1.x)
    assert checks["instance-type-offered"].startswith("pass") and checks["route-out"].startswith("pass")
    assert checks["gpu-ami"].startswith("pass") and "amazon-linux-2023" in checks["gpu-ami"]
    assert checks["sam-build-tools"].startswith("pass")
    # And an account that never used ECS has no ECS service-linked role yet: create it first
    assert checks["ecs-linked-role"].startswith("fail")
    assert (
        "aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com" in checks["ecs-linked-role"]
    )
    assert "before deploy (no stack 'not-yet' yet)" in done.stdout and "3 failed" in done.stdout


def test_a_covering_quota_and_a_registry_login_pass_and_the_secret_is_never_printed(
    quotas: dict[tuple[str, str], float],
) -> None:
    quotas[("ec2", "L-DB2E81BA")] = 64
    secret = registry_login(username="$oauthtoken", password=SECRET_VALUE)
    ecs_service_linked_role()
    network = private_network()
    done = run_cli(["doctor", *overrides(network, secret, GpuAmiId=AL2023), "--json"], env=TOOLS_PATH)
    assert done.returncode == 0, done.stdout + done.stderr
    report = as_json(done)
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "gpu-quota": "pass",
        "instance-type-offered": "pass",
        "route-out": "pass",
        "ngc-secret": "pass",
        "gpu-ami": "pass",
        "ecs-linked-role": "pass",
        "sam-build-tools": "pass",
    }
    table = run_cli(["doctor", *overrides(network, secret, GpuAmiId=AL2023)], env=TOOLS_PATH)
    for output in (done.stdout, done.stderr, table.stdout, table.stderr):
        assert SECRET_VALUE not in output and "TopSecret" not in output


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        ({"user": "$oauthtoken", "pass": SECRET_VALUE}, "fail"),
        ({"username": "$oauthtoken", "password": ""}, "fail"),
        ({"username": "someone", "password": SECRET_VALUE}, "warn"),
    ],
)
def test_a_secret_that_is_not_a_registry_login_names_its_keys_only(
    quotas: dict[tuple[str, str], float], login: dict[str, str], expected: str
) -> None:
    inputs = doctor.Inputs({"NgcSecretArn": registry_login(**login)})
    check = doctor.check_ngc_secret(Aws(), inputs)
    assert check.status == expected
    assert SECRET_VALUE not in check.detail + check.fix
    if expected == "fail" and "user" in login:
        assert "keys: pass, user" in check.detail and "missing or empty: username, password" in check.detail


def test_no_route_out_fails_and_names_the_vpc_endpoints(quotas: dict[tuple[str, str], float]) -> None:
    network = private_network(nat=False)
    aws.client("ec2").create_vpc_endpoint(
        VpcId=network.vpc, ServiceName="com.amazonaws.us-east-1.ecr.dkr", VpcEndpointType="Interface"
    )
    check = doctor.check_route_out(Aws(), doctor.Inputs({"TaskSubnetIds": ",".join(network.subnets)}))
    assert check.status == "fail" and "no route to 0.0.0.0/0" in check.detail
    assert "VPC endpoints: ecr.dkr" in check.detail and "NAT gateway" in check.fix


def test_an_internet_gateway_route_warns(quotas: dict[tuple[str, str], float]) -> None:
    network = private_network(nat=False)
    ec2 = aws.client("ec2")
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=network.vpc)
    [table] = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": network.subnets[:1]}]
    )["RouteTables"]
    ec2.create_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
    check = doctor.check_route_out(Aws(), doctor.Inputs({"TaskSubnetIds": ",".join(network.subnets)}))
    assert check.status == "warn" and "internet gateway" in check.detail


def test_zones_that_do_not_offer_the_instance_type(quotas: dict[tuple[str, str], float]) -> None:
    # moto's offerings, as AWS's: g6e.2xlarge in us-east-1a..d, not in us-east-1e
    some = doctor.check_instance_type_offered(
        Aws(), doctor.Inputs({"TaskSubnetIds": ",".join(private_network("ae").subnets)})
    )
    assert some.status == "warn" and "(us-east-1e)" in some.detail
    aws.reset_clients()
    none = doctor.check_instance_type_offered(
        Aws(), doctor.Inputs({"TaskSubnetIds": ",".join(private_network("e").subnets)})
    )
    assert none.status == "fail" and "offered in none" in none.detail


def test_an_ami_parameter_that_does_not_resolve_fails(quotas: dict[tuple[str, str], float]) -> None:
    check = doctor.check_gpu_ami(Aws(), doctor.Inputs({"GpuAmiId": "/aws/service/ecs/no/such/image_id"}))
    assert check.status == "fail" and "ParameterNotFound" in check.detail and AL2023 in check.fix
    resolved = doctor.check_gpu_ami(Aws(), doctor.Inputs({"GpuAmiId": AL2023}))
    assert resolved.status == "pass" and resolved.detail.startswith(f"{AL2023} -> ami-")


def test_missing_build_tools_fail_before_deploy_and_warn_after() -> None:
    assert doctor.check_build_tools(deployed=False, which=lambda tool: None).status == "fail"
    after = doctor.check_build_tools(
        deployed=True, which=lambda tool: "/usr/bin/sam" if tool == "sam" else None
    )
    assert after.status == "warn" and "python3.12" in after.detail


def test_without_subnets_or_secret_the_checks_say_what_to_pass(quotas: dict[tuple[str, str], float]) -> None:
    quotas[("ec2", "L-DB2E81BA")] = 64
    checks = {c.name: c for c in doctor.run_checks(Aws(), doctor.Inputs({}), deployed=False)}
    assert (
        checks["route-out"].status == "fail"
        and "--parameter-overrides TaskSubnetIds=" in checks["route-out"].fix
    )
    assert "--parameter-overrides NgcSecretArn=" in checks["ngc-secret"].fix


def test_against_moto_alone_the_quota_is_unknown_and_says_so(aws_env: object) -> None:
    # moto's Service Quotas has no EC2 quotas (NoSuchResource) and no GetAWSDefaultServiceQuota
    # (an HTTP 500): the check warns instead of guessing, in one line
    check = doctor.check_gpu_quota(Aws(), doctor.Inputs({}))
    assert check.status == "warn" and check.detail.startswith("could not read the quota L-DB2E81BA")
    assert "\n" not in check.detail and len(check.detail) < 300


def test_the_ecs_service_linked_role_is_checked_by_name(aws_env: object) -> None:
    # Given a brand-new account: the check fails with the command that creates the role
    missing = doctor.check_ecs_service_linked_role(Aws(), doctor.Inputs({}))
    assert (missing.status, missing.fix) == ("fail", doctor.CREATE_ECS_SERVICE_LINKED_ROLE)
    # When the role exists (as ECS or the fix's command makes it), then it passes
    ecs_service_linked_role()
    assert doctor.check_ecs_service_linked_role(Aws(), doctor.Inputs({})).status == "pass"


def test_the_defaults_are_template_yamls(aws_env: object) -> None:
    from devtools.template import load_template

    parameters = load_template()["Parameters"]
    assert {k: str(parameters[k]["Default"]) for k in doctor.TEMPLATE_DEFAULTS} == doctor.TEMPLATE_DEFAULTS


def test_a_bad_parameter_override_is_a_usage_error(aws_env: object) -> None:
    done = run_cli(["doctor", "--parameter-overrides", "GpuBudget"])
    assert done.returncode == 2 and "expected Key=Value" in done.stderr
