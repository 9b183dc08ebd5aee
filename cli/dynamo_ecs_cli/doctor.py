"""``dynamo-ecs doctor``: the pre-deploy sanity check of Dynamo's ECS guide, one line per check.

Each check reads AWS (never writes) and answers pass, warn or fail with the fix. The inputs
are the stack's parameters: those of the deployed stack when ``--stack`` names one, else
template.yaml's defaults; ``--parameter-overrides Key=Value`` sets any of them (as
``sam deploy`` takes them), so the same checks run before the first deploy.

The NGC secret is read to check its shape (a registry login); its value is never printed,
logged or returned: a check's text names the keys it found, nothing else.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from dynamo_ecs_cli.stack import Aws, aws_error_text

Status = Literal["pass", "warn", "fail"]

# template.yaml's defaults for what the checks read (a test keeps them equal to the template's).
TEMPLATE_DEFAULTS = {
    "GpuInstanceType": "g6e.2xlarge",
    "GpuAmiId": "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
    "GpuBudget": "8",
    "FrontendMin": "1",
    "FrontendMax": "4",
    "PrefillMin": "1",
    "PrefillMax": "4",
}
# Service Quotas codes of EC2's on-demand vCPU quotas, by instance family letter.
VCPU_QUOTAS = {
    "g": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "vt": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "p": ("L-417A185B", "Running On-Demand P instances"),
}
AL2023_GPU_AMI = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
REGISTRY_LOGIN_EXAMPLE = '{"username": "$oauthtoken", "password": "<NGC API key>"}'


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class Inputs:
    """The stack parameters the checks read, with the defaults and overrides applied."""

    def __init__(self, parameters: Mapping[str, str]) -> None:
        self.values = {**TEMPLATE_DEFAULTS, **{k: v for k, v in parameters.items() if v != ""}}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def number(self, key: str) -> int:
        return int(self.values[key])

    def subnets(self) -> list[str]:
        return [s.strip() for s in self.values.get("TaskSubnetIds", "").split(",") if s.strip()]


def _missing(name: str, key: str, example: str) -> Check:
    return Check(
        name,
        "fail",
        f"no {key} to check",
        f"pass --stack NAME of a deployed stack, or --parameter-overrides {key}={example}",
    )


def check_gpu_quota(aws: Aws, inputs: Inputs) -> Check:
    name = "gpu-quota"
    instance_type = inputs.values["GpuInstanceType"]
    try:
        [info] = aws.client("ec2").describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    except ClientError as exc:
        return Check(
            name,
            "fail",
            f"instance type {instance_type}: {aws_error_text(exc)}",
            "set a valid GpuInstanceType",
        )
    vcpus = int(info["VCpuInfo"]["DefaultVCpus"])
    gpus = sum(int(g.get("Count", 0)) for g in info.get("GpuInfo", {}).get("Gpus", [])) or 1
    max_tasks = min(inputs.number("GpuBudget"), inputs.number("FrontendMax") + inputs.number("PrefillMax"))
    min_tasks = inputs.number("FrontendMin") + inputs.number("PrefillMin")
    need_max = math.ceil(max_tasks / gpus) * vcpus
    need_min = math.ceil(min_tasks / gpus) * vcpus
    family = "vt" if instance_type.startswith("vt") else instance_type[:1]
    if family not in VCPU_QUOTAS:
        return Check(name, "warn", f"{instance_type}: no known GPU vCPU quota for this family", "")
    code, title = VCPU_QUOTAS[family]
    quotas = aws.client("service-quotas")
    value: float | None = None
    for read in (quotas.get_service_quota, quotas.get_aws_default_service_quota):
        try:
            value = float(read(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
            break
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchResourceException":
                return Check(name, "warn", f"could not read the quota {code}: {aws_error_text(exc)}", "")
        except BotoCoreError as exc:
            return Check(name, "warn", f"could not read the quota {code}: {aws_error_text(exc)}", "")
    if value is None:
        return Check(name, "warn", f"Service Quotas has no value for ec2 {code} ({title}) here", "")
    detail = (
        f"{title} ({code}): {value:g} vCPUs; the maximum needs {need_max} "
        f"({math.ceil(max_tasks / gpus)} x {instance_type} at {vcpus} vCPUs), the minimum {need_min}"
    )
    if value >= need_max:
        return Check(name, "pass", detail)
    fix = (
        f"request {need_max} vCPUs: aws service-quotas request-service-quota-increase --service-code ec2 "
        f"--quota-code {code} --desired-value {need_max} --region {aws.region_name}; or lower GpuBudget / "
        "FrontendMax / PrefillMax (the quota is shared with the account's other instances of the family)"
    )
    return Check(name, "fail", detail, fix)


def check_instance_type_offered(aws: Aws, inputs: Inputs) -> Check:
    name = "instance-type-offered"
    subnets = inputs.subnets()
    if not subnets:
        return _missing(name, "TaskSubnetIds", "subnet-aaa,subnet-bbb")
    instance_type = inputs.values["GpuInstanceType"]
    ec2 = aws.client("ec2")
    try:
        zones = {
            s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
        }
    except ClientError as exc:
        return Check(
            name, "fail", f"TaskSubnetIds: {aws_error_text(exc)}", "set TaskSubnetIds to subnets of the VPC"
        )
    offered = {
        o["Location"]
        for o in ec2.describe_instance_type_offerings(
            LocationType="availability-zone",
            Filters=[
                {"Name": "instance-type", "Values": [instance_type]},
                {"Name": "location", "Values": sorted(set(zones.values()))},
            ],
        )["InstanceTypeOfferings"]
    }
    missing = sorted(f"{subnet} ({zone})" for subnet, zone in zones.items() if zone not in offered)
    detail = f"{instance_type} offered in {', '.join(sorted(offered)) or 'none'} of the subnets' zones"
    if not offered:
        return Check(
            name, "fail", detail, "choose TaskSubnetIds in zones that offer it, or another GpuInstanceType"
        )
    if missing:
        return Check(
            name, "warn", f"{detail}; not in {', '.join(missing)}", "move those subnets out of TaskSubnetIds"
        )
    return Check(name, "pass", detail)


def _route_table(ec2: Any, subnet: str, vpc: str) -> dict[str, Any] | None:
    tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])
    if tables["RouteTables"]:
        table: dict[str, Any] = tables["RouteTables"][0]
        return table
    main = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    return main[0] if main else None


def check_route_out(aws: Aws, inputs: Inputs) -> Check:
    name = "route-out"
    subnets = inputs.subnets()
    if not subnets:
        return _missing(name, "TaskSubnetIds", "subnet-aaa,subnet-bbb")
    ec2 = aws.client("ec2")
    try:
        described = ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
    except ClientError as exc:
        return Check(
            name, "fail", f"TaskSubnetIds: {aws_error_text(exc)}", "set TaskSubnetIds to subnets of the VPC"
        )
    nat, gateway, other, none = [], [], [], []
    for subnet in described:
        table = _route_table(ec2, subnet["SubnetId"], subnet["VpcId"])
        default = next(
            (r for r in (table or {}).get("Routes", []) if r.get("DestinationCidrBlock") == "0.0.0.0/0"), None
        )
        target = (default or {}).get("NatGatewayId") or (default or {}).get("GatewayId") or ""
        if default is None or default.get("State") == "blackhole":
            none.append(subnet["SubnetId"])
        elif target.startswith("nat-"):
            nat.append(subnet["SubnetId"])
        elif target.startswith("igw-"):
            gateway.append(subnet["SubnetId"])
        else:
            other.append(f"{subnet['SubnetId']} ({target or next(iter(default), '?')})")
    vpcs = sorted({s["VpcId"] for s in described})
    endpoints = sorted(
        e["ServiceName"].split(".", 3)[-1]  # com.amazonaws.REGION.ecr.dkr -> ecr.dkr
        for e in ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": vpcs}])["VpcEndpoints"]
    )
    seen = f"; VPC endpoints: {', '.join(endpoints)}" if endpoints else ""
    if none:
        return Check(
            name,
            "fail",
            f"no route to 0.0.0.0/0 from {', '.join(none)}{seen}",
            "add a NAT gateway and a 0.0.0.0/0 route to it in those subnets' route table: the images "
            "(nvcr.io) and the model (Hugging Face) are on the internet, which VPC endpoints do not reach",
        )
    if gateway or other:
        parts = [f"internet gateway: {', '.join(gateway)}" if gateway else "", ", ".join(other)]
        return Check(
            name,
            "warn",
            f"default route through {'; '.join(p for p in parts if p)}{seen}",
            "an internet gateway route works only for instances with public addresses; the guide's setup "
            "is private subnets behind a NAT gateway",
        )
    return Check(name, "pass", f"NAT gateway route from {', '.join(nat)}{seen}")


def check_ngc_secret(aws: Aws, inputs: Inputs) -> Check:
    name = "ngc-secret"
    secret = inputs.get("NgcSecretArn")
    if not secret:
        return _missing(name, "NgcSecretArn", "arn:aws:secretsmanager:REGION:ACCOUNT:secret:ngc-login-XXXXXX")
    create = (
        f"aws secretsmanager create-secret --name ngc-login --secret-string '{REGISTRY_LOGIN_EXAMPLE}', "
        "then NgcSecretArn=<its ARN>"
    )
    try:
        answer = aws.client("secretsmanager").get_secret_value(SecretId=secret)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            return Check(name, "fail", f"{secret}: no such secret", create)
        return Check(name, "warn", f"{secret}: cannot read it to check its shape ({code})", "")
    text = answer.get("SecretString")
    try:
        login = json.loads(text) if text else None
    except ValueError:
        login = None
    if not isinstance(login, dict):
        return Check(
            name,
            "fail",
            f"{secret}: not JSON key/value pairs (ECS reads a registry login as JSON)",
            f"put-secret-value --secret-id {secret} --secret-string '{REGISTRY_LOGIN_EXAMPLE}'",
        )
    keys = sorted(str(k) for k in login)
    empty = [k for k in ("username", "password") if not isinstance(login.get(k), str) or not login.get(k)]
    if empty:
        return Check(
            name,
            "fail",
            f"{secret}: not a registry login (keys: {', '.join(keys) or 'none'}; "
            f"missing or empty: {', '.join(empty)})",
            f"put-secret-value --secret-id {secret} --secret-string '{REGISTRY_LOGIN_EXAMPLE}'",
        )
    if login["username"] != "$oauthtoken":
        return Check(
            name,
            "warn",
            f"{secret}: a registry login, but its username is not $oauthtoken (NGC's login for API keys)",
            "set username to $oauthtoken and password to the NGC API key",
        )
    return Check(name, "pass", f"{secret}: a registry login for nvcr.io (username $oauthtoken, password set)")


def check_gpu_ami(aws: Aws, inputs: Inputs) -> Check:
    name = "gpu-ami"
    value = inputs.values["GpuAmiId"]
    ami = value
    if value.startswith("/"):
        try:
            ami = aws.client("ssm").get_parameter(Name=value)["Parameter"]["Value"]
        except ClientError as exc:
            return Check(
                name,
                "fail",
                f"{value}: {aws_error_text(exc)}",
                f"set GpuAmiId to an ECS GPU AMI parameter of this region, e.g. {AL2023_GPU_AMI}",
            )
    try:
        images = aws.client("ec2").describe_images(ImageIds=[ami])["Images"]
    except ClientError as exc:
        images = []
        error = aws_error_text(exc)
    else:
        error = "not found"
    if not images:
        return Check(name, "fail", f"{value} -> {ami}: {error}", "set GpuAmiId to an ECS GPU-optimized AMI")
    detail = f"{value} -> {ami}" if ami != value else ami
    if "amazon-linux-2/gpu" in value:
        return Check(
            name,
            "warn",
            f"{detail}: the Amazon Linux 2 GPU AMI ships NVIDIA driver 550 (CUDA 12.4); "
            "Dynamo images built on CUDA 12.9 need driver 575 or later",
            f"GpuAmiId={AL2023_GPU_AMI} (driver 580)",
        )
    return Check(name, "pass", detail)


ECS_SERVICE_LINKED_ROLE = "AWSServiceRoleForECS"
CREATE_ECS_SERVICE_LINKED_ROLE = "aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com"


def check_ecs_service_linked_role(aws: Aws, inputs: Inputs) -> Check:
    """ECS's service-linked role: an account that never used ECS may not have it yet.

    ECS creates it with the account's first cluster, but CloudFormation can create the stack's
    clusters and capacity provider before it exists, and the first deploy then fails and rolls
    back (a second deploy succeeds). Creating it first avoids that.
    """
    name = "ecs-linked-role"
    try:
        aws.client("iam").get_role(RoleName=ECS_SERVICE_LINKED_ROLE)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchEntity":
            return Check(
                name,
                "fail",
                f"no role {ECS_SERVICE_LINKED_ROLE}: this account has not used ECS yet, and the first "
                "deploy can fail creating the clusters before ECS has made it",
                CREATE_ECS_SERVICE_LINKED_ROLE,
            )
        return Check(name, "warn", f"cannot read role {ECS_SERVICE_LINKED_ROLE} ({code})", "")
    return Check(name, "pass", f"{ECS_SERVICE_LINKED_ROLE} exists")


def check_build_tools(deployed: bool, which: Callable[[str], str | None] = shutil.which) -> Check:
    name = "sam-build-tools"
    missing = [tool for tool in ("sam", "python3.12") if which(tool) is None]
    if not missing:
        return Check(name, "pass", "sam and python3.12 on PATH")
    return Check(
        name,
        "warn" if deployed else "fail",
        f"not on PATH: {', '.join(missing)}" + (" (needed for the next sam build)" if deployed else ""),
        "install the AWS SAM CLI (pipx install aws-sam-cli) and Python 3.12; `make build` puts the project's "
        ".venv first",
    )


def run_checks(aws: Aws, inputs: Inputs, deployed: bool) -> list[Check]:
    checks: list[Check] = []
    for check in (
        check_gpu_quota,
        check_instance_type_offered,
        check_route_out,
        check_ngc_secret,
        check_gpu_ami,
        check_ecs_service_linked_role,
    ):
        try:
            checks.append(check(aws, inputs))
        except (ClientError, BotoCoreError) as exc:
            checks.append(
                Check(check.__name__.removeprefix("check_").replace("_", "-"), "warn", aws_error_text(exc))
            )
    checks.append(check_build_tools(deployed))
    return checks
