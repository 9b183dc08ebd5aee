"""Scaler: on a scaling alarm or the one-minute schedule, reconcile the GPU services' counts.

Alarms bring scale-out within seconds of a breaching datapoint; the schedule covers what
alarms cannot (they do not fire again while in ALARM) and is where scale-in happens. Both
run the same level-triggered reconcile (`dynamo_ecs.scaling.reconcile`). An alarm that is
not ours or an event of another shape is logged and dropped; AWS errors are raised so
Lambda retries.
"""

from __future__ import annotations

from typing import Any

from dynamo_ecs.config import load_config
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.observability import logger
from dynamo_ecs.scaling.runtime import capacity_reconciler
from dynamo_ecs.scaling.triggers import parse_trigger

CONFIG = load_config()


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        trigger = parse_trigger(event, CONFIG)
    except InvalidInputError as exc:
        logger.info("event ignored", extra={"reason": str(exc)})
        return {"status": "ignored", "reason": str(exc)}
    logger.append_keys(trigger=trigger.kind, alarm=trigger.alarm)
    return capacity_reconciler(CONFIG).reconcile(trigger).as_dict()
