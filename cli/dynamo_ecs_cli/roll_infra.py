"""``dynamo-ecs roll-infra``: start each etcd + NATS member's task again, one member at a time.

A task reads its ECS ``secrets`` when it starts, so after each step of the planes' rotation
(docs/security-planes.md, "Rotation") every member must be started again, and with the
three-member tier no two may be away at once: etcd keeps its quorum with two of three. So a
member is rolled only when every member's service is steady, and the next one only when the
rolled one is steady again: one deployment, COMPLETED, as many tasks running as desired, and
each task HEALTHY where its task definition has a container health check. ECS cannot tell
whether a member's etcd is healthy, so with more than one member the roll also waits for the
metrics collector's ``EtcdMembersHealthy`` (each member's etcd ``/health`` and leader, read in
the VPC with the operator's identity): every member healthy in the newest minute, begun after
the rolled member was steady. Any member not steady, or fewer healthy members than members,
stops the roll before it touches one more, naming the member and why. Running it again rolls
again (each member restarts once more); nothing else changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from dynamo_ecs.metric_names import ETCD_MEMBERS_HEALTHY, SERVICE_INFRA
from dynamo_ecs.signals.publish import metric_stat
from dynamo_ecs_cli.stack import running_service_tasks

Say = Callable[[str], None]
# The fewest healthy members in the newest minute begun at or after a time (epoch s); None: no
# such minute has data yet.
HealthyMembers = Callable[[float], float | None]
MINUTE_S = 60
RECENT_S = 300  # before the first member: the collector's last five minutes must show all healthy


@dataclass
class Steadiness:
    steady: bool
    why: str
    deployment_id: str | None = None


@dataclass
class RollReport:
    cluster: str
    services: list[str]
    rolled: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    stopped_at: str | None = None
    reason: str | None = None
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.stopped_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "services": self.services,
            "dry_run": self.dry_run,
            "rolled": self.rolled,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "stopped_at": self.stopped_at,
            "reason": self.reason,
        }


def steadiness(
    service: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], health_checked: bool
) -> Steadiness:
    """Whether a described service is steady (see the module's docstring), and if not, why."""
    name = service.get("serviceName", "?")
    deployments = service.get("deployments") or []
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    if primary is None:
        return Steadiness(False, f"{name}: no primary deployment")
    deployment_id = str(primary.get("id"))
    if len(deployments) > 1:
        return Steadiness(False, f"{name}: {len(deployments)} deployments under way", deployment_id)
    rollout = primary.get("rolloutState", "COMPLETED")
    if rollout != "COMPLETED":
        reason = primary.get("rolloutStateReason") or ""
        return Steadiness(False, f"{name}: deployment {rollout} {reason}".rstrip(), deployment_id)
    desired = int(service.get("desiredCount", 0))
    running = [t for t in tasks if t.get("lastStatus") == "RUNNING"]
    if desired == 0:
        return Steadiness(False, f"{name}: desired count is 0 (the member is off)", deployment_id)
    if len(running) < desired:
        return Steadiness(False, f"{name}: {len(running)} of {desired} tasks running", deployment_id)
    if health_checked:
        unhealthy = [t for t in running if t.get("healthStatus") != "HEALTHY"]
        if unhealthy:
            states = ", ".join(sorted({str(t.get("healthStatus", "UNKNOWN")) for t in unhealthy}))
            return Steadiness(
                False, f"{name}: {len(unhealthy)} task(s) not yet HEALTHY ({states})", deployment_id
            )
    return Steadiness(True, f"{name}: steady", deployment_id)


class ServiceReader:
    """Reads what `steadiness` needs for one of the infra cluster's services."""

    def __init__(self, ecs: Any, cluster: str) -> None:
        self.ecs = ecs
        self.cluster = cluster
        self._health_checked: dict[str, bool] = {}

    def __call__(self, name: str) -> Steadiness:
        described = self.ecs.describe_services(cluster=self.cluster, services=[name])
        if not described.get("services"):
            return Steadiness(False, f"{name}: no such service in {self.cluster}")
        service = described["services"][0]
        tasks = running_service_tasks(self.ecs, self.cluster, name)
        return steadiness(service, tasks, self._checks_health(service))

    def _checks_health(self, service: Mapping[str, Any]) -> bool:
        family = str(service.get("taskDefinition", ""))
        if family not in self._health_checked:
            definition = self.ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
            self._health_checked[family] = any(
                c.get("healthCheck") for c in definition.get("containerDefinitions", [])
            )
        return self._health_checked[family]


def etcd_members_healthy(
    cloudwatch: Any, namespace: str, deployment: str, clock: Callable[[], float] = time.time
) -> HealthyMembers:
    """`HealthyMembers` from the collector's ``EtcdMembersHealthy`` (minimum per minute)."""

    def fewest_since(since: float) -> float | None:
        end = clock() + 10 * MINUTE_S  # the current minute, whatever the clocks' skew
        answer = cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "healthy",
                    "MetricStat": metric_stat(
                        namespace, deployment, SERVICE_INFRA, ETCD_MEMBERS_HEALTHY, MINUTE_S, "Minimum"
                    ),
                }
            ],
            StartTime=datetime.fromtimestamp(since - MINUTE_S, UTC),
            EndTime=datetime.fromtimestamp(end, UTC),
            ScanBy="TimestampDescending",
        )
        [result] = answer["MetricDataResults"]
        minutes = [
            value
            for stamp, value in zip(result["Timestamps"], result["Values"], strict=True)
            if stamp.timestamp() >= since  # a minute begun after `since`, none that began before it
        ]
        return minutes[0] if minutes else None  # the newest such minute

    return fewest_since


