"""Answer CloudFormation for a custom resource: always, and before the function times out.

A custom resource that never answers holds its stack for an hour. `CloudFormationAnswer`
sends SUCCESS or FAILED (with a reason) by an HTTP PUT to the pre-signed ``ResponseURL``,
at most once; `answer_before_timeout` arms a timer that sends FAILED a few seconds before
the Lambda deadline if the work is still running.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

from dynamo_ecs.observability import logger

SAFETY_MARGIN_S = 5.0


class CloudFormationAnswer:
    def __init__(self, event: dict[str, Any], physical_id: str) -> None:
        self.event = event
        self.physical_id = event.get("PhysicalResourceId") or physical_id
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
