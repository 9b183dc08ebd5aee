"""The scaling decision: a pure function from observations to desired counts, with reasons.

`decide` takes the services' current counts, the latest datapoint of every signal, the
recent recommendations and scale actions, and the time, and returns a desired count per
service with a reason per service and per metric. It performs no I/O, so the scaler, the
policy replay and the property tests all run exactly this code. The steps, in order (each
explained with its origin in docs/scaling.md):

1. per metric, a proposal (`propose`): ``ratio`` signals ``ceil(running * value / target)``,
   ``total`` signals ``ceil(total / per_replica_target)``; within the tolerance: no change.
   ITL below its target reads only the part above its no-load floor, or (floor unknown)
   never asks for scale-in. A metric with no datapoint younger than ``metric_max_age_s``
   proposes nothing;
2. the largest proposal wins, raised to the predictive floor (`forecast`) when the service
   has a ``capacity_rps``; when any metric is missing, the result is never below the
   current count (missing data never scales in);
3. prefill scale-to-zero (optional): active while its queue depth is above
   ``prefill_activation_queue``, JetStream lag (when on) above ``prefill_activation_lag``,
   or the frontend refuses requests for lack of a worker;
4. the recommendation, clamped to [min, max], is remembered; stabilization windows per
   direction pick the highest (down) or lowest (up) recommendation of the window; under the
   predictive floor the down window is ``floor_scale_down_s``;
5. rate limits per direction over ``rate_limit_period_s``; no scale-in during a rollout;
6. hard bounds: [min, max] per service, then the GPU budget across both (`fit_budget`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ScalingPolicy, ServiceRole
from dynamo_ecs.scaling.forecast import RoleForecast, predictive_floor, role_forecasts
from dynamo_ecs.scaling.signals import SignalSpec, signal_specs

Action = Literal["scale_out", "scale_in", "none"]
_EPSILON = 1e-9  # ceil(2.0000000001) must stay 2 after float arithmetic


@dataclass(frozen=True)
class ServiceState:
    """What ECS reports for one service now."""

    desired: int
    running: int
    rollout_in_progress: bool = False


@dataclass(frozen=True)
class Observation:
    """The latest datapoint of one signal; ``at`` is its timestamp (epoch seconds)."""

    value: float
    at: float


@dataclass(frozen=True)
class Recommendation:
    at: float
    role: ServiceRole
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    role: ServiceRole
    before: int
    after: int


@dataclass(frozen=True)
class History:
    """Recent recommendations (for stabilization) and scale actions (for rate limits)."""

    recommendations: tuple[Recommendation, ...] = ()
    scale_events: tuple[ScaleEvent, ...] = ()

    def pruned(self, now: float, policy: ScalingPolicy) -> History:
        """What the windows still need, and each role's newest recommendation however old.

        The newest one says the role's history is not lost: without it, a scaler invoked less
        often than the down-stabilization window would find no history on every run, treat
        the current count as recommended now (as for a lost history) and never scale in.
        """
        keep_s = max(
            policy.scale_up_stabilization_s,
            policy.scale_down_stabilization_s,
            policy.floor_scale_down_s or 0,
            policy.lull_hold_window_s if policy.floor_scale_down_s is not None else 0,
        )
        newest = {r.role: r for r in sorted(self.recommendations, key=lambda r: r.at)}
        kept = [r for r in self.recommendations if now - r.at <= keep_s or newest[r.role] is r]
        # Scale actions: for the rate limits, and for the lull memory (`recent_short_lull`).
        events_s = max(policy.rate_limit_period_s, lull_memory_s(policy))
        return History(
            tuple(kept),
            tuple(e for e in self.scale_events if now - e.at < events_s),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "recommendations": [[r.at, r.role, r.replicas] for r in self.recommendations],
            "scale_events": [[e.at, e.role, e.before, e.after] for e in self.scale_events],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        return cls(
            tuple(Recommendation(float(a), r, int(n)) for a, r, n in data.get("recommendations", [])),
            tuple(ScaleEvent(float(a), r, int(b), int(n)) for a, r, b, n in data.get("scale_events", [])),
        )


@dataclass(frozen=True)
class Proposal:
    """What one metric says about one service. ``replicas`` None: the metric has no say."""

    signal: str
    metric: str
    kind: str
    target: float
    value: float | None
    age_s: float | None
    replicas: int | None
    pressure: float  # value relative to its target (1.0 = exactly on target)
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "metric": self.metric,
            "value": self.value,
            "target": self.target,
            "age_s": None if self.age_s is None else round(self.age_s, 1),
            "proposes": self.replicas,
            "note": self.note,
        }


@dataclass(frozen=True)
class ServiceDecision:
    role: ServiceRole
    current: int
    running: int
    desired: int
    recommendation: int
    reason: str
    proposals: tuple[Proposal, ...] = ()
    steps: tuple[str, ...] = ()

    @property
    def action(self) -> Action:
        if self.desired > self.current:
            return "scale_out"
        if self.desired < self.current:
            return "scale_in"
        return "none"

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "from": self.current,
            "to": self.desired,
            "running": self.running,
            "recommendation": self.recommendation,
            "reason": self.reason,
            "steps": list(self.steps),
            "metrics": [p.as_dict() for p in self.proposals],
        }


@dataclass(frozen=True)
class Decision:
    now: float
    services: dict[ServiceRole, ServiceDecision]
    history: History = field(default_factory=History)

    @property
    def changes(self) -> list[ServiceDecision]:
        return [d for d in self.services.values() if d.action != "none"]

    def as_dict(self) -> dict[str, Any]:
        return {role: d.as_dict() for role, d in self.services.items()}


# -- scale-in that pays ------------------------------------------------------------------


def lull_memory_s(policy: ScalingPolicy) -> int:
    """How far back a short lull still counts: two hold windows."""
    return 2 * policy.lull_hold_window_s


def recent_short_lull(
    history: History, role: ServiceRole, policy: ScalingPolicy, now: float
) -> tuple[ScaleEvent, ScaleEvent] | None:
    """The newest scale-in of ``role`` followed within the hold window by a scale-out, both in
    the lull memory: a lull that ended before a release could pay for itself. None without one."""
    window = policy.lull_hold_window_s
    events = sorted(
        (e for e in history.scale_events if e.role == role and now - e.at < lull_memory_s(policy)),
        key=lambda e: e.at,
    )
    last_in: ScaleEvent | None = None
    found: tuple[ScaleEvent, ScaleEvent] | None = None
    for event in events:
        if event.after < event.before:
            last_in = event
        elif event.after > event.before and last_in is not None and event.at - last_in.at <= window:
            found = (last_in, event)
    return found


# -- step 1: one metric's proposal --------------------------------------------------------


def _ceil(x: float) -> int:
    return max(0, math.ceil(x - _EPSILON))


def propose(
    spec: SignalSpec, observation: Observation | None, state: ServiceState, policy: ScalingPolicy, now: float
) -> Proposal:
    """One metric's proposal for one service (HPA's ratio rule or KEDA's backlog rule)."""

    def result(replicas: int | None, pressure: float, note: str) -> Proposal:
        value = None if observation is None else observation.value
        age = None if observation is None else now - observation.at
        return Proposal(spec.name, spec.metric, spec.kind, spec.target, value, age, replicas, pressure, note)

    if observation is None:
        return result(None, 0.0, f"no datapoint in the last {policy.metric_max_age_s} s")
    age = now - observation.at
    if age > policy.metric_max_age_s:
        return result(
            None, 0.0, f"stale: newest datapoint is {age:.0f} s old (> {policy.metric_max_age_s} s)"
        )
    value = max(observation.value, 0.0)
    desired, running = state.desired, min(state.running, state.desired)
    if spec.kind == "total":
        wanted = _ceil(value / spec.target)
        pressure = value / (spec.target * max(desired, 1))
        if desired > 0 and abs(pressure - 1.0) <= policy.tolerance + _EPSILON:
            return result(desired, pressure, "within tolerance")
        return result(wanted, pressure, f"ceil({value:g} / {spec.target:g} per replica) = {wanted}")
    ratio = value / spec.target
    if abs(ratio - 1.0) <= policy.tolerance + _EPSILON:
        return result(desired, ratio, "within tolerance")
    pending = desired - running
    if ratio < 1.0 and spec.scale_in == "never":
        return result(
            0,
            ratio,
            "below target: a latency above its no-load floor never asks for scale-in (floor unknown)",
        )
    if ratio < 1.0 and spec.scale_in == "above_floor":
        above = max(value - spec.floor, 0.0) / (spec.target - spec.floor)
        wanted = min(_ceil(running * above + pending), desired)
        return result(
            wanted,
            ratio,
            f"ceil({running} running x {above:.2f} above the {spec.floor:g} floor"
            f" + {pending} starting) = {wanted}",
        )
    if ratio > 1.0:
        # Tasks still starting count as capacity on the way (HPA counts them at 0 % for scale-up).
        wanted = max(_ceil(running * ratio), desired)
        return result(wanted, ratio, f"ceil({running} running x {ratio:.2f}) = {_ceil(running * ratio)}")
    # Tasks still starting count as on target (HPA counts them at 100 % for scale-down).
    wanted = min(_ceil(running * ratio + pending), desired)
    return result(wanted, ratio, f"ceil({running} running x {ratio:.2f} + {pending} starting) = {wanted}")


