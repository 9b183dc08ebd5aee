"""Diagnoses in the state table: one versioned record per signature, opened once, alerted once.

A record ``diagnosis/<kind>/<service>/<cause>`` holds the diagnosis, how often and when it was
seen, and whether its alert went out. Every write is compare-and-set on the record's version,
so duplicate, concurrent and out-of-order events settle on the same record:

- the first event of a signature opens it (a resolved one is opened again, as a new episode,
  only by an event newer than its resolution; an older one arriving late changes nothing);
- later events only count (an event id already counted is not counted again);
- the alert is claimed (``alert_claim_until``) before it is sent and marked sent after: a
  crash in between means a retry sends it again (at least once), a concurrent twin that
  finds the claim sends nothing;
- a resolution closes the service's open diagnoses last seen before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from dynamo_ecs.clock import now as clock_now
from dynamo_ecs.diagnostics.classify import Finding, Resolution
from dynamo_ecs.errors import RetryableError
from dynamo_ecs.state import StaleRecordError, StateStore

RECORD_PREFIX = "diagnosis/"
ALERT_CLAIM_S = 60
MAX_WRITE_ATTEMPTS = 8
KEEP_EVENT_IDS = 10

Observed = Literal["opened", "counted", "duplicate", "late"]


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Observation:
    status: Observed
    signature: str
    needs_alert: bool
    data: dict[str, Any]


class DiagnosisLog:
    def __init__(self, store: StateStore, clock: Callable[[], float] = clock_now) -> None:
        self.store = store
        self.clock = clock

    def observe(self, finding: Finding, log_lines: list[str]) -> Observation:
        name = RECORD_PREFIX + finding.signature
        seen_at = epoch(finding.at)
        for _ in range(MAX_WRITE_ATTEMPTS):
            record = self.store.get_record(name)
            old = record.data
            status: Observed
            if record.version == 0 or (old["status"] == "resolved" and seen_at > old["resolved_at_epoch"]):
                status = "opened"
                new: dict[str, Any] | None = {
                    **finding.model_dump(),
                    "signature": finding.signature,
                    "status": "open",
                    "episode": int(old.get("episode", 0)) + 1,
                    "first_seen": finding.at,
                    "last_seen": finding.at,
                    "last_seen_epoch": seen_at,
                    "count": 1,
                    "event_ids": [finding.event_id],
                    "log_lines": log_lines,
                    "alerted": False,
                    "alert_claim_until": 0,
                }
            elif old["status"] == "resolved":
                return Observation("late", finding.signature, False, old)
            elif finding.event_id in old["event_ids"]:
                status, new = "duplicate", None
            else:
                newer = seen_at > old["last_seen_epoch"]
                status = "counted"
                new = {
                    **old,
                    "count": int(old["count"]) + 1,
                    "event_ids": [*old["event_ids"], finding.event_id][-KEEP_EVENT_IDS:],
                    "last_seen": finding.at if newer else old["last_seen"],
                    "last_seen_epoch": max(seen_at, old["last_seen_epoch"]),
                    "log_lines": log_lines if (newer and log_lines) else old["log_lines"],
                }
            if new is not None:
                try:
                    self.store.put_record(name, new, record.version)
                except StaleRecordError:
                    continue
            current = new if new is not None else old
            return Observation(status, finding.signature, not current["alerted"], current)
        raise RetryableError(f"diagnosis {finding.signature}: the record kept changing under us")

    def claim_alert(self, signature: str) -> dict[str, Any] | None:
        """The diagnosis if this caller may send its alert now; None if sent or claimed by another."""
        name = RECORD_PREFIX + signature
        for _ in range(MAX_WRITE_ATTEMPTS):
            record = self.store.get_record(name)
            now = self.clock()
            if record.version == 0 or record.data["alerted"] or record.data["alert_claim_until"] > now:
                return None
            claimed = {**record.data, "alert_claim_until": now + ALERT_CLAIM_S}
            try:
                self.store.put_record(name, claimed, record.version)
            except StaleRecordError:
                continue
            return claimed
        return None

    def mark_alerted(self, signature: str) -> None:
        name = RECORD_PREFIX + signature
        for _ in range(MAX_WRITE_ATTEMPTS):
            record = self.store.get_record(name)
            if record.version == 0 or record.data["alerted"]:
                return
            try:
                self.store.put_record(name, {**record.data, "alerted": True}, record.version)
            except StaleRecordError:
                continue
            return
        raise RetryableError(f"diagnosis {signature}: could not mark its alert sent")

    def resolve(self, resolution: Resolution) -> list[dict[str, Any]]:
        """Close the service's open diagnoses last seen before the resolution; the closed ones."""
        closed = []
        at = epoch(resolution.at)
        for name, record in self.store.records(RECORD_PREFIX).items():
            data = record.data
            if (
                data["status"] != "open"
                or data["service"] != resolution.service
                or at <= data["last_seen_epoch"]
            ):
                continue
            resolved = {
                **data,
                "status": "resolved",
                "resolved_at": resolution.at,
                "resolved_at_epoch": at,
                "resolved_by": resolution.reason,
            }
            try:
                self.store.put_record(name, resolved, record.version)
            except StaleRecordError:
                continue  # it changed (seen again): it stays open, the next steady state closes it
            closed.append(resolved)
        return closed

    def all(self) -> list[dict[str, Any]]:
        """Every diagnosis, open first, newest first within each."""
        items = [r.data for r in self.store.records(RECORD_PREFIX).values()]
        return sorted(items, key=lambda d: (d["status"] != "open", -float(d["last_seen_epoch"])))
