"""Strict building blocks for every event and payload that enters the operator.

Nothing is coerced: ``"no"`` is not a boolean, ``"1"`` is not a number and ``0.5`` is not a
time. Strings are bounded, so a megabyte alarm name is refused at the edge and never reaches
a state write. AWS envelopes allow unknown fields (AWS adds fields at any time); payloads we
define forbid them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints

# What EventBridge and Lambda put in ids, sources and detail types, with room to spare.
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]
ArnText = Annotated[str, StringConstraints(pattern=r"^arn:aws[a-z-]*:", max_length=2048)]
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$")


def _iso_time(value: Any) -> datetime:
    """An ISO 8601 time *string* as EventBridge writes it (``2026-11-29T00:00:00Z``); nothing else."""
    if not isinstance(value, str) or not _ISO_TIME.match(value):
        raise ValueError("must be an ISO 8601 time such as 2026-11-29T00:00:00Z")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


EventTime = Annotated[datetime, BeforeValidator(_iso_time)]


class AwsEnvelope(BaseModel):
    """An event AWS sends: strict types, unknown fields allowed."""

    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True, frozen=True)


class StrictPayload(BaseModel):
    """A payload we define: strict types, unknown fields are errors."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True, frozen=True)
