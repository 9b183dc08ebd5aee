"""Open-loop HTTP load on the local frontends: a request rate for a duration, bounded in both.

Requests go round-robin over the frontend tasks' addresses (the load balancer's part), each
with a time-out; the pool caps how many are in flight. Every request's outcome is recorded,
so a scale-in or a rollout that drops requests shows up as errors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from devtools.local_ecs.client import chat

MAX_IN_FLIGHT = 64
MAX_DURATION_S = 600.0


@dataclass(frozen=True)
class Outcome:
    sent_at: float
    status: int
    seconds: float
    target: str = ""  # the frontend URL it was sent to


@dataclass
class LoadRun:
    """A load in progress (`start`), stopped by `stop` or when its duration is over."""

    targets: Callable[[], list[str]]
    model: str
    rate_per_s: float
    prompt: str
    max_tokens: int = 16
    timeout_s: float = 30.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, duration_s: float) -> LoadRun:
        duration_s = min(duration_s, MAX_DURATION_S)
        self._thread = threading.Thread(target=self._run, args=(duration_s,), daemon=True)
        self._thread.start()
        return self

    def set_rate(self, rate_per_s: float) -> None:
        self.rate_per_s = rate_per_s

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)

    def _run(self, duration_s: float) -> None:
        end = time.monotonic() + duration_s
        sent = 0
        with ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT) as pool:
            pending: list[Future[None]] = []
            next_at = time.monotonic()
            while not self._stop.is_set() and time.monotonic() < end:
                urls = self.targets()
                if self.rate_per_s > 0 and urls and len([p for p in pending if not p.done()]) < MAX_IN_FLIGHT:
                    pending.append(pool.submit(self._one, urls[sent % len(urls)]))
                    sent += 1
                    next_at += 1.0 / self.rate_per_s
                else:
                    next_at = time.monotonic() + 0.05
                self._stop.wait(max(0.0, next_at - time.monotonic()))
                pending = [p for p in pending if not p.done()]

    def _one(self, url: str) -> None:
        sent_at = time.time()
        result = chat(
            url, self.model, max_tokens=self.max_tokens, timeout_s=self.timeout_s, prompt=self.prompt
        )
        with self._lock:
            self.outcomes.append(Outcome(sent_at, result.status, result.seconds, url))

    def errors(self) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.status != 200)

    def completed(self) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.status == 200)
