"""Hypothesis strategies for the scaling decision: valid configs, states, observations."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import Observation, ServiceState
from dynamo_ecs.scaling.signals import activation_specs, signal_specs

NOW = 1_000_000.0


@st.composite
def configs(
    draw: st.DrawFn, large_budget: bool = False, scale_to_zero: bool | None = None
) -> DeploymentConfig:
    to_zero = draw(st.booleans()) if scale_to_zero is None else scale_to_zero
    tree: dict[str, Any] = {"scaling": {}}
    mins: dict[str, int] = {}
    for role in SERVICE_ROLES:
        low = 1 if role == "frontend" or not to_zero else 0
        lo = draw(st.integers(low, 3))
        hi = draw(st.integers(max(lo, 1), 10))
        gpus = draw(st.sampled_from([1, 1, 2, 4]))
        tree[role] = {"min": lo, "max": hi, "gpus_per_task": gpus}
        mins[role] = lo * gpus
    floor = sum(mins.values())
    tree["gpu_budget"] = 1000 if large_budget else draw(st.integers(max(floor, 1), floor + 24))
    tree["scaling"] = {
        "tolerance": draw(st.sampled_from([0.0, 0.05, 0.1, 0.2])),
        "scale_up_stabilization_s": draw(st.sampled_from([0, 0, 60, 120])),
        "scale_down_stabilization_s": draw(st.sampled_from([0, 60, 300])),
        "scale_up_max_step": draw(st.integers(1, 6)),
        "scale_down_max_step": draw(st.integers(1, 3)),
        "rate_limit_period_s": draw(st.sampled_from([30, 60, 120])),
        "prefill_scale_to_zero": to_zero,
        "prefill_activation_queue": draw(st.sampled_from([0.0, 2.0])),
        "prefill_activation_lag": draw(st.sampled_from([0.0, 2.0])),
    }
    tree["frontend"]["targets"] = {"ttft_statistic": draw(st.sampled_from(["mean", "p90"]))}
    lag = draw(st.sampled_from([None, 10.0]))
    tree["prefill"]["targets"] = {"jetstream_lag_per_replica": lag}
    if lag is not None:
        tree["signals"] = {"jetstream_streams": ["work"]}
    return DeploymentConfig.model_validate(tree)


@st.composite
def states_within_bounds(draw: st.DrawFn, config: DeploymentConfig) -> dict[ServiceRole, ServiceState]:
    out: dict[ServiceRole, ServiceState] = {}
    for role in SERVICE_ROLES:
        svc = config.service(role)
        desired = draw(st.integers(svc.min, svc.max))
        running = draw(st.integers(0, desired))
        out[role] = ServiceState(desired, running, draw(st.booleans()))
    return out


values = st.floats(min_value=0.0, max_value=5000.0, allow_nan=False)


@st.composite
def observations(
    draw: st.DrawFn, config: DeploymentConfig, fresh_only: bool = False
) -> dict[str, Observation]:
    out = {}
    specs = [spec for role in SERVICE_ROLES for spec in signal_specs(config, role)] + activation_specs(config)
    for spec in specs:
        present = True if fresh_only else draw(st.booleans())
        if not present:
            continue
        age = draw(st.floats(0, 120)) if fresh_only else draw(st.floats(0, 400))
        out[spec.key] = Observation(draw(values), NOW - age)
    return out


@st.composite
def configs_on_instance_types(draw: st.DrawFn) -> DeploymentConfig:
    """A config with a GPU instance type, 1-GPU tasks and a budget the minimums fit."""
    from dynamo_ecs import capacity

    name = draw(st.sampled_from(sorted(capacity.INSTANCE_TYPES)))
    tree: dict[str, Any] = {"gpu_instance_type": name, "scaling": {"prefill_scale_to_zero": True}}
    for role, low in (("frontend", 1), ("prefill", 0)):
        lo = draw(st.integers(low, 3))
        tree[role] = {"min": lo, "max": draw(st.integers(max(lo, 1), 10))}
    floor = capacity.gpus_paid(name, tree["frontend"]["min"], tree["prefill"]["min"])
    tree["gpu_budget"] = draw(st.integers(floor, floor + 32))
    return DeploymentConfig.model_validate(tree)
