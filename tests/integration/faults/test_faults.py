"""Faults at every step of a reconcile leave exactly one new revision per family and the lease free.

Against moto server, through the real handlers: a kill (Lambda timeout, crash) at each AWS
call of an infra replacement and of a redeploy, then throttling and lost answers (503 after
the work was done) at a seeded rate (30 % of HTTP attempts on the first invocation, 10 % on
each retry) until the platform's retries converge. `devtools.fault_scenarios` checks each run.
"""

from __future__ import annotations

import os

import pytest

from devtools.aws_faults import Faults
from devtools.fault_scenarios import Change, FaultBench

SEEDS = int(os.environ.get("FAULT_SEEDS", "4" if os.environ.get("CI") == "true" else "8"))


@pytest.fixture
def bench(state_table: str) -> FaultBench:
    return FaultBench()


@pytest.mark.slow
@pytest.mark.parametrize("change", ["infra_replaced", "redeploy"])
def test_a_kill_at_every_step_converges_to_one_revision_per_family(bench: FaultBench, change: Change) -> None:
    # Given the number of AWS calls an unfaulted run of the change makes
    steps = bench.calls_of_a_clean_run(change)
    assert steps > 10
    failures = []
    for step in range(1, steps + 1):
        # When the first invocation dies at that call and the platform retries
        outcome = bench.run(change, Faults(kill_at=step))
        # Then it converges with one new revision per family, the new rendering rolled, the lease free
        if outcome.problems:
            failures.append((step, outcome.problems))
    assert failures == []


@pytest.mark.slow
@pytest.mark.parametrize("change", ["infra_replaced", "redeploy"])
def test_throttling_and_lost_answers_at_a_seeded_rate_converge(bench: FaultBench, change: Change) -> None:
    failures = []
    injected = 0
    for seed in range(SEEDS):
        # Given 30 % of calls failing on the first invocation and 10 % on each retry
        faults, retry_faults = Faults(seed=seed, rate=0.3), Faults(seed=1000 + seed, rate=0.1)
        # When the platform retries until an invocation returns
        outcome = bench.run(change, faults, retry_faults=retry_faults)
        # Then it converged with one new revision per family and the lease free
        injected += sum(faults.injected.values()) + sum(retry_faults.injected.values())
        if outcome.problems:
            failures.append((seed, outcome.problems))
    assert failures == []
    assert injected > SEEDS, "the faults must actually have happened"
