"""Metrics collector: on the one-minute EventBridge schedule, measure and publish the signals.

Thin on purpose: check the event is a schedule event, run one collection
(`dynamo_ecs.signals.collector`), return a short summary. A bad scrape target never makes
this handler fail; only an unusable configuration (at cold start) or a failing AWS API does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dynamo_ecs.config import load_config
from dynamo_ecs.observability import logger
from dynamo_ecs.signals.collector import default_collector

CONFIG = load_config()


class ScheduleEvent(BaseModel):
    """An EventBridge ``Scheduled Event`` (unknown fields allowed, as AWS may add some)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    source: str = Field(pattern=r"^aws\.events$")
    detail_type: str = Field(alias="detail-type", pattern=r"^Scheduled Event$")
    time: datetime


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        schedule = ScheduleEvent.model_validate(event)
    except ValidationError as exc:
        # Never retried: an event of another shape cannot become a schedule event.
        logger.warning("not a schedule event: ignored", extra={"errors": exc.errors(include_url=False)})
        return {"ignored": "not an EventBridge Scheduled Event"}
    logger.append_keys(schedule_id=schedule.id, scheduled_at=schedule.time.isoformat())
    summary = default_collector(CONFIG).run().as_dict()
    logger.info("collection done", extra=summary)
    return summary
