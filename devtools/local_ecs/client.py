"""An OpenAI-style client for the local frontends: one chat completion, or wait for the first one.

Loopback only (the frontends listen on 127.x); every call has a time-out, every wait a bound.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

PROMPT = "hello world the model is a token"


@dataclass(frozen=True)
class ChatResult:
    status: int  # HTTP status; 0 when the connection failed
    body: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 200


def chat(
    base_url: str, model: str, max_tokens: int = 8, timeout_s: float = 10.0, prompt: str = PROMPT
) -> ChatResult:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return ChatResult(
                response.status, response.read().decode(errors="replace"), time.monotonic() - started
            )
    except urllib.error.HTTPError as error:
        return ChatResult(error.code, error.read().decode(errors="replace"), time.monotonic() - started)
    except (urllib.error.URLError, OSError) as error:
        return ChatResult(0, str(error), time.monotonic() - started)


def get(url: str, timeout_s: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        return 0, str(error)


def first_success(
    base_url: str, model: str, timeout_s: float, between_s: float = 0.5, on_wait: object = None
) -> ChatResult | None:
    """Chat until one completion succeeds or ``timeout_s`` passes; the success, or None.

    ``on_wait`` (a callable) runs between attempts, e.g. the runner's tick.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = chat(base_url, model, timeout_s=min(10.0, max(1.0, deadline - time.monotonic())))
        if result.ok:
            return result
        if callable(on_wait):
            on_wait()
        time.sleep(between_s)
    return None
