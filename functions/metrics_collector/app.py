"""Metrics collector: on the one-minute EventBridge schedule, measure and publish the signals.

Thin on purpose: check the event is a schedule event, run one collection
(`dynamo_ecs.signals.collector`), return a short summary. A bad scrape target never makes
this handler fail; only an unusable configuration (at cold start) or a failing AWS API does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from dynamo_ecs.config import format_validation_error, load_config
from dynamo_ecs.inputs import AwsEnvelope, EventTime, ShortText
from dynamo_ecs.observability import logger
from dynamo_ecs.signals.collector import default_collector

CONFIG = load_config()


class ScheduleEvent(AwsEnvelope):
    """An EventBridge ``Scheduled Event`` (strict types; unknown fields allowed, as AWS may add some)."""

    id: ShortText
    source: Literal["aws.events"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")
    time: EventTime


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        schedule = ScheduleEvent.model_validate(event)
    except ValidationError as exc:
        # Never retried: an event of another shape cannot become a schedule event.
        reason = f"not an EventBridge Scheduled Event: {format_validation_error(exc, None)}"
        logger.warning("event ignored", extra={"reason": reason})
        return {"status": "ignored", "reason": reason}
    logger.append_keys(schedule_id=schedule.id, scheduled_at=schedule.time.isoformat())
    summary = default_collector(CONFIG).run().as_dict()
    logger.info("collection done", extra=summary)
    return summary
