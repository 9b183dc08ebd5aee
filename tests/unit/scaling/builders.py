"""Small builders the scaling decision's example tests share: a config, current counts, a series."""

from __future__ import annotations

from typing import Any

from dynamo_ecs.config import DeploymentConfig, ServiceRole
from dynamo_ecs.scaling.decide import Observation, ServiceState


def config(**tree: Any) -> DeploymentConfig:
    return DeploymentConfig.model_validate(tree)


def states(frontend: int, prefill: int) -> dict[ServiceRole, ServiceState]:
    """Both services settled at these counts (desired = running)."""
    return {"frontend": ServiceState(frontend, frontend), "prefill": ServiceState(prefill, prefill)}


def series(*values: float, now: float, every_s: float = 10.0) -> list[Observation]:
    """Datapoints ``every_s`` apart, the newest at ``now``."""
    return [Observation(v, now - every_s * (len(values) - 1 - i)) for i, v in enumerate(values)]
