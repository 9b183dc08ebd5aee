"""The level-triggered capacity reconcile shared by every scaler trigger.

Each call, under the deployment lease (the same one the endpoint reconciler takes, so a
scale never races a rollout):

1. reads the services' desired and running counts and rollout state (one DescribeServices),
   every signal's newest datapoint (one GetMetricData) and the recent recommendations
   (the ``scaling#history`` record, one GetItem);
2. decides (`dynamo_ecs.scaling.decide.decide`, pure);
3. calls UpdateService for a service only when its desired count changes; after a
   scale-out, raises the GPU Auto Scaling group's desired capacity to what the new counts
   need (`scale_ahead`, with ``scaling.scale_ahead`` and ``gpu_autoscaling_group``);
4. stores the new history and appends one decision-log entry (kind ``scaling``), no
   change included, with its reasons; publishes one SNS message per scale action.

A dry run (``{"dry_run": true}`` or config ``dry_run``) does steps 1-2 only, takes no lease
and writes nothing. Two invocations at once: the second waits for the lease, then reads the
counts the first just set and finds nothing left to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from dynamo_ecs.clock import now as clock_now
from dynamo_ecs.config import SERVICE_ROLES, DeploymentConfig, ServiceRole
from dynamo_ecs.errors import LeaseHeldError
from dynamo_ecs.metric_names import DIMENSION_DEPLOYMENT, DIMENSION_SERVICE
from dynamo_ecs.observability import logger
from dynamo_ecs.scaling.decide import Decision, History, Observation, ServiceDecision, ServiceState, decide
from dynamo_ecs.scaling.metrics_reader import read_signals
from dynamo_ecs.scaling.scale_ahead import scale_ahead
from dynamo_ecs.scaling.triggers import Trigger
from dynamo_ecs.state import StateStore

HISTORY_RECORD = "scaling#history"
LEASE_WAIT_S = 20.0
SCALE_ACTIONS_METRIC = "ScaleActions"
Status = Literal["applied", "unchanged", "dry_run", "busy", "no_services"]
# What a reconcile reads: counts, signals, history, the request-rate series, the token-rate series.
Observed = tuple[
    dict[ServiceRole, ServiceState],
    dict[str, Observation],
    History,
    list[Observation],
    dict[ServiceRole, list[Observation]],
]


@dataclass
class ScalingResult:
    status: Status
    reason: str
    decision: Decision | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "services": self.decision.as_dict() if self.decision else {},
        }


def service_state(service: dict[str, Any]) -> ServiceState:
    """Counts and rollout state from one DescribeServices entry.

    A rollout is under way while the service has more than one deployment (old tasks still
    draining) or its primary deployment is not COMPLETED yet.
    """
    deployments = service.get("deployments", [])
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    rolling = len(deployments) > 1 or (primary is not None and primary.get("rolloutState") == "IN_PROGRESS")
    return ServiceState(int(service["desiredCount"]), int(service.get("runningCount", 0)), rolling)


class CapacityReconciler:
    def __init__(
        self,
        config: DeploymentConfig,
        store: StateStore,
        ecs: Any,
        cloudwatch: Any,
        sns: Any = None,
        clock: Callable[[], float] = clock_now,
        autoscaling: Any = None,
    ) -> None:
        self.config = config
        self.autoscaling = autoscaling
        self.store = store
        self.ecs = ecs
        self.cloudwatch = cloudwatch
        self.sns = sns
        self.clock = clock

    def reconcile(self, trigger: Trigger) -> ScalingResult:
        if trigger.dry_run or self.config.dry_run:
            observed = self._observe()
            if observed is None:
                return ScalingResult("no_services", "the GPU services do not exist yet")
            states, observations, history, demand, token_demand = observed
            decision = decide(self.config, states, observations, history, self.clock(), demand, token_demand)
            logger.info("scale decision (dry run)", extra={"services": decision.as_dict()})
            return ScalingResult("dry_run", "would apply the decision; changed nothing", decision)
        try:
            with self.store.lease(self.config.rollout.lease_ttl_s, wait_s=LEASE_WAIT_S):
                record = self.store.get_record(HISTORY_RECORD)
                observed = self._observe(History.from_dict(record.data))
                if observed is None:
                    return ScalingResult("no_services", "the GPU services do not exist yet")
                states, observations, history, demand, token_demand = observed
                decision = decide(
                    self.config, states, observations, history, self.clock(), demand, token_demand
                )
                for change in decision.changes:
                    self.ecs.update_service(
                        cluster=self.config.gpu_cluster,
                        service=self.config.service(change.role).service,
                        desiredCount=change.desired,
                    )
                ahead = self._scale_ahead(decision)
                self.store.put_record(HISTORY_RECORD, decision.history.as_dict(), record.version)
        except LeaseHeldError:
            # The next schedule tick (at most a minute away) looks again; an alarm still in
            # ALARM is seen by it. Raising would only make Lambda retry later than that.
            logger.info("deployment busy: another invocation holds the lease; next tick looks again")
            return ScalingResult("busy", "another invocation holds the deployment lease")
        self._record(trigger, decision, ahead)
        status: Status = "applied" if decision.changes else "unchanged"
        reason = "; ".join(f"{d.role}: {d.reason}" for d in decision.services.values())
        return ScalingResult(status, reason, decision)

    # -- steps -----------------------------------------------------------------------------

    def _scale_ahead(self, decision: Decision) -> str | None:
        if not (self.config.scaling.scale_ahead and self.autoscaling is not None):
            return None
        if not any(d.action == "scale_out" for d in decision.services.values()):
            return None
        counts = {role: d.desired for role, d in decision.services.items()}
        return scale_ahead(self.config, self.autoscaling, counts)

    def _observe(self, history: History | None = None) -> Observed | None:
        names = {self.config.service(role).service: role for role in SERVICE_ROLES}
        answer = self.ecs.describe_services(cluster=self.config.gpu_cluster, services=list(names))
        found = {s["serviceName"]: s for s in answer.get("services", []) if s.get("status") == "ACTIVE"}
        if set(found) != set(names):
            logger.warning(
                "GPU services missing: nothing to scale", extra={"missing": sorted(set(names) - set(found))}
            )
            return None
        states = {names[name]: service_state(service) for name, service in found.items()}
        if history is None:
            history = History.from_dict(self.store.get_record(HISTORY_RECORD).data)
        observations, demand, token_demand = read_signals(self.cloudwatch, self.config, self.clock())
        return states, observations, history, demand, token_demand

    def _record(self, trigger: Trigger, decision: Decision, ahead: str | None = None) -> None:
        entry: dict[str, Any] = {
            "trigger": trigger.model_dump(exclude_none=True),
            "services": decision.as_dict(),
        }
        if ahead is not None:
            entry["scale_ahead"] = ahead
        self.store.append_decision("scaling", entry, self.config.scaling.decision_log_ttl_days)
        logger.info("scale decision", extra=entry)
        for change in decision.changes:
            self._notify(change)
            _emit_scale_action(self.config, change)

    def _notify(self, change: ServiceDecision) -> None:
        if not self.config.alert_topic_arn or self.sns is None:
            return
        verb = "scale out" if change.action == "scale_out" else "scale in"
        self.sns.publish(
            TopicArn=self.config.alert_topic_arn,
            Subject=f"{self.config.deployment}: {verb} {change.role} {change.current} -> {change.desired}"[
                :100
            ],
            Message=change.reason
            + "\n\n"
            + "\n".join(
                f"{p.signal}: value {p.value}, target {p.target:g}, proposes {p.replicas} ({p.note})"
                for p in change.proposals
            ),
        )


def _emit_scale_action(config: DeploymentConfig, change: ServiceDecision) -> None:
    """One EMF datapoint per action (the dashboard's scale-decisions widget), no API call."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    if is_metrics_disabled():  # POWERTOOLS_METRICS_DISABLED, as for the Metrics object
        return
    with single_metric(
        name=SCALE_ACTIONS_METRIC,
        unit=MetricUnit.Count,
        value=1,
        namespace=config.signals.namespace,
        default_dimensions={DIMENSION_DEPLOYMENT: config.deployment, DIMENSION_SERVICE: change.role},
    ) as metric:
        # Powertools would add its own ``service`` dimension (POWERTOOLS_SERVICE_NAME), and a
        # CloudWatch query must name every dimension: the dashboard and alarms ask for exactly
        # Deployment and Service, as for every collector metric.
        metric.service = ""
