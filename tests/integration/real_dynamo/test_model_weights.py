"""Model weights from S3 (ModelWeightsS3Uri), with the real programs end to end.

The GPU instance's user data function that copies the weights (`sync_model_weights`, taken
from template.yaml as CloudFormation renders it) runs with bash and the real AWS CLI against
moto's S3, into each GPU instance's directory; the GPU tasks are the ones the operator
renders with the stack's ``ModelWeightsDir`` (`spec_from_properties`); the real Dynamo 1.6.1
frontend and mocker (in place of vLLM) load the tokenizer and config from the mounted copy
and serve them as ``ModelId``. The instance runs AWS CLI v2 and this test v1 (PyPI has no
v2): ``s3 sync`` and the flags the function uses are the same in both (docs/real-dynamo.md).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from devtools.local_ecs.client import chat, first_success, get
from devtools.local_ecs.containers import instance_disk, on_disk
from devtools.local_ecs.deployment import MODEL, LocalDeployment, local_deployment
from devtools.local_ecs.programs import ROOT, TINY_MODEL
from devtools.services import MotoServer, aws_test_environment
from devtools.template import gpu_user_data, sample_gpu_services_properties, shell_function
from dynamo_ecs import aws
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig
from dynamo_ecs.endpoints.gpu_services import parse_properties, spec_from_properties
from dynamo_ecs.endpoints.model_weights import CONTAINER_PATH, HOST_ROOT

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time

AWS_CLI = ROOT / ".tools" / "awscli" / "bin" / "aws"
BUCKET, PREFIX = "my-models", "hf/Qwen3-0.6B"
URI = f"s3://{BUCKET}/{PREFIX}"
WEIGHTS_DIR = f"{HOST_ROOT}/{BUCKET}/{PREFIX}"  # what the stack hands the operator (tests/template)
GPU_INSTANCES = 2  # one frontend task, one prefill task


def sync_function() -> str:
    """The user data's ``sync_model_weights``, exactly as the instance runs it."""
    script = gpu_user_data({"ModelWeightsS3Uri": URI, "AWS::Region": "us-east-1"})
    return shell_function(script, "sync_model_weights")


@dataclass(frozen=True)
class Synced:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_sync(uri: str, directory: Path, moto_url: str, pause_s: str = "0") -> Synced:
    """``sync_model_weights URI DIR`` with bash and the real AWS CLI, against moto's S3."""
    if not AWS_CLI.exists():
        pytest.fail(f"the AWS CLI is not installed at {AWS_CLI}: run `make setup`")
    env = {
        **aws_test_environment(moto_url),
        "PATH": f"{AWS_CLI.parent}:/usr/bin:/bin",
        "HOME": str(directory.parent),
        "SYNC_PAUSE_S": pause_s,
    }
    script = f'{sync_function()}\nsync_model_weights "$1" "$2"\n'
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-c", script, "user-data", uri, str(directory)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return Synced(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def moto_env(moto: MotoServer) -> Iterator[MotoServer]:
    """moto for the module, with the tiny model's files in S3 as `hf download --local-dir` leaves a model."""
    moto.reset()
    saved = dict(os.environ)
    os.environ.update(aws_test_environment(moto.url))
    aws.reset_clients()
    try:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for path in sorted(TINY_MODEL.iterdir()):
            s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{path.name}", Body=path.read_bytes())
        yield moto
    finally:
        os.environ.clear()
        os.environ.update(saved)
        aws.reset_clients()


def weights_specs() -> dict[str, dict[str, Any]]:
    """Both GPU task definitions as the operator renders them for a stack with ModelWeightsS3Uri."""
    props = parse_properties(sample_gpu_services_properties(Model=MODEL, ModelWeightsDir=WEIGHTS_DIR))
    return {role: spec_from_properties(role, props, DeploymentConfig()) for role in SERVICE_ROLES}


