"""ECS's part for one-off tasks (RunTask, no service) of one task definition family, with real
processes: what an operator's command starts, run as Fargate would run it.

moto keeps the books (the task, its overrides, its stop) and runs nothing. `OneOffRunner.tick`
does what ECS and its agent would do next:

- a task of the family that moto holds as RUNNING and that runs nowhere yet is started from its
  own task definition revision, with the task's ``containerOverrides`` environment applied (as
  ECS applies them), in a layout where the tier's member names are their stand-in addresses
  (`devtools.local_ecs.infra.LocalTier.names`);
- once its essential container has exited (or the task was stopped in moto), each container's
  output goes to CloudWatch Logs as the awslogs driver would put it (the container's
  ``awslogs-group``, stream ``<awslogs-stream-prefix>/<container>/<task id>``: written once the
  container has exited, not line by line), the containers' exit codes are recorded where
  DescribeTasks shows them (`devtools.aws_state_rules`, moto has one exit code 0 per task), and
  the task is stopped in moto with ECS's reason ("Essential container in task exited").

A task whose start fails (a dependency exited non-zero) is stopped the same way, with what ran.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools import aws_state_rules
from devtools.local_ecs.containers import ContainerStartError, LocalTaskLayout
from devtools.local_ecs.programs import TINY_MODEL, Toolbox
from devtools.local_ecs.task import LocalTask


def with_overrides(definition: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The task definition with RunTask's container environment overrides applied (ECS's rule:
    an override replaces a variable of the same name, a new name is added)."""
    result = copy.deepcopy(dict(definition))
    by_name = {c["name"]: c for c in result["containerDefinitions"]}
    for override in overrides.get("containerOverrides") or []:
        container = by_name.get(override.get("name"))
        if container is None:
            raise ContainerStartError(f"containerOverrides names {override.get('name')!r}: no such container")
        given = {e["name"]: e["value"] for e in override.get("environment") or []}
        kept = [e for e in container.get("environment") or [] if e["name"] not in given]
        container["environment"] = kept + [{"name": k, "value": v} for k, v in given.items()]
    return result


@dataclass
class OneOffRunner:
    ecs: Any
    logs: Any
    cluster: str
    family: str
    workdir: Path
    names: dict[str, str] = field(default_factory=dict)  # DNS name -> stand-in address
    toolbox: Toolbox = field(default_factory=Toolbox)
    running: dict[str, LocalTask] = field(default_factory=dict)
    finished: dict[str, dict[str, int | None]] = field(default_factory=dict)  # task -> exit codes

    def tick(self) -> None:
        arns = self.ecs.list_tasks(cluster=self.cluster, family=self.family, desiredStatus="RUNNING")[
            "taskArns"
        ]
        for arn in arns:
            if arn not in self.running and arn not in self.finished:
                self._start(arn)
        for arn, task in list(self.running.items()):
            stopped_in_moto = arn not in arns
            if task.check() is not None or stopped_in_moto:
                self._finish(arn, task, "Task stopped by the caller" if stopped_in_moto else None)

    def _start(self, arn: str) -> None:
        [described] = self.ecs.describe_tasks(cluster=self.cluster, tasks=[arn])["tasks"]
        definition = self.ecs.describe_task_definition(taskDefinition=described["taskDefinitionArn"])[
            "taskDefinition"
        ]
        layout = LocalTaskLayout(
            root=self.workdir / f"one-off-{arn.rsplit('/', 1)[-1]}",
            address="127.0.0.1",
            toolbox=self.toolbox,
            model_dir=TINY_MODEL,
            names=dict(self.names),
        )
        task = LocalTask(arn, layout)
        self.running[arn] = task
        # a start that fails has stopped the task itself (its stopped reason); `tick` finishes it
        with contextlib.suppress(ContainerStartError):
            task.start(with_overrides(definition, described.get("overrides") or {}))

    def _finish(self, arn: str, task: LocalTask, reason: str | None) -> None:
        if reason is not None:
            task.stop(reason)
        del self.running[arn]
        codes = {name: container.exit_code() for name, container in task.containers.items()}
        for name in task.definitions:
            codes.setdefault(name, None)  # never started
        self.finished[arn] = codes
        for name, container in task.containers.items():
            self._write_log(arn, task.definitions[name], container.log_path)
        aws_state_rules.rules.task_containers(
            arn,
            [
                {"name": name, "lastStatus": "STOPPED", **({"exitCode": code} if code is not None else {})}
                for name, code in codes.items()
            ],
        )
        self.ecs.stop_task(
            cluster=self.cluster, task=arn, reason=(task.stopped_reason or "Task stopped")[:1024]
        )

    def _write_log(self, arn: str, container: Mapping[str, Any], log_path: Path) -> None:
        config = container.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") != "awslogs" or not log_path.exists():
            return
        group = options["awslogs-group"]
        stream = f"{options['awslogs-stream-prefix']}/{container['name']}/{arn.rsplit('/', 1)[-1]}"
        with contextlib.suppress(self.logs.exceptions.ResourceAlreadyExistsException):
            self.logs.create_log_group(logGroupName=group)
        self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
        lines = log_path.read_text(errors="replace").splitlines()
        now = int(time.time() * 1000)
        for start in range(0, len(lines), 1000):
            events = [{"timestamp": now, "message": line or " "} for line in lines[start : start + 1000]]
            self.logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    def stop(self) -> None:
        for arn, task in list(self.running.items()):
            self._finish(arn, task, "Runner stopped")


@contextlib.contextmanager
def running_one_offs(runner: OneOffRunner, poll_s: float = 0.2) -> Iterator[OneOffRunner]:
    """``runner.tick`` in a background thread for the block (its errors raised at the end)."""
    done = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        while not done.is_set():
            try:
                runner.tick()
            except BaseException as error:  # reported when the block ends
                errors.append(error)
                return
            done.wait(poll_s)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        done.set()
        thread.join(timeout=120)
        runner.stop()
    if errors:
        raise errors[0]