# -- steps 2-5: one service ---------------------------------------------------------------


@dataclass
class _Working:
    role: ServiceRole
    state: ServiceState
    proposals: tuple[Proposal, ...]
    recommendation: int = 0
    desired: int = 0
    seeded: bool = False
    steps: list[str] = field(default_factory=list)

    @property
    def pressure(self) -> float:
        """The most breached fresh metric, value / target (0 without one): the budget's priority."""
        return max((p.pressure for p in self.proposals if p.replicas is not None), default=0.0)


def _recommend(
    role: ServiceRole,
    config: DeploymentConfig,
    state: ServiceState,
    observations: Mapping[str, Observation],
    now: float,
    forecasts: Mapping[ServiceRole, RoleForecast] | None = None,
) -> _Working:
    policy = config.scaling
    bounds = config.service(role)
    specs = signal_specs(config, role)
    proposals = tuple(propose(s, observations.get(s.key), state, policy, now) for s in specs)
    work = _Working(role, state, proposals)
    fresh = [p for p in proposals if p.replicas is not None]
    missing = [p for p in proposals if p.replicas is None]

    if not fresh:
        raw = state.desired
        work.steps.append("no fresh metric: keep the current count")
    else:
        best = max(fresh, key=lambda p: p.replicas or 0)
        raw = best.replicas or 0
        work.steps.append(f"largest proposal: {best.signal} -> {raw}")
    floor = predictive_floor(config, role, forecasts or {})
    if floor is not None and floor[0] > raw:
        raw = floor[0]
        work.steps.append(floor[2])
    elif floor is not None and raw < state.desired and floor[1] > raw:
        raw = min(state.desired, floor[1])
        work.steps.append(f"scale-in held at {raw} by the floor's hysteresis ({floor[2]})")

    scale_to_zero = role == "prefill" and policy.prefill_scale_to_zero and bounds.min == 0
    activation = _activation(fresh, observations, policy, now) if scale_to_zero else None
    idle = activation is not None and not activation[1]
    if activation is not None and activation[1]:
        # KEDA: above the activation threshold the floor is one replica, at zero or not;
        # scaling to zero only while inactive keeps 0 <-> 1 from flapping.
        raw = max(raw, 1)
        work.steps.append(f"active: {', '.join(activation[1])}")
    elif scale_to_zero and state.desired == 0:
        raw = 0
        work.steps.append("at zero and not activated")
    elif missing and idle:
        work.steps.append("backlog idle: missing latency and GPU data are read as no traffic")
    elif missing and raw < state.desired:
        raw = state.desired
        work.steps.append(f"missing {', '.join(p.signal for p in missing)}: no scale-in on partial data")

    work.recommendation = min(max(raw, bounds.min), bounds.max)
    if work.recommendation != raw:
        work.steps.append(f"bounds [{bounds.min}, {bounds.max}] -> {work.recommendation}")
    return work


