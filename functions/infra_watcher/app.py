"""Infra watcher: an ECS task of the etcd + NATS service (or of a member of the three-member
tier) changed state; look again and reconcile, and, for the tier, alert when it loses quorum.

The event only says *that* something changed. The reconcile reads which infra task runs now
and rolls the GPU services onto its address if they are not on it already. Events that are
not ours or malformed are logged and dropped (retrying them could never succeed); AWS errors
are raised so Lambda and EventBridge retry.
"""

from __future__ import annotations

from typing import Any

from dynamo_ecs import aws
from dynamo_ecs.config import load_config
from dynamo_ecs.endpoints.events import parse_infra_event
from dynamo_ecs.endpoints.runtime import reconciler
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.infra_quorum import read_quorum, record_change
from dynamo_ecs.observability import logger
from dynamo_ecs.state import StateStore

CONFIG = load_config()


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        change = parse_infra_event(event, CONFIG.infra)
    except InvalidInputError as exc:
        logger.warning("event ignored", extra={"reason": str(exc)})
        return {"status": "ignored", "reason": str(exc)}
    trigger = {
        "event_id": change.id,
        "task": change.detail.task_arn,
        "last_status": change.detail.last_status,
        "version": change.detail.version,
    }
    logger.append_keys(**trigger)
    quorum: dict[str, Any] = {}
    if CONFIG.infra.members:  # the three-member tier: its names never change; watch its majority
        state = read_quorum(CONFIG.infra, aws.client("ecs"))
        noted = record_change(state, CONFIG, StateStore(CONFIG.state_table, CONFIG.deployment), _publish)
        quorum = {"quorum": {"running": list(state.running), "has_quorum": state.quorum, "change": noted}}
    try:
        result = reconciler(CONFIG, context).reconcile(trigger)
    except InvalidInputError as exc:
        logger.error("reconcile refused", extra={"reason": str(exc)})
        return {"status": "refused", "reason": str(exc), **quorum}
    return result.as_dict() | quorum


def _publish(subject: str, message: str) -> None:
    if CONFIG.alert_topic_arn:
        aws.client("sns").publish(TopicArn=CONFIG.alert_topic_arn, Subject=subject, Message=message)
