"""Diagnostics: ECS or Auto Scaling said something went wrong; classify it, record it, alert once.

Triggered by EventBridge rules on the GPU cluster's service actions, deployment state changes
and stopped tasks, and on the GPU Auto Scaling group's launch results. Events that are not
EventBridge events are logged and dropped (a retry could never succeed); AWS errors are
raised so Lambda and EventBridge retry (the state table makes a retry harmless).
"""

from __future__ import annotations

from typing import Any

from dynamo_ecs.config import load_config
from dynamo_ecs.diagnostics.runtime import diagnostician
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.observability import logger

CONFIG = load_config()


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        return diagnostician(CONFIG).handle(event)
    except InvalidInputError as exc:
        logger.warning("event ignored", extra={"reason": str(exc)})
        return {"status": "ignored", "reason": str(exc)}