def _activation(
    fresh: list[Proposal], observations: Mapping[str, Observation], policy: ScalingPolicy, now: float
) -> tuple[list[str], list[str]] | None:
    """Prefill's activation inputs that are fresh, and those above their threshold.

    None when no input is fresh (nothing says whether prefill is needed). The inputs: the
    prefill queue depth, JetStream lag (when on), and the frontend's refused requests.
    """
    thresholds = {"queue": policy.prefill_activation_queue, "lag": policy.prefill_activation_lag}
    seen: list[str] = []
    above: list[str] = []
    for proposal in fresh:
        if proposal.signal in thresholds:
            seen.append(proposal.signal)
            value, threshold = proposal.value or 0.0, thresholds[proposal.signal]
            if value > threshold:
                above.append(f"{proposal.signal} {value:g} > {threshold:g}")
    refused = observations.get("prefill_refused")
    if refused is not None and now - refused.at <= policy.metric_max_age_s:
        seen.append("refused")
        if refused.value > 0:
            above.append(f"frontend refuses {refused.value:g} requests/s for lack of a worker")
    return (seen, above) if seen else None


def _stabilize(
    work: _Working, history: History, policy: ScalingPolicy, now: float, down_window_s: int | None = None
) -> int:
    """HPA's behaviour: scale up to the lowest, down to the highest recommendation of the window.

    ``down_window_s`` replaces ``scale_down_stabilization_s`` (the predictive floor's shorter window).
    """
    current = work.state.desired
    down_s = policy.scale_down_stabilization_s if down_window_s is None else down_window_s
    own = [r for r in history.recommendations if r.role == work.role]
    up_window = [r.replicas for r in own if now - r.at <= policy.scale_up_stabilization_s]
    if not own:
        # As HPA does for a target it has not seen: the current count counts as recommended
        # now, so a lost or new history never allows an immediate scale-in.
        own = [Recommendation(now, work.role, current)]
        work.seeded = True
    down_window = [r.replicas for r in own if now - r.at <= down_s]
    up = min([*up_window, work.recommendation])
    down = max([*down_window, work.recommendation])
    if current < up:
        if up < work.recommendation:
            work.steps.append(
                f"up-stabilization: lowest recommendation in {policy.scale_up_stabilization_s} s is {up}"
            )
        return up
    if current > down:
        if down > work.recommendation:
            work.steps.append(f"down-stabilization: highest recommendation in {down_s} s is {down}")
        return down
    if work.recommendation < current:
        work.steps.append(
            f"down-stabilization: a recommendation of {down} in the last {down_s} s holds {current}"
        )
    elif work.recommendation > current:
        work.steps.append(
            f"up-stabilization: a recommendation of {up} in the last "
            f"{policy.scale_up_stabilization_s} s holds {current}"
        )
    return current


