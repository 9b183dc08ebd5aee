"""A recording and fault-injection layer on the operator's AWS clients, through botocore's event hooks.

Used by the fuzz and fault tests and by ``bench/bench_faults.py``, against moto server:

- `recording` counts every API call the operator makes (``before-call``: once per call,
  whatever botocore retries) and the service endpoint each one goes to; `AwsCalls.writes`
  are the calls that change something.
- `Faults` makes calls fail the way AWS does, from a seeded generator so a run can be
  replayed: at ``rate``, an HTTP attempt is answered *throttled* before it reaches moto
  (nothing happened) or with a *503 after moto did the work* (the answer was lost, as on a
  timeout). ``kill_at=n`` kills the invocation at its n-th call: that call and every call
  after it raise `Killed`, as when Lambda times out or the process dies (the lease's
  release in a ``finally`` does not happen either). ``throttle`` names operations whose
  every attempt is throttled (a release of the lease that never gets through).

Hooks are registered on the session's event emitter, so they reach every client made
afterwards: both context managers forget the cached clients on the way in and out.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders

from dynamo_ecs import aws

READ_PREFIXES = ("Describe", "List", "Get", "BatchGet", "Query", "Scan")
JSON_PROTOCOL_SERVICES = ("ecs", "dynamodb")  # where a throttling error body is plain JSON


class Killed(Exception):  # noqa: N818 - what happened to the invocation, not an error of the code
    """The invocation died here (a Lambda timeout, a crash): nothing after it reaches AWS."""


def is_write(operation: str) -> bool:
    return not operation.startswith(READ_PREFIXES)


@dataclass
class AwsCalls:
    calls: list[str] = field(default_factory=list)
    # The endpoint prefix of each call's service (``monitoring`` for CloudWatch): the name of
    # its interface VPC endpoint, ``com.amazonaws.<region>.<prefix>``.
    endpoints: list[str] = field(default_factory=list)

    @property
    def writes(self) -> list[str]:
        return [name for name in self.calls if is_write(name)]

    def clear(self) -> None:
        self.calls.clear()
        self.endpoints.clear()


@contextlib.contextmanager
def recording() -> Iterator[AwsCalls]:
    """Every AWS API call made inside the block, by operation name."""
    record = AwsCalls()

    def count(model: Any, **_: Any) -> None:
        record.calls.append(model.name)
        record.endpoints.append(model.service_model.endpoint_prefix)

    aws.reset_clients()
    aws.events().register("before-call", count)
    try:
        yield record
    finally:
        aws.events().unregister("before-call", count)
        aws.reset_clients()


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


@dataclass
class Faults:
    seed: int = 0
    rate: float = 0.0
    kill_at: int | None = None
    # Operations (``DeleteItem``) whose every HTTP attempt is throttled, whatever ``rate`` says
    # (ECS and DynamoDB only: the JSON error body).
    throttle: frozenset[str] = frozenset()
    calls: int = 0
    dead: bool = False
    injected: Counter[str] = field(default_factory=Counter)
    throttled_operations: Counter[str] = field(default_factory=Counter)  # by operation name

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def before_call(self, model: Any, **_: Any) -> None:
        self.calls += 1
        if self.kill_at is not None and self.calls >= self.kill_at:
            self.dead = True
        if self.dead:
            raise Killed(f"killed at call {self.calls} ({model.name})")

    def before_send(self, request: Any, event_name: str, **_: Any) -> Any:
        service, operation = event_name.split(".")[1:3]
        if operation in self.throttle:
            return self._throttled(request, operation)
        if self.rate <= 0 or self._random.random() >= self.rate:
            return None
        if service in JSON_PROTOCOL_SERVICES and self._random.random() < 0.5:
            return self._throttled(request, operation)
        from botocore.httpsession import URLLib3Session

        URLLib3Session().send(request)  # moto does the work; the answer is then lost
        self.injected["lost_answer"] += 1
        return AWSResponse(request.url, 503, _headers(), _Body(b""))

    def _throttled(self, request: Any, operation: str) -> AWSResponse:
        self.injected["throttled"] += 1
        self.throttled_operations[operation] += 1
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        return AWSResponse(request.url, 400, _headers(), _Body(body))


@contextlib.contextmanager
def injecting(faults: Faults) -> Iterator[Faults]:
    """Every client made inside the block fails as ``faults`` says."""
    aws.reset_clients()
    aws.events().register("before-call", faults.before_call)
    aws.events().register("before-send", faults.before_send)
    try:
        yield faults
    finally:
        aws.events().unregister("before-call", faults.before_call)
        aws.events().unregister("before-send", faults.before_send)
        aws.reset_clients()


def _headers() -> HTTPHeaders:
    headers = HTTPHeaders()
    headers["x-amzn-RequestId"] = "fault"
    return headers
