"""ECS's container health status as the local runner keeps it, and what it means for a deployment.

The check command is a real shell line (`health.run_container_check`) that passes while a file
exists; the task's processes and ECS are not needed for the bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.local_ecs.containers import ContainerPlan
from devtools.local_ecs.runner import HEALTHY, UNHEALTHY, UNKNOWN, GpuTask, GpuTaskRunner


@dataclass
class _Container:
    plan: ContainerPlan


@dataclass
class _Local:
    """The two things the runner reads of a task's processes for its checks."""

    check: dict[str, Any]
    cwd: Path
    containers: dict[str, _Container] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.containers["worker"] = _Container(
            ContainerPlan("worker", [], {"PATH": "/usr/bin:/bin"}, self.cwd, True)
        )

    @property
    def layout(self) -> Any:
        return type("Layout", (), {"address": "127.0.0.1"})()

    def definition(self, name: str) -> dict[str, Any]:
        return {"name": name, "healthCheck": self.check}


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def runner_with_task(tmp_path: Path, role: str = "prefill") -> tuple[GpuTaskRunner, GpuTask, _Clock, Path]:
    serving = tmp_path / "serving"
    check = {"command": ["CMD-SHELL", f"test -f {serving}"], "interval": 10, "retries": 3, "startPeriod": 60}
    clock = _Clock()
    runner = GpuTaskRunner(None, None, "gpu", {}, [], tmp_path, clock=clock, healthy_after_s=40)
    local: Any = _Local(check, tmp_path)
    task = GpuTask(role, "arn:task", 0, "td:1", local, 0.0, container_health={"worker": UNKNOWN})
    runner.tasks.append(task)
    return runner, task, clock, serving


def step(runner: GpuTaskRunner, clock: _Clock, seconds: float) -> None:
    clock.now += seconds
    runner._check_containers()


def test_a_checked_task_counts_healthy_only_once_its_check_passes(tmp_path: Path) -> None:
    runner, task, clock, serving = runner_with_task(tmp_path)
    # Given a worker still loading: past ECS's 40-s wait for an unchecked task, not healthy
    step(runner, clock, 0)
    step(runner, clock, 50)
    assert task.container_health["worker"] == UNKNOWN and not runner.healthy(task)
    # When its check passes, Then it is healthy
    serving.touch()
    step(runner, clock, 10)
    assert task.container_health["worker"] == HEALTHY and runner.healthy(task)


def test_failures_count_only_after_the_start_period_and_then_retries_in_a_row(tmp_path: Path) -> None:
    runner, task, clock, serving = runner_with_task(tmp_path)
    step(runner, clock, 0)
    for _ in range(5):  # failing at 0 to 50 s: all within the start period (60 s)
        step(runner, clock, 10)
    assert task.container_health["worker"] == UNKNOWN and task.check_failures.get("worker", 0) == 0
    serving.touch()
    step(runner, clock, 10)
    serving.unlink()
    step(runner, clock, 10)
    step(runner, clock, 10)
    assert task.container_health["worker"] == HEALTHY  # two failures of three
    step(runner, clock, 10)
    assert task.container_health["worker"] == UNHEALTHY and not runner.healthy(task)


def test_a_check_due_later_is_not_run_early(tmp_path: Path) -> None:
    runner, task, clock, serving = runner_with_task(tmp_path)
    step(runner, clock, 0)  # runs, fails (start period), next in 10 s
    serving.touch()
    step(runner, clock, 5)
    assert task.container_health["worker"] == UNKNOWN
    step(runner, clock, 5)
    assert task.container_health["worker"] == HEALTHY


def test_a_task_without_a_check_keeps_ecs_s_fixed_wait(tmp_path: Path) -> None:
    runner, task, clock, _ = runner_with_task(tmp_path)
    task.container_health.clear()
    clock.now = 39
    assert not runner.healthy(task)
    clock.now = 40
    assert runner.healthy(task)
