"""The GPU instances: the AL2023 GPU AMI, user data that runs, task sizes that fit the instance type."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from devtools.template import load_template, resource
from dynamo_ecs import capacity

AL2023_GPU_AMI = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"


def test_the_default_ami_is_the_al2023_ecs_gpu_ami() -> None:
    # The Amazon Linux 2 GPU AMI ships NVIDIA driver 550; current Dynamo images need 575+.
    parameter = load_template()["Parameters"]["GpuAmiId"]
    assert parameter["Default"] == AL2023_GPU_AMI
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    data = resource("GpuLaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["ImageId"] == {"Ref": "GpuAmiId"}
    # AL2023's root device is /dev/xvda, as the block device mapping says
    assert [m["DeviceName"] for m in data["BlockDeviceMappings"]] == ["/dev/xvda"]


def shim(path: Path, log: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/bash\necho "$(basename "$0") $*" >> {log}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def run_user_data(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path, list[str]]:
    """The launch template's user data, as EC2 runs it, with its paths moved under ``tmp_path``."""
    sub = resource("GpuLaunchTemplate")["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"][
        "Fn::Sub"
    ]
    # CloudFormation's Fn::Sub: ${GpuCluster} is the cluster's name, ${!x} is a literal ${x}
    script = sub.replace("${GpuCluster}", "dynamo-gpu").replace("${!", "${")
    assert "${" not in script.replace("${aws:InstanceId}", "")
    root = tmp_path / "root"
    (root / "etc/ecs").mkdir(parents=True)
    script = script.replace(" /etc/", f" {root}/etc/").replace("/opt/aws/", f"{root}/opt/aws/")
    log = tmp_path / "calls.log"
    log.touch()
    shim(tmp_path / "bin/dnf", log)
    shim(root / "opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl", log)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=False)
    return done, root, log.read_text().splitlines()


def test_the_user_data_configures_the_ecs_agent_and_the_gpu_metrics(tmp_path: Path) -> None:
    # When the user data runs (dnf and the agent's control script stand in for the real ones)
    done, root, calls = run_user_data(tmp_path)
    # Then it succeeds
    assert done.returncode == 0, done.stderr
    # and the ECS agent joins the GPU cluster with GPU support and the memory reserve the task
    # sizes count on
    lines = (root / "etc/ecs/ecs.config").read_text().split()
    settings = dict(line.split("=", 1) for line in lines)
    assert settings == {
        "ECS_CLUSTER": "dynamo-gpu",
        "ECS_ENABLE_GPU_SUPPORT": "true",
        "ECS_ENABLE_CONTAINER_METADATA": "true",
        "ECS_RESERVED_MEMORY": str(capacity.ECS_RESERVED_MEMORY_MIB),
    }
    # and the CloudWatch agent is installed with AL2023's package manager and started with a
    # config whose NVIDIA collector publishes GPU utilization per instance
    config_path = root / "opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
    assert calls == [
        "dnf install -y amazon-cloudwatch-agent",
        f"amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:{config_path}",
    ]
    agent = json.loads(config_path.read_text())
    metrics = agent["metrics"]
    assert metrics["namespace"] == "CWAgent"
    assert metrics["append_dimensions"] == {"InstanceId": "${aws:InstanceId}"}
    assert metrics["aggregation_dimensions"] == [["InstanceId"]]
    assert "utilization_gpu" in metrics["metrics_collected"]["nvidia_gpu"]["measurement"]


def test_the_instance_types_on_offer_are_the_ones_the_operator_can_size() -> None:
    parameter = load_template()["Parameters"]["GpuInstanceType"]
    assert set(parameter["AllowedValues"]) == set(capacity.INSTANCE_TYPES)
    assert parameter["Default"] in capacity.INSTANCE_TYPES
    # The bootstrap sizes the tasks for the stack's type; the scaler's budget counts its GPUs
    assert resource("GpuServices")["Properties"]["InstanceType"] == {"Ref": "GpuInstanceType"}
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DYNAMO_ECS_GPU_INSTANCE_TYPE"] == {"Ref": "GpuInstanceType"}
