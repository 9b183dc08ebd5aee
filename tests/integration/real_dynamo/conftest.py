"""The real-Dynamo tier: real etcd, nats-server and Dynamo processes from the task definitions.

Every test here starts processes on 127.x addresses derived from moto's task and instance
addresses, with fixed ports (2379, 4222, 8000, ...) as on ECS; every module is in the xdist
group ``real_dynamo`` (as tests/e2e is) so that two such deployments never run at once.
"""

from __future__ import annotations

import pytest

from devtools.local_ecs.programs import Toolbox


@pytest.fixture(autouse=True, scope="session")
def _dynamo_installed() -> None:
    Toolbox().check_dynamo()
