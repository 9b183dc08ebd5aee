"""Volumes of a local task: task volumes are the task's, host volumes the instance's disk."""

from __future__ import annotations

from pathlib import Path

from devtools.local_ecs.containers import LocalTaskLayout, instance_disk
from devtools.local_ecs.programs import Toolbox

CONTAINER = {
    "name": "dynamo-prefill",
    "image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
    "entryPoint": ["bash", "-c"],
    "command": ["python3 -m dynamo.vllm --model /models/weights --served-model-name Qwen/Qwen3-0.6B"],
    "mountPoints": [
        {"sourceVolume": "model-weights", "containerPath": "/models/weights", "readOnly": True},
        {"sourceVolume": "scratch", "containerPath": "/scratch"},
    ],
}
VOLUMES = [
    {"name": "model-weights", "host": {"sourcePath": "/var/lib/dynamo-ecs/model/b/p"}},
    {"name": "scratch", "host": {}},
]


def layout(root: Path, disk: Path) -> LocalTaskLayout:
    task = LocalTaskLayout(
        root=root, address="127.32.1.5", toolbox=Toolbox(), model_dir=root / "tiny", instance_disk=disk
    )
    task.use_volumes({"volumes": VOLUMES})
    return task


def test_a_host_volume_is_the_instances_directory_shared_by_its_tasks(tmp_path: Path) -> None:
    instance = instance_disk(tmp_path, 0)
    disk = instance / "var/lib/dynamo-ecs/model/b/p"
    # Given two tasks on one instance
    first, second = layout(tmp_path / "task-1", instance), layout(tmp_path / "task-2", instance)
    # Then the host volume is the same directory of the instance for both
    assert first.volume_dir("model-weights") == second.volume_dir("model-weights") == disk
    # and a volume without a host path is each task's own
    assert first.volume_dir("scratch") == tmp_path / "task-1/volumes/scratch"
    # and the engine's --model is mapped to the instance's directory
    script = first.plan(CONTAINER).argv[2]
    assert f"--model-path {disk} --model-name Qwen/Qwen3-0.6B" in script
