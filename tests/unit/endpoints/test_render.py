"""Rendering the Dynamo example's task definitions: only placeholders and endpoints change."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from dynamo_ecs.endpoints.render import (
    READ_ONLY_FIELDS,
    RenderContext,
    endpoint_of,
    find_placeholders,
    render_task_definition,
)
from dynamo_ecs.errors import PlaceholderError
from dynamo_ecs.infra import InfraEndpoint
from dynamo_ecs.specs import load_default_spec

CONTEXT = RenderContext(
    endpoint=InfraEndpoint(task_arn="arn:task/1", ip="10.0.3.44", started_at=None),
    account_id="111122223333",
    region="eu-west-1",
)


def _without_changes(document: dict[str, Any]) -> str:
    """The document with every expected substitution undone, for an exact comparison."""
    text = json.dumps(document, sort_keys=True)
    return (
        text.replace("10.0.3.44", "IP_ADDRESS")
        .replace("111122223333", "AWS_ID")
        .replace("eu-west-1", "AWS_REGION")
    )


@pytest.mark.parametrize("name", ["frontend", "prefill"])
def test_example_files_render_with_only_placeholders_filled(name: str) -> None:
    # Given the unchanged example file
    spec = load_default_spec(name)  # type: ignore[arg-type]
    # When it is rendered
    rendered = render_task_definition(spec, CONTEXT)
    # Then the endpoints point at the infra task, and nothing else changed
    assert endpoint_of(rendered) == {
        "ETCD_ENDPOINTS": "http://10.0.3.44:2379",
        "NATS_SERVER": "nats://10.0.3.44:4222",
    }
    assert find_placeholders(rendered) == []
    assert _without_changes(rendered) == json.dumps(spec, sort_keys=True)
    container = rendered["containerDefinitions"][0]
    assert container["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert container["repositoryCredentials"]["credentialsParameter"].startswith(
        "arn:aws:secretsmanager:eu-west-1:111122223333:secret:"
    )
    assert rendered["networkMode"] == spec["networkMode"]


def test_an_address_pasted_by_hand_is_replaced_too() -> None:
    spec = json.loads(json.dumps(load_default_spec("frontend")).replace("IP_ADDRESS", "10.9.9.9"))
    rendered = render_task_definition(spec, CONTEXT)
    assert endpoint_of(rendered)["NATS_SERVER"] == "nats://10.0.3.44:4222"


def test_the_input_spec_is_not_modified() -> None:
    spec = load_default_spec("prefill")
    before = copy.deepcopy(spec)
    render_task_definition(spec, CONTEXT)
    assert spec == before


def test_read_only_fields_of_a_described_revision_are_dropped() -> None:
    described = {field: "x" for field in READ_ONLY_FIELDS} | load_default_spec("frontend")
    rendered = render_task_definition(described, CONTEXT)
    assert not set(READ_ONLY_FIELDS) & set(rendered)


def test_placeholders_in_command_and_entry_point_are_filled() -> None:
    spec = load_default_spec("prefill")
    spec["containerDefinitions"][0]["command"] = ["python3 -m dynamo.vllm --etcd http://IP_ADDRESS:2379"]
    spec["containerDefinitions"][0]["entryPoint"] = ["sh", "-c", "echo IP_ADDRESS"]
    container = render_task_definition(spec, CONTEXT)["containerDefinitions"][0]
    assert container["command"] == ["python3 -m dynamo.vllm --etcd http://10.0.3.44:2379"]
    assert container["entryPoint"][-1] == "echo 10.0.3.44"


def test_variable_names_are_never_rewritten() -> None:
    spec = load_default_spec("frontend")
    spec["containerDefinitions"][0]["environment"].append({"name": "AWS_REGION", "value": "AWS_REGION"})
    env = render_task_definition(spec, CONTEXT)["containerDefinitions"][0]["environment"]
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in env


def test_an_unknown_placeholder_position_is_refused_with_its_path() -> None:
    spec = load_default_spec("frontend")
    spec["containerDefinitions"][0]["dockerLabels"] = {"owner": "AWS_ID-team"}
    rendered = render_task_definition(spec, CONTEXT)
    assert rendered["containerDefinitions"][0]["dockerLabels"] == {"owner": "111122223333-team"}
    with pytest.raises(PlaceholderError, match=r"\$\.containerDefinitions\[0\]\.image"):
        broken = load_default_spec("frontend")
        broken["containerDefinitions"][0]["image"] = "registry/IP_ADDRESS_image"
        render_task_definition(broken, CONTEXT)


def test_the_stack_s_gpu_containers_check_their_own_worker_and_the_frontend_its_liveness() -> None:
    from dynamo_ecs.config import DeploymentConfig, ServiceRole
    from dynamo_ecs.endpoints.gpu_services import parse_properties, spec_from_properties

    role_arn = "arn:aws:iam::123456789012:role/dynamo-gpu-task"
    props = parse_properties(
        {
            "Image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
            "Model": "Qwen/Qwen3-0.6B",
            "ExecutionRoleArn": role_arn,
            "TaskRoleArn": role_arn,
            "FrontendLogGroup": "/ecs/f",
            "PrefillLogGroup": "/ecs/p",
        }
    )

    def container(role: ServiceRole, config: DeploymentConfig) -> dict[str, Any]:
        found: dict[str, Any] = spec_from_properties(role, props, config)["containerDefinitions"][0]
        return found

    # The frontend container: the frontend's /live and its decode worker's system /health
    frontend = container("frontend", DeploymentConfig())
    command = frontend["healthCheck"]["command"][1]
    assert "localhost:8000/live" in command and "localhost:9091/health" in command
    assert frontend["healthCheck"]["startPeriod"] == 300
    assert {"name": "DYN_SYSTEM_PORT", "value": "9091"} in frontend["environment"]
    # The prefill container: its worker's system /health, with /health following its endpoint
    prefill = container("prefill", DeploymentConfig())
    environment = {v["name"]: v["value"] for v in prefill["environment"]}
    assert environment["DYN_SYSTEM_PORT"] == "9090"
    assert environment["DYN_SYSTEM_USE_ENDPOINT_HEALTH_STATUS"] == '["generate"]'
    assert "localhost:9090/health" in prefill["healthCheck"]["command"][1]
    assert "/live" not in prefill["healthCheck"]["command"][1]
    # ... on the collector's <role>.system_port when it is set: one port, read by both
    configured = DeploymentConfig.model_validate({"prefill": {"system_port": 9345}})
    prefill = container("prefill", configured)
    assert {"name": "DYN_SYSTEM_PORT", "value": "9345"} in prefill["environment"]
    assert "localhost:9345/health" in prefill["healthCheck"]["command"][1]


def test_the_health_checks_are_within_ecs_limits() -> None:
    # ECS's HealthCheck: interval 5-300 s, timeout 2-60 s, retries 1-10, startPeriod 0-300 s;
    # the command's own time-out under the check's
    from dynamo_ecs.endpoints.gpu_services import gpu_container_check

    for check in (
        gpu_container_check(9090),
        gpu_container_check(9091, 8000),
        gpu_container_check(None, 8000),
    ):
        assert 5 <= check["interval"] <= 300 and 2 <= check["timeout"] <= 60
        assert 1 <= check["retries"] <= 10 and 0 <= check["startPeriod"] <= 300
        assert check["timeout"] < check["interval"]
        requests = [float(t) for t in re.findall(r"timeout=(\d+)\)", check["command"][1])]
        assert requests and sum(requests) < check["timeout"]


def test_a_worker_readiness_check_keeps_what_the_spec_sets() -> None:
    from dynamo_ecs.endpoints.gpu_services import with_worker_readiness

    # A container with its own DYN_SYSTEM_PORT: the check reads that port, nothing is added twice
    spec = load_default_spec("prefill")
    spec["containerDefinitions"][0]["environment"].append({"name": "DYN_SYSTEM_PORT", "value": "9500"})
    container = with_worker_readiness(spec, 9090)["containerDefinitions"][0]
    assert [v["value"] for v in container["environment"] if v["name"] == "DYN_SYSTEM_PORT"] == ["9500"]
    assert "localhost:9500/health" in container["healthCheck"]["command"][1]
    # A container with a check of its own keeps it; one running no Dynamo worker gets none
    # (a frontend without a worker: its liveness alone)
    own = {"command": ["CMD", "true"], "interval": 30}
    spec = load_default_spec("prefill")
    spec["containerDefinitions"][0]["healthCheck"] = own
    spec["containerDefinitions"].append({"name": "sidecar", "image": "busybox", "command": ["sleep", "1"]})
    containers = with_worker_readiness(spec, 9090)["containerDefinitions"]
    assert containers[0]["healthCheck"] == own
    assert "healthCheck" not in containers[1] and "environment" not in containers[1]
    frontend_only: dict[str, Any] = {"name": "f", "image": "i", "command": ["python3 -m dynamo.frontend"]}
    frontend_only["portMappings"] = [{"containerPort": 8000, "hostPort": 8000}]
    checked = with_worker_readiness({"containerDefinitions": [frontend_only]}, 9091, 8000)
    command = checked["containerDefinitions"][0]["healthCheck"]["command"][1]
    assert "localhost:8000/live" in command and "/health" not in command


def test_ecs_never_replaces_a_frontend_for_its_load_balancer_health() -> None:
    # The load balancer's check is readiness, which fails while the prefill side is missing;
    # ECS would otherwise replace every frontend then (docs/template.md, "Readiness and scale-in").
    from dynamo_ecs.config import DeploymentConfig
    from dynamo_ecs.endpoints.gpu_services import _service_definition, parse_properties

    role_arn = "arn:aws:iam::123456789012:role/dynamo-gpu-task"
    props = parse_properties(
        {
            "Image": "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1",
            "Model": "Qwen/Qwen3-0.6B",
            "ExecutionRoleArn": role_arn,
            "TaskRoleArn": role_arn,
            "FrontendLogGroup": "/ecs/f",
            "PrefillLogGroup": "/ecs/p",
            "FrontendTargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/f/1",
        }
    )
    frontend = _service_definition(DeploymentConfig(), "frontend", props, "arn:td/frontend:1")
    assert frontend["healthCheckGracePeriodSeconds"] == 2_147_483_647
    assert frontend["loadBalancers"][0]["containerPort"] == 8000
    prefill = _service_definition(DeploymentConfig(), "prefill", props, "arn:td/prefill:1")
    assert "healthCheckGracePeriodSeconds" not in prefill and "loadBalancers" not in prefill
