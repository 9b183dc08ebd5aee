"""AWS API calls of the endpoint reconcile, counted through botocore event hooks against moto.

- a no-op reconcile (the services already run their rendered task definitions): all calls
  and the writes among them;
- an address change while three infra tasks run (a replacement under way): the number of
  RegisterTaskDefinition and UpdateService calls, and the wall time against moto server.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from devtools import netguard
from devtools.ecs_world import build_world, task_private_ip, task_state_change_event
from devtools.handlers import load_handler_module
from devtools.services import aws_test_environment, moto_server
from devtools.template import create_state_table
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig

WRITES = {
    "RegisterTaskDefinition",
    "UpdateService",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "DeregisterTaskDefinition",
}


@dataclass
class Context:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench"


def _count_calls(calls: Counter[str]) -> None:
    def hook(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    for service in ("ecs", "dynamodb"):
        aws.client(service).meta.events.register("before-call", hook)


def run() -> None:
    netguard.install()
    with moto_server() as moto:
        os.environ.update(aws_test_environment(moto.url))
        aws.reset_clients()
        config = DeploymentConfig()
        world = build_world(config, region="us-east-1")
        first = world.run_infra_task()
        world.create_gpu_services(pasted_ip=task_private_ip(first))
        create_state_table(config.state_table)
        watcher = load_handler_module("infra_watcher")
        event = task_state_change_event(first, version=1, region="us-east-1", event_id="bench")
        watcher.lambda_handler(event, Context())  # adopt the running revisions

        calls: Counter[str] = Counter()
        _count_calls(calls)
        result = watcher.lambda_handler(event, Context())
        assert result["status"] == "unchanged", result
        print(f"no-op reconcile calls: {dict(calls)}")
        print(f"figure: noop_reconcile_api_calls {sum(calls.values())} calls")
        print(f"figure: noop_reconcile_writes {sum(n for name, n in calls.items() if name in WRITES)} calls")

        new = [world.run_infra_task() for _ in range(2)]
        world.stop_task(config.infra.cluster, first["taskArn"])
        world.run_infra_task()
        calls.clear()
        started = time.perf_counter()
        result = watcher.lambda_handler(
            task_state_change_event(new[0], version=2, region="us-east-1", event_id="b2"), Context()
        )
        elapsed = time.perf_counter() - started
        assert result["status"] == "applied", result
        print(f"address change with 3 RUNNING infra tasks: {dict(calls)}")
        print(f"figure: ip_change_register_calls {calls['RegisterTaskDefinition']} calls")
        print(f"figure: ip_change_update_calls {calls['UpdateService']} calls")
        print(f"figure: ip_change_reconcile_s {elapsed:.2f} s")
        netguard.uninstall()
