"""AWS API calls of the endpoint reconcile, counted through botocore event hooks against moto.

- a no-op reconcile (the services already run their rendered task definitions): all calls
  and the writes among them;
- an address change while three infra tasks run (a replacement under way): the number of
  RegisterTaskDefinition and UpdateService calls, and the wall time against moto server.

Calls are counted on the operator's boto3 session (`devtools.aws_faults.recording`), so
every client counts: RegisterTaskDefinition goes through a client of its own, without
botocore's retries (`aws.client("ecs", max_attempts=1)`).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass

from devtools import netguard
from devtools.aws_faults import recording
from devtools.ecs_world import build_world, task_private_ip, task_state_change_event
from devtools.handlers import load_handler_module
from devtools.services import aws_test_environment, moto_server
from devtools.template import create_state_table
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig


@dataclass
class Context:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench"


def measure() -> dict[str, float]:
    """The figures, against the moto server the environment points at (a fresh account)."""
    config = DeploymentConfig()
    world = build_world(config, region="us-east-1")
    first = world.run_infra_task()
    world.create_gpu_services(pasted_ip=task_private_ip(first))
    create_state_table(config.state_table)
    watcher = load_handler_module("infra_watcher")
    event = task_state_change_event(first, version=1, region="us-east-1", event_id="bench")
    watcher.lambda_handler(event, Context())  # adopt the running revisions

    figures: dict[str, float] = {}
    with recording() as record:
        result = watcher.lambda_handler(event, Context())
    assert result["status"] == "unchanged", result
    calls = Counter(record.calls)
    print(f"no-op reconcile calls: {dict(calls)}")
    figures["noop_reconcile_api_calls"] = sum(calls.values())
    figures["noop_reconcile_writes"] = len(record.writes)

    new = [world.run_infra_task() for _ in range(2)]
    world.stop_task(config.infra.cluster, first["taskArn"])
    world.run_infra_task()
    with recording() as record:
        started = time.perf_counter()
        result = watcher.lambda_handler(
            task_state_change_event(new[0], version=2, region="us-east-1", event_id="b2"), Context()
        )
        elapsed = time.perf_counter() - started
    assert result["status"] == "applied", result
    calls = Counter(record.calls)
    print(f"address change with 3 RUNNING infra tasks: {dict(calls)}")
    figures["ip_change_register_calls"] = calls["RegisterTaskDefinition"]
    figures["ip_change_update_calls"] = calls["UpdateService"]
    figures["ip_change_reconcile_s"] = elapsed
    return figures


def run() -> None:
    netguard.install()
    try:
        with moto_server() as moto:
            saved = dict(os.environ)
            os.environ.update(aws_test_environment(moto.url))
            aws.reset_clients()
            try:
                figures = measure()
            finally:
                os.environ.clear()
                os.environ.update(saved)
                aws.reset_clients()
    finally:
        netguard.uninstall()
    for name, value in figures.items():
        if name.endswith("_s"):
            print(f"figure: {name} {value:.2f} s")
        else:
            print(f"figure: {name} {value:.0f} calls")
