"""The policies a replay compares: ours (the production `decide`) and three baselines.

Every policy sees the same CloudWatch datapoints (one per ``scaling.metric_period_s``, the
period average, stamped at the end of its period) and the services' desired and running
counts, and answers desired counts or None (no call made). Each keeps its own state.

- `Ours`: `dynamo_ecs.scaling.decide.decide`, called as the scaler calls it: every minute
  (the schedule) and at once when a datapoint moves one of our alarms (threshold = the
  signal's target, 1 of 1 datapoints) from OK to ALARM, its History carried between calls.
- `HpaDefaults`: the same `decide` with Kubernetes HPA's default behaviour as the policy
  (15-s sync period, tolerance 0.1, scale-up 0 s / scale-down 300 s stabilization, up by
  4 replicas per 15 s, down by 100 % per 15 s) and no alarm path.
- `TargetTracking`: Application Auto Scaling target tracking, one policy per signal (FACTS.md
  §5): its high alarm needs 3 of 3 one-minute datapoints above target, its low alarm 15 of
  15 below 90 % of target; scale-out and scale-in cooldowns of 300 s; it scales out when any
  policy asks, in only when all do; missing data is not low load.
- `Static`: provisioned at max, never changes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ScalingPolicy, ServiceRole
from dynamo_ecs.scaling.decide import History, Observation, ServiceState, decide
from dynamo_ecs.scaling.signals import SignalSpec, signal_specs
from dynamo_ecs_cli.replay.model import INPUT_TOKEN_RATE, OUTPUT_TOKEN_RATE, ModelParams

Counts = dict[ServiceRole, int]

SCHEDULE_S = 60
HPA_SYNC_S = 15
TT_PERIOD_S = 60
TT_OUT_DATAPOINTS = 3
TT_IN_DATAPOINTS = 15
TT_IN_THRESHOLD = 0.9
TT_COOLDOWN_S = 300


class Policy(Protocol):
    name: str

    def initial_counts(self) -> Counts: ...

    def step(
        self,
        now: float,
        states: Mapping[ServiceRole, ServiceState],
        observations: Mapping[str, Observation],
        new_datapoints: bool,
    ) -> Counts | None: ...


def all_specs(config: DeploymentConfig) -> list[SignalSpec]:
    return [spec for role in SERVICE_ROLES for spec in signal_specs(config, role)]


def minimums(config: DeploymentConfig) -> Counts:
    return {role: config.service(role).min for role in SERVICE_ROLES}


class Every:
    """A fixed-rate schedule; a tick that passes a due time runs it (ticks may be coarser)."""

    def __init__(self, start: float, interval_s: float) -> None:
        self.interval_s = interval_s
        self.next_due = start + interval_s

    def due(self, now: float) -> bool:
        if now < self.next_due:
            return False
        while self.next_due <= now:
            self.next_due += self.interval_s
        return True


Signals = Mapping[tuple[str, ServiceRole], float | None]


class Datapoints:
    """One metric period's CloudWatch datapoints: each signal's average, stamped at the period's end."""

    def __init__(self, start: float, period_s: float) -> None:
        self.start = start
        self.period_s = period_s
        self.sums: dict[tuple[str, ServiceRole], list[float]] = {}
        self.latest: dict[tuple[str, ServiceRole], Observation] = {}

    def add(self, end: float, signals: Signals) -> bool:
        """Add one tick's values; True when a period ended with this tick."""
        for source, value in signals.items():
            if value is not None:
                self.sums.setdefault(source, []).append(value)
        if (end - self.start) % self.period_s != 0:
            return False
        for source, values in self.sums.items():
            self.latest[source] = Observation(sum(values) / len(values), end)
        self.sums = {}
        return True

    def value(self, metric: str, service: ServiceRole, now: float, max_age_s: float) -> float | None:
        obs = self.latest.get((metric, service))
        return None if obs is None or now - obs.at > max_age_s else obs.value


class _Decides:
    """A policy that runs the production `decide`, carrying its history between calls as the scaler does."""

    config: DeploymentConfig
    history: History
    demand: deque[Observation] | None = None
    token_demand: dict[ServiceRole, deque[Observation]] | None = None

    def initial_counts(self) -> Counts:
        return minimums(self.config)

    def _decide(
        self, states: Mapping[ServiceRole, ServiceState], observations: Mapping[str, Observation], now: float
    ) -> Counts:
        demand = tuple(self.demand or ())
        tokens = {role: tuple(series) for role, series in (self.token_demand or {}).items()}
        decision = decide(self.config, states, observations, self.history, now, demand, tokens)
        self.history = decision.history
        return {role: d.desired for role, d in decision.services.items()}


