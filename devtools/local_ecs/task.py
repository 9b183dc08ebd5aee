"""One ECS task as local processes: its containers started in dependency order, stopped together.

Container ``dependsOn`` is honoured as ECS does for the conditions the stack uses: ``START``
(the other container has started), ``COMPLETE`` and ``SUCCESS`` (it has exited, with 0 for
``SUCCESS``). An essential container that exits stops the task; the exit becomes the task's
stopped reason, as ECS reports it ("Essential container in task exited").
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.local_ecs.containers import (
    ContainerStartError,
    LocalTaskLayout,
    RunningContainer,
    start_container,
    wait_for_exit,
)

DEPENDENCY_TIMEOUT_S = 30.0
AGENT_STOP_TIMEOUT_S = 30.0  # ECS_CONTAINER_STOP_TIMEOUT's default, for a container without stopTimeout


def start_order(containers: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Containers sorted so that each comes after those it depends on."""
    by_name = {c["name"]: c for c in containers}
    ordered: list[Mapping[str, Any]] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if any(c["name"] == name for c in ordered):
            return
        if name in visiting:
            raise ContainerStartError(f"containers depend on each other in a cycle through {name!r}")
        if name not in by_name:
            raise ContainerStartError(f"dependsOn names {name!r}, which is not a container of the task")
        visiting.add(name)
        for dependency in by_name[name].get("dependsOn") or []:
            visit(dependency["containerName"])
        visiting.discard(name)
        ordered.append(by_name[name])

    for container in containers:
        visit(container["name"])
    return ordered


@dataclass
class LocalTask:
    """The processes of one task; `stopped_reason` is set once an essential container exits."""

    arn: str
    layout: LocalTaskLayout
    containers: dict[str, RunningContainer] = field(default_factory=dict)
    stopped_reason: str | None = None
    definitions: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    kill_at: dict[str, float] = field(default_factory=dict)
    killed_at_timeout: list[str] = field(default_factory=list)  # containers SIGKILLed, not exited

    def start(self, task_definition: Mapping[str, Any]) -> None:
        definitions = start_order(list(task_definition["containerDefinitions"]))
        self.layout.use_volumes(task_definition)
        self.definitions = {d["name"]: d for d in definitions}
        for definition in definitions:
            for dependency in definition.get("dependsOn") or []:
                self._wait_for(dependency["containerName"], dependency["condition"])
            plan = self.layout.plan(definition)
            self.containers[plan.name] = start_container(plan, self.layout.root / "logs")

    def _wait_for(self, name: str, condition: str) -> None:
        container = self.containers[name]
        if condition == "START":
            return
        code = wait_for_exit(container, DEPENDENCY_TIMEOUT_S)
        if condition == "SUCCESS" and code != 0:
            self.stop(f"Essential container in task exited: {name} exited with {code}")
            raise ContainerStartError(f"{name} exited with {code}: {container.log_tail()}")

    def definition(self, name: str) -> Mapping[str, Any]:
        """The container definition ``name`` as the task was started with it."""
        return self.definitions[name]

    def check(self) -> str | None:
        """The stopped reason once an essential container has exited (then every container stops)."""
        if self.stopped_reason is None:
            for name, container in self.containers.items():
                code = container.exit_code()
                if container.plan.essential and code is not None:
                    self.stop(f"Essential container in task exited: {name} exited with {code}")
                    break
        return self.stopped_reason

    def begin_stop(self, reason: str, now: float) -> None:
        """SIGTERM to every container (`docker stop`'s start); each has its ``stopTimeout`` from now."""
        if self.stopped_reason is None:
            self.stopped_reason = reason
        for name, container in reversed(list(self.containers.items())):
            timeout = float(self.definitions.get(name, {}).get("stopTimeout") or AGENT_STOP_TIMEOUT_S)
            self.kill_at[name] = now + timeout
            container.terminate()

    def finish_stop(self, now: float) -> bool:
        """After `begin_stop`: True once every container has exited or been killed at its stop timeout."""
        pending = [
            name
            for name, container in self.containers.items()
            if container.exit_code() is None and now < self.kill_at.get(name, now)
        ]
        if pending:
            return False
        for name, container in self.containers.items():
            if container.exit_code() is None:
                self.killed_at_timeout.append(name)
            container.kill()
        return True

    def stop(self, reason: str = "Task stopped", grace_s: float = 10.0) -> None:
        if self.stopped_reason is None:
            self.stopped_reason = reason
        for container in reversed(list(self.containers.values())):
            container.stop(grace_s)

    def crash(self, module: str) -> list[int]:
        """SIGKILL every process of the task that runs ``python -m <module>`` (a GPU fault, an
        OOM kill): no graceful shutdown. The task then stops as ECS stops it, on `check`."""
        victims = [
            pid
            for container in self.containers.values()
            for pid in container.pids()
            if _runs_module(pid, module)
        ]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return victims

    def logs(self, lines: int = 20) -> dict[str, str]:
        return {name: c.log_tail(lines) for name, c in self.containers.items()}

    def wait_until(self, ready: Any, timeout_s: float, what: str) -> None:
        """Poll ``ready()`` until true; fail with the containers' logs if the task stops or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.check() is not None:
                raise ContainerStartError(f"{what}: task stopped ({self.stopped_reason}): {self.logs(8)}")
            if ready():
                return
            time.sleep(0.1)
        raise ContainerStartError(f"{what}: not ready after {timeout_s:.0f} s: {self.logs(8)}")


def _runs_module(pid: int, module: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(a == "-m" and b == module for a, b in itertools.pairwise(argv))
