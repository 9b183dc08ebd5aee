"""Reconciles under faults on moto server: a kill at every step, throttling and lost answers at a seeded rate.

Each run changes what the GPU services should run (the infra task is replaced, or an image
is redeployed), makes the first invocation fail as `devtools.aws_faults.Faults` says, then
lets the platform retry (Lambda, EventBridge) until an invocation returns. A run is good
when it converged: a further clean invocation changes nothing, each family has exactly one
new ACTIVE revision, each service runs the revision carrying its rendering's digest, and
the lease is free (or, when the returning invocation's release was throttled past botocore's
retries, free once its TTL has passed: the work is done and the invocation answers). The
fault tests and ``bench/bench_faults.py`` share it.

The simulated clock (`dynamo_ecs.clock.use`) moves past the lease TTL after each failed
invocation: a killed holder never releases its lease, and the next one takes it once expired.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from devtools.aws_faults import Faults, injecting
from devtools.ecs_world import EcsWorld, build_world, task_private_ip, task_state_change_event
from devtools.handlers import load_handler_module
from devtools.sim_clock import SimClock
from dynamo_ecs import aws, clock
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig
from dynamo_ecs.endpoints.render import RENDERING_TAG
from dynamo_ecs.state import StateStore

REGION = "us-east-1"
Change = Literal["infra_replaced", "redeploy"]
MAX_RETRIES = 40
LEASE_RELEASE = "DeleteItem"  # the operator's only DeleteItem on the state table


@dataclass
class LambdaContext:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:dynamo-faults"


@dataclass
class RunOutcome:
    change: Change
    faults: Faults
    invocations: int
    new_revisions: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def duplicate_revisions(self) -> int:
        return sum(max(0, n - 1) for n in self.new_revisions.values())


class FaultBench:
    """One moto deployment, changed and reconciled again and again under faults."""

    def __init__(self, config: DeploymentConfig | None = None) -> None:
        self.config = config or DeploymentConfig()
        self.world: EcsWorld = build_world(self.config, region=REGION)
        self.infra_task = self.world.run_infra_task()
        self.world.create_gpu_services(pasted_ip=task_private_ip(self.infra_task))
        self.clock = SimClock(start=time.time())
        self.watcher = load_handler_module("infra_watcher")
        self.redeploy = load_handler_module("redeploy")
        self.store = StateStore(self.config.state_table, self.config.deployment)
        self.images = 0
        self.event_version = 1

    def families(self) -> dict[str, str]:
        return {role: self.config.service(role).family for role in SERVICE_ROLES}

    def active_revisions(self) -> dict[str, int]:
        ecs = aws.client("ecs")
        return {
            role: len(ecs.list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"])
            for role, family in self.families().items()
        }

    def make_change(self, change: Change) -> Callable[[], dict[str, Any]]:
        """Change what the services should run; returns the invocation that applies it."""
        if change == "infra_replaced":
            self.infra_task = self.world.replace_infra_task(self.infra_task["taskArn"])
            self.event_version += 1
            event = task_state_change_event(
                self.infra_task, version=self.event_version, region=REGION, event_id=f"e-{self.event_version}"
            )
            return lambda: dict(self.watcher.lambda_handler(event, LambdaContext()))
        self.images += 1
        payload = {"image": f"nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.{self.images}"}
        return lambda: dict(self.redeploy.lambda_handler(payload, LambdaContext()))

    def calls_of_a_clean_run(self, change: Change) -> int:
        """How many AWS calls an unfaulted run of ``change`` makes: the steps a kill can hit."""
        counter = Faults()
        invoke = self.make_change(change)
        with _sim_time(self.clock), injecting(counter):
            invoke()
        return counter.calls

    def run(self, change: Change, faults: Faults, retry_faults: Faults | None = None) -> RunOutcome:
        """``faults`` for the first invocation, ``retry_faults`` (default none) for the platform's retries."""
        before = self.active_revisions()
        invoke = self.make_change(change)
        invocations = 0
        problems: list[str] = []
        release_failed = False
        with _sim_time(self.clock):
            for attempt in range(MAX_RETRIES):
                invocations += 1
                active = faults if attempt == 0 else (retry_faults or Faults())
                releases_throttled = active.throttled_operations[LEASE_RELEASE]
                with injecting(active):
                    try:
                        result = invoke()
                    except Exception:
                        self.clock.now += self.config.rollout.lease_ttl_s + 1
                        continue
                release_failed = active.throttled_operations[LEASE_RELEASE] > releases_throttled
                if result.get("status") in ("applied", "unchanged"):
                    break
                problems.append(f"invocation {invocations}: {result}")
            else:
                problems.append(f"no invocation of {MAX_RETRIES} returned")
            again = invoke()
            if again.get("status") != "unchanged":
                problems.append(f"a clean invocation after convergence was {again.get('status')}: {again}")
            problems += self._check_converged(release_failed)
        after = self.active_revisions()
        new = {role: after[role] - before[role] for role in after}
        problems += [f"{role}: {n} new revisions" for role, n in new.items() if n != 1]
        return RunOutcome(change, faults, invocations, new, problems)

    def _check_converged(self, release_failed: bool = False) -> list[str]:
        """``release_failed``: the invocation that returned had its lease release throttled."""
        problems = []
        ecs = aws.client("ecs")
        names = [self.config.service(role).service for role in SERVICE_ROLES]
        for service in ecs.describe_services(cluster=self.config.gpu_cluster, services=names)["services"]:
            answer = ecs.describe_task_definition(taskDefinition=service["taskDefinition"], include=["TAGS"])
            if RENDERING_TAG not in {t["key"] for t in answer.get("tags", [])}:
                problems.append(f"{service['serviceName']} runs {service['taskDefinition']}, not a rendering")
            env = {
                v["name"]: v["value"]
                for v in answer["taskDefinition"]["containerDefinitions"][0]["environment"]
            }
            if env.get("ETCD_ENDPOINTS") != f"http://{task_private_ip(self.infra_task)}:2379":
                problems.append(f"{service['serviceName']} is not on the infra task running now")
        holder = self.store.lease_holder()
        if holder is not None and release_failed:
            # The work converged and the release was throttled past botocore's retries: the
            # invocation answered (the failed release logged) and the lease expires by its TTL.
            self.clock.now += self.config.rollout.lease_ttl_s + 1
            if self.store.lease_holder() is not None:
                problems.append(f"the lease of {holder} outlived its TTL")
        elif holder is not None:
            problems.append(f"the lease is still held by {holder}")
        return problems


@contextlib.contextmanager
def _sim_time(source: SimClock) -> Iterator[None]:
    clock.use(source)
    try:
        yield
    finally:
        clock.use(None)