def _not_rolled(read: ServiceReader, name: str, before: str | None) -> str | None:
    """Why ``name`` is not yet steady on a deployment newer than ``before`` (None: it is)."""
    state = read(name)
    if state.steady and state.deployment_id != before:
        return None
    return f"not steady: {state.why}; the service's events and `dynamo-ecs status` say why"


def _etcd_short(healthy: HealthyMembers, since: float, members: int) -> str | None:
    """Why etcd does not have every member healthy since ``since`` (None: it does)."""
    fewest = healthy(since)
    if fewest is None:
        return (
            f"no {ETCD_MEMBERS_HEALTHY} datapoint in a minute begun after "
            f"{datetime.fromtimestamp(since, UTC):%H:%M:%S} UTC (the metrics collector publishes it every "
            "minute; check that it runs, or pass --skip-etcd-health to rely on ECS alone)"
        )
    if fewest < members:
        return f"etcd reports {fewest:g} of {members} members healthy ({ETCD_MEMBERS_HEALTHY})"
    return None


def wait_until_none(
    problem: Callable[[], str | None],
    deadline: float,
    poll_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> str | None:
    """Ask ``problem`` until it answers None or ``deadline`` passes; its last answer."""
    while True:
        answer = problem()
        if answer is None or clock() > deadline:
            return answer
        sleep(poll_s)


def roll_members(
    ecs: Any,
    cluster: str,
    services: Sequence[str],
    *,
    dry_run: bool = False,
    timeout_s: float = 900.0,
    poll_s: float = 10.0,
    say: Say = lambda _: None,
    healthy: HealthyMembers | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> RollReport:
    """Force a new deployment of each service in turn, each only once all are steady (and, with
    ``healthy``, etcd has every member healthy)."""
    read = ServiceReader(ecs, cluster)
    report = RollReport(cluster, list(services), dry_run=dry_run)
    for index, name in enumerate(services):
        for other in services:  # every member, not only this one: two away at once lose the quorum
            state = read(other)
            if not state.steady:
                report.stopped_at = name
                report.reason = f"not rolled: {state.why}; wait, or see `dynamo-ecs status`"
                return report
        if healthy is not None and index == 0:
            short = _etcd_short(healthy, clock() - RECENT_S, len(services))
            if short:
                report.stopped_at, report.reason = name, f"not rolled: {short}"
                return report
        if dry_run:
            say(f"would roll {name} (force a new deployment, then wait until it is steady)")
            continue
        before = read(name).deployment_id
        say(f"rolling {name}")
        began = clock()
        ecs.update_service(cluster=cluster, service=name, forceNewDeployment=True)
        deadline = began + timeout_s
        short = wait_until_none(partial(_not_rolled, read, name, before), deadline, poll_s, clock, sleep)
        if short is None and healthy is not None:
            short = wait_until_none(
                partial(_etcd_short, healthy, clock(), len(services)), deadline, poll_s, clock, sleep
            )
        if short is not None:
            report.stopped_at = name
            report.reason = f"after {timeout_s:.0f} s {short}; the members after it were not touched"
            return report
        report.rolled.append(name)
        report.seconds[name] = clock() - began
        say(f"  {name} steady again after {report.seconds[name]:.0f} s")
    return report
