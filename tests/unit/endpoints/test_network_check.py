"""Spec validation refuses a GPU spec whose Dynamo processes other GPU hosts could not reach."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dynamo_ecs.endpoints.spec_validation import spec_problems
from dynamo_ecs.specs import load_default_spec


def spec(role: str) -> dict[str, Any]:
    return copy.deepcopy(load_default_spec(role))  # type: ignore[arg-type]


def container(s: dict[str, Any]) -> dict[str, Any]:
    return s["containerDefinitions"][0]  # type: ignore[no-any-return]


def set_env(s: dict[str, Any], **values: str | None) -> dict[str, Any]:
    environment = container(s)["environment"]
    environment[:] = [v for v in environment if v["name"] not in values]
    environment += [{"name": k, "value": v} for k, v in values.items() if v is not None]
    return s


@pytest.mark.parametrize("role", ["frontend", "prefill"])
@pytest.mark.parametrize("mode", ["bridge", "awsvpc", None])
def test_only_host_mode_reaches_across_hosts_whatever_the_port_mappings(role: str, mode: str | None) -> None:
    s = spec(role)
    if mode is None:
        del s["networkMode"]  # ECS's default on EC2 is bridge
    else:
        s["networkMode"] = mode
    problems = [p for p in spec_problems(s) if p.startswith("$.networkMode")]
    assert len(problems) == 1
    assert "no other GPU host reaches" in problems[0] and "set networkMode to host" in problems[0]


@pytest.mark.parametrize(
    ("role", "variable", "opened"),
    [
        ("frontend", "DYN_TCP_RESPONSE_STREAM_PORT", "8101"),
        ("frontend", "DYN_TCP_RPC_PORT", "8102 or 8103"),
        ("prefill", "DYN_TCP_RPC_PORT", "8102 or 8103"),
        ("prefill", "VLLM_NIXL_SIDE_CHANNEL_PORT", "5600 or 5601"),
        ("prefill", "UCX_TCP_PORT_RANGE", "47000-47063"),
    ],
)
def test_an_unpinned_port_is_refused_naming_the_variable_and_the_opened_ports(
    role: str, variable: str, opened: str
) -> None:
    problems = spec_problems(set_env(spec(role), **{variable: None}))
    assert any(
        p.startswith("$.containerDefinitions[0].environment: no " + variable)
        and f"set {variable} to {opened}" in p
        for p in problems
    ), problems


def test_a_port_template_yaml_does_not_open_is_refused() -> None:
    s = set_env(spec("prefill"), DYN_TCP_RPC_PORT="9999")
    container(s)["portMappings"].append({"containerPort": 9999, "hostPort": 9999, "protocol": "tcp"})
    assert spec_problems(s) == [
        "$.containerDefinitions[0].environment: DYN_TCP_RPC_PORT=9999: template.yaml opens 8102 or 8103 "
        "between GPU instances for it; use that"
    ]


def test_the_zmq_event_plane_is_refused() -> None:
    for value in (None, "zmq"):
        [problem] = spec_problems(set_env(spec("prefill"), DYN_EVENT_PLANE=value))
        assert "ZMQ event plane publishes on ports the OS picks" in problem
        assert problem.endswith("set DYN_EVENT_PLANE=nats")


@pytest.mark.parametrize("value", ["127.0.0.1", "localhost", "0.0.0.0", "::1"])  # noqa: S104
def test_an_advertised_address_no_other_host_reaches_is_refused(value: str) -> None:
    [problem] = spec_problems(set_env(spec("prefill"), DYN_TCP_RPC_HOST=value))
    assert problem.startswith(f"$.containerDefinitions[0].environment: DYN_TCP_RPC_HOST={value}:")
    assert "remove it" in problem


def test_an_instance_address_or_interface_is_the_operators_choice() -> None:
    assert spec_problems(set_env(spec("prefill"), DYN_TCP_RPC_HOST="10.0.1.5")) == []


def test_a_pinned_port_without_its_mapping_is_refused() -> None:
    s = spec("prefill")
    container(s)["portMappings"] = [m for m in container(s)["portMappings"] if m["containerPort"] != 8103]
    [problem] = spec_problems(s)
    assert problem.startswith(
        "$.containerDefinitions[0].portMappings: no mapping of DYN_TCP_RPC_PORT's port 8103"
    )


def test_a_variable_set_before_the_command_counts() -> None:
    s = set_env(spec("prefill"), DYN_TCP_RPC_PORT=None)
    command = container(s)["command"]
    command[0] = command[0].replace("python3 -m dynamo.vllm", "DYN_TCP_RPC_PORT=8103 python3 -m dynamo.vllm")
    assert spec_problems(s) == []


def test_release_lines_before_1_4_are_not_judged() -> None:
    s = spec("prefill")
    s["networkMode"] = "bridge"
    container(s)["image"] = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.9.0"
    command = container(s)["command"]
    command[0] = (
        command[0]
        .replace("--disaggregation-mode prefill", "--is-prefill-worker")
        .replace(' --kv-transfer-config \'{"kv_connector":"NixlConnector","kv_role":"kv_both"}\'', "")
    )
    assert spec_problems(s) == []
