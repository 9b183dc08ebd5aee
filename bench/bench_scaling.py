"""Scale-out reaction time on a simulated clock: our scaler against a model of target tracking.

The scaler is the real code (`CapacityReconciler`, the production `decide`, GetMetricData,
UpdateService, the state table) against moto server; only time is simulated. At ``step``
the frontend's TTFT (the statistic its target is set on) jumps from 300 ms to 1500 ms
(target 500 ms) and stays there. The
timeline, with every assumption a named constant:

- the metrics collector publishes the window that just ended at every period boundary,
  ``COLLECTOR_S`` later (scrape and PutMetricData), exactly as it does in production; with
  10-s metrics it samples six times a minute;
- after publishing, the collector's breach event reaches the scaler ``DELIVERY_S`` later;
- CloudWatch evaluates an alarm once per period at an unknown phase: the alarm paths are
  run at several phases and averaged;
- the one-minute schedule fires at every minute boundary, ``DELIVERY_S`` later.

Reaction = the moment UpdateService is called (plus the reconcile's measured wall time)
minus the moment the first breaching window began. Target tracking is modeled on the same
published datapoints: its alarm needs 3 of 3 breaching one-minute datapoints, then
Application Auto Scaling acts ``DELIVERY_S`` after the alarm's evaluation.
"""

from __future__ import annotations

import heapq
import os
import statistics
import time

from devtools import netguard
from devtools.ecs_world import build_world
from devtools.scaling_inputs import put_datapoint
from devtools.services import aws_test_environment, moto_server
from devtools.sim_clock import SimClock, past_minute_boundary
from devtools.template import create_state_table
from dynamo_ecs import aws
from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs.scaling.reconcile import CapacityReconciler
from dynamo_ecs.scaling.signals import TTFT_METRIC
from dynamo_ecs.scaling.triggers import Trigger
from dynamo_ecs.signals.base import Datum
from dynamo_ecs.signals.breach_events import breaches
from dynamo_ecs.state import StateStore

COLLECTOR_S = 1.0  # scrape + PutMetricData for a handful of targets (bench_signals: 100 in ~2 s)
DELIVERY_S = 1.0  # EventBridge to a warm asynchronous Lambda invocation
PHASES = (0.0, 15.0, 30.0, 45.0)  # alarm evaluation phases within a minute, averaged
TTFT_BEFORE_MS, TTFT_AFTER_MS, TTFT_TARGET_MS = 300.0, 1500.0, 500.0
HORIZON_S = 900.0


def ttft_over(window_start: float, window_end: float, step: float) -> float:
    """The window's TTFT: the load step breaches it once the window starts at or after the step."""
    return TTFT_AFTER_MS if window_start >= step else TTFT_BEFORE_MS


def _our_reaction(period: int, breach_events: bool, alarm_phase: float | None, epoch: float) -> float:
    """Seconds from the step to our UpdateService, running the real scaler on moto."""
    aws.reset_clients()
    config = DeploymentConfig.model_validate(
        {
            "scaling": {"metric_period_s": period},
            "signals": {"samples_per_invocation": 60 // period, "breach_events": breach_events},
        }
    )
    ttft_metric = TTFT_METRIC[config.frontend.targets.ttft_statistic]  # the statistic the target is on
    build_world(config, region="us-east-1").create_settled_gpu_services(desired=2)
    create_state_table(config.state_table)
    clock = SimClock(epoch)
    step = epoch + 600.0
    reconciler = CapacityReconciler(
        config,
        StateStore(config.state_table, config.deployment, clock=clock),
        aws.client("ecs"),
        aws.client("cloudwatch"),
        clock=clock,
    )
    updated: list[float] = []
    aws.client("ecs").meta.events.register(
        "before-call.ecs.UpdateService", lambda **_: updated.append(clock.now)
    )

    queue: list[tuple[float, int, int, str]] = []
    counter = 0

    def at(when: float, what: str) -> None:
        # At equal times the schedule runs before a publish: the pessimistic order for us.
        nonlocal counter
        counter += 1
        heapq.heappush(queue, (when, 0 if what == "schedule" else 1, counter, what))

    t = epoch
    while t < step + HORIZON_S:
        at(t + period + COLLECTOR_S, f"publish:{t}")
        if (t - epoch) % 60 == 0:
            at(t + DELIVERY_S, "schedule")
        if alarm_phase is not None:
            at(t + alarm_phase % period, "alarm_eval")
        t += period

    latest: float | None = None
    alarm_state = "OK"
    while queue and not updated:
        when, _, _, what = heapq.heappop(queue)
        clock.now = when
        if what.startswith("publish:"):
            start = float(what.split(":", 1)[1])
            latest = ttft_over(start, start + period, step)
            put_datapoint(aws.client("cloudwatch"), config, ttft_metric, "frontend", latest, when)
            data = [Datum(ttft_metric, "frontend", latest)]
            if config.signals.breach_events and breaches(config, data):
                at(when + DELIVERY_S, "breach")
        elif what == "alarm_eval":
            state = "ALARM" if latest is not None and latest > TTFT_TARGET_MS else "OK"
            if state == "ALARM" and alarm_state != "ALARM":
                at(when + DELIVERY_S, "alarm")
            alarm_state = state
        else:
            started = time.perf_counter()
            reconciler.reconcile(Trigger(kind=what))  # type: ignore[arg-type]
            if updated:
                return updated[0] + (time.perf_counter() - started) - step
    raise RuntimeError(f"no scale-out within {HORIZON_S} s (period {period}, phase {alarm_phase})")


def _target_tracking_reaction(phase: float, epoch: float) -> float:
    """3 of 3 breaching one-minute datapoints, evaluated once a minute at ``phase``."""
    step = epoch + 600.0
    published: list[tuple[float, float]] = []
    t = epoch
    while t < step + HORIZON_S:
        published.append((t + 60 + COLLECTOR_S, ttft_over(t, t + 60, step)))
        t += 60
    tick = epoch + phase
    while tick < step + HORIZON_S:
        seen = [value for when, value in published if when <= tick][-3:]
        if len(seen) == 3 and all(v > TTFT_TARGET_MS for v in seen):
            return tick + DELIVERY_S - step
        tick += 60
    raise RuntimeError("target tracking never fired")


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def run() -> None:
    netguard.install()
    epoch = past_minute_boundary()
    with moto_server() as moto:
        os.environ.update(aws_test_environment(moto.url))

        def ours(period: int, breach_events: bool, alarm_phase: float | None = None) -> float:
            moto.reset()  # each run in a clean account
            return _our_reaction(period, breach_events, alarm_phase, epoch)

        ours_60 = ours(60, True)
        ours_10 = ours(10, True)
        alarms_60 = _mean([ours(60, False, phase) for phase in PHASES])
        tracking = _mean([_target_tracking_reaction(phase, epoch) for phase in PHASES])
    netguard.uninstall()
    print(
        f"# assumptions: collector {COLLECTOR_S} s, EventBridge->Lambda {DELIVERY_S} s, alarm phases {PHASES}"
    )
    print(f"# ours with alarms only (no breach event), 60-s metrics, mean over phases: {alarms_60:.1f} s")
    print(f"figure: scale_out_reaction_s_60s {ours_60:.1f} s")
    print(f"figure: scale_out_reaction_s_10s {ours_10:.1f} s")
    print(f"figure: target_tracking_reaction_s_60s {tracking:.1f} s")
    print(f"# target tracking / ours at 60-s metrics: {tracking / ours_60:.1f} x")
