"""``dynamo-ecs redeploy``: the stack's Redeploy function through Lambda Invoke, a dry run first.

Invoke goes to a loopback stand-in that runs the real redeploy handler in this process against
moto (moto runs function code only in Docker); the command itself runs in its own process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.aws_stand_ins import lambda_invoke, stand_in
from devtools.handlers import load_handler_module
from dynamo_ecs import aws
from tests.integration.cli.conftest import CONFIG, REDEPLOY_FUNCTION, Deployed, as_json, run_cli

NEW_IMAGE = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.0"


@pytest.fixture
def invoked(deployed: Deployed) -> Iterator[list[dict[str, Any]]]:
    """The stack's Redeploy function behind Lambda Invoke; the payloads it was invoked with."""
    handler = load_handler_module("redeploy")
    calls: list[dict[str, Any]] = []
    functions = {REDEPLOY_FUNCTION: handler.lambda_handler}
    with stand_in(lambda_invoke(functions, calls)) as url:
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = url
        try:
            yield calls
        finally:
            del os.environ["AWS_ENDPOINT_URL_LAMBDA"]


def image_of(role: str) -> str:
    ecs = aws.client("ecs")
    service = ecs.describe_services(cluster=CONFIG.gpu_cluster, services=[CONFIG.service(role).service])  # type: ignore[arg-type]
    definition = ecs.describe_task_definition(taskDefinition=service["services"][0]["taskDefinition"])
    return str(definition["taskDefinition"]["containerDefinitions"][0]["image"])


def test_dry_run_shows_the_change_and_changes_nothing(invoked: list[dict[str, Any]]) -> None:
    before = image_of("frontend")
    done = run_cli(["redeploy", "--stack", "dynamo", "--image", NEW_IMAGE, "--dry-run"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("dry run: dry_run")
    assert NEW_IMAGE in done.stdout and "containerDefinitions[0].image" in done.stdout
    assert [c["event"] for c in invoked] == [{"image": NEW_IMAGE, "dry_run": True}]
    assert image_of("frontend") == before


def test_yes_applies_after_the_dry_run(invoked: list[dict[str, Any]]) -> None:
    done = run_cli(["redeploy", "--image", NEW_IMAGE, "--service", "frontend", "--yes", "--json"])
    assert done.returncode == 0, done.stdout + done.stderr
    report = as_json(done)
    assert report["dry_run"]["status"] == "dry_run" and report["applied"]["status"] == "applied"
    assert [c["event"].get("dry_run", False) for c in invoked] == [True, False]
    assert image_of("frontend") == NEW_IMAGE and image_of("prefill") != NEW_IMAGE


def test_without_a_terminal_or_yes_nothing_is_applied(invoked: list[dict[str, Any]]) -> None:
    done = run_cli(["redeploy", "--image", NEW_IMAGE], stdin="y\n")
    assert done.returncode == 2 and "pass --yes" in done.stderr
    assert len(invoked) == 1 and image_of("frontend") != NEW_IMAGE


def test_a_bad_payload_is_refused_with_the_field_named(invoked: list[dict[str, Any]]) -> None:
    done = run_cli(["redeploy", "--image", "not an image", "--yes"])
    assert done.returncode == 1
    assert "refused" in done.stdout and "image" in done.stdout
    assert len(invoked) == 1  # only the dry run: a refused preview is never applied


def test_bad_options_are_usage_errors(deployed: Deployed, tmp_path: Any) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text("{not json", encoding="utf-8")
    assert run_cli(["redeploy", "--spec", str(spec)]).returncode == 2
    assert run_cli(["redeploy", "--service", "decode"]).returncode == 2


def test_the_dry_run_shows_which_role_of_the_spec_the_stack_replaces(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the Redeploy function as the stack configures it (the GPU roles it may pass), and
    # services whose spec is Dynamo's example, which names ecsTaskExecutionRole
    execution = "arn:aws:iam::123456789012:role/dynamo-GpuExecutionRole-AbC123"
    monkeypatch.setenv("DYNAMO_ECS_GPU_EXECUTION_ROLE_ARN", execution)
    monkeypatch.setenv("DYNAMO_ECS_GPU_TASK_ROLE_ARN", "arn:aws:iam::123456789012:role/dynamo-GpuTaskRole-1")
    handler = load_handler_module("redeploy", fresh=True)
    try:
        with stand_in(lambda_invoke({REDEPLOY_FUNCTION: handler.lambda_handler}, [])) as url:
            # When a new image is previewed
            done = run_cli(
                ["redeploy", "--image", NEW_IMAGE, "--dry-run"], env={"AWS_ENDPOINT_URL_LAMBDA": url}
            )
    finally:
        sys.modules.pop(
            "functions_redeploy_app", None
        )  # the next test cold-starts it with its own environment
    # Then the preview names the role it would replace and the stack's role it would use
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "note: executionRoleArn: the spec names arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
        in done.stdout
    )
    assert f"the stack's {execution} is used" in done.stdout
