"""The GPU instances: the AL2023 GPU AMI, user data that runs, task sizes that fit the instance type."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from devtools.template import gpu_user_data, load_template, resource
from dynamo_ecs import capacity

AL2023_GPU_AMI = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
NGC_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ngc-AbCdEf"


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


def fake_aws(path: Path, log: Path, secret: str) -> None:
    """``aws`` that logs its arguments and answers get-secret-value with ``secret``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'#!/bin/bash\necho "aws $*" >> {log}\n'
        f'if [ "$1 $2" = "secretsmanager get-secret-value" ]; then echo \'{secret}\'; fi\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


WEIGHTS_URI = "s3://my-models/hf/Qwen3-0.6B"


def run_user_data(
    tmp_path: Path, secret: str = "", weights_uri: str = "", aws_extra: str = ""
) -> tuple[subprocess.CompletedProcess[str], Path, list[str]]:
    """The launch template's user data, as EC2 runs it, with its paths moved under ``tmp_path``.

    ``aws_extra``: more lines for the fake ``aws`` (e.g. what its ``s3 sync`` writes).
    """
    # CloudFormation's Fn::Sub: ${GpuCluster} is the cluster's name, ${!x} is a literal ${x}
    script = gpu_user_data(
        {
            "GpuCluster": "dynamo-gpu",
            "DeploymentName": "dynamo",
            "AWS::Region": "us-east-1",
            "DynamoImage": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
            "NgcSecretArn": NGC_SECRET,
            "ModelWeightsS3Uri": weights_uri,
        }
    )
    literal = ("${aws:InstanceId}", "${image%%/*}", "${weights_uri#s3://}", "${SYNC_PAUSE_S:-20}")
    rest = script
    for text in literal:
        rest = rest.replace(text, "")
    assert "${" not in rest
    root = tmp_path / "root"
    (root / "etc/ecs").mkdir(parents=True)
    script = script.replace(" /etc/", f" {root}/etc/").replace("/opt/aws/", f"{root}/opt/aws/")
    script = script.replace("/var/lib/cloud/", f"{root}/var/lib/cloud/")
    script = script.replace("/var/lib/dynamo-ecs/", f"{root}/var/lib/dynamo-ecs/")
    log = tmp_path / "calls.log"
    log.touch()
    for command in ("dnf", "curl", "docker", "sleep"):
        shim(tmp_path / f"bin/{command}", log)
    with (tmp_path / "bin/docker").open("a") as docker:
        docker.write('if [ "$1" = login ]; then cat > /dev/null; fi\n')  # reads the password
    fake_aws(tmp_path / "bin/aws", log, secret)
    with (tmp_path / "bin/aws").open("a") as aws:
        aws.write(aws_extra)
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
        # a warm-pool instance joins the cluster only once in service, and tasks start from
        # the image the first boot pulled
        "ECS_WARM_POOLS_CHECK": "true",
        "ECS_IMAGE_PULL_BEHAVIOR": "prefer-cached",
    }
    # and the CloudWatch agent is installed with AL2023's package manager and started with a
    # config whose NVIDIA collector publishes GPU utilization per instance
    config_path = root / "opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json"
    assert calls[:2] == [
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


LOGIN = '{"username": "$oauthtoken", "password": "nvapi-secret"}'
IMAGE = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1"


def test_the_first_boot_pulls_the_image_then_completes_the_launch_hook(tmp_path: Path) -> None:
    # When the user data runs with the NGC login in Secrets Manager (aws, docker, curl stand in)
    done, _, calls = run_user_data(tmp_path, secret=LOGIN)
    assert done.returncode == 0, done.stderr
    # Then it logs in to the image's registry with the password on stdin, pulls, logs out ...
    pulls = [c for c in calls if c.startswith(("aws secretsmanager", "docker"))]
    assert pulls == [
        f"aws secretsmanager get-secret-value --region us-east-1 --secret-id {NGC_SECRET} "
        "--query SecretString --output text",
        "docker login nvcr.io --username $oauthtoken --password-stdin",
        f"docker pull {IMAGE}",
        "docker logout nvcr.io",
    ]
    assert "nvapi-secret" not in "\n".join(calls)
    # ... and only then completes the group's launch hook for this instance
    hook = resource("GpuAutoScalingGroup")["Properties"]["LifecycleHookSpecificationList"]
    assert [(h["LifecycleHookName"], h["LifecycleTransition"], h["DefaultResult"]) for h in hook] == [
        ("dynamo-warm-up", "autoscaling:EC2_INSTANCE_LAUNCHING", "CONTINUE")
    ]
    assert calls[-1].startswith("aws autoscaling complete-lifecycle-action --region us-east-1 ")
    assert "--auto-scaling-group-name dynamo-gpu --lifecycle-hook-name dynamo-warm-up" in calls[-1]
    assert calls.index(f"docker pull {IMAGE}") < len(calls) - 1


def test_a_failed_pull_does_not_fail_the_boot_and_every_later_boot_completes_the_hook(tmp_path: Path) -> None:
    # When the secret cannot be read (the fake answers nothing)
    done, root, calls = run_user_data(tmp_path, secret="")
    # Then the boot goes on (the first task pulls the image instead) and the hook is completed
    assert done.returncode == 0, done.stderr
    assert f"pulling {IMAGE} failed" in done.stdout
    assert not any(c.startswith("docker pull") for c in calls)
    assert calls[-1].startswith("aws autoscaling complete-lifecycle-action")
    # And the per-boot script completes it again on a later boot (a warm start waits on it)
    per_boot = root / "var/lib/cloud/scripts/per-boot/dynamo-launch-hook.sh"
    assert os.access(per_boot, os.X_OK)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    again = subprocess.run(["bash", str(per_boot)], capture_output=True, text=True, env=env, check=False)
    assert again.returncode == 0
    assert (tmp_path / "calls.log").read_text().splitlines()[-1] == calls[-1]


def hook_results(calls: list[str]) -> list[str]:
    return [
        c.split("--lifecycle-action-result ")[1].split()[0] for c in calls if "complete-lifecycle-action" in c
    ]


# What the fake aws's `s3 sync SRC DIR ...` writes: the model's files, as the real one would.
SYNC_WRITES_THE_MODEL = 'if [ "$1 $2" = "s3 sync" ]; then echo "{}" > "$4/config.json"; fi\n'


def test_with_model_weights_the_first_boot_pulls_then_syncs_then_completes_the_hook(tmp_path: Path) -> None:
    # When the user data runs with ModelWeightsS3Uri and a sync that brings config.json
    done, root, calls = run_user_data(
        tmp_path, secret=LOGIN, weights_uri=WEIGHTS_URI, aws_extra=SYNC_WRITES_THE_MODEL
    )
    assert done.returncode == 0, done.stderr
    # Then the prefix is synced once, after the image pull, into the directory named after the URI ...
    directory = root / "var/lib/dynamo-ecs/model/my-models/hf/Qwen3-0.6B"
    syncs = [c for c in calls if c.startswith("aws s3 ")]
    assert syncs == [f"aws s3 sync {WEIGHTS_URI} {directory} --only-show-errors --region us-east-1"]
    assert calls.index(f"docker pull {IMAGE}") < calls.index(syncs[0])
    # ... the marker says it is complete, and only then is the hook completed, to go on
    assert (directory / "config.json").exists() and directory.with_name("Qwen3-0.6B.synced").exists()
    assert hook_results(calls) == ["CONTINUE"] and calls[-1].startswith("aws autoscaling")


def test_weights_that_never_arrive_abandon_the_instance_after_three_tries(tmp_path: Path) -> None:
    # When every sync succeeds but brings no config.json (an empty or wrong prefix)
    done, root, calls = run_user_data(tmp_path, secret=LOGIN, weights_uri=WEIGHTS_URI)
    assert done.returncode == 0, done.stderr
    # Then it tries three times, pausing longer each time ...
    assert len([c for c in calls if c.startswith("aws s3 sync")]) == 3
    assert [c for c in calls if c.startswith("sleep")] == ["sleep 20", "sleep 40"]
    assert "the model weights did not arrive; abandoning this instance" in done.stdout
    # ... and abandons the launch: the group terminates the instance and launches another
    assert hook_results(calls) == ["ABANDON"]
    # and so does every later boot of it (a warm start with no complete copy)
    per_boot = root / "var/lib/cloud/scripts/per-boot/dynamo-launch-hook.sh"
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    subprocess.run(["bash", str(per_boot)], capture_output=True, text=True, env=env, check=True)
    assert hook_results((tmp_path / "calls.log").read_text().splitlines()) == ["ABANDON", "ABANDON"]


def test_without_model_weights_nothing_is_synced(tmp_path: Path) -> None:
    done, root, calls = run_user_data(tmp_path, secret=LOGIN)
    assert done.returncode == 0, done.stderr
    assert not any(c.startswith("aws s3") for c in calls)
    assert not (root / "var/lib/dynamo-ecs").exists()
    assert hook_results(calls) == ["CONTINUE"]
