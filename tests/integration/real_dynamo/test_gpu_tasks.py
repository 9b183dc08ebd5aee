"""What the real Dynamo 1.6.1 image would refuse fails here too: a ``cd`` into a path the
image's release does not have, a flag the release removed.

That the default GPU task definitions serve, disaggregated across two hosts, is shown in
test_cross_host.py (with the ports the template opens).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest

from devtools.local_ecs.client import chat
from devtools.local_ecs.deployment import MODEL, local_deployment
from devtools.services import MotoServer
from dynamo_ecs.specs import load_default_spec

pytestmark = pytest.mark.xdist_group("real_dynamo")  # one real deployment at a time


def test_an_image_without_the_directory_its_command_enters_never_serves(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    # Given the 0.6.1 image paired with `cd examples/backends/vllm`, a path 0.6.x does not have
    spec = load_default_spec("frontend")
    container = spec["containerDefinitions"][0]
    container["image"] = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.6.1"
    container["entryPoint"] = ["sh", "-c"]
    container["command"] = [
        "cd examples/backends/vllm && python -m dynamo.frontend --router-mode kv & "
        "python3 -m dynamo.vllm --model Qwen/Qwen3-0.6B --enforce-eager"
    ]
    with local_deployment(tmp_path, specs={"frontend": spec}) as deployment:
        url = deployment.frontend_url()
        # When we wait for the frontend
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            deployment.runner.tick()
            time.sleep(0.5)
        # Then nothing ever answers on :8000 (the `cd` failed, so the frontend never started)
        assert chat(url, MODEL, timeout_s=2).status == 0
        log = "\n".join(
            s.logs.get("dynamo-vllm-frontend", "") for s in deployment.runner.stopped if s.role == "frontend"
        ) + "\n".join(
            t.local.logs().get("dynamo-vllm-frontend", "") for t in deployment.runner.running("frontend")
        )
        assert "examples/backends/vllm" in log and ("can't cd" in log or "No such file" in log)


def test_a_flag_the_release_removed_stops_the_task_with_the_reason(
    aws_env: MotoServer, tmp_path: Path
) -> None:
    # Given a prefill spec that still says --is-prefill-worker, on a 1.6.1 image
    spec = copy.deepcopy(load_default_spec("prefill"))
    container = spec["containerDefinitions"][0]
    container["command"] = [
        container["command"][0].replace("--disaggregation-mode prefill", "--is-prefill-worker")
    ]
    with local_deployment(tmp_path, specs={"prefill": spec}) as deployment:
        deployment.runner.tick()
        # Then the task stops, its stopped reason naming the flag and the fix
        reasons = [s.reason for s in deployment.runner.stopped if s.role == "prefill"]
        assert reasons, "the prefill task should have stopped"
        assert "--is-prefill-worker does not exist on Dynamo 1.6" in reasons[0]
        assert "--disaggregation-mode prefill" in reasons[0]
