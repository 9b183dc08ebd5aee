"""Data access for the state table: the lease, versioned records and the decision log.

One DynamoDB table per stack, one partition per deployment (``pk = deployment#<name>``).
Sort keys name what an item is:

- ``lease``: who may act on the deployment now, until when (conditional writes);
- ``record#<name>``: a versioned JSON document (a service's spec, what was applied last,
  the previous scrape of a target); writes are compare-and-set on ``version``;
- ``decision#<iso time>#<id>``: one entry of the decision log, expiring through TTL.

All access goes through `StateStore`; nothing else in the operator builds DynamoDB keys.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dynamo_ecs import aws
from dynamo_ecs.clock import now as clock_now
from dynamo_ecs.errors import LeaseHeldError
from dynamo_ecs.observability import logger

TTL_ATTRIBUTE = "expires_at"


@dataclass(frozen=True)
class Record:
    """A versioned JSON document. ``version`` 0 means the record does not exist yet."""

    data: dict[str, Any]
    version: int


class StaleRecordError(Exception):
    """Another writer changed the record since it was read: read again and recompute."""


def _is_conditional_failure(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return bool(code == "ConditionalCheckFailedException")


class StateStore:
    def __init__(
        self,
        table: str,
        deployment: str,
        client: Any = None,
        clock: Callable[[], float] = clock_now,
    ) -> None:
        self.table = table
        self.deployment = deployment
        self._client = client
        self._clock = clock
        self.pk = f"deployment#{deployment}"

    @property
    def client(self) -> Any:
        return self._client or aws.client("dynamodb")

    # -- lease ---------------------------------------------------------------------------

    def try_acquire_lease(self, holder: str, ttl_s: int) -> bool:
        """Take the lease if it is free, expired, or already ours. Never blocks."""
        now = int(self._clock())
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": self.pk},
                    "sk": {"S": "lease"},
                    "holder": {"S": holder},
                    "lease_until": {"N": str(now + ttl_s)},
                    TTL_ATTRIBUTE: {"N": str(now + ttl_s + 3600)},
                },
                ConditionExpression="attribute_not_exists(pk) OR lease_until < :now OR holder = :me",
                ExpressionAttributeValues={":now": {"N": str(now)}, ":me": {"S": holder}},
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def release_lease(self, holder: str) -> None:
        """Give the lease back if we still hold it (a lease that expired and moved is left alone)."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"pk": {"S": self.pk}, "sk": {"S": "lease"}},
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": {"S": holder}},
            )
        except Exception as exc:
            if not _is_conditional_failure(exc):
                raise

    def lease_holder(self) -> str | None:
        """Who holds the lease now (None: free, or expired so anyone may take it)."""
        item = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": self.pk}, "sk": {"S": "lease"}}, ConsistentRead=True
        ).get("Item")
        if not item or int(item["lease_until"]["N"]) < int(self._clock()):
            return None
        return str(item["holder"]["S"])

    @contextlib.contextmanager
    def lease(self, ttl_s: int, wait_s: float = 0.0, holder: str | None = None) -> Iterator[str]:
        """Hold the deployment lease for the block, waiting up to ``wait_s`` for it.

        The TTL bounds how long a crashed holder blocks others. Raises `LeaseHeldError`
        (retryable) when the lease stays taken. A release that fails on AWS's side is logged,
        not raised: the lease expires by its TTL.
        """
        holder = holder or f"{uuid.uuid4()}"
        deadline = time.monotonic() + wait_s
        delay = 0.05
        while not self.try_acquire_lease(holder, ttl_s):
            if time.monotonic() >= deadline:
                raise LeaseHeldError(
                    f"deployment {self.deployment!r} is busy: another invocation holds the lease"
                )
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)
        try:
            yield holder
        finally:
            self._release_after_use(holder)

    def _release_after_use(self, holder: str) -> None:
        """Release the lease at the end of its block; an AWS error here is logged, never raised.

        The block's work is done (or its own exception is on its way out): a release throttled
        past botocore's retries must not turn converged work into a failed invocation, nor hide
        the block's exception. The lease then expires by its TTL.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.release_lease(holder)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "lease release failed; the lease expires by its TTL",
                extra={"deployment": self.deployment, "holder": holder, "error": repr(exc)},
            )

    # -- versioned records -----------------------------------------------------------------

    def get_record(self, name: str) -> Record:
        item = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": self.pk}, "sk": {"S": f"record#{name}"}},
            ConsistentRead=True,
        ).get("Item")
        if not item:
            return Record({}, 0)
        return Record(json.loads(item["data"]["S"]), int(item["version"]["N"]))

    def get_records(self, names: list[str]) -> dict[str, Record]:
        """Several records in one consistent BatchGetItem; missing ones come back at version 0."""
        keys = [{"pk": {"S": self.pk}, "sk": {"S": f"record#{name}"}} for name in names]
        found: dict[str, Record] = {name: Record({}, 0) for name in names}
        request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        while request:
            answer = self.client.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(self.table, []):
                name = item["sk"]["S"].removeprefix("record#")
                found[name] = Record(json.loads(item["data"]["S"]), int(item["version"]["N"]))
            request = answer.get("UnprocessedKeys") or {}
        return found

    def put_record(self, name: str, data: dict[str, Any], expected_version: int) -> Record:
        """Write ``data`` if the record is still at ``expected_version``; else `StaleRecordError`."""
        new_version = expected_version + 1
        body = json.dumps(data, sort_keys=True, separators=(",", ":"))
        condition = "attribute_not_exists(pk)" if expected_version == 0 else "version = :expected"
        values = {} if expected_version == 0 else {":expected": {"N": str(expected_version)}}
        try:
            self.client.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": self.pk},
                    "sk": {"S": f"record#{name}"},
                    "data": {"S": body},
                    "version": {"N": str(new_version)},
                    "updated_at": {"S": _iso(self._clock())},
                },
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except Exception as exc:
            if not _is_conditional_failure(exc):
                raise
            # botocore retries a write whose answer was lost; the retry then fails the
            # condition on our own write. That write is the record now: not a conflict.
            current = self.get_record(name)
            if (
                current.version == new_version
                and json.dumps(current.data, sort_keys=True, separators=(",", ":")) == body
            ):
                return Record(data, new_version)
            raise StaleRecordError(f"record {name!r} changed since version {expected_version}") from exc
        return Record(data, new_version)

    def records(self, prefix: str) -> dict[str, Record]:
        """Every record whose name starts with ``prefix`` (one consistent query, all pages)."""
        found: dict[str, Record] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": self.pk}, ":prefix": {"S": f"record#{prefix}"}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                name = item["sk"]["S"].removeprefix("record#")
                found[name] = Record(json.loads(item["data"]["S"]), int(item["version"]["N"]))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- decision log ----------------------------------------------------------------------

    def append_decision(self, kind: str, entry: dict[str, Any], ttl_days: int = 14) -> str:
        """Append one decision-log entry; returns its sort key."""
        now = self._clock()
        sort_key = f"decision#{_iso(now)}#{uuid.uuid4().hex[:8]}"
        self.client.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": self.pk},
                "sk": {"S": sort_key},
                "kind": {"S": kind},
                "entry": {"S": json.dumps(entry, sort_keys=True, default=str)},
                TTL_ATTRIBUTE: {"N": str(int(now + ttl_days * 86400))},
            },
        )
        return sort_key

    def decisions(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first; each entry carries its ``kind`` and ``at`` (ISO time)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": self.pk}, ":prefix": {"S": "decision#"}},
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        while len(items) < limit:
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                if kind and item["kind"]["S"] != kind:
                    continue
                at = item["sk"]["S"].split("#")[1]
                items.append({"kind": item["kind"]["S"], "at": at, **json.loads(item["entry"]["S"])})
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items[:limit]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