def test_a_task_without_the_mount_never_serves(moto_env: MotoServer, tmp_path: Path) -> None:
    # (before the module's deployment starts: two deployments would share the instances' addresses)
    # Given the prefill spec with its mount point removed (the weights were copied all the same)
    specs = weights_specs()
    del specs["prefill"]["containerDefinitions"][0]["mountPoints"]
    disk = instance_disk(tmp_path, 0)
    assert run_sync(URI, on_disk(disk, WEIGHTS_DIR), moto_env.url).returncode == 0
    with local_deployment(
        tmp_path, gpu_instances=1, desired={"frontend": 0, "prefill": 1}, specs=specs
    ) as deployment:
        # Then the worker finds no model at /models/weights and its task stops, as on ECS
        deadline = time.monotonic() + 60
        while not deployment.runner.stopped and time.monotonic() < deadline:
            deployment.runner.tick()
            time.sleep(0.5)
        assert deployment.runner.stopped, "the prefill task without the mount kept running"
        stopped = deployment.runner.stopped[0]
        assert stopped.role == "prefill" and "Essential container in task exited" in stopped.reason
        assert f"'{CONTAINER_PATH}' not found" in "\n".join(stopped.logs.values())


@dataclass
class Served:
    deployment: LocalDeployment
    syncs: list[Synced]
    again: Synced
    disks: list[Path]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, moto_env: MotoServer) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("weights")
    disks = [instance_disk(workdir, index) for index in range(GPU_INSTANCES)]
    # Each instance's first boot copies the prefix to its root volume (then a second boot's copy)
    syncs = [run_sync(URI, on_disk(disk, WEIGHTS_DIR), moto_env.url) for disk in disks]
    again = run_sync(URI, on_disk(disks[0], WEIGHTS_DIR), moto_env.url)
    with local_deployment(workdir, gpu_instances=GPU_INSTANCES, specs=weights_specs()) as deployment:
        assert first_success(deployment.frontend_url(), MODEL, 60, on_wait=deployment.runner.tick), (
            deployment.runner.stopped
        )
        yield Served(deployment, syncs, again, disks)


def test_the_user_data_copies_the_prefix_to_each_instance_once(served: Served) -> None:
    for sync, disk in zip(served.syncs, served.disks, strict=True):
        assert sync.returncode == 0, sync.stderr
        copy = on_disk(disk, WEIGHTS_DIR)
        # the model's files, byte for byte, and the marker the launch hook looks for
        assert files(copy) == files(TINY_MODEL)
        assert copy.with_name(copy.name + ".synced").is_file()
        assert sync.stdout == "" and sync.stderr == ""  # --only-show-errors
    # A second run finds nothing to copy and changes nothing
    assert served.again.returncode == 0, served.again.stderr
    assert files(on_disk(served.disks[0], WEIGHTS_DIR)) == files(TINY_MODEL)


def test_both_tasks_load_the_model_from_their_instances_copy_and_serve_it_as_the_model_id(
    served: Served,
) -> None:
    deployment = served.deployment
    for role in SERVICE_ROLES:
        [task] = deployment.runner.running(role)
        # The engine was handed the instance's copy (mounted at /models/weights), not the tiny model
        [container] = task.local.containers.values()
        script = " ".join(container.plan.argv)
        copy = on_disk(instance_disk(deployment.workdir, task.instance_index), WEIGHTS_DIR)
        assert f"--model-path {copy} --model-name {MODEL}" in script, script
        assert str(TINY_MODEL) not in script
        assert task.local.definition(container.plan.name)["mountPoints"][0]["containerPath"] == CONTAINER_PATH
    # The model is registered under ModelId: the load balancer's check and a request pass
    url = deployment.frontend_url()
    assert get(f"{url}/v1/models/{MODEL}")[0] == 200
    answer = chat(url, MODEL)
    assert answer.ok, answer.body


def test_a_missing_prefix_or_bucket_fails_after_three_tries(moto_env: MotoServer, tmp_path: Path) -> None:
    # An empty prefix: the CLI copies nothing and exits 0; without config.json it is no model
    missing = run_sync(f"s3://{BUCKET}/no/such/prefix", tmp_path / "a", moto_env.url)
    assert missing.returncode == 1
    assert missing.stderr.count("no config.json from") == 3
    assert not (tmp_path / "a.synced").exists()
    # No such bucket: the CLI itself fails, three times
    bucket = run_sync("s3://no-such-bucket/p", tmp_path / "b", moto_env.url)
    assert bucket.returncode == 1 and "NoSuchBucket" in bucket.stderr
    assert bucket.stderr.count("no config.json from") == 3