def _rate_limit(work: _Working, target: int, history: History, policy: ScalingPolicy, now: float) -> int:
    current = work.state.desired
    recent = [
        e for e in history.scale_events if e.role == work.role and now - e.at < policy.rate_limit_period_s
    ]
    if target > current:
        used = sum(e.after - e.before for e in recent if e.after > e.before)
        limit = current + max(policy.scale_up_max_step - used, 0)
        if target > limit:
            work.steps.append(
                f"rate limit: at most {policy.scale_up_max_step} up per {policy.rate_limit_period_s} s "
                f"({used} used) -> {limit}"
            )
            return limit
    elif target < current:
        used = sum(e.before - e.after for e in recent if e.before > e.after)
        limit = current - max(policy.scale_down_max_step - used, 0)
        if target < limit:
            work.steps.append(
                f"rate limit: at most {policy.scale_down_max_step} down per {policy.rate_limit_period_s} s "
                f"({used} used) -> {limit}"
            )
            return limit
    return target


# -- step 6: the GPU budget ---------------------------------------------------------------


def fit_budget(
    config: DeploymentConfig,
    wanted: Mapping[ServiceRole, int],
    current: Mapping[ServiceRole, int],
    pressure: Mapping[ServiceRole, float],
) -> tuple[dict[ServiceRole, int], str | None]:
    """Desired counts whose GPUs fit ``gpu_budget``, and a note when the budget decided.

    The rule when the budget binds: each service keeps what it has (or less, if it asked for
    less); the GPUs left go to the service under the highest pressure (its most breached
    metric, value / target) first, up to what it asked for, then to the other. A tie goes to
    the frontend, which serves the users' requests and runs the decode workers. If even the
    kept counts exceed the budget (the budget was lowered), the service under the lowest
    pressure gives GPUs back first, never below its minimum.
    """
    budget = config.gpu_budget
    if config.gpus_used(wanted) <= budget:
        return dict(wanted), None
    order = sorted(SERVICE_ROLES, key=lambda r: (-pressure.get(r, 0.0), SERVICE_ROLES.index(r)))
    granted = {r: max(config.service(r).min, min(wanted[r], current[r])) for r in SERVICE_ROLES}
    # One task at a time: the GPUs a count uses need not be linear in it (one frontend per
    # instance on multi-GPU instances, dynamo_ecs/capacity.py).
    for role in reversed(order):
        while config.gpus_used(granted) > budget and granted[role] > config.service(role).min:
            granted[role] -= 1
    for role in order:
        while (
            granted[role] < wanted[role] and config.gpus_used({**granted, role: granted[role] + 1}) <= budget
        ):
            granted[role] += 1
    note = (
        f"GPU budget {budget} binds: asked "
        + ", ".join(f"{r} {wanted[r]}" for r in SERVICE_ROLES)
        + "; granted "
        + ", ".join(f"{r} {granted[r]}" for r in SERVICE_ROLES)
        + f" (priority: {order[0]}, higher pressure)"
    )
    return granted, note