class Ours(_Decides):
    """The production decision function, invoked on the schedule and on alarm transitions."""

    name = "ours"

    def __init__(self, config: DeploymentConfig, start: float, params: ModelParams | None = None) -> None:
        self.config = config
        self.schedule = Every(start, SCHEDULE_S)
        self.history = History()
        self.specs = all_specs(config)
        self.in_alarm = {spec.key: False for spec in self.specs}
        self.invocations = 0
        self.alarm_invocations = 0
        # The RequestRate datapoints the scaler reads for its predictive floor.
        self.rates = Datapoints(start, config.scaling.metric_period_s)
        self.demand = deque()
        self.token_demand = {role: deque() for role in SERVICE_ROLES}
        # The scaler raises the GPU Auto Scaling group's capacity itself (scaling.scale_ahead).
        self.scale_ahead = config.scaling.scale_ahead

    def observe(self, end: float, signals: Signals) -> None:
        if not self.rates.add(end, signals):
            return
        window = self.config.scaling.trend_window_s
        series: list[tuple[tuple[str, ServiceRole], deque[Observation] | None]] = [
            ((names.REQUEST_RATE, "frontend"), self.demand),
            ((INPUT_TOKEN_RATE, "prefill"), (self.token_demand or {}).get("prefill")),
            ((OUTPUT_TOKEN_RATE, "frontend"), (self.token_demand or {}).get("frontend")),
        ]
        for source, kept in series:
            point = self.rates.latest.get(source)
            if point is None or point.at != end or kept is None:
                continue
            kept.append(point)
            while kept and end - kept[0].at > window:
                kept.popleft()

    def _alarm_fired(self, observations: Mapping[str, Observation], now: float) -> bool:
        """Evaluate every scaling alarm on the period that just ended; True if one went to ALARM.

        1 of 1 datapoints above the target; a missing datapoint is not breaching (the alarms'
        TreatMissingData), so the alarm returns to OK and can fire again.
        """
        fired = False
        for spec in self.specs:
            obs = observations.get(spec.key)
            breaching = obs is not None and obs.at == now and obs.value > spec.target
            fired = fired or (breaching and not self.in_alarm[spec.key])
            self.in_alarm[spec.key] = breaching
        return fired

    def step(
        self,
        now: float,
        states: Mapping[ServiceRole, ServiceState],
        observations: Mapping[str, Observation],
        new_datapoints: bool,
    ) -> Counts | None:
        scheduled = self.schedule.due(now)
        alarm = new_datapoints and self._alarm_fired(observations, now)
        if not (scheduled or alarm):
            return None
        self.invocations += 1
        self.alarm_invocations += int(alarm and not scheduled)
        return self._decide(states, observations, now)


def hpa_policy(config: DeploymentConfig) -> ScalingPolicy:
    """Kubernetes HPA's default behaviour, expressed as our ScalingPolicy."""
    largest = max(config.service(role).max for role in SERVICE_ROLES)
    return config.scaling.model_copy(
        update={
            "tolerance": 0.1,
            "scale_up_stabilization_s": 0,
            "scale_down_stabilization_s": 300,
            "scale_up_max_step": 4,
            "scale_down_max_step": max(largest, 1),
            "rate_limit_period_s": HPA_SYNC_S,
        }
    )


class HpaDefaults(_Decides):
    """`decide` with HPA's default behaviour, every 15 s, no alarms."""

    name = "hpa"

    def __init__(self, config: DeploymentConfig, start: float, params: ModelParams | None = None) -> None:
        self.config = config.model_copy(update={"scaling": hpa_policy(config)})
        self.schedule = Every(start, HPA_SYNC_S)
        self.history = History()

    def step(
        self,
        now: float,
        states: Mapping[ServiceRole, ServiceState],
        observations: Mapping[str, Observation],
        new_datapoints: bool,
    ) -> Counts | None:
        if not self.schedule.due(now):
            return None
        return self._decide(states, observations, now)


