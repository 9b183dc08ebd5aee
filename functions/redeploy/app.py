"""Redeploy: the operators' manual path (``sam remote invoke RedeployFunction --event ...``).

A bad payload is answered with an error that names the field, and nothing changes.
"""

from __future__ import annotations

from typing import Any

from dynamo_ecs.config import load_config
from dynamo_ecs.endpoints.redeploy import parse_payload, redeploy
from dynamo_ecs.endpoints.runtime import reconciler
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.observability import logger

CONFIG = load_config()


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        payload = parse_payload(event)
        result = redeploy(payload, reconciler(CONFIG, context))
    except InvalidInputError as exc:
        logger.warning("redeploy refused", extra={"reason": str(exc)})
        return {"status": "refused", "error": str(exc)}
    return result.as_dict()
