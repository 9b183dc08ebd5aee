"""Bad input and faults on moto server: fuzz cases, the writes they caused, fault runs, twin revisions.

- fuzz: every handler gets hypothesis-generated malformed events and payloads
  (`devtools.fuzz_inputs`); each must be refused or ignored, and every AWS call is recorded
  (`devtools.aws_faults.recording`). ``fuzz_write_calls`` is the number of write calls all
  cases caused together (goal 0); a case that was accepted counts in ``fuzz_accepted``.
- faults: a kill at every AWS call of an infra replacement and of a redeploy, then seeded
  throttling and lost answers (`devtools.fault_scenarios`). ``fault_duplicate_revisions``
  counts revisions beyond one per family and run (goal 0); ``fault_unconverged_runs`` the
  runs that failed any other check.

``BENCH_FUZZ_EXAMPLES`` (default 60 per handler) and ``BENCH_FAULT_SEEDS`` (default 5 per
change) scale it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools import netguard
from devtools.aws_faults import AwsCalls, Faults, recording
from devtools.cloudformation_stub import CloudFormationStub
from devtools.ecs_world import build_world, task_private_ip
from devtools.fault_scenarios import Change, FaultBench
from devtools.fuzz_inputs import (
    Case,
    bootstrap_cases,
    collector_cases,
    infra_event_cases,
    redeploy_cases,
    scaler_cases,
)
from devtools.handlers import load_handler_module
from devtools.services import aws_test_environment, moto_server
from devtools.template import create_state_table
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig

MAX_OFFENDERS_SHOWN = 5
EXPECTED = {
    "redeploy": "refused",
    "scaler": "ignored",
    "metrics_collector": "ignored",
    "infra_watcher": "ignored",
}


@dataclass
class Context:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class FuzzTally:
    cases: int = 0
    writes: int = 0
    accepted: int = 0
    # The first cases that were accepted or wrote, with the handler and the writes: the figures
    # alone cannot be debugged (the bench draws new cases on every run).
    offenders: list[str] = field(default_factory=list)


def _fuzz(
    name: str,
    tally: FuzzTally,
    calls: AwsCalls,
    strategy: st.SearchStrategy[Case],
    invoke: Callable[[Any], bool],
    n: int,
) -> None:
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def one(case: Case) -> None:
        calls.clear()
        tally.cases += 1
        accepted = not invoke(case.event)
        tally.accepted += accepted
        tally.writes += len(calls.writes)
        if (accepted or calls.writes) and len(tally.offenders) < MAX_OFFENDERS_SHOWN:
            writes = ", ".join(str(w) for w in calls.writes[:5])
            verdict = "accepted" if accepted else "refused"
            tally.offenders.append(f"{name}: {verdict}, writes [{writes}]: {case!r}")

    one()


def fuzz(examples: int) -> FuzzTally:
    config = DeploymentConfig()
    world = build_world(config, region="us-east-1")
    world.create_gpu_services(pasted_ip=task_private_ip(world.run_infra_task()))
    tally = FuzzTally()
    stub = CloudFormationStub()
    try:
        with recording() as calls:
            for name, strategy in (
                ("redeploy", redeploy_cases()),
                ("scaler", scaler_cases(config)),
                ("metrics_collector", collector_cases()),
                ("infra_watcher", infra_event_cases()),
            ):
                handler = load_handler_module(name)
                key = "error" if name == "redeploy" else "reason"

                def invoke(event: Any, handler: Any = handler, name: str = name, key: str = key) -> bool:
                    result = handler.lambda_handler(event, Context())
                    return bool(result.get("status") == EXPECTED[name] and result.get(key))

                _fuzz(name, tally, calls, strategy, invoke, examples)
            bootstrap = load_handler_module("bootstrap")

            def answer_failed(event: Any) -> bool:
                return bool(bootstrap.lambda_handler(event, Context())["status"] == "FAILED")

            _fuzz("bootstrap", tally, calls, bootstrap_cases(response_url=stub.url), answer_failed, examples)
    finally:
        stub.close()
    return tally


def faults(seeds: int) -> tuple[int, int, int]:
    """(runs, duplicate revisions, runs that did not converge)."""
    bench = FaultBench()
    runs = duplicates = unconverged = 0
    changes: tuple[Change, ...] = ("infra_replaced", "redeploy")
    for change in changes:
        plans = [Faults(kill_at=step) for step in range(1, bench.calls_of_a_clean_run(change) + 1)]
        plans += [Faults(seed=seed, rate=0.3) for seed in range(seeds)]
        for plan in plans:
            retry = Faults(seed=1000 + plan.seed, rate=0.1) if plan.rate else None
            outcome = bench.run(change, plan, retry_faults=retry)
            runs += 1
            duplicates += outcome.duplicate_revisions
            unconverged += bool(outcome.problems)
    return runs, duplicates, unconverged


def run() -> None:
    netguard.install()
    examples = int(os.environ.get("BENCH_FUZZ_EXAMPLES", "60"))
    seeds = int(os.environ.get("BENCH_FAULT_SEEDS", "5"))
    with moto_server() as moto:
        os.environ.update(aws_test_environment(moto.url))
        aws.reset_clients()
        create_state_table(DeploymentConfig().state_table)
        tally = fuzz(examples)
        print(f"figure: fuzz_cases_tried {tally.cases} count")
        print(f"figure: fuzz_write_calls {tally.writes} calls")
        print(f"figure: fuzz_accepted {tally.accepted} count")
        for offender in tally.offenders:
            print(f"# fuzz case not refused cleanly: {offender}")
        moto.reset()
        aws.reset_clients()
        create_state_table(DeploymentConfig().state_table)
        runs, duplicates, unconverged = faults(seeds)
        print(f"figure: fault_runs {runs} count")
        print(f"figure: fault_duplicate_revisions {duplicates} count")
        print(f"figure: fault_unconverged_runs {unconverged} count")
