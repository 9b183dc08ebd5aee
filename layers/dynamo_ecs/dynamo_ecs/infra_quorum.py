"""Whether the three-member etcd + NATS tier has quorum, read from ECS, and the alert when not.

etcd needs a majority of its members: with two of three lost, the survivor refuses writes and
lease keep-alives, a replacement cannot join (its ``member remove`` needs quorum), and every
Dynamo process exits within its lease TTL. Nothing repairs that alone; a person restarts the
three members (docs/template.md, "Two members lost at once").

Level-triggered like the rest: every member task state change counts the members whose task
runs now (``lastStatus`` and ``desiredStatus`` RUNNING, in the member's service group). The
alert goes out when that count changes from a majority to less (and a note when the majority is
back), once: the change is written to the state record ``infra#quorum`` with a conditional
write, and only the invocation whose write succeeds publishes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from dynamo_ecs.config import DeploymentConfig, InfraConfig
from dynamo_ecs.observability import logger
from dynamo_ecs.state import StaleRecordError, StateStore

QUORUM_RECORD = "infra#quorum"
Change = Literal["lost", "restored", "unchanged"]


@dataclass(frozen=True)
class QuorumState:
    members: int
    running: tuple[int, ...]  # indexes of the members whose task runs now

    @property
    def quorum(self) -> bool:
        return len(self.running) >= self.members // 2 + 1


def member_service(config: InfraConfig, index: int) -> str:
    """Member ``index``'s ECS service (template.yaml: ``<DeploymentName>-infra-<index>``)."""
    return f"{config.service}-{index}"


def running_members(config: InfraConfig, tasks: list[dict[str, Any]]) -> QuorumState:
    """The members with a RUNNING task among described ``tasks``. Pure."""
    running = {
        index
        for index in range(len(config.members))
        for task in tasks
        if task.get("group") == f"service:{member_service(config, index)}"
        and task.get("lastStatus") == "RUNNING"
        and task.get("desiredStatus") == "RUNNING"
    }
    return QuorumState(len(config.members), tuple(sorted(running)))


def read_quorum(config: InfraConfig, ecs: Any) -> QuorumState:
    """ListTasks per member service, one DescribeTasks (4 API calls for three members)."""
    arns: list[str] = []
    for index in range(len(config.members)):
        arns += ecs.list_tasks(
            cluster=config.cluster, serviceName=member_service(config, index), desiredStatus="RUNNING"
        )["taskArns"]
    tasks = ecs.describe_tasks(cluster=config.cluster, tasks=arns[:100])["tasks"] if arns else []
    return running_members(config, tasks)


def record_change(
    state: QuorumState, config: DeploymentConfig, store: StateStore, publish: Callable[[str, str], None]
) -> Change:
    """Alert once when the tier loses its majority, note once when it is back."""
    record = store.get_record(QUORUM_RECORD)
    was_lost = bool(record.data.get("lost", False))
    if was_lost == (not state.quorum):
        return "unchanged"
    change: Change = "lost" if not state.quorum else "restored"
    try:
        store.put_record(
            QUORUM_RECORD, {"lost": not state.quorum, "running": list(state.running)}, record.version
        )
    except StaleRecordError:
        return "unchanged"  # another invocation saw the same change and reports it
    names = ", ".join(f"infra-{k}" for k in state.running) or "none"
    if change == "lost":
        subject = "dynamo-ecs-operator: etcd + NATS tier has no quorum"
        message = (
            f"{config.deployment}: {len(state.running)} of {state.members} infra members run ({names}). "
            "etcd has no quorum: replacements cannot join and every Dynamo process exits within its "
            "lease TTL. Recover by starting all three members again, empty (docs/template.md, 'Two "
            f"members lost at once'): aws ecs update-service --cluster {config.infra.cluster} --service "
            f"{config.infra.service}-<0,1,2> --force-new-deployment"
        )
    else:
        subject = "dynamo-ecs-operator: etcd + NATS tier has quorum again"
        message = f"{config.deployment}: {len(state.running)} of {state.members} infra members run ({names})."
    if change == "lost":
        logger.error(message)
    else:
        logger.info(message)
    store.append_decision(
        "infra_quorum",
        {"change": change, "running": list(state.running), "members": state.members},
        config.scaling.decision_log_ttl_days,
    )
    publish(subject, message)
    return change