@dataclass
class _Tracker:
    """One target-tracking policy: its metric's one-minute datapoints, newest last."""

    spec: SignalSpec
    minutes: deque[float | None] = field(default_factory=lambda: deque(maxlen=TT_IN_DATAPOINTS))
    pending: list[float] = field(default_factory=list)  # this minute's datapoints so far

    def collect(self, observation: Observation | None, now: float) -> None:
        if observation is not None and observation.at == now:
            self.pending.append(observation.value)

    def close_minute(self, desired: int) -> None:
        """The one-minute alarm datapoint: the average of the minute's datapoints, or missing."""
        value = sum(self.pending) / len(self.pending) if self.pending else None
        self.pending.clear()
        if value is not None and self.spec.kind == "total":
            # A backlog is tracked per task (metric math: total / desired count), as AWS advises.
            value /= max(desired, 1)
        self.minutes.append(value)

    def high(self) -> bool:
        last = list(self.minutes)[-TT_OUT_DATAPOINTS:]
        return len(last) == TT_OUT_DATAPOINTS and all(v is not None and v > self.spec.target for v in last)

    def low(self) -> bool:
        last = list(self.minutes)
        return len(last) == TT_IN_DATAPOINTS and all(
            v is not None and v < TT_IN_THRESHOLD * self.spec.target for v in last
        )

    def wanted(self, capacity: int) -> int:
        value = self.minutes[-1] or 0.0
        return max(math.ceil(capacity * value / self.spec.target - 1e-9), 0)


class TargetTracking:
    """Application Auto Scaling target tracking, one policy per enabled signal of a service."""

    name = "target_tracking"

    def __init__(self, config: DeploymentConfig, start: float, params: ModelParams | None = None) -> None:
        self.config = config
        self.schedule = Every(start, TT_PERIOD_S)
        self.trackers = {
            role: [_Tracker(spec) for spec in signal_specs(config, role)] for role in SERVICE_ROLES
        }
        self.last_out: dict[ServiceRole, tuple[float, int]] = {}  # (when, capacity before it)
        self.last_in: dict[ServiceRole, float] = {}

    def initial_counts(self) -> Counts:
        return minimums(self.config)

    def step(
        self,
        now: float,
        states: Mapping[ServiceRole, ServiceState],
        observations: Mapping[str, Observation],
        new_datapoints: bool,
    ) -> Counts | None:
        for trackers in self.trackers.values():
            for tracker in trackers:
                tracker.collect(observations.get(tracker.spec.key), now)
        if not self.schedule.due(now):
            return None
        return {role: self._scale(role, states[role].desired, now) for role in SERVICE_ROLES}

    def _scale(self, role: ServiceRole, desired: int, now: float) -> int:
        bounds = self.config.service(role)
        trackers = self.trackers[role]
        for tracker in trackers:
            tracker.close_minute(desired)
        last_out = self.last_out.get(role)
        cooling_out = last_out is not None and now - last_out[0] < TT_COOLDOWN_S
        highs = [t for t in trackers if t.high()]
        if highs:
            # During a scale-out cooldown the capacity that scale-out added counts as already
            # there: the new count is computed from the capacity before it.
            base = last_out[1] if cooling_out and last_out is not None else desired
            wanted = min(max(t.wanted(base) for t in highs), bounds.max)
            if wanted <= desired:
                return desired
            if not cooling_out:
                self.last_out[role] = (now, desired)
            return wanted
        last_in = self.last_in.get(role)
        cooling_in = last_in is not None and now - last_in < TT_COOLDOWN_S
        if not trackers or cooling_in or cooling_out or not all(t.low() for t in trackers):
            return desired
        wanted = max(max(t.wanted(desired) for t in trackers), bounds.min)
        if wanted < desired:
            self.last_in[role] = now
            return wanted
        return desired


class Static:
    """Provisioned at max for the whole trace."""

    name = "static"

    def __init__(self, config: DeploymentConfig, start: float, params: ModelParams | None = None) -> None:
        self.config = config

    def initial_counts(self) -> Counts:
        return {role: self.config.service(role).max for role in SERVICE_ROLES}

    def step(
        self,
        now: float,
        states: Mapping[ServiceRole, ServiceState],
        observations: Mapping[str, Observation],
        new_datapoints: bool,
    ) -> Counts | None:
        return None
