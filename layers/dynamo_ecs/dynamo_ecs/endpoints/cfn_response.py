"""Answer CloudFormation for a custom resource: always, and before the function times out.

A custom resource that never answers holds its stack for an hour. `CloudFormationAnswer`
sends SUCCESS or FAILED (with a reason) by an HTTP PUT to the pre-signed ``ResponseURL``,
at most once; `answer_before_timeout` arms a timer that sends FAILED a few seconds before
the Lambda deadline if the work is still running.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError

from dynamo_ecs.config import format_validation_error
from dynamo_ecs.errors import InvalidInputError
from dynamo_ecs.inputs import AwsEnvelope, ShortText
from dynamo_ecs.observability import logger

SAFETY_MARGIN_S = 5.0
_RESPONSE_URL = re.compile(r"^https?://\S+$")
MAX_URL = 8192


class CustomResourceRequest(AwsEnvelope):
    """What CloudFormation sends a custom resource (strict; unknown fields allowed)."""

    request_type: Literal["Create", "Update", "Delete"] = Field(alias="RequestType")
    response_url: Annotated[str, StringConstraints(pattern=_RESPONSE_URL.pattern, max_length=MAX_URL)] = (
        Field(alias="ResponseURL")
    )
    stack_id: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(alias="StackId")
    request_id: ShortText = Field(alias="RequestId")
    logical_resource_id: ShortText = Field(alias="LogicalResourceId")
    physical_resource_id: ShortText | None = Field(None, alias="PhysicalResourceId")
    resource_properties: dict[str, Any] = Field(default_factory=dict, alias="ResourceProperties")
    # Update only: the properties before this change (also what a rollback moves away from).
    old_resource_properties: dict[str, Any] = Field(default_factory=dict, alias="OldResourceProperties")


def answerable(event: Any) -> bool:
    """Whether ``event`` carries a URL to answer: without one, nobody waits for an answer."""
    url = event.get("ResponseURL") if isinstance(event, dict) else None
    return isinstance(url, str) and len(url) <= MAX_URL and bool(_RESPONSE_URL.match(url))


def parse_request(event: dict[str, Any]) -> CustomResourceRequest:
    try:
        return CustomResourceRequest.model_validate(event)
    except ValidationError as exc:
        raise InvalidInputError(
            f"invalid custom resource request: {format_validation_error(exc, None)}"
        ) from exc


class CloudFormationAnswer:
    def __init__(self, event: dict[str, Any], physical_id: str) -> None:
        self.event = event
        given = event.get("PhysicalResourceId")
        self.physical_id = given if isinstance(given, str) and 0 < len(given) <= 256 else physical_id
        self._lock = threading.Lock()
        self.sent: str | None = None

    def send(self, status: str, reason: str = "", data: dict[str, Any] | None = None) -> None:
        with self._lock:
            if self.sent:
                return
            self.sent = status
        body = json.dumps(
            {
                "Status": status,
                "Reason": (reason or "see the function's logs")[:3000],
                "PhysicalResourceId": self.physical_id,
                "StackId": self.event.get("StackId", ""),
                "RequestId": self.event.get("RequestId", ""),
                "LogicalResourceId": self.event.get("LogicalResourceId", ""),
                "NoEcho": False,
                "Data": data or {},
            }
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - the pre-signed URL CloudFormation gave
            str(self.event["ResponseURL"]),
            data=body,
            method="PUT",
            headers={"Content-Type": "", "Content-Length": str(len(body))},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            logger.info("answered CloudFormation", extra={"status": status, "http": response.status})

    def answer_before_timeout(self, context: Any) -> threading.Timer | None:
        remaining_ms = getattr(context, "get_remaining_time_in_millis", lambda: 0)()
        if not remaining_ms:
            return None
        delay = max(0.0, remaining_ms / 1000 - SAFETY_MARGIN_S)
        timer = threading.Timer(delay, self.send, args=("FAILED", "timed out before the work finished"))
        timer.daemon = True
        timer.start()
        return timer


def drain_budget_s(context: Any) -> float:
    """How long the work may still wait and leave time to answer before the timeout answer fires."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", lambda: 0)()
    return max(0.0, remaining_ms / 1000 - SAFETY_MARGIN_S - 15.0)
