"""The operator's one source of wall-clock time.

Production reads `time.time`. The local demo runs the real handlers through simulated
minutes (stabilization windows, metric timestamps, lease expiry, decision-log times), so it
swaps the source with `use`; nothing else in the operator reads the wall clock directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_source: Callable[[], float] = time.time


def now() -> float:
    return _source()


def use(source: Callable[[], float] | None) -> None:
    """Read time from ``source`` from now on (None: back to `time.time`)."""
    global _source
    _source = source or time.time
