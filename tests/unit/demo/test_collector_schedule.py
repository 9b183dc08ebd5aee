"""The demo's collector schedule tells a tick when the collector's round is done.

The demo's tick drains the breach events and then evaluates the alarms on the previous round's
datapoints; it must do so after the collector's round of that tick, however late a starved
collector thread gets to it (otherwise the alarm can act on a datapoint before the breach
event the same round sends). Threading logic only: the collector here is a stand-in whose
rounds record what they published.
"""

from __future__ import annotations

import time
import types
from typing import Any, cast

from devtools.demo.scenario import CollectorSchedule


class SlowCollector:
    """Rounds that publish after ``delays`` (a starved thread), as `Collector.run` calls them."""

    def __init__(self, delays: list[float], published: list[int]) -> None:
        self.delays = delays
        self.published = published

    def collect_round(self, cluster: Any) -> str:
        time.sleep(self.delays[len(self.published)])
        self.published.append(len(self.published) + 1)
        return "published"

    def run(self) -> list[str]:
        return [self.collect_round(None) for _ in self.delays]


class StackStandIn:
    """What CollectorSchedule uses of a LocalStack: the loaded handler module and ``invoke``."""

    def __init__(self, delays: list[float]) -> None:
        self.published: list[int] = []
        self.invocations = 0
        module: Any = types.ModuleType("functions_metrics_collector_app")
        module.default_collector = lambda config: SlowCollector(delays, self.published)
        self.handlers: dict[str, Any] = {"metrics_collector": module}
        self.module = module
        self.original = module.default_collector

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        # as the handler does: build the collector, run its rounds
        self.invocations += 1
        self.handlers[function].default_collector(None).run()
        return {}


def test_a_tick_waits_for_a_starved_round_and_sees_what_it_published() -> None:
    # Given a collector whose first round comes 0.4 s late and its second 0.3 s after that
    stack = StackStandIn([0.4, 0.3])
    schedule = CollectorSchedule(cast(Any, stack)).start()
    try:
        begin = time.monotonic()
        # When a tick waits for the first round
        seen = schedule.wait_for_round(0, timeout_s=5)
        # Then it returns once that round is done, with its datapoints already published
        assert seen == 1
        assert time.monotonic() - begin >= 0.35
        assert stack.published == [1]
        # and the next tick waits for the next round, not for the one it has seen
        assert schedule.wait_for_round(seen, timeout_s=5) == 2
        assert stack.published == [1, 2]
        # and a tick that waits too short gives up without a new round (the demo counts it)
        assert schedule.wait_for_round(2, timeout_s=0.05) == 2
    finally:
        schedule.stop()
    # The handler module gets its own collector builder back
    assert stack.module.default_collector is stack.original
    assert stack.invocations == 1
