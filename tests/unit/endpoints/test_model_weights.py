"""Model weights from the instance's root volume: the rendered specs, their checks, the redeploy refusal."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from devtools.template import sample_gpu_services_properties
from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.dynamo_release import engine_commands, flag_value
from dynamo_ecs.endpoints.gpu_services import GpuServicesProperties, checked_specs, parse_properties
from dynamo_ecs.endpoints.model_weights import (
    CONTAINER_PATH,
    HOST_DIR_PATTERN,
    VOLUME_NAME,
    served_models,
)
from dynamo_ecs.endpoints.redeploy import new_specs, parse_payload
from dynamo_ecs.endpoints.spec_validation import spec_problems
from dynamo_ecs.endpoints.specs_store import spec_record_name
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.specs import load_default_spec
from dynamo_ecs.state import Record

MODEL = "Qwen/Qwen3-0.6B"
WEIGHTS_DIR = "/var/lib/dynamo-ecs/model/my-models/hf/Qwen3-0.6B"


def props(**extra: str) -> GpuServicesProperties:
    return parse_properties(sample_gpu_services_properties(**extra))


def engine_args(spec: dict[str, Any]) -> list[str]:
    container = spec["containerDefinitions"][0]
    [args] = engine_commands([*container["entryPoint"], *container["command"]])
    return args


def test_without_the_parameter_the_specs_download_the_model_as_before() -> None:
    specs = checked_specs(props(), DeploymentConfig())
    for spec in specs.values():
        assert "volumes" not in spec and "mountPoints" not in spec["containerDefinitions"][0]
        assert flag_value(engine_args(spec), "--model") == MODEL
        assert flag_value(engine_args(spec), "--served-model-name") is None


def test_with_the_weights_dir_both_tasks_mount_it_read_only_and_serve_the_model_id() -> None:
    # Given the custom resource's ModelWeightsDir (template.yaml, with ModelWeightsS3Uri)
    specs = checked_specs(props(ModelWeightsDir=WEIGHTS_DIR), DeploymentConfig())
    for role, spec in specs.items():
        # Then the task has the instance directory as a host volume ...
        assert spec["volumes"] == [{"name": VOLUME_NAME, "host": {"sourcePath": WEIGHTS_DIR}}], role
        # ... mounted read-only where the engine loads the model from, served as ModelId
        container = spec["containerDefinitions"][0]
        assert container["mountPoints"] == [
            {"sourceVolume": VOLUME_NAME, "containerPath": CONTAINER_PATH, "readOnly": True}
        ]
        args = engine_args(spec)
        assert flag_value(args, "--model") == CONTAINER_PATH
        assert flag_value(args, "--served-model-name") == MODEL
        assert served_models(spec) == {MODEL}
        # and every other flag is the default spec's
        default = engine_args(load_default_spec(role))
        assert [a for a in args if a not in (CONTAINER_PATH, "--served-model-name", MODEL)] == [
            a for a in default if a != MODEL
        ]


@pytest.mark.parametrize(
    "directory",
    [
        "/",
        "/var/lib/dynamo-ecs/model",
        "/var/lib/dynamo-ecs/model/b/../etc",
        "/etc/my-bucket/p",
        "relative/x",
    ],
)
def test_the_custom_resource_refuses_any_other_directory(directory: str) -> None:
    with pytest.raises(InvalidInputError, match="ModelWeightsDir"):
        props(ModelWeightsDir=directory)


def test_the_directory_pattern_is_the_templates_uri_under_the_host_root() -> None:
    # template.yaml's ModelWeightsS3Uri pattern, its s3:// the host root (the user data's naming)
    from devtools.template import load_template

    uri_pattern = load_template()["Parameters"]["ModelWeightsS3Uri"]["AllowedPattern"]
    inner = uri_pattern.removeprefix("^(s3://").removesuffix(")?$").replace("(/", "(?:/")
    assert f"^/var/lib/dynamo-ecs/model/{inner}$" == HOST_DIR_PATTERN


def weights_spec(role: ServiceRole = "frontend") -> dict[str, Any]:
    return checked_specs(props(ModelWeightsDir=WEIGHTS_DIR), DeploymentConfig())[role]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s["volumes"][0]["host"].update(sourcePath="/"), "$.volumes[0].host.sourcePath"),
        (
            lambda s: s["volumes"][0]["host"].update(sourcePath="/var/run/docker.sock"),
            "$.volumes[0].host.sourcePath",
        ),
        (
            lambda s: s["containerDefinitions"][0]["mountPoints"][0].update(readOnly=False),
            "$.containerDefinitions[0].mountPoints[0].readOnly",
        ),
        (
            lambda s: s["containerDefinitions"][0]["mountPoints"][0].pop("readOnly"),
            "$.containerDefinitions[0].mountPoints[0].readOnly",
        ),
        (
            lambda s: s["volumes"].append(
                {
                    "name": "disk",
                    "dockerVolumeConfiguration": {
                        "driver": "local",
                        "driverOpts": {"type": "none", "o": "bind", "device": "/"},
                    },
                }
            ),
            "$.volumes[1].dockerVolumeConfiguration.driverOpts.device",
        ),
    ],
    ids=["root", "docker socket", "writable", "readOnly unset", "bind through a docker volume"],
)
def test_a_spec_may_mount_no_other_host_path_and_only_read_only(change: Any, named: str) -> None:
    spec = weights_spec()
    assert spec_problems(spec) == []
    change(spec)
    problems = spec_problems(spec)
    assert any(p.startswith(named) for p in problems), problems


# -- the redeploy refusal ---------------------------------------------------------------------


@dataclass
class FakeStore:
    records: dict[str, Record] = field(default_factory=dict)

    def get_record(self, name: str) -> Record:
        return self.records.get(name, Record({}, 0))


@dataclass
class FakeReconciler:
    store: FakeStore
    config: DeploymentConfig = field(default_factory=DeploymentConfig)


def reconciler_with_weights() -> FakeReconciler:
    """The stored specs as the bootstrap leaves them with ModelWeightsS3Uri set."""
    specs = checked_specs(props(ModelWeightsDir=WEIGHTS_DIR), DeploymentConfig())
    return FakeReconciler(FakeStore({spec_record_name(r): Record({"spec": s}, 1) for r, s in specs.items()}))


def refusal(event: dict[str, Any], reconciler: FakeReconciler) -> str:
    with pytest.raises(InvalidInputError) as refused:
        new_specs(parse_payload(event), reconciler)  # type: ignore[arg-type]
    return str(refused.value)


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_new_model_is_refused_while_the_weights_come_from_s3(dry_run: bool) -> None:
    reconciler = reconciler_with_weights()
    before = copy.deepcopy(reconciler.store.records)
    message = refusal({"model": "Qwen/Qwen3-8B", "dry_run": dry_run}, reconciler)
    # The error names the field, what it would do and the fix
    assert message.startswith("model: ")
    assert "ModelWeightsS3Uri" in message and "sam deploy" in message and "Qwen/Qwen3-8B" in message
    assert reconciler.store.records == before


def test_a_command_or_spec_serving_another_name_from_the_mount_is_refused() -> None:
    reconciler = reconciler_with_weights()
    stored = reconciler.store.records[spec_record_name("prefill")].data["spec"]
    renamed = copy.deepcopy(stored)
    command = renamed["containerDefinitions"][0]["command"]
    command[0] = command[0].replace(f"--served-model-name {MODEL}", "--served-model-name Qwen/Qwen3-8B")
    message = refusal({"services": ["prefill"], "command": command}, reconciler)
    assert message.startswith("command: ")
    message = refusal({"services": ["prefill"], "spec": {"prefill": renamed}}, reconciler)
    assert message.startswith("spec.prefill: ")


def test_the_same_model_a_new_image_or_hub_weights_stay_allowed() -> None:
    reconciler = reconciler_with_weights()
    # The same model: nothing to change, the engine still loads the mounted files
    same = new_specs(parse_payload({"model": MODEL}), reconciler)  # type: ignore[arg-type]
    assert all(served_models(s) == {MODEL} for s in same.values())
    # A new image keeps the weights
    image = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0"
    imaged = new_specs(parse_payload({"image": image}), reconciler)  # type: ignore[arg-type]
    assert all(served_models(s) == {MODEL} for s in imaged.values())
    # A whole spec without the mount (the model from the hub again) is the user's explicit choice
    hub = {"prefill": copy.deepcopy(load_default_spec("prefill"))}
    hub["prefill"].pop("family")  # the example file's own family is not the stack's: left out
    assert new_specs(parse_payload({"services": ["prefill"], "spec": hub}), reconciler)  # type: ignore[arg-type]
    # Without weights, a new model is the redeploy it always was
    plain = FakeReconciler(FakeStore())
    changed = new_specs(parse_payload({"model": "Qwen/Qwen3-8B"}), plain)  # type: ignore[arg-type]
    assert all(flag_value(engine_args(s), "--model") == "Qwen/Qwen3-8B" for s in changed.values())
