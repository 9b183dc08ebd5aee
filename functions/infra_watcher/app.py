"""Infra watcher: an ECS task of the etcd + NATS service changed state; look again and reconcile.

The event only says *that* something changed. The reconcile reads which infra task runs now
and rolls the GPU services onto its address if they are not on it already. Events that are
not ours or malformed are logged and dropped (retrying them could never succeed); AWS errors
are raised so Lambda and EventBridge retry.
"""

from __future__ import annotations

from typing import Any

from dynamo_ecs.config import load_config
from dynamo_ecs.endpoints.events import parse_infra_event
from dynamo_ecs.endpoints.runtime import reconciler
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.observability import logger

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
    try:
        result = reconciler(CONFIG, context).reconcile(trigger)
    except InvalidInputError as exc:
        logger.error("reconcile refused", extra={"reason": str(exc)})
        return {"status": "refused", "reason": str(exc)}
    return result.as_dict()
