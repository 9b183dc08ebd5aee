"""The spec check of cross-host networking: a GPU task that other GPU hosts could not reach.

With one GPU per instance, a frontend task and a prefill task are always on two hosts. In
Dynamo 1.6.1 the TCP request plane binds the address it advertises (``DYN_TCP_RPC_HOST``,
else the detected one), so only ``host`` network mode works: in ``bridge`` mode the
container's address is the Docker bridge's, which no other host routes to, and the
instance's address cannot be bound inside the container (port mappings do not change what
Dynamo advertises); an ``awsvpc`` task would need its own network configuration and
security group, which the operator's services do not have. In host mode, every port another
host calls must be pinned to one template.yaml opens (`dynamo_ecs.cross_host`), the event
plane must be on NATS (its ZMQ publishers take ports the OS picks), and no advertised address
may be loopback. Plugged into `spec_validation.DEFAULT_CHECKS`; Dynamo images of release
lines before 1.4 (NATS event plane, unmeasured here) are not judged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dynamo_ecs.cross_host import (
    ADVERTISED_ADDRESS_VARIABLES,
    CROSS_HOST_PORTS,
    EVENT_PLANE,
    unreachable_address,
)
from dynamo_ecs.dynamo_release import (
    SHELLS,
    UnknownReleaseError,
    is_dynamo_runtime_image,
    is_engine_command,
    release_of_image,
)
from dynamo_ecs.shell_words import ShellSyntaxError, shell_words, simple_commands

JUDGED_FROM = (1, 4)  # TCP request plane and ZMQ event plane by default
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


def _opened(variable: str) -> list[str]:
    return sorted({p.value for p in CROSS_HOST_PORTS if p.variable == variable})


@dataclass(frozen=True)
class DynamoProcess:
    """A ``python3 -m dynamo.frontend`` or engine worker a container's command starts."""

    kind: str  # "frontend" or "worker"
    assigned: dict[str, str]  # NAME=value words before the command
    args: list[str]


def dynamo_processes(argv: list[str]) -> list[DynamoProcess]:
    script = argv[2] if len(argv) >= 3 and argv[0] in SHELLS and argv[1] == "-c" else " ".join(argv)
    try:
        commands = simple_commands(shell_words(script))
    except ShellSyntaxError:
        return []  # the release check reports it
    found = []
    for words in commands:
        values = [w.value for w in words]
        assigned: dict[str, str] = {}
        while values and (match := _ASSIGNMENT.match(values[0])):
            assigned[match[1]] = match[2]
            values = values[1:]
        if len(values) >= 3 and values[1] == "-m" and values[2] == "dynamo.frontend":
            found.append(DynamoProcess("frontend", assigned, values[3:]))
        elif is_engine_command(values):
            found.append(DynamoProcess("worker", assigned, values[3:]))
    return found


def _environment(container: dict[str, Any]) -> dict[str, str]:
    variables = container.get("environment")
    return {
        str(v.get("name")): str(v.get("value"))
        for v in (variables if isinstance(variables, list) else [])
        if isinstance(v, dict)
    }


Problem = tuple[str, str]  # (the field, relative to the container; what is wrong and the fix)


def _pin(environment: dict[str, str], variable: str, what: str) -> Iterator[Problem]:
    opened = " or ".join(_opened(variable))
    value = environment.get(variable)
    if value is None:
        yield (
            "environment",
            (
                f"no {variable}: the {what} takes a port the OS picks, which no security group rule opens; "
                f"set {variable} to {opened}"
            ),
        )
    elif value.strip() not in _opened(variable):
        yield (
            "environment",
            (f"{variable}={value}: template.yaml opens {opened} between GPU instances for it; use that"),
        )


def _mapped(container: dict[str, Any], port: str) -> bool:
    mappings = container.get("portMappings")
    return any(
        isinstance(m, dict) and str(m.get("containerPort")) == port and str(m.get("hostPort", port)) == port
        for m in (mappings if isinstance(mappings, list) else [])
    )


# The single ports each kind of process binds, which host-mode portMappings reserve on the instance.
BOUND_PORTS = {
    "frontend": ("DYN_TCP_RESPONSE_STREAM_PORT",),
    "worker": ("DYN_TCP_RPC_PORT", "VLLM_NIXL_SIDE_CHANNEL_PORT"),
}


def container_problems(container: dict[str, Any], network_mode: Any) -> Iterator[Problem]:
    """Why other GPU hosts could not reach the Dynamo processes of one container, with the fix."""
    argv = [str(w) for w in (container.get("entryPoint") or []) + (container.get("command") or [])]
    processes = dynamo_processes(argv)
    if not processes:
        return
    if network_mode != "host":
        mode = network_mode if isinstance(network_mode, str) else "bridge (ECS's default on EC2)"
        yield (
            "networkMode",
            (
                f"{mode}: Dynamo advertises the address it binds, which in this mode no other GPU host "
                "reaches (port mappings do not change it); set networkMode to host"
            ),
        )
        return
    container_env = _environment(container)
    for process in processes:
        environment = container_env | process.assigned
        for variable in ADVERTISED_ADDRESS_VARIABLES:
            value = environment.get(variable)
            reason = unreachable_address(value) if value is not None else None
            if reason:
                yield (
                    "environment",
                    (
                        f"{variable}={value}: {reason}, so no other GPU host reaches it; remove it "
                        "(Dynamo then advertises the instance's address)"
                    ),
                )
        name, wanted = EVENT_PLANE
        if environment.get(name, "").strip().lower() != wanted:
            yield (
                "environment",
                (
                    f"{name} is not {wanted}: the ZMQ event plane publishes on ports the OS picks, which no "
                    f"security group rule opens; set {name}={wanted}"
                ),
            )
        if process.kind == "frontend":
            yield from _pin(environment, "DYN_TCP_RESPONSE_STREAM_PORT", "frontend's TCP response stream")
        else:
            yield from _pin(environment, "DYN_TCP_RPC_PORT", "worker's TCP request plane")
            if any("NixlConnector" in arg for arg in process.args):
                yield from _pin(environment, "VLLM_NIXL_SIDE_CHANNEL_PORT", "vLLM NIXL side channel")
                yield from _pin(environment, "UCX_TCP_PORT_RANGE", "UCX TCP transport")
        for variable in BOUND_PORTS[process.kind]:
            port = environment.get(variable, "").strip()
            if port.isdigit() and not _mapped(container, port):
                yield (
                    "portMappings",
                    (
                        f"no mapping of {variable}'s port {port}; add "
                        f'{{"containerPort": {port}, "hostPort": {port}, "protocol": "tcp"}} '
                        "so that ECS never places two tasks that bind it on one instance"
                    ),
                )


def check_cross_host_networking(spec: dict[str, Any]) -> Iterator[str]:
    containers = spec.get("containerDefinitions")
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        if not isinstance(container, dict) or not isinstance(container.get("image"), str):
            continue
        if not is_dynamo_runtime_image(container["image"]):
            continue
        try:
            release = release_of_image(container["image"])
        except UnknownReleaseError:
            continue  # the release check reports it
        if release.line < JUDGED_FROM:
            continue
        for field, problem in dict.fromkeys(container_problems(container, spec.get("networkMode"))):
            path = "$.networkMode" if field == "networkMode" else f"$.containerDefinitions[{index}].{field}"
            yield f"{path}: {problem}"
