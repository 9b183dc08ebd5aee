"""A local stand-in for CloudFormation's side of a custom resource: the ResponseURL.

A custom resource answers CloudFormation with a PUT of its result to a presigned URL; this
server receives those PUTs on loopback so the tests and the demo can read each answer.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devtools.services import LOOPBACK


class CloudFormationStub:
    """Receives the PUTs a custom resource sends to its ResponseURL."""

    def __init__(self) -> None:
        self.answers: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["Content-Length"])
                stub.answers.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server.server_address[1]}/response"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
