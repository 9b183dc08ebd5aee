"""The interface every signal source implements, and the values they exchange."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from dynamo_ecs.config import ServiceRole
from dynamo_ecs.metric_names import METRIC_UNITS

# The ``Service`` dimension: a GPU service's role, or the infra tier (`metric_names.SERVICE_INFRA`).
MetricService = ServiceRole | Literal["infra"]


@dataclass(frozen=True)
class Datum:
    """One value of one metric of the contract, for one service (or the infra tier)."""

    metric: str
    service: MetricService
    value: float

    @property
    def unit(self) -> str:
        return METRIC_UNITS[self.metric]


@dataclass
class SourceReading:
    """What a source measured in one collection round.

    ``state`` is what the source wants to find again next round (the cumulative values its
    windows start from); None means "keep what was stored". ``targets`` and ``errors`` count
    the endpoints it tried to read and those it could not read.
    """

    source: str
    data: list[Datum] = field(default_factory=list)
    targets: int = 0
    errors: int = 0
    state: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    failed: bool = False  # the source raised: nothing it says this round can be trusted


@dataclass(frozen=True)
class RoundContext:
    """What every source of one round shares: the time of the round and the cluster view."""

    now: float
    cluster: Any  # discovery.ClusterView, or None when the GPU cluster could not be read


class SignalSource(Protocol):
    """A source of signals. ``read`` does the I/O and hands the raw input to a pure function."""

    name: str
    # The service whose ScrapeTargets / ScrapeErrors count this source's endpoints (None: none).
    scrape_service: ServiceRole | None

    def read(self, context: RoundContext, previous_state: dict[str, Any] | None) -> SourceReading: ...
