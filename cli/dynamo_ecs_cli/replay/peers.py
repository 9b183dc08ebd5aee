"""The strongest peers, each configured as a good operator would (docs/replay.md "Peers").

- `StepScaling`: Application Auto Scaling step scaling of each ECS service on CloudWatch
  alarms that fire on 1 of 1 datapoints (60-s standard or 10-s high-resolution metrics): a
  scale-out step sized by how far the worst signal is above its target, a cooldown during
  which the capacity just added counts as there, and a scale-in of one task after
  ``in_datapoints`` datapoints with GPU utilization below ``in_gpu_pct`` and no queue.
- `Keda`: KEDA polling the frontend's metrics every 30 s and HPA acting on them every
  15 s with its default behaviour (tolerance 0.1, scale-down stabilization), which is the
  production `decide` under HPA's policy fed 30-s values.
- `Planner`: Dynamo's planner: every ``interval_s`` the request rate of the next interval
  is predicted (constant: the last interval's; trend: a straight line through the last
  intervals, one ahead), times ``1 + headroom``, and sized from the profiled per-replica
  throughput: prefill ``ceil(rate x ISL / prefill tokens/s)``, decode at the ITL target.

Every peer sees what the model publishes, each at its own metric period (`observe`), and
keeps within [min, max] and the GPU budget (`fit_budget`, the same rule as ours).

**The level field** (``level=True``): the peer's scale-outs also raise the GPU Auto Scaling
group at once, as ours' scale-ahead does, instead of waiting for the capacity provider's
once-a-minute reaction. On Kubernetes a cluster autoscaler acts on pending pods as fast, so a
KEDA or planner user gets new nodes without that minute; the level field compares policies on
the same capacity path.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from dynamo_ecs import metric_names as names
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import History, Observation, ServiceState, decide, fit_budget
from dynamo_ecs.scaling.signals import SignalSpec, signal_specs
from dynamo_ecs_cli.replay.model import ModelParams
from dynamo_ecs_cli.replay.policies import Counts, Datapoints, Every, Signals, hpa_policy, minimums


def _bounded(
    config: DeploymentConfig, wanted: Counts, current: Counts, pressure: dict[ServiceRole, float]
) -> Counts:
    clamped = {r: min(max(wanted[r], config.service(r).min), config.service(r).max) for r in SERVICE_ROLES}
    fitted, _ = fit_budget(config, clamped, current, pressure)
    return fitted


# -- AWS step scaling ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepKnobs:
    period_s: int = 60
    # Tasks added when the worst signal's value / target reaches 1, 1.5, 2 (1 of 1 datapoints).
    steps: tuple[int, int, int] = (1, 2, 4)
    cooldown_s: int = 120
    in_gpu_pct: float = 50.0
    in_datapoints: int = 5


class StepScaling:
    """Application Auto Scaling step scaling per service, on 1-of-1 alarms."""

    def __init__(
        self,
        config: DeploymentConfig,
        start: float,
        params: ModelParams,
        knobs: StepKnobs,
        name: str,
        level: bool = False,
    ) -> None:
        self.name = name
        self.scale_ahead = level
        self.config = config
        self.knobs = knobs
        self.points = Datapoints(start, knobs.period_s)
        self.specs = {role: signal_specs(config, role) for role in SERVICE_ROLES}
        self.last_out: dict[ServiceRole, tuple[float, int]] = {}  # when, capacity before it
        self.low_streak: dict[ServiceRole, int] = dict.fromkeys(SERVICE_ROLES, 0)
        self.new_point = False

    def initial_counts(self) -> Counts:
        return minimums(self.config)

    def observe(self, end: float, signals: Signals) -> None:
        self.new_point = self.points.add(end, signals)

    def step(
        self,
        now: float,
        states: Mapping[ServiceRole, ServiceState],
        observations: Mapping[str, Observation],
        new_datapoints: bool,
    ) -> Counts | None:
        if not self.new_point:
            return None
        current = {r: states[r].desired for r in SERVICE_ROLES}
        wanted = dict(current)
        pressure: dict[ServiceRole, float] = {}
        for role in SERVICE_ROLES:
            ratio = self._worst_ratio(role, current[role], now)
            pressure[role] = ratio
            wanted[role] = self._scale(role, current[role], ratio, now)
        return _bounded(self.config, wanted, current, pressure)

    def _per_task(self, spec: SignalSpec, desired: int, now: float) -> float | None:
        value = self.points.value(spec.metric, spec.source_service, now, self.knobs.period_s)
        if value is None:
            return None
        return value / max(desired, 1) if spec.kind == "total" else value

    def _worst_ratio(self, role: ServiceRole, desired: int, now: float) -> float:
        ratios = [
            v / spec.target
            for spec in self.specs[role]
            if (v := self._per_task(spec, desired, now)) is not None
        ]
        return max(ratios, default=0.0)

    def _scale(self, role: ServiceRole, desired: int, ratio: float, now: float) -> int:
        k = self.knobs
        last = self.last_out.get(role)
        cooling = last is not None and now - last[0] < k.cooldown_s
        if ratio >= 1.0:
            self.low_streak[role] = 0
            step = k.steps[2] if ratio >= 2.0 else k.steps[1] if ratio >= 1.5 else k.steps[0]
            # In a cooldown the capacity the last scale-out added counts as there: only a
            # larger step adds the difference.
            base = last[1] if cooling and last is not None else desired
            target = max(base + step, desired)
            if target > desired and not cooling:
                self.last_out[role] = (now, desired)
            return target
        if self._low(role, desired, now):
            self.low_streak[role] += 1
        else:
            self.low_streak[role] = 0
        if self.low_streak[role] >= k.in_datapoints and not cooling:
            self.low_streak[role] = 0
            return desired - 1
        return desired

    def _low(self, role: ServiceRole, desired: int, now: float) -> bool:
        """The scale-in alarm: GPU utilization below its threshold and no backlog per task."""
        gpu = self.points.value(names.GPU_UTILIZATION, role, now, self.knobs.period_s)
        queue = self.points.value(names.QUEUE_DEPTH, role, now, self.knobs.period_s)
        return gpu is not None and gpu < self.knobs.in_gpu_pct and (queue or 0.0) / max(desired, 1) < 1.0


# -- KEDA + HPA ---------------------------------------------------------------------------

KEDA_POLL_S = 30
HPA_SYNC_S = 15


@dataclass(frozen=True)
class KedaKnobs:
    scale_down_stabilization_s: int = 300
    itl: bool = True  # scale on ITL too (its floor keeps replicas that do nothing)
    gpu_utilization_pct: float | None = 80.0


class Keda:
    """HPA every 15 s on the values KEDA polled last (every 30 s, 30-s means)."""

    def __init__(
        self,
        config: DeploymentConfig,
        start: float,
        params: ModelParams,
        knobs: KedaKnobs,
        name: str,
        level: bool = False,
    ) -> None:
        self.name = name
        self.scale_ahead = level
        targets = {
            "itl_ms": config.frontend.targets.itl_ms if knobs.itl else None,
            "gpu_utilization_pct": knobs.gpu_utilization_pct,
        }
        tuned = config.model_copy(
            update={
                "frontend": config.frontend.model_copy(
                    update={"targets": config.frontend.targets.model_copy(update=targets)}
                ),
                "prefill": config.prefill.model_copy(
                    update={
                        "targets": config.prefill.targets.model_copy(
                            update={"gpu_utilization_pct": knobs.gpu_utilization_pct}
                        )
                    }
                ),
            }
        )
        policy = hpa_policy(tuned).model_copy(
            update={
                "scale_down_stabilization_s": knobs.scale_down_stabilization_s,
                "metric_period_s": KEDA_POLL_S,
            }
        )
        self.config = tuned.model_copy(update={"scaling": policy})
        self.points = Datapoints(start, KEDA_POLL_S)
        self.sync = Every(start, HPA_SYNC_S)
        self.history = History()
        self.specs = [s for role in SERVICE_ROLES for s in signal_specs(self.config, role)]

    def initial_counts(self) -> Counts:
        return minimums(self.config)

    def observe(self, end: float, signals: Signals) -> None:
        self.points.add(end, signals)

    def step(
        self,
        now: float,
        states: Mapping[ServiceRole, ServiceState],
        observations: Mapping[str, Observation],
        new_datapoints: bool,
    ) -> Counts | None:
        if not self.sync.due(now):
            return None
        polled = {
            spec.key: obs
            for spec in self.specs
            if (obs := self.points.latest.get((spec.metric, spec.source_service))) is not None
        }
        decision = decide(self.config, states, polled, self.history, now)
        self.history = decision.history
        return {role: d.desired for role, d in decision.services.items()}


# -- Dynamo planner -----------------------------------------------------------------------


@dataclass(frozen=True)
class PlannerKnobs:
    interval_s: int = 180
    predictor: str = "constant"  # or "trend"
    headroom: float = 0.2
    trend_intervals: int = 3


class Planner:
    """Throughput-based sizing from a predicted request rate and the profiled replica throughput."""

    def __init__(
        self,
        config: DeploymentConfig,
        start: float,
        params: ModelParams,
        knobs: PlannerKnobs,
        name: str,
        level: bool = False,
    ) -> None:
        self.name = name
        self.scale_ahead = level
        self.config = config
        self.params = params
        self.knobs = knobs
        self.points = Datapoints(start, knobs.interval_s)
        self.rates: deque[float] = deque(maxlen=max(knobs.trend_intervals, 2))
        self.due = False
        ttft = config.frontend.targets.ttft_ms or 500.0
        itl = config.frontend.targets.itl_ms or 2 * params.base_itl_ms
        # Profiled throughput at the SLA: prefill at the TTFT target, decode at the ITL target.
        self.prefill_rps = params.capacity_at_sla("prefill", ttft, itl)
        self.decode_rps = params.capacity_at_sla("frontend", ttft, itl)

    def initial_counts(self) -> Counts:
        return minimums(self.config)

    def observe(self, end: float, signals: Signals) -> None:
        if self.points.add(end, signals):
            rate = self.points.value(names.REQUEST_RATE, "frontend", end, self.knobs.interval_s)
            if rate is not None:
                self.rates.append(rate)
            self.due = True

    def predicted_rate(self) -> float:
        if not self.rates:
            return 0.0
        last = self.rates[-1]
        if self.knobs.predictor == "constant" or len(self.rates) < 2:
            return last
        ys = list(self.rates)
        n = len(ys)
        mean_x, mean_y = (n - 1) / 2, sum(ys) / n
        slope = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(ys)) / sum(
            (i - mean_x) ** 2 for i in range(n)
        )
        return max(mean_y + slope * (n - mean_x), 0.0)  # one interval past the last

    def step(
        self,
        now: float,
        states: Mapping[ServiceRole, ServiceState],
        observations: Mapping[str, Observation],
        new_datapoints: bool,
    ) -> Counts | None:
        if not self.due:
            return None
        self.due = False
        rate = self.predicted_rate() * (1.0 + self.knobs.headroom)
        wanted: Counts = {
            "frontend": max(math.ceil(rate / self.decode_rps - 1e-9), 1),
            "prefill": max(math.ceil(rate / self.prefill_rps - 1e-9), 1),
        }
        current = {r: states[r].desired for r in SERVICE_ROLES}
        return self._within_budget(wanted, current)

    def _within_budget(self, wanted: Counts, current: Counts) -> Counts:
        """Over the budget, the planner scales both roles down proportionally."""
        c = self.config
        clamped = {r: min(max(wanted[r], c.service(r).min), c.service(r).max) for r in SERVICE_ROLES}
        if c.gpus_used(clamped) <= c.gpu_budget:
            return clamped
        scale = c.gpu_budget / c.gpus_used(clamped)
        scaled = {r: max(math.floor(clamped[r] * scale), c.service(r).min) for r in SERVICE_ROLES}
        fitted, _ = fit_budget(c, scaled, current, {r: 1.0 for r in SERVICE_ROLES})
        return fitted
