"""A simulated wall clock for the demo, the scaling benchmark and the tests.

Time moves only when the caller says so (``now += 60``) or when code under test sleeps
through `sleep`. Pass it where a ``clock`` is taken, or to `dynamo_ecs.clock.use`.
"""

from __future__ import annotations

import math
import time


def past_minute_boundary(hours_back: float = 1.0) -> float:
    """A minute boundary ``hours_back`` ago: a start from which every simulated datapoint lies in the past."""
    return math.floor(time.time() / 60) * 60 - hours_back * 3600.0


class SimClock:
    def __init__(self, start: float | None = None) -> None:
        self.start = past_minute_boundary() if start is None else start
        self.now = self.start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    @property
    def minute(self) -> float:
        """Simulated minutes since the start."""
        return (self.now - self.start) / 60