# -- the whole decision -------------------------------------------------------------------


def decide(
    config: DeploymentConfig,
    states: Mapping[ServiceRole, ServiceState],
    observations: Mapping[str, Observation],
    history: History,
    now: float,
    demand: Sequence[Observation] = (),
    token_demand: Mapping[ServiceRole, Sequence[Observation]] | None = None,
) -> Decision:
    """Desired counts for both services. ``observations`` is keyed by `SignalSpec.key`;
    ``demand`` is the frontend's recent ``RequestRate`` datapoints (the predictive floor's input);
    ``token_demand`` per service its recent token-rate datapoints (prefill: input tokens/s, the
    frontend: output tokens/s), the floor's input where ``capacity_tokens_per_s`` is set."""
    policy = config.scaling
    history = history.pruned(now, policy)
    forecasts = role_forecasts(config, demand, now, token_demand)
    work: dict[ServiceRole, _Working] = {}
    for role in SERVICE_ROLES:
        w = _recommend(role, config, states[role], observations, now, forecasts)
        floored = predictive_floor(config, role, forecasts) is not None
        down_window = policy.floor_scale_down_s if floored else None
        if down_window is not None and w.recommendation < w.state.desired:
            lull = recent_short_lull(history, role, policy, now) if policy.lull_hold_window_s else None
            hold = policy.lull_hold_window_s
            if lull is not None and hold > down_window:
                down_window = hold
                scaled_in, scaled_out = lull
                w.steps.append(
                    f"under the predictive floor, scale-in that pays: the last lull lasted "
                    f"{scaled_out.at - scaled_in.at:.0f} s (in {scaled_in.before} -> {scaled_in.after}, "
                    f"out {scaled_out.before} -> {scaled_out.after}), shorter than start-up + instance "
                    f"release: the task came back while its instance was still billed; a scale-in now "
                    f"waits {hold} s"
                )
            else:
                w.steps.append(f"under the predictive floor: scale-down window {down_window} s")
        target = _stabilize(w, history, policy, now, down_window)
        target = _rate_limit(w, target, history, policy, now)
        if target < w.state.desired and w.state.rollout_in_progress:
            w.steps.append("rollout under way: no scale-in")
            target = w.state.desired
        bounds = config.service(role)
        bounded = min(max(target, bounds.min), bounds.max)
        if bounded != target:
            w.steps.append(f"bounds [{bounds.min}, {bounds.max}] -> {bounded}")
        w.desired = bounded
        work[role] = w

    fitted, budget_note = fit_budget(
        config,
        {r: w.desired for r, w in work.items()},
        {r: w.state.desired for r, w in work.items()},
        {r: w.pressure for r, w in work.items()},
    )
    services: dict[ServiceRole, ServiceDecision] = {}
    recommendations = list(history.recommendations)
    events = list(history.scale_events)
    for role, w in work.items():
        if fitted[role] != w.desired and budget_note:
            w.steps.append(budget_note)
        w.desired = fitted[role]
        if w.seeded:
            recommendations.append(Recommendation(now, role, w.state.desired))
        recommendations.append(Recommendation(now, role, w.recommendation))
        if w.desired != w.state.desired:
            events.append(ScaleEvent(now, role, w.state.desired, w.desired))
        services[role] = ServiceDecision(
            role=role,
            current=w.state.desired,
            running=w.state.running,
            desired=w.desired,
            recommendation=w.recommendation,
            reason=_summary(w),
            proposals=w.proposals,
            steps=tuple(w.steps),
        )
    return Decision(now, services, History(tuple(recommendations), tuple(events)))


def _summary(w: _Working) -> str:
    current, desired = w.state.desired, w.desired
    if desired == current:
        head = f"no change ({current})"
    else:
        head = f"{'scale out' if desired > current else 'scale in'} {current} -> {desired}"
    return f"{head}: " + "; ".join(w.steps)
