"""Spec validation: the API's input shape (botocore, offline), ECS's rules, our placeholders, model ids."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dynamo_ecs.endpoints.spec_validation import (
    InvalidSpecError,
    check_model_id,
    spec_problems,
    validate_spec,
)
from dynamo_ecs.endpoints.specs_store import with_model
from dynamo_ecs.specs import load_default_spec


def spec(role: str = "frontend") -> dict[str, Any]:
    return copy.deepcopy(load_default_spec(role))  # type: ignore[arg-type]


def container(s: dict[str, Any]) -> dict[str, Any]:
    return s["containerDefinitions"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("role", ["frontend", "prefill"])
def test_the_default_specs_are_good(role: str) -> None:
    assert spec_problems(spec(role)) == []


def _set(path: str, value: Any) -> dict[str, Any]:
    s = spec()
    node: Any = s
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is _REMOVE:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return s


_REMOVE = object()


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("cpu", "lots", "$.cpu"),
        ("cpu", "-1", "$.cpu"),
        ("cpu", "64", "$.cpu"),
        ("memory", "-512", "$.memory"),
        ("memory", "big", "$.memory"),
        ("containerDefinitions.0.resourceRequirements.0.value", "two", "resourceRequirements[0].value"),
        ("containerDefinitions.0.resourceRequirements.0.value", "-1", "resourceRequirements[0].value"),
        ("containerDefinitions.0.resourceRequirements.0.value", "0", "resourceRequirements[0].value"),
        ("containerDefinitions.0.resourceRequirements.0.value", 2, "resourceRequirements[0].value"),
        ("containerDefinitions.0.image", "nvcr.io/nvidia/vllm runtime:1", "containerDefinitions[0].image"),
        ("containerDefinitions.0.image", _REMOVE, "containerDefinitions[0].image"),
        ("containerDefinitions.0.essential", False, "essential"),
        ("containerDefinitions.0.cpu", "2048", "containerDefinitions[0].cpu"),
        ("containerDefinitions.0.memory", True, "containerDefinitions[0].memory"),
        ("containerDefinitions.0.memory", 4, "containerDefinitions[0].memory"),
        ("containerDefinitions.0.imgae", "x", "did you mean 'image'"),
        ("containerDefinitions.0.command.0", "python -m x --host IP_ADDRESS_x", "command[0]"),
        ("containerDefinitions.0.environment", [], "ETCD_ENDPOINTS"),
        ("containerDefinitions.0.portMappings.0.hostPort", 8080, "hostPort"),
        ("containerDefinitions", [1], "containerDefinitions[0]"),
        ("containerDefinitions", [], "containerDefinitions"),
        ("networkMode", "hots", "$.networkMode"),
        ("unknownField", 1, "$.unknownField"),
        ("family", _REMOVE, "$.family"),
    ],
)
def test_a_bad_field_is_named_with_its_fix(path: str, value: Any, named: str) -> None:
    # Given the default spec with one field broken
    broken = _set(path, value)
    # When it is checked, Then the problem names the field's path, and the message says what to do
    with pytest.raises(InvalidSpecError) as caught:
        validate_spec(broken, "spec.frontend")
    message = str(caught.value)
    assert named.replace("$", "spec.frontend") in message, message
    assert all(";" in p or "placeholders" in p for p in caught.value.problems), caught.value.problems


def test_every_problem_is_reported_at_once() -> None:
    broken = spec()
    broken["cpu"] = "lots"
    container(broken)["image"] = "Bad Image"
    container(broken)["resourceRequirements"][0]["value"] = "two"
    problems = spec_problems(broken)
    assert [p.split(":")[0] for p in problems] == [
        "$.cpu",
        "$.containerDefinitions[0].image",
        "$.containerDefinitions[0].resourceRequirements[0].value",
    ]


@pytest.mark.parametrize(("cpu", "memory"), [("1 vCPU", "2 GB"), ("1024", "2048"), ("0.5 vcpu", "40960")])
def test_task_sizes_in_units_or_vcpu_and_gb(cpu: str, memory: str) -> None:
    good = spec()
    good["cpu"], good["memory"] = cpu, memory
    assert spec_problems(good) == []


def test_fargate_sizes_are_its_combinations_and_it_has_no_gpus() -> None:
    fargate = spec()
    fargate["requiresCompatibilities"] = ["FARGATE"]
    fargate["networkMode"] = "awsvpc"
    fargate["cpu"], fargate["memory"] = "1024", "40960"
    problems = spec_problems(fargate)
    assert any(p.startswith("$.memory: 40960 MiB with 1024 cpu units") for p in problems)
    assert any("Fargate has no GPUs" in p for p in problems)


def test_containers_need_memory_when_the_task_has_none() -> None:
    s = spec()
    del s["memory"]
    assert any(p.startswith("$.containerDefinitions[0].memory") for p in spec_problems(s))
    container(s)["memory"] = 40960
    assert spec_problems(s) == []


def test_further_checks_plug_in() -> None:
    def needs_docker_labels(rendered: dict[str, Any]) -> Any:
        for i, c in enumerate(rendered["containerDefinitions"]):
            if "dockerLabels" not in c:
                yield f"$.containerDefinitions[{i}].dockerLabels: missing; set it"

    assert spec_problems(spec("prefill")) == []
    from dynamo_ecs.endpoints.spec_validation import DEFAULT_CHECKS

    [problem] = spec_problems(spec("prefill"), (*DEFAULT_CHECKS, needs_docker_labels))
    assert problem.startswith("$.containerDefinitions[0].dockerLabels")


def test_a_flag_the_images_release_removed_is_refused_with_the_fix() -> None:
    old = spec("prefill")
    command = container(old)["command"]
    command[0] = command[0].replace("--disaggregation-mode prefill", "--is-prefill-worker")
    assert spec_problems(old) == [
        "$.containerDefinitions[0].command: --is-prefill-worker does not exist on Dynamo 1.6: "
        "use --disaggregation-mode prefill"
    ]


def test_a_placeholder_tag_is_refused() -> None:
    s = spec("frontend")
    container(s)["image"] = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:my-tag"
    [problem] = spec_problems(s)
    assert (
        problem.startswith("$.containerDefinitions[0].image:")
        and "'my-tag' is not a Dynamo release" in problem
    )


def test_an_old_image_with_a_new_path_and_flags_is_refused() -> None:
    # the pairing that never served: the 0.6.1 image, `cd examples/backends/vllm`, 1.x flags
    s = spec("frontend")
    container(s)["image"] = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.6.1"
    container(s)["command"] = [
        "cd examples/backends/vllm && python -m dynamo.frontend & python3 -m dynamo.vllm --model m "
        "--disaggregation-mode decode"
    ]
    problems = spec_problems(s)
    assert any("cd examples/backends/vllm: the Dynamo 0.6 image has no such directory" in p for p in problems)
    assert any("--disaggregation-mode does not exist on Dynamo 0.6" in p for p in problems)


def test_a_disaggregated_worker_without_kv_transfer_config_is_refused_on_1_x() -> None:
    s = spec("prefill")
    command = container(s)["command"]
    command[0] = command[0].split(" --kv-transfer-config")[0] + " & wait -n"
    [problem] = spec_problems(s)
    assert "needs --kv-transfer-config" in problem


def test_a_spec_that_is_not_an_object_or_too_big() -> None:
    assert spec_problems([1]) == ["$: an array where a task definition object is required"]
    huge = spec()
    container(huge)["command"] = ["x" * 70_000]
    assert "bytes as JSON" in spec_problems(huge)[0]


@pytest.mark.parametrize(
    "good", ["Qwen/Qwen3-0.6B", "gpt2", "meta-llama/Llama-3.1-8B-Instruct", "/models/qwen_3"]
)
def test_model_ids_as_the_hub_accepts_them_or_local_paths(good: str) -> None:
    assert check_model_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "Qwen/Qwen3;reboot",
        "$(touch X)",
        "`id`",
        "a && b",
        "a b",
        "org/name/extra",
        "-leading",
        "org/name.",
        "a--b",
        "a..b",
        "x" * 97,
        "/models/../etc",
        "/models/with space",
        "relative/../path",
        "",
    ],
)
def test_shell_syntax_and_bad_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"repo id|local model path"):
        check_model_id(bad)


SHELL = shutil.which("bash") or "/bin/bash"  # the default specs run under bash -c


@pytest.mark.parametrize(
    "model", ["$(touch PROBE)", "`touch PROBE`", "x; touch PROBE", "x && touch PROBE", "x'y"]
)
def test_a_model_that_slipped_past_validation_is_one_inert_argument(tmp_path: Path, model: str) -> None:
    # Given the frontend's command with a hostile model put in (as if validation were skipped)
    s = with_model(spec(), model)
    entry, flag = container(s)["entryPoint"]
    assert (entry, flag) == ("bash", "-c")
    command = container(s)["command"][0]
    # And stand-ins for python/python3 that print their arguments, in the directory it cds to
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "python3"):
        stub = bin_dir / name
        stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" >> "$ARGS_LOG"\n')
        stub.chmod(0o755)
    (tmp_path / "examples" / "backends" / "vllm").mkdir(parents=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ARGS_LOG": str(tmp_path / "args.log")}
    # When a real bash parses it and runs it
    assert subprocess.run([SHELL, "-n", "-c", command], check=False).returncode == 0
    subprocess.run([SHELL, "-c", command + "; wait"], cwd=tmp_path, env=env, check=True, timeout=30)
    # Then nothing was executed from the model, and the worker got it as one literal argument
    assert not (tmp_path / "PROBE").exists()
    assert not (tmp_path / "examples" / "backends" / "vllm" / "PROBE").exists()
    arguments = (tmp_path / "args.log").read_text().splitlines()
    assert arguments[arguments.index("--model") + 1] == model


def test_a_checked_model_id_needs_no_quotes() -> None:
    command = container(with_model(spec(), "Qwen/Qwen3-8B"))["command"][0]
    assert "--model Qwen/Qwen3-8B --disaggregation-mode decode" in command
    again = container(with_model(with_model(spec(), "x'y"), "Qwen/Qwen3-8B"))["command"][0]
    assert "--model Qwen/Qwen3-8B --disaggregation-mode decode" in again


def test_a_stop_timeout_ecs_would_refuse_is_named_with_its_range() -> None:
    assert container(spec("frontend"))["stopTimeout"] == 120  # in-flight requests get that long
    long = spec("frontend")
    container(long)["stopTimeout"] = 300
    assert spec_problems(long) == [
        "$.containerDefinitions[0].stopTimeout: 300 s; ECS takes 1..120 s "
        "(the time in-flight requests get after SIGTERM): set one in that range"
    ]
