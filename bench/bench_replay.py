"""Policy replay on the built-in bursty trace (6 h, seed 1) with the default config and model.

Prints the GPU-hours of ours and of static provisioning at max, and the SLA-violation
minutes of ours and of the target-tracking baseline. Goal (issue #8): at least 20 % fewer
GPU-hours than static, and fewer SLA-violation minutes than target tracking. The other
lines show the whole table and whether each goal was met.
"""

from __future__ import annotations

from dynamo_ecs.config import DeploymentConfig
from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.simulate import replay_all
from dynamo_ecs_cli.replay.traces import bursty


def run() -> None:
    trace = bursty(hours=6.0, seed=1)
    results = {r.policy: r for r in replay_all(trace, DeploymentConfig(), ModelParams())}
    for r in results.values():
        print(f"# {r.summary()}")
    ours, static, tracking = results["ours"], results["static"], results["target_tracking"]
    print(f"figure: bursty_gpu_hours_ours {ours.gpu_hours:.1f} h")
    print(f"figure: bursty_gpu_hours_static {static.gpu_hours:.1f} h")
    print(f"figure: bursty_sla_minutes_ours {ours.sla_minutes:.1f} min")
    print(f"figure: bursty_sla_minutes_target_tracking {tracking.sla_minutes:.1f} min")
    saving = 1 - ours.gpu_hours / static.gpu_hours
    print(f"# GPU-hours vs static: {saving:.0%} fewer (goal >= 20 %): {'met' if saving >= 0.2 else 'MISSED'}")
    fewer = ours.sla_minutes < tracking.sla_minutes
    print(f"# SLA minutes vs target tracking: {'met' if fewer else 'MISSED'}")
