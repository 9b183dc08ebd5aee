"""Loopback stand-ins for the two AWS APIs the command line needs and moto server cannot answer.

- **Service Quotas**: moto (5.2) answers ``GetServiceQuota`` for the ``vpc`` service code only, so
  EC2's GPU vCPU quotas do not exist there. The stand-in answers ``GetServiceQuota`` and
  ``GetAWSDefaultServiceQuota`` in the API's JSON protocol from a table the test sets, and
  ``NoSuchResourceException`` for the rest, as AWS does.
- **Lambda Invoke**: moto runs a function's code only in Docker, which these machines lack.
  The stand-in answers ``Invoke`` by calling the function's real handler in this process
  (so the handler talks to moto like the deployed function talks to AWS).

Clients reach them through botocore's per-service endpoint variables
(``AWS_ENDPOINT_URL_SERVICE_QUOTAS``, ``AWS_ENDPOINT_URL_LAMBDA``); everything else still goes
to moto server. Both listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

Answer = tuple[int, dict[str, str], bytes]
Route = Callable[[str, str, dict[str, str], bytes], Answer]

QUOTA_NAMES = {
    "L-DB2E81BA": "Running On-Demand G and VT instances",
    "L-417A185B": "Running On-Demand P instances",
}


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return (
        status,
        {"Content-Type": "application/x-amz-json-1.1", **(headers or {})},
        json.dumps(body).encode(),
    )


def service_quotas(values: dict[tuple[str, str], float]) -> Route:
    """Answers for ``(service code, quota code) -> value``; anything else is NoSuchResource."""

    def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        target = headers.get("x-amz-target", "")
        operation = target.rsplit(".", 1)[-1]
        if operation not in ("GetServiceQuota", "GetAWSDefaultServiceQuota"):
            return _json(400, {"__type": "InvalidAction", "message": f"stand-in does not answer {operation}"})
        request = json.loads(body or b"{}")
        key = (request.get("ServiceCode", ""), request.get("QuotaCode", ""))
        if key not in values:
            return _json(400, {"__type": "NoSuchResourceException", "message": f"no quota {key[0]}/{key[1]}"})
        return _json(
            200,
            {
                "Quota": {
                    "ServiceCode": key[0],
                    "QuotaCode": key[1],
                    "QuotaName": QUOTA_NAMES.get(key[1], key[1]),
                    "Value": values[key],
                    "Unit": "None",
                    "Adjustable": True,
                    "GlobalQuota": False,
                }
            },
        )

    return answer


_INVOKE = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


def lambda_invoke(
    functions: dict[str, Callable[[Any, Any], Any]],
    calls: list[dict[str, Any]] | None = None,
    region: str = "us-east-1",
    account: str = "123456789012",
) -> Route:
    """``Invoke`` of each named function runs its ``lambda_handler(event, context)`` with a context
    as Lambda hands one over; an exception is a FunctionError answer, as Lambda reports it."""

    def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        match = _INVOKE.match(path.split("?", 1)[0])
        if method != "POST" or not match:
            return _json(404, {"Type": "User", "message": f"stand-in does not answer {method} {path}"})
        name = unquote(match["name"])
        if name not in functions:
            return _json(
                404,
                {"Type": "User", "message": f"Function not found: {name}"},
                {"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
        event = json.loads(body or b"null")
        if calls is not None:
            calls.append({"function": name, "event": event})
        context = SimpleNamespace(
            function_name=name,
            invoked_function_arn=f"arn:aws:lambda:{region}:{account}:function:{name}",
            aws_request_id=str(uuid.uuid4()),
            memory_limit_in_mb=512,
            get_remaining_time_in_millis=lambda: 60_000,
        )
        try:
            result = functions[name](event, context)
        except Exception as exc:  # as Lambda reports an unhandled error
            error = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            return _json(
                200, error, {"X-Amz-Function-Error": "Unhandled", "X-Amz-Executed-Version": "$LATEST"}
            )
        return _json(200, json.loads(json.dumps(result, default=str)), {"X-Amz-Executed-Version": "$LATEST"})

    return answer


@contextmanager
def stand_in(route: Route) -> Iterator[str]:
    """Serve ``route`` on a free loopback port; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, reply_headers, payload = route(self.command, self.path, headers, body)
            except Exception as exc:  # a bug in the stand-in: say so instead of dropping the connection
                status, reply_headers, payload = _json(500, {"message": f"stand-in failed: {exc!r}"})
            self.send_response(status)
            for key, value in {**reply_headers, "Content-Length": str(len(payload))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        do_POST = _serve  # noqa: N815
        do_GET = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
