"""The health checks AWS runs against a GPU task, run here against the real processes.

- **The load balancer's**: the target group's check as template.yaml sets it
  (`FrontendTargetGroup`): an HTTP GET of its path on the traffic port; healthy when the
  status is in its matcher. `TargetGroupCheck.from_template` reads it, with the stack's
  parameters substituted, so a test probes exactly what the ALB would.
- **ECS's container check**: a container definition's ``healthCheck`` command (``CMD-SHELL``
  runs in ``/bin/sh -c``, ``CMD`` as is) with the container's environment and PATH. In host
  network mode the processes listen on all interfaces on EC2 and on the instance's loopback
  address here, so ``localhost`` in the command means that address (the one substitution).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devtools.local_ecs.client import get
from devtools.local_ecs.containers import ContainerPlan
from devtools.template import load_template

TARGET_GROUP = "FrontendTargetGroup"
_SUB_VARIABLE = re.compile(r"\$\{([A-Za-z0-9]+)\}")


def _resolve(value: Any, parameters: Mapping[str, str]) -> str:
    """A template value: text, or ``Fn::Sub`` of stack parameters (defaults unless given)."""
    if isinstance(value, str | int):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        declared = load_template()["Parameters"]

        def parameter(match: re.Match[str]) -> str:
            name = match[1]
            if name in parameters:
                return parameters[name]
            if name not in declared or "Default" not in declared[name]:
                raise ValueError(f"{TARGET_GROUP}: ${{{name}}} is not a parameter with a default; pass it")
            return str(declared[name]["Default"])

        return _SUB_VARIABLE.sub(parameter, value["Fn::Sub"])
    raise ValueError(f"{TARGET_GROUP}: cannot evaluate {value!r} here (text or Fn::Sub of parameters only)")


@dataclass(frozen=True)
class TargetGroupCheck:
    path: str
    port: int
    healthy_codes: frozenset[int]
    interval_s: int
    timeout_s: int
    healthy_threshold: int
    unhealthy_threshold: int
    deregistration_delay_s: int

    @classmethod
    def from_template(cls, parameters: Mapping[str, str] | None = None) -> TargetGroupCheck:
        props = load_template()["Resources"][TARGET_GROUP]["Properties"]
        given = dict(parameters or {})
        port = _resolve(props.get("HealthCheckPort", "traffic-port"), given)
        attributes = {a["Key"]: a["Value"] for a in props.get("TargetGroupAttributes", [])}
        return cls(
            path=_resolve(props["HealthCheckPath"], given),
            port=int(props["Port"]) if port == "traffic-port" else int(port),
            healthy_codes=frozenset(int(c) for c in str(props["Matcher"]["HttpCode"]).split(",")),
            interval_s=int(props["HealthCheckIntervalSeconds"]),
            timeout_s=int(props.get("HealthCheckTimeoutSeconds", 5)),
            healthy_threshold=int(props["HealthyThresholdCount"]),
            unhealthy_threshold=int(props["UnhealthyThresholdCount"]),
            deregistration_delay_s=int(attributes.get("deregistration_delay.timeout_seconds", 300)),
        )

    def probe(self, address: str) -> int:
        """One health check of the target at ``address``: the HTTP status (0: no answer)."""
        status, _ = get(f"http://{address}:{self.port}{self.path}", timeout_s=self.timeout_s)
        return status

    def passes(self, address: str) -> bool:
        return self.probe(address) in self.healthy_codes


def container_check_argv(health_check: Mapping[str, Any]) -> list[str]:
    """What ECS runs for a container's ``healthCheck.command``."""
    command = list(health_check["command"])
    if command[:1] == ["CMD-SHELL"] and len(command) == 2:
        return ["/bin/sh", "-c", command[1]]
    if command[:1] == ["CMD"] and len(command) > 1:
        return command[1:]
    raise ValueError(
        f"healthCheck.command {command!r}: use ['CMD-SHELL', 'one shell line'] or ['CMD', program, args...]"
    )


def run_container_check(health_check: Mapping[str, Any], plan: ContainerPlan, address: str) -> int:
    """Run a container's ECS health check once, as the agent would; its exit code (0: healthy)."""
    argv = [word.replace("localhost", address) for word in container_check_argv(health_check)]
    try:
        done = subprocess.run(
            argv,
            cwd=plan.cwd,
            env=plan.env,
            capture_output=True,
            timeout=int(health_check.get("timeout", 5)),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 1  # ECS counts a check that outlives its timeout as failed
    return done.returncode
