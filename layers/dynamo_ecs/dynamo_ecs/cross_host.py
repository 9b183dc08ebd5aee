"""What one GPU host must reach on another: the ports of the default specs, and the rules about them. Pure.

Measured on the real Dynamo 1.6.1 (docs/real-dynamo.md, "Cross-host networking"): in
``host`` network mode a frontend task listens on its HTTP port and on the TCP response
stream (the port prefill workers call back on with their results); each worker listens on
its TCP request plane. With the event plane on NATS (``DYN_EVENT_PLANE=nats``) there is no
other Dynamo listener: the ZMQ event plane would add three publishers per worker on ports
the OS picks, which Dynamo 1.6.1 offers no setting to pin. vLLM adds the NIXL side channel
(``VLLM_NIXL_SIDE_CHANNEL_PORT``) and UCX's TCP listeners (``UCX_TCP_PORT_RANGE``), which
cannot run here; their values are from vLLM's and UCX's documentation.

The frontend task and the prefill task use different ports, so that ECS can place one of
each on one multi-GPU instance; the ports are also the tasks' ``portMappings``, so ECS never
places two tasks that bind the same port on one instance. template.yaml opens exactly these
between GPU instances (``GpuFrom*`` rules; tests/template checks the two agree).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

Role = Literal["frontend", "prefill"]


@dataclass(frozen=True)
class CrossHostPort:
    """A TCP port (or range) of a GPU task that processes on other GPU hosts connect to."""

    variable: str  # the environment variable that pins it
    first: int
    last: int
    roles: tuple[Role, ...]
    what: str

    @property
    def value(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


RESPONSE_STREAM = CrossHostPort(
    "DYN_TCP_RESPONSE_STREAM_PORT",
    8101,
    8101,
    ("frontend",),
    "frontend's TCP response stream (workers answer)",
)
DECODE_REQUEST_PLANE = CrossHostPort(
    "DYN_TCP_RPC_PORT", 8102, 8102, ("frontend",), "decode worker's TCP request plane (frontends call it)"
)
PREFILL_REQUEST_PLANE = CrossHostPort(
    "DYN_TCP_RPC_PORT", 8103, 8103, ("prefill",), "prefill worker's TCP request plane (frontends call it)"
)
DECODE_NIXL_SIDE_CHANNEL = CrossHostPort(
    "VLLM_NIXL_SIDE_CHANNEL_PORT", 5600, 5600, ("frontend",), "decode worker's NIXL side channel (vLLM)"
)
PREFILL_NIXL_SIDE_CHANNEL = CrossHostPort(
    "VLLM_NIXL_SIDE_CHANNEL_PORT", 5601, 5601, ("prefill",), "prefill worker's NIXL side channel (vLLM)"
)
# UCX draws a random port from the range for each TCP interface of each UCX worker, retrying
# while one is taken; the range must lie inside the kernel's ip_local_port_range (32768-60999).
UCX_TCP_DATA = CrossHostPort(
    "UCX_TCP_PORT_RANGE", 47000, 47063, ("frontend", "prefill"), "NIXL KV transfer over UCX's TCP transport"
)

CROSS_HOST_PORTS: tuple[CrossHostPort, ...] = (
    RESPONSE_STREAM,
    DECODE_REQUEST_PLANE,
    PREFILL_REQUEST_PLANE,
    DECODE_NIXL_SIDE_CHANNEL,
    PREFILL_NIXL_SIDE_CHANNEL,
    UCX_TCP_DATA,
)
EVENT_PLANE = ("DYN_EVENT_PLANE", "nats")

# Variables naming the address a Dynamo process binds and advertises to other hosts. Unset,
# Dynamo uses the host's detected address, which in host mode on EC2 is the instance's.
ADVERTISED_ADDRESS_VARIABLES = (
    "DYN_TCP_RPC_HOST",
    "DYN_TCP_RESPONSE_STREAM_HOST",
    "DYN_EVENT_PLANE_HOST",
    "VLLM_NIXL_SIDE_CHANNEL_HOST",
)


def ports_of(role: Role) -> tuple[CrossHostPort, ...]:
    return tuple(p for p in CROSS_HOST_PORTS if role in p.roles)


def pinned_environment(role: Role) -> dict[str, str]:
    """The environment a role's container needs so that other hosts reach it on known ports."""
    return {EVENT_PLANE[0]: EVENT_PLANE[1], **{p.variable: p.value for p in ports_of(role)}}


def unreachable_address(value: str) -> str | None:
    """Why another host cannot reach a process advertising ``value``, or None if it may.

    Loopback is the advertising host's own; the unspecified address is no address (Dynamo
    refuses it). Any other value (an address, an interface name) is the operator's choice.
    """
    text = value.strip().strip("[]")
    if text.lower() == "localhost":
        return "it is the host's own loopback"
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.is_loopback:
        return "it is the host's own loopback"
    if address.is_unspecified:
        return "it is no address (all interfaces); Dynamo refuses it"
    return None
